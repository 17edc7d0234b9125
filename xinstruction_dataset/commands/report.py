"""`xinstruction report`: the report page of a run folder (see `report/`)."""

from __future__ import annotations

import argparse

from ..layout import REPORT_FOLDER
from ..options import output_folder_option
from ..report import write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a run's report: funnel, reject reasons, distributions, cost and a sample browser with review",
        description=(
            "Read a run folder (a recipe's output_dir) and write a report folder: index.html and its data "
            "files, which open from disk in a browser with no network. `xinstruction build` writes it too, "
            f"into <output_dir>/{REPORT_FOLDER}/. In the page, mark curated samples accept or veto and download "
            "review.jsonl for `xinstruction export ... --review review.jsonl`."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder: the output_dir of a build (or filter and curate) run")
    parser.add_argument(
        "-o", "--output", metavar="REPORT_DIR", type=output_folder_option,
        help=f"where to write the report (default: RUN_DIR/{REPORT_FOLDER}): a new or empty folder, or a report folder; any other is refused (exit 2)",
    )
    parser.add_argument("--cache", metavar="PATH", help="the run's call cache, when the recipe set curation.cache (default: RUN_DIR/cache/calls.sqlite); "
        "its drivers' files beside it (PATH.d/driver-K.sqlite) are read with it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = write_report(args.run_dir, args.output, cache=args.cache, progress=not args.no_progress)
    print(f"report of {result.samples} samples in {result.seconds:.1f} s: {result.index}")
    return 0
