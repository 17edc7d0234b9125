#!/usr/bin/env python
"""Regenerate the cards of every dataset folder after a data change, then check them.

    python scripts/regenerate_cards.py builder/release.yaml     # the folders of a release recipe
    python scripts/regenerate_cards.py out/x-instruction out/x-alpacaeval

Hand-written sections and changelogs are kept; statistics and metadata follow the data.
Exit code 1 when a regenerated card still has problems (they are listed with line and fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xinstruction_dataset.hub.cards import detect_dataset, update_card
from xinstruction_dataset.hub.check import check_card
from xinstruction_dataset.hub.release import release_targets
from xinstruction_dataset.recipe import Recipe


def folders_to_update(paths: list[str]) -> list[tuple[Path, str]]:
    """(folder, dataset) for every argument: a release recipe (.yaml) or a dataset folder."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.endswith((".yaml", ".yml")):
            found += [(t.folder, t.dataset) for t in release_targets(Recipe.from_yaml(path))]
        else:
            found.append((Path(path), detect_dataset(path)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="release recipes and/or hub-ready dataset folders")
    args = parser.parse_args(argv)
    failed = False
    try:
        for folder, dataset in folders_to_update(args.paths):
            card = update_card(folder, dataset)
            problems = check_card(folder)
            print(f"{card}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            for problem in problems:
                print(f"  {problem}")
            failed |= bool(problems)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
