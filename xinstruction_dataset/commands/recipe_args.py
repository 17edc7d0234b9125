"""The recipe a command runs: the one named on the command line (with `--output-dir` and
`--language` applied), or an ad-hoc one for `--input` files."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from ..errors import UsageError, UserError
from ..filtering.pipeline import DEFAULT_FILTERS
from ..filtering.sources import SourceSpec
from ..options import readable_error
from ..recipe import Recipe


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe named on the command line, or an ad-hoc one for `--input` files."""
    if getattr(args, "input", None):
        if not args.language or len(args.language) != 1:
            raise UsageError("--input needs exactly one --language CODE (the language the documents should be in)")
        base = Recipe.from_yaml(args.recipe) if args.recipe else Recipe(name="adhoc", filters=DEFAULT_FILTERS)
        language = args.language[0]
        try:  # the options are checked as a recipe is: a wrong --language is one line naming it
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
        except ValidationError as error:
            raise UsageError(f"--input/--language/--text-field: {readable_error(error, Recipe)}") from None
    if not args.recipe:
        raise UsageError("give a recipe (e.g. builder/default.yaml) or --input FILE --language CODE")
    recipe = Recipe.from_yaml(args.recipe)
    if args.output_dir:
        recipe.output_dir = str(Path(args.output_dir).resolve())
    if args.language:
        unknown = set(args.language) - set(recipe.languages)
        if unknown:
            raise UserError(f"language(s) {', '.join(sorted(unknown))} not in the recipe (it has {', '.join(recipe.languages)})")
        recipe.languages = list(args.language)
    if not recipe.languages:
        raise UserError(f"{args.recipe}: the recipe names no languages")
    return recipe
