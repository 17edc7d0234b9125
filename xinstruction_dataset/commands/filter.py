"""`xinstruction filter`: sources -> filter chain -> kept / rejects / quarantine files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..execution import EXECUTORS, Executor, make_executor, respecified
from ..registry import PluginSpec
from ..filtering.runner import FilterSummary
from ..filtering.pipeline import filter_languages, output_dir_for
from .recipe_args import recipe_from_args
from ..fingerprint import check_fingerprint
from ..layout import RunLayout
from ..options import output_folder_option
from ..runlock import RunLock


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "filter",
        help="filter a corpus: language ID, length, web-text heuristics, dedup",
        description=(
            "Stream the recipe's sources through its filter chain. Each task keeps its kept.jsonl and "
            "rejects.jsonl (with reasons) under <output_dir>/filtered/<language>/tasks/; the language gets "
            "the whole-language removal list (removals.jsonl: repeated ids, duplicates), quarantine.jsonl "
            "(unreadable input with file:line), summary.json and, last, manifest.json, which curation "
            "reads through (per shard when --shard is given). --consolidate also writes one kept.jsonl "
            "and rejects.jsonl per language."
        ),
    )
    add_recipe_arguments(parser)
    parser.add_argument("--shard", metavar="I/N", help="process only shard I of N (0-based), e.g. 3/16 (by hand; --executor ray spreads one run over many machines)")
    add_executor_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs stay)")
    parser.add_argument("--force", action="store_true", help="go on in an output_dir made with a different recipe (see run/fingerprint.json)")
    parser.add_argument(
        "--consolidate", action="store_true",
        help="also write <language>/kept.jsonl and rejects.jsonl, one file each, for tools that want one file (curation does not need them)",
    )
    parser.set_defaults(func=run)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe, or an ad-hoc corpus (`--input` files with `--language`), plus overrides."""
    parser.add_argument("recipe", nargs="?", help="build recipe YAML (e.g. builder/default.yaml)")
    parser.add_argument("--input", action="append", metavar="PATH", help="ad-hoc source file/glob (.jsonl, .jsonl.gz, .parquet) or hf:<repo>[:<config>]; repeatable")
    parser.add_argument("--language", action="append", metavar="CODE", help="restrict to these languages (required with --input)")
    parser.add_argument("--text-field", default="text", help="text column of --input sources (default: text)")
    parser.add_argument("--output-dir", type=output_folder_option, help="override the recipe's output_dir")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor / --workers / --ray-address: override the recipe's `executor:` block."""
    parser.add_argument("--executor", choices=EXECUTORS.kinds(), help="where filter tasks and curation's labelling drivers (curation.drivers) run: local worker processes (default) or a Ray cluster (needs the [ray] extra)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: every core; 1 runs in this process)")
    parser.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (host:port from `ray start --head`, or `auto`); implies --executor ray")


def executor_from_args(args: argparse.Namespace, spec: PluginSpec) -> Executor:
    """The recipe's executor spec with the command line's overrides applied."""
    overrides = {}
    kind = getattr(args, "executor", None)
    if getattr(args, "ray_address", None):
        if kind == "local":
            raise UserError("--ray-address needs --executor ray (or leave --executor out)")
        kind = "ray"
        overrides["ray_address"] = args.ray_address
    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise UserError(f"--workers {args.workers}: give 1 or more worker processes")
        overrides["workers"] = args.workers
    return make_executor(respecified(spec, kind, **overrides))


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    shard = _shard(args.shard)
    executor = executor_from_args(args, recipe.executor)
    with RunLock(RunLayout(recipe.output_path).lock_file(shard)):
        check_fingerprint(recipe, RunLayout(recipe.output_path), force=args.force)
        failed = False
        summaries = filter_languages(
            recipe, recipe.languages, executor=executor, shard=shard, progress=not args.no_progress, consolidate_files=args.consolidate
        )
        for language, summary in summaries.items():
            _print_summary(language, output_dir_for(recipe, language, shard), summary)
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
