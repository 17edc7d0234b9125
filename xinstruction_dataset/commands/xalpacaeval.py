"""`xinstruction xalpacaeval export`: X-AlpacaEval (and its cross-lingual configs) to a hub-ready folder."""

from __future__ import annotations

import argparse

from ..options import output_folder_option
from ..xalpacaeval import REPO_ID, REVISION, config_names, export_xalpacaeval


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("xalpacaeval", help="the X-AlpacaEval benchmark: fetch, validate, export")
    actions = parser.add_subparsers(dest="xalpacaeval_action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write every X-AlpacaEval config into a hub-ready folder with its card",
        description=(
            f"Fetch {REPO_ID} (pinned revision) or read --source-dir, check it (805 items per language, same ids, "
            "no empty instruction), and write the configs en zh ko it es and cross-<code> (English instruction + "
            "'Answer in <Language>.') as data/<config>/test-*.parquet plus README.md."
        ),
    )
    export.add_argument("folder", type=output_folder_option, help="output folder, e.g. out/x-alpacaeval")
    export.add_argument("--source-dir", help="folder with english.json ... spanish.json (default: download from the Hub)")
    export.add_argument("--revision", default=REVISION, help="Hub revision to download (default: the pinned one)")
    export.add_argument("--config", action="append", choices=config_names(), metavar="NAME", help="export only this config; repeatable")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    written = export_xalpacaeval(args.folder, source_dir=args.source_dir, revision=args.revision, configs=args.config)
    for config, count in written.items():
        print(f"{config}: {count} records")
    print(f"exported {len(written)} configs to {args.folder}")
    return 0
