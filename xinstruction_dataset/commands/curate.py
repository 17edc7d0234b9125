"""`xinstruction curate`: filtered documents -> generate -> judge -> refine -> diversify -> curated shards."""

from __future__ import annotations

import argparse

from ..errors import PartialFailure, UsageError
from ..fingerprint import check_fingerprint
from ..layout import RunLayout
from ..options import output_folder_option
from ..runlock import RunLock
from .filter import add_executor_arguments, executor_from_args
from .recipe_args import recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curate",
        help="generate, judge, refine and diversify instruction pairs from filtered documents",
        description=(
            "Run the recipe's curation on the documents `xinstruction filter` kept. Writes curated shards to "
            "<output_dir>/curated/<language>/ (the builder's input), rejects with reasons and a summary to "
            "<output_dir>/curation/<language>/. Every LLM call and embedding is cached in "
            "<output_dir>/cache/calls.sqlite: run the same command again to resume after any interruption. "
            "With curation.drivers (or --drivers) K > 1, K labelling drivers run on the executor (--executor ray: "
            "a cluster). By hand, `--shard I/N` on each machine, then `--merge`, also works."
        ),
    )
    parser.add_argument("recipe", help="build recipe YAML (e.g. builder/default.yaml)")
    parser.add_argument("--language", action="append", metavar="CODE", help="only these languages (default: the recipe's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shard", metavar="I/N", help="label only document shard I of N (0-based); merge later with --merge")
    mode.add_argument("--merge", action="store_true", help="only diversify and write the curated shards from finished shards")
    parser.add_argument("--output-dir", type=output_folder_option, help="override the recipe's output_dir")
    parser.add_argument("--dry-run", action="store_true", help="print what would run (inputs, models, stages, outputs) and exit")
    parser.add_argument(
        "--estimate", type=_positive_int, metavar="N",
        help="label the first N documents of each language for real (kept in the cache), then print the projected calls, "
        "tokens, time and cost of the whole input and of the target size; takes the lock and records the fingerprint",
    )
    budget = parser.add_argument_group("budget (overrides curation.budget; counted over every run of the output folder)")
    budget.add_argument("--max-tokens", type=_positive_int, metavar="N", help="stop admitting documents before paid tokens pass N")
    budget.add_argument("--max-calls", type=_positive_int, metavar="N", help="stop admitting documents before calls sent pass N")
    budget.add_argument("--max-cost", type=_positive_float, metavar="X", help="stop admitting documents before the cost (curation.cost prices) passes X")
    add_drivers_argument(parser)
    add_executor_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--force", action="store_true", help="go on in an output_dir made with a different recipe (see run/fingerprint.json)")
    parser.set_defaults(func=run)


def add_drivers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drivers", type=_positive_int, metavar="K",
        help="label with K driver tasks on the executor (overrides curation.drivers; any K writes the same output)",
    )


def with_drivers_override(recipe, args: argparse.Namespace):
    """The recipe with `--drivers` in place of `curation.drivers`."""
    if getattr(args, "drivers", None) is None:
        return recipe
    curation = recipe.curation.model_copy(update={"drivers": args.drivers})
    updated = recipe.model_copy(update={"curation": curation})
    updated.base_dir = recipe.base_dir
    return updated


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def with_budget_overrides(recipe, args: argparse.Namespace):
    """The recipe with the command line's budget in place of `curation.budget`'s limits."""
    overrides = {"max_tokens": args.max_tokens, "max_calls": args.max_calls, "max_cost": args.max_cost}
    if all(v is None for v in overrides.values()):
        return recipe
    curation = recipe.curation.model_copy(update={"budget": recipe.curation.budget.overridden(**overrides)})
    updated = recipe.model_copy(update={"curation": curation})
    updated.base_dir = recipe.base_dir
    return updated


def run(args: argparse.Namespace) -> int:
    from ..curation.budget import BudgetReached
    from ..curation.curate import run_curation, run_estimate
    from ..curation.estimate import format_table
    from ..curation.plan import describe_plan
    from ..filtering.sources import parse_shard

    recipe = with_drivers_override(with_budget_overrides(recipe_from_args(args), args), args)
    shard = parse_shard(args.shard) if args.shard else None
    if args.estimate is not None and (shard or args.merge or args.dry_run):
        raise UsageError("--estimate measures the whole input: drop --shard, --merge and --dry-run")
    if args.dry_run:  # reads only: takes no lock
        check_fingerprint(recipe, RunLayout(recipe.output_path), force=args.force, write=False)
        print(describe_plan(recipe, shard=shard, merge=args.merge))
        return 0
    if args.estimate is not None:
        with RunLock(RunLayout(recipe.output_path).lock_file()):
            check_fingerprint(recipe, RunLayout(recipe.output_path), force=args.force)
            estimate = run_estimate(recipe, args.estimate, progress=not args.no_progress)
        print()
        print(f"estimate from the first {args.estimate} documents of each language (95% intervals):")
        print(format_table(estimate))
        print(f"\nsaved to {RunLayout(recipe.output_path).estimate_file}; the documents measured are in the cache")
        return 0
    with RunLock(RunLayout(recipe.output_path).lock_file(shard)):
        check_fingerprint(recipe, RunLayout(recipe.output_path), force=args.force)
        try:
            reports = run_curation(
                recipe, shard=shard, merge=args.merge, progress=not args.no_progress, force=args.force,
                executor=executor_from_args(args, recipe.executor) if recipe.curation.drivers > 1 else None,
            )
        except BudgetReached as stop:
            print()
            for report in stop.reports:
                print(report.format())
            raise
    print()
    for report in reports:
        print(report.format())
    root = recipe.output_path
    if shard and shard[1] > 1:
        print(f"\nshard {shard[0]}/{shard[1]} labelled; when every shard is done: xinstruction curate {args.recipe} --merge")
    else:
        print(f"\ncurated shards: {root / 'curated'}; rejects and summaries: {root / 'curation'}")
    _raise_if_partial(reports)
    return 0


def _raise_if_partial(reports) -> None:
    """Exit 1 (errors.py) when calls failed or a merged language curated nothing: the run is
    complete, but a rerun (after fixing the cause) has work to do."""
    failed = sum(n for report in reports for key, n in report.calls.items() if key.endswith("_failed"))
    calls = sum(n for report in reports for key, n in report.calls.items() if not key.endswith("_failed"))
    empty = [report.language for report in reports if report.curated == 0]
    problems = [f"{failed} of {calls} calls failed (run the same command again to retry them)"] if failed else []
    problems += [f"no record was curated for {', '.join(empty)} (see curation/<language>/rejects.jsonl)"] if empty else []
    if problems:
        raise PartialFailure("; ".join(problems))
