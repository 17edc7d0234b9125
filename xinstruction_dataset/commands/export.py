"""`xinstruction export`: build languages with the XInstruction builder into a hub-ready folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..hub.cards import update_card
from ..hub.export import export_language, staged_folder
from ..hub.training_formats import FORMATS, export_language_as, training_format, write_format_card
from ..hub.review import Review
from ..languages import LANGUAGE_CODES
from ..layout import RunLayout
from ..options import output_folder_option
from ..recipe import Recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="build languages and write them into a hub-ready folder (README.md + data/<code>/*.parquet)",
        description=(
            "Build each language with the XInstruction builder and export it into FOLDER, leaving the "
            "folder's other languages untouched, then regenerate its card. The languages and the card "
            "change together: if one language fails, FOLDER is left as it was. FOLDER must be new, empty, or "
            "an export folder xinstruction wrote (any other folder is refused, exit 2). Afterwards, from "
            "FOLDER's parent: load_dataset('<folder name>', '<code>')."
        ),
    )
    parser.add_argument("folder", type=output_folder_option, help="hub-ready dataset folder, e.g. out/x-instruction")
    parser.add_argument("--language", action="append", required=True, choices=LANGUAGE_CODES, metavar="CODE", help="language to export; repeatable")
    parser.add_argument("--from", dest="source", choices=("shards", "paper"), default="shards", help="curated shards (default) or the paper's released data")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--data-dir", help="curated shards folder (shards) or folder of <code>.json files (paper; default: download the pinned release)")
    group.add_argument("--recipe", help="take the curated shards from this recipe's output_dir/curated")
    parser.add_argument("--cache-dir", help="datasets cache for the build (default: datasets' cache)")
    parser.add_argument("--review", metavar="REVIEW_JSONL", help="a hand review downloaded from the run report (review.jsonl): vetoed records are dropped, the review goes into provenance")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--format", choices=("records", *FORMATS), default="records",
        help="records: X-Instruction records with provenance (default); alpaca: instruction + ' Answer in <Language>.', "
        "empty input, output; messages: OpenAI/TRL chat [{role, content}]. alpaca and messages also go to jsonl/<code>.jsonl",
    )
    parser.add_argument("--system", help="--format messages: a system prompt put first in every conversation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data_dir = RunLayout(Recipe.from_yaml(args.recipe).output_path).curated_root if args.recipe else args.data_dir
    start = time.perf_counter()
    total = 0
    folder = Path(args.folder)
    review = Review.load(args.review) if args.review else None
    if review is not None:
        review.check_languages(args.language)
    # None: records with provenance; else a training format (hub/training_formats/)
    fmt = None if args.format == "records" else training_format(args.format, args.system)
    # Every language and the card, or none of them: a failure leaves the folder as it was.
    with staged_folder(folder) as staging:
        for language in args.language:
            if fmt is None:
                result = export_language(
                    staging, language, source=args.source, data_dir=data_dir, cache_dir=args.cache_dir,
                    progress=not args.no_progress, update_card=False, review=review,
                )
            else:
                result = export_language_as(
                    staging, language, fmt, source=args.source, data_dir=data_dir,
                    cache_dir=args.cache_dir, progress=not args.no_progress, review=review,
                )
            total += result.num_examples
            print(f"{language}: {result.num_examples} records -> {', '.join(result.files)}")
        update_card(staging, folder_name=folder.resolve().name) if fmt is None else write_format_card(staging, fmt)
    print(f"exported {total} records in {time.perf_counter() - start:.1f} s to {folder}")
    print(f"load with: load_dataset({str(folder.resolve())!r}, {args.language[0]!r})")
    return 0
