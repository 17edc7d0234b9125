"""`xinstruction card render|check|update`: dataset cards from the templates in `cards/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ..hub.cards import DATASETS, detect_dataset, render_card, write_card
from ..hub.check import check_card
from ..hub.layout import FolderLayout
from ..hub.repo_files import scan_local


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "card",
        help="render, check or update a folder's dataset card (README.md)",
        description="Dataset cards: generated parts come from the data; hand-written sections between markers are kept.",
    )
    actions = parser.add_subparsers(dest="card_action", metavar="ACTION", required=True)
    for name, help_text, func in (
        ("render", "print the card the folder's data gives (writes nothing)", run_render),
        ("update", "rewrite FOLDER/README.md from the data, keeping hand-written sections", run_update),
        ("check", "check FOLDER/README.md offline; each problem with its line and a fix", run_check),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("folder", help="hub-ready dataset folder")
        if name != "check":  # check reads the card and the data, no template
            action.add_argument("--dataset", choices=DATASETS, help="card template (default: detected from the data)")
            action.add_argument("--templates", metavar="DIR", help="card templates folder (default: the repository's cards/)")
        action.set_defaults(func=func)


def _folder(args: argparse.Namespace) -> tuple[Path, FolderLayout]:
    """The folder and its one scan, which refuses a card or data file that is a symlink leaving
    the folder (exit 2): the card would describe files from elsewhere."""
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give a hub-ready dataset folder (README.md + data/<config>/*.parquet)")
    return folder, scan_local(folder).layout


def run_render(args: argparse.Namespace) -> int:
    folder, layout = _folder(args)
    sys.stdout.write(render_card(folder, args.dataset or detect_dataset(folder, layout), cards_dir=args.templates, layout=layout))
    return 0


def run_update(args: argparse.Namespace) -> int:
    folder, layout = _folder(args)
    text = render_card(folder, args.dataset or detect_dataset(folder, layout), cards_dir=args.templates, layout=layout)
    print(f"updated {write_card(folder, text)}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    folder, layout = _folder(args)
    problems = check_card(folder, layout=layout)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {Path(args.folder) / 'README.md'}" if problems else "card OK")
    return 1 if problems else 0
