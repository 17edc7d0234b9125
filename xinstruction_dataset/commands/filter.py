"""`xinstruction filter`: sources -> filter chain -> kept / rejects / quarantine files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..filtering.runner import FilterSummary
from ..filtering.pipeline import filter_language, output_dir_for
from .recipe_args import recipe_from_args
from ..fingerprint import check_fingerprint
from ..layout import RunLayout
from ..runlock import RunLock


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "filter",
        help="filter a corpus: language ID, length, web-text heuristics, dedup",
        description=(
            "Stream the recipe's sources through its filter chain. Writes kept.jsonl, rejects.jsonl "
            "(with reasons), quarantine.jsonl (unreadable input with file:line) and summary.json to "
            "<output_dir>/filtered/<language>/ (per shard when --shard is given)."
        ),
    )
    add_recipe_arguments(parser)
    parser.add_argument("--shard", metavar="I/N", help="process only shard I of N (0-based), e.g. 3/16")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs stay)")
    parser.add_argument("--force", action="store_true", help="go on in an output_dir made with a different recipe (see run/fingerprint.json)")
    parser.set_defaults(func=run)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe, or an ad-hoc corpus (`--input` files with `--language`), plus overrides."""
    parser.add_argument("recipe", nargs="?", help="build recipe YAML (e.g. builder/default.yaml)")
    parser.add_argument("--input", action="append", metavar="PATH", help="ad-hoc source file/glob (.jsonl, .jsonl.gz, .parquet) or hf:<repo>[:<config>]; repeatable")
    parser.add_argument("--language", action="append", metavar="CODE", help="restrict to these languages (required with --input)")
    parser.add_argument("--text-field", default="text", help="text column of --input sources (default: text)")
    parser.add_argument("--output-dir", help="override the recipe's output_dir")


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    shard = _shard(args.shard)
    with RunLock(RunLayout(recipe.output_path).lock_file(shard)):
        check_fingerprint(recipe, RunLayout(recipe.output_path), force=args.force)
        failed = False
        for language in recipe.languages:
            out_dir = output_dir_for(recipe, language, shard)
            summary = filter_language(recipe, language, shard=shard, out_dir=out_dir, progress=not args.no_progress)
            _print_summary(language, out_dir, summary)
            failed |= summary.documents_in == 0
    if failed:
        raise UserError("a language had no input documents: check the recipe's sources and --shard")
    return 0


def _shard(text: str | None) -> tuple[int, int]:
    from ..filtering.sources import parse_shard

    return parse_shard(text) if text else (0, 1)


def _print_summary(language: str, out_dir: Path, summary: FilterSummary) -> None:
    print(f"\n== {language}: {out_dir}")
    print(summary.format())
