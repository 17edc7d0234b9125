"""`xinstruction build`: the main job. Filter, curate and export every language of a recipe."""

from __future__ import annotations

import argparse
import time

from ..errors import PartialFailure
from ..curation.curate import run_curation
from ..filtering.pipeline import filter_languages
from .filter import add_executor_arguments, executor_from_args
from .recipe_args import recipe_from_args
from ..fingerprint import check_fingerprint
from ..hub.cards import update_card
from ..hub.export import EXPORT_FOLDER_KIND, export_language, staged_folder
from ..layout import EXPORT_FOLDER, RunLayout
from ..options import output_folder_option
from ..report import REPORT_FOLDER_KIND, write_report
from ..storage import check_replaceable
from ..runlock import RunLock



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="the main job: filter, curate and export every language of a recipe",
        description=(
            "Run the whole pipeline of a recipe: filter the sources, curate (generate, judge, refine, "
            "diversify; resumable: run it again after an interruption), then export each language into "
            f"<output_dir>/{EXPORT_FOLDER}/, a hub-ready folder that load_dataset reads."
        ),
    )
    parser.add_argument("recipe", help="build recipe YAML (e.g. builder/default.yaml)")
    parser.add_argument("--language", action="append", metavar="CODE", help="only these languages of the recipe")
    parser.add_argument("--output-dir", type=output_folder_option, help="override the recipe's output_dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--force", action="store_true", help="go on in an output_dir made with a different recipe (see run/fingerprint.json)")
    add_executor_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="check the recipe and print the steps, sources and endpoints a build would use; reads, fetches and calls nothing")
    parser.set_defaults(func=run, input=None, text_field="text")


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    progress = not args.no_progress
    layout = RunLayout(recipe.output_path)
    executor = executor_from_args(args, recipe.executor)
    if args.dry_run:  # no lock, no fingerprint: a dry run writes nothing
        from .build_plan import describe_build

        print(describe_build(recipe, executor.describe()))
        return 0
    # Refused before any work (the swaps check again): build replaces only folders it wrote.
    check_replaceable(layout.export_folder, EXPORT_FOLDER_KIND)
    check_replaceable(layout.report_folder, REPORT_FOLDER_KIND)
    with RunLock(layout.lock_file()):
        check_fingerprint(recipe, layout, force=args.force)
        folder = layout.export_folder
        start = time.perf_counter()
        for language, summary in filter_languages(recipe, recipe.languages, executor=executor, progress=progress).items():
            print(f"\n== {language}: filter\n{summary.format()}")
        empty = []
        # One curation run for all languages: models and embedder are set up once. The export is
        # staged: every language and the card replace the folder together, or nothing changes.
        reports = run_curation(recipe, progress=progress, force=args.force, executor=executor)
        with staged_folder(folder) as staging:
            for report in reports:
                print(f"\n== {report.language}: curate\n{report.format()}")
                if not report.curated:
                    empty.append(report.language)  # the other languages still get exported
                    continue
                result = export_language(
                    staging, report.language, data_dir=layout.curated_root,
                    cache_dir=layout.datasets_cache, progress=progress, update_card=False,
                )
                print(f"\n== {report.language}: export\n{result.num_examples} records -> {', '.join(result.files)}")
            if len(empty) < len(recipe.languages):
                update_card(staging, folder_name=folder.resolve().name)
        print(f"\ndone in {time.perf_counter() - start:.1f} s: {folder}")
        report = write_report(layout.root, progress=progress)  # also for a partial run: it shows why
        print(f"report: {report.index}")
        if empty:
            raise PartialFailure(
                f"no record was curated for {', '.join(empty)}: see <output_dir>/curation/<language>/rejects.jsonl "
                "for each document's reason, then adjust the recipe (models, thresholds) and run again"
            )
    print(f"load with: datasets.load_dataset({str(folder)!r}, {recipe.languages[0]!r})")
    return 0
