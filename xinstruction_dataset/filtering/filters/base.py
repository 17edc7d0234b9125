"""The filter block: one `filter(doc)` method, its own counters, a registry by name.

As in datatrove, `filter(doc)` returns True to keep a document, or False / (False, reason) to
reject it. The block prefixes the reason with its own name (`language:wrong_language:en`), so a
rejects file says which block dropped a document and why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, ClassVar

from ...documents import Document

FilterResult = bool | tuple[bool, str]

FILTERS: dict[str, type["BaseFilter"]] = {}


def register(name: str):
    """Class decorator: make a filter available to recipes under `name`."""

    def wrap(cls: type[BaseFilter]) -> type[BaseFilter]:
        cls.name = name
        FILTERS[name] = cls
        return cls

    return wrap


class BaseFilter(ABC):
    name: ClassVar[str] = "filter"
    # Filters that judge a document against the recipe's target language get `language=` injected.
    needs_language: ClassVar[bool] = False

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    @abstractmethod
    def filter(self, doc: Document) -> FilterResult:
        """Return True to keep `doc`; False or (False, reason) to reject it."""

    def __call__(self, doc: Document) -> str | None:
        """Apply the filter and count; return the prefixed reject reason, or None when kept."""
        self.stats["in"] += 1
        result = self.filter(doc)
        keep, reason = (result, "rejected") if isinstance(result, bool) else result
        if keep:
            self.stats["kept"] += 1
            return None
        self.stats[f"rejected:{reason}"] += 1
        return f"{self.name}:{reason}"

    def config(self) -> dict[str, Any]:
        """The options this block was built with (recorded in provenance and summaries)."""
        return {}
