"""Recipe-level wiring: which sources and filters a language gets, and where its outputs go."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Iterator

from ..documents import Document
from ..layout import RunLayout
from ..recipe import Recipe, SourceSpec
from .runner import FilterSummary, filter_documents
from .filters import build_filter
from .sources import BadInput, iter_source

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


def output_dir_for(recipe: Recipe, language: str, shard: tuple[int, int] = (0, 1)) -> Path:
    return RunLayout(recipe.output_path).filtered(language, shard)


def iter_language(recipe: Recipe, language: str, shard: tuple[int, int] = (0, 1)) -> Iterator[Document | BadInput]:
    """All sources of `language`, chained, each sharded the same way."""
    sources = recipe.sources_for(language)
    if not sources:
        raise ValueError(f"the recipe has no source for language {language!r}; add one under `sources:`")
    return itertools.chain.from_iterable(iter_source(s, recipe.resolve(s.path), shard) for s in sources)


def filter_language(
    recipe: Recipe, language: str, *, shard: tuple[int, int] = (0, 1), out_dir: Path | None = None, progress: bool = True
) -> FilterSummary:
    filters = [build_filter(spec, language) for spec in recipe.filters]
    return filter_documents(
        iter_language(recipe, language, shard),
        filters,
        out_dir or output_dir_for(recipe, language, shard),
        progress=progress,
        desc=f"filter {language}",
    )


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe named on the command line, or an ad-hoc one for `--input` files."""
    if args.input:
        if not args.language or len(args.language) != 1:
            raise ValueError("--input needs exactly one --language CODE (the language the documents should be in)")
        base = Recipe.from_yaml(args.recipe) if args.recipe else Recipe(name="adhoc", filters=DEFAULT_FILTERS)
        language = args.language[0]
        return Recipe(
            name=base.name,
            version=base.version,
            languages=[language],
            sources=[SourceSpec(path=p if p.startswith("hf:") else str(Path(p).resolve()), language=language, text_field=args.text_field) for p in args.input],
            filters=base.filters,
            output_dir=str(Path(args.output_dir or "runs/adhoc").resolve()),
            curation=base.curation,
            publish=base.publish,
        )
    if not args.recipe:
        raise ValueError("give a recipe (e.g. builder/default.yaml) or --input FILE --language CODE")
    recipe = Recipe.from_yaml(args.recipe)
    if args.output_dir:
        recipe.output_dir = str(Path(args.output_dir).resolve())
    if args.language:
        unknown = set(args.language) - set(recipe.languages)
        if unknown:
            raise ValueError(f"language(s) {', '.join(sorted(unknown))} not in the recipe (it has {', '.join(recipe.languages)})")
        recipe.languages = list(args.language)
    return recipe
