"""Answer templates: how the model under test is asked and decoded, as data
(`evaluation/prompts/answer_*.txt`, prompt files as `prompts.py` reads them).

Sections, all optional but one way to lay out a prompt:

    === settings ===       YAML (`AnswerSettings`): the protocol it belongs to, decoding, samples,
                           stripping, the bilingual extraction
    === system ===         the system message on a backend that speaks chat (none when it renders empty)
    === user ===           the user message there
    === prompt ===         the one completion prompt on a backend without chat
    === system_layout ===  how `{system}` sits in `prompt` when there is a system text (default: as is)

Fields: `{instruction}` the item's instruction as its config gives it (`cross-<code>` configs end in
" Answer in <Language>."), `{question}` the same without that sentence, `{language}` the English
name of the language the answer should be in, `{system}` the system text (`--system`, or the
language's entry of `--system-file`; empty without one). The system message is the rendered
`system` section (none without one). In `prompt`, `{system}` is that text (or, in a template
without a `system` section, the system text itself) laid out by `system_layout`; nothing when empty.

A template with `user` speaks chat where the backend does; without `prompt` its completion layout
is the system text, a blank line and the user text (as the judge prompts are laid out). A template
with only `prompt` (the old `answer_x_instruction_v1`) is a completion prompt everywhere, with
the defaults below: its requests, and so their cache keys, are those it always made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError

from ..errors import UsageError
from ..curation.prompts import PromptTemplate
from ..languages import language_name
from ..llm.backends.base import GenerationParams, LLMRequest
from ..options import ConfigModel, readable_error
from .prompts import PromptFile

ANSWER_FIELDS = ("instruction", "question", "language", "system")
SECTIONS = ("settings", "system", "user", "prompt", "system_layout")
LAYOUTS = ("auto", "prompt", "chat")


class Extraction(ConfigModel):
    """PLUG's bilingual extraction (`extract_response_from_bilingual_output.py`): a reply holds an
    answer in the target language and one in `other`, each after its language's marker."""

    order: Literal["other_first", "target_first"]
    other: str = "en"
    markers: dict[str, Annotated[str, Field(min_length=1)]]


class AnswerSettings(ConfigModel):
    """A template's `=== settings ===`; the defaults are this toolkit's answer settings before
    templates had any (X-Instruction's sampling, one sample, stripped)."""

    protocol: Literal["plug", "xinstruction"] | None = None
    max_new_tokens: Annotated[int, Field(ge=1)] = 2048
    temperature: Annotated[float, Field(ge=0.0)] = 0.7
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    top_k: Annotated[int, Field(ge=0)] = 50
    no_repeat_ngram_size: Annotated[int, Field(ge=1)] | None = None
    samples: Annotated[int, Field(ge=1, le=64)] = 1
    select: Literal["shortest", "longest"] = "shortest"
    strip_fields: list[Literal["instruction", "question", "system"]] = []
    strip_output: bool = True
    extract: Extraction | None = None


@dataclass(frozen=True)
class AnswerTemplate:
    file: PromptFile
    settings: AnswerSettings

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def version(self) -> str:
        return self.file.version

    @property
    def speaks_chat(self) -> bool:
        return "user" in self.file.sections

    @property
    def uses_system(self) -> bool:
        """Whether a `--system` text reaches the prompt (some section has `{system}` of its own)."""
        sections = ("system",) if "system" in self.file.sections else ("prompt", "user")
        return any("system" in self.file.sections[s].fields for s in sections if s in self.file.sections)

    def values(self, row: dict[str, Any], system: str) -> dict[str, str]:
        values = {
            "instruction": row["instruction"],
            "question": row.get("question", row["instruction"]),
            "language": language_name(row["language"]),
            "system": system,
        }
        for name in self.settings.strip_fields:
            values[name] = values[name].strip()
        return values

    def request(self, row: dict[str, Any], params: GenerationParams, *, system: str = "", chat: bool) -> LLMRequest:
        """The call for one item: system and user messages when `chat` and the template has a
        user message, else one completion prompt laid out as the module docstring says."""
        values = self.values(row, system)
        sections = self.file.sections
        if chat and self.speaks_chat:
            system_message = sections["system"].render(**values) if "system" in sections else ""
            messages = ((("system", system_message),) if system_message else ()) + (("user", sections["user"].render(**values)),)
            return LLMRequest(messages=messages, params=params)
        if "prompt" not in sections:
            head, user = (sections["system"].render(**values) if "system" in sections else ""), sections["user"].render(**values)
            return LLMRequest(prompt=f"{head}\n\n{user}" if head else user, params=params)
        system_text = sections["system"].render(**values) if "system" in sections else values["system"]
        layout = sections.get("system_layout")
        laid_out = (layout.render(**{**values, "system": system_text}) if layout else system_text) if system_text else ""
        return LLMRequest(prompt=sections["prompt"].render(**{**values, "system": laid_out}), params=params)

    def sample_params(self, params: GenerationParams, samples: int) -> list[GenerationParams]:
        """One parameter set per sample: seeds seed, seed+1, ... (sample 0 is the one-sample call)."""
        seed = params.seed or 0
        return [params if k == 0 else replace(params, seed=seed + k) for k in range(samples)]


