"""Recipe-level wiring: which sources and filters a language gets, and where its outputs go."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator, Protocol

from ..documents import Document
from ..layout import RunLayout
from .runner import FilterSummary, filter_documents
from .filters import build_filter
from .sources import BadInput, SourceSpec, iter_source


class RecipeLike(Protocol):
    """What filtering needs of a `recipe.Recipe` (the recipe imports filtering, not the reverse)."""

    filters: list[Any]
    output_path: Path

    def sources_for(self, language: str) -> list[SourceSpec]: ...

    def resolve(self, path: str) -> str: ...

# The chain an ad-hoc run (`--input` without a recipe) gets; recipes list their own.
DEFAULT_FILTERS: list[dict] = [
    {"type": "length", "min_chars": 200, "max_chars": 20000},
    {"type": "mojibake"},
    {"type": "markup"},
    {"type": "boilerplate"},
    {"type": "repetition"},
    {"type": "language"},  # each detector's own default threshold (langdetect 0.9, fasttext 0.2)
    {"type": "dedup"},
]


def output_dir_for(recipe: RecipeLike, language: str, shard: tuple[int, int] = (0, 1)) -> Path:
    return RunLayout(recipe.output_path).filtered(language, shard)


def iter_language(recipe: RecipeLike, language: str, shard: tuple[int, int] = (0, 1)) -> Iterator[Document | BadInput]:
    """All sources of `language`, chained, each sharded the same way."""
    sources = recipe.sources_for(language)
    if not sources:
        raise ValueError(f"the recipe has no source for language {language!r}; add one under `sources:`")
    return itertools.chain.from_iterable(iter_source(s, recipe.resolve(s.path), shard) for s in sources)


def filter_language(
    recipe: RecipeLike, language: str, *, shard: tuple[int, int] = (0, 1), out_dir: Path | None = None, progress: bool = True
) -> FilterSummary:
    filters = [build_filter(spec, language) for spec in recipe.filters]
    return filter_documents(
        iter_language(recipe, language, shard),
        filters,
        out_dir or output_dir_for(recipe, language, shard),
        progress=progress,
        desc=f"filter {language}",
    )
