"""The unit of text that flows through sources and filters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Document:
    """One web document: the candidate *response* of an instruction pair.

    `metadata` collects what filters learn about the text (detected language and probability,
    token count, ...) and what the source knows (`source` name, file and line).
    """

    id: str
    text: str
    url: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Document":
        return cls(
            id=str(data["id"]),
            text=data["text"],
            url=data.get("url") or "",
            source=data.get("source") or "",
            metadata=dict(data.get("metadata") or {}),
        )
