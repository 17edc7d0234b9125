"""The ten X-Instruction languages: the one place every other module reads them from."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, also the config name and langdetect/fasttext label
    name: str  # English name, used in "Answer in {name}."
    script: str  # ISO 15924 script name

    @property
    def answer_suffix(self) -> str:
        return f"Answer in {self.name}."


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("fi", "Finnish", "Latin"),
        Language("id", "Indonesian", "Latin"),
        Language("th", "Thai", "Thai"),
        Language("tr", "Turkish", "Latin"),
        Language("vi", "Vietnamese", "Latin"),
        Language("bn", "Bengali", "Bengali"),
        Language("hi", "Hindi", "Devanagari"),
        Language("sw", "Swahili", "Latin"),
        Language("ta", "Tamil", "Tamil"),
        Language("ur", "Urdu", "Arabic"),
    )
}

LANGUAGE_CODES: tuple[str, ...] = tuple(LANGUAGES)

# X-AlpacaEval's languages (the pivot English and PLUG's four), by English name.
XALPACAEVAL_LANGUAGES: dict[str, str] = {"en": "English", "zh": "Chinese", "ko": "Korean", "it": "Italian", "es": "Spanish"}


def language_name(code: str) -> str:
    """English name of any language code in the published data (`sw` -> `Swahili`); unknown codes
    are returned as they are."""
    if code in LANGUAGES:
        return LANGUAGES[code].name
    return XALPACAEVAL_LANGUAGES.get(code, code)


def get_language(code: str) -> Language:
    """Return the language for `code`, or raise a ValueError that lists the valid codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise UsageError(
            f"unknown language code {code!r}; X-Instruction languages are: {', '.join(LANGUAGE_CODES)}"
        ) from None
