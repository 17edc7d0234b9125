"""Prompt templates: text files beside the stage that uses them, versioned by file name.

`<stage>/prompts/<name>.txt` is a `str.format` template (literal braces doubled); its file name
(`instruction_v1`) is the version recorded in provenance. Changing a prompt means adding a new
file (`instruction_v2.txt`), never editing a released one: cached calls and published records
keep pointing at the exact text that produced them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources

from ..errors import UsageError


@dataclass(frozen=True)
class PromptTemplate:
    stage: str
    name: str
    text: str

    @property
    def version(self) -> str:
        return f"{self.stage}:{self.name}"

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.text) if f}

    def render(self, **values: str) -> str:
        missing = self.fields - set(values)
        if missing:
            raise UsageError(f"prompt {self.version} needs {', '.join(sorted(missing))}")
        return self.text.format_map(values)


def load_prompt(stage: str, name: str) -> PromptTemplate:
    """Load `curation/<stage>/prompts/<name>.txt`, or say which templates exist."""
    folder = resources.files(__package__).joinpath(stage, "prompts")
    path = folder.joinpath(f"{name}.txt")
    if not path.is_file():
        known = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))
        raise UsageError(f"no {stage} prompt {name!r}; known: {', '.join(known)}")
    return PromptTemplate(stage=stage, name=name, text=path.read_text(encoding="utf-8"))
