"""What flows between the LLM stages: candidate pairs, judgements, and rejects with reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..documents import Document

# Label ranks: higher is better. `malformed` never reaches a pair (see judge).
LABELS = ("bad", "needs_refinement", "good")
LABEL_RANK = {label: rank for rank, label in enumerate(LABELS)}


@dataclass(frozen=True)
class Pair:
    """One (English instruction, target-language response) candidate built from a document."""

    doc: Document
    instruction: str
    response: str
    candidate: int = 0
    label: str = ""
    score: float | None = None
    round: int = 0  # refinement rounds this pair went through
    prompts: tuple[str, ...] = ()  # prompt versions that produced and judged it

    @property
    def tag(self) -> tuple[str, int]:
        return (self.doc.id, self.candidate)

    def judged(self, label: str, score: float | None, prompt: str) -> "Pair":
        return replace(self, label=label, score=score, prompts=_add(self.prompts, prompt))

    def rewritten(self, instruction: str, response: str, prompt: str) -> "Pair":
        return replace(self, instruction=instruction, response=response, label="", score=None, round=self.round + 1, prompts=_add(self.prompts, prompt))

    def rank(self) -> tuple[int, float]:
        """Sort key, higher is better: the label, then the score."""
        return (LABEL_RANK.get(self.label, -1), self.score if self.score is not None else 0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts"] = list(self.prompts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Pair":
        data = dict(data)
        data["doc"] = Document.from_dict(data["doc"])
        data["prompts"] = tuple(data.get("prompts") or ())
        return cls(**data)


def _add(prompts: tuple[str, ...], prompt: str) -> tuple[str, ...]:
    return prompts if prompt in prompts else (*prompts, prompt)


@dataclass(frozen=True)
class Reject:
    """A document that produced no curated record, and why: `<stage>:<reason>[:<detail>]`."""

    doc_id: str
    language: str
    reason: str
    source: str = ""
    url: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    # Summary counters of the document's way here (see stage.Work.events) and its judge replies
    # (stage.Work.judged, written to a side file); not written out with the reject.
    events: tuple[str, ...] = field(default=(), compare=False, repr=False)
    judged: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def of(cls, doc: Document, language: str, reason: str, **detail: Any) -> "Reject":
        return cls(doc_id=doc.id, language=language, reason=reason, source=doc.source, url=doc.url, detail=detail)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["events"], data["judged"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Reject":
        return cls(**data)