def select(outputs: list[str], rule: str) -> int:
    """The index of the sample judged: the shortest (or longest) in characters, the first of equal
    ones, as Python's min/max with key=len in X-Instruction's gpt4_eval.py."""
    lengths = [len(output) for output in outputs]
    target = min(lengths) if rule == "shortest" else max(lengths)
    return lengths.index(target)


def extract(output: str, target: str, extraction: Extraction) -> tuple[str, str]:
    """(answer, code) cut from a bilingual reply, as PLUG's extract_first/second_response: code
    "ok", "not found" (no target marker: the answer is empty) or "monolingual" (target first and
    no marker of the other language after it)."""
    target_marker, other_marker = extraction.markers[target], extraction.markers[extraction.other]
    if target_marker not in output:
        return "", "not found"
    answer = output[output.index(target_marker) + len(target_marker):].strip()
    if extraction.order == "other_first":
        return answer, "ok"
    if other_marker not in answer:
        return answer, "monolingual"
    return answer[: answer.index(other_marker)].strip(), "ok"


def answer_template(file: PromptFile) -> AnswerTemplate:
    """An answer template from a prompt file, its settings and sections checked (one-line errors)."""
    unknown = [s for s in file.sections if s not in SECTIONS]
    if unknown:
        raise UsageError(f"answer template {file.version}: unknown section(s) {', '.join(unknown)}; sections are {', '.join(SECTIONS)}")
    if "prompt" not in file.sections and "user" not in file.sections:
        raise UsageError(f"answer template {file.version} needs a `=== prompt ===` or a `=== user ===` section")
    for name, section in file.sections.items():
        if name == "settings":
            continue
        extra = section.fields - set(ANSWER_FIELDS)
        if extra:
            raise UsageError(f"answer template {file.version}: section {name} has field(s) {', '.join(sorted(extra))}; answer fields are {', '.join(ANSWER_FIELDS)}")
    settings = _settings(file)
    if settings.extract and settings.extract.other not in settings.extract.markers:
        raise UsageError(f"answer template {file.version}: extract.other {settings.extract.other!r} has no marker")
    return AnswerTemplate(file, settings)


def _settings(file: PromptFile) -> AnswerSettings:
    section: PromptTemplate | None = file.sections.get("settings")
    try:
        data = yaml.safe_load(section.text) if section else {}
    except yaml.YAMLError as error:
        raise UsageError(f"answer template {file.version}: settings are not YAML ({error})") from None
    try:
        return AnswerSettings.model_validate(data or {})
    except ValidationError as error:
        raise UsageError(f"answer template {file.version}: {readable_error(error, AnswerSettings, 'settings')}") from None


def use_chat(template: AnswerTemplate, backend_chat: bool, layout: str) -> bool:
    """Whether to send messages: `auto` where both the template and the backend speak chat."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout is one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "prompt":
        return False
    if layout == "chat":
        if not template.speaks_chat:
            raise UsageError(f"--layout chat: template {template.version} has no `=== user ===` section to send as a message")
        if not backend_chat:
            raise UsageError("--layout chat: this backend does not speak chat (a tgi spec needs `route: chat`; a local model needs a chat template)")
        return True
    return template.speaks_chat and backend_chat
