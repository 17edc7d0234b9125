"""The evaluation's prompt files: `evaluation/prompts/<name>.txt`, versioned by file name as the
curation prompts are (a changed prompt is a new file, so cached calls keep pointing at their text).

A file is a `#` header (where the text comes from, how replies are read) and named sections:

    # X-Instruction's judge ... Source: github.com/ZNLP/X-Instruction, utils/gpt4_eval.py
    === system ===
    We would like to request your feedback ...
    === user ===
    Given the question and the answer in {language} language. ...

Each section is a `str.format` template (`curation.prompts.PromptTemplate`). A section's text runs
from the line after its marker to the newline before the next marker (or the file's last newline),
so trailing blank lines are part of the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..curation.prompts import PromptTemplate
from ..errors import UsageError
from ..llm.backends.base import GenerationParams, LLMRequest

STAGE = "eval"
_MARKER = re.compile(r"^=== (\w+) ===\n", re.MULTILINE)


@dataclass(frozen=True)
class PromptFile:
    name: str
    header: str
    sections: dict[str, PromptTemplate]

    @property
    def version(self) -> str:
        return f"{STAGE}:{self.name}"

    def section(self, name: str) -> PromptTemplate:
        if name not in self.sections:
            raise UsageError(f"prompt {self.version} has no `=== {name} ===` section (it has: {', '.join(self.sections)})")
        return self.sections[name]

    def request(self, values: dict[str, str], params: GenerationParams, *, chat: bool) -> LLMRequest:
        """The call for `values`: system and user messages on a chat route; elsewhere one
        completion prompt (the system text, a blank line, the user text), or the `prompt` section."""
        if "prompt" in self.sections:
            return LLMRequest(prompt=self.sections["prompt"].render(**values), params=params)
        system, user = self.section("system").render(**values), self.section("user").render(**values)
        if chat:
            return LLMRequest(messages=(("system", system), ("user", user)), params=params)
        return LLMRequest(prompt=f"{system}\n\n{user}", params=params)


def parse_prompt_file(name: str, text: str) -> PromptFile:
    """Split a prompt file into its header and sections (see the module docstring)."""
    markers = list(_MARKER.finditer(text))
    if not markers:
        raise UsageError(f"prompt file {name!r} has no section (a line `=== prompt ===`, or `=== system ===` and `=== user ===`)")
    sections: dict[str, PromptTemplate] = {}
    for marker, following in zip(markers, [*markers[1:], None]):
        end = following.start() if following else len(text)
        body = text[marker.end():end]
        sections[marker.group(1)] = PromptTemplate(STAGE, name, body[:-1] if body.endswith("\n") else body)
    return PromptFile(name=name, header=text[: markers[0].start()], sections=sections)


def load_eval_prompt(name_or_path: str) -> PromptFile:
    """A packaged prompt by name (`judge_plug_pair_v2`), or a prompt file by path."""
    path = Path(name_or_path)
    if path.suffix == ".txt" and path.is_file():
        return parse_prompt_file(path.stem, path.read_text(encoding="utf-8"))
    folder = resources.files(__package__).joinpath("prompts")
    packaged = folder.joinpath(f"{name_or_path}.txt")
    if not packaged.is_file():
        known = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))
        raise UsageError(f"no evaluation prompt {name_or_path!r} (neither a packaged name nor a .txt file); packaged: {', '.join(known)}")
    return parse_prompt_file(name_or_path, packaged.read_text(encoding="utf-8"))
