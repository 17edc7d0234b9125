#!/usr/bin/env python
"""Publish both datasets (X-Instruction and X-AlpacaEval) from a release recipe, in one go.

    python scripts/publish_all.py builder/release.yaml --dry-run   # what would change
    python scripts/publish_all.py builder/release.yaml             # publish, tag each version

Every target is checked and diffed first (a dry run of all of them); nothing is published unless
all targets can be. The token comes from HF_TOKEN or `huggingface-cli login`.
"""

from __future__ import annotations

import argparse
import sys

from xinstruction_dataset.commands.publish import report
from xinstruction_dataset.hub.publish import PublishError, publish_folder
from xinstruction_dataset.hub.release import release_targets
from xinstruction_dataset.recipe import Recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="release recipe with a `publish:` mapping, e.g. builder/release.yaml")
    parser.add_argument("--dry-run", action="store_true", help="only list what would change")
    args = parser.parse_args(argv)
    try:
        targets = release_targets(Recipe.from_yaml(args.recipe))
        # All dry runs first: a refused target stops the release before anything is published.
        plans = [publish_folder(t.folder, t.repo_id, t.version, dataset=t.dataset, dry_run=True, private=t.private) for t in targets]
        if args.dry_run:
            print("\n".join(report(plan) for plan in plans))
            return 0
        for target in targets:
            print(report(publish_folder(target.folder, target.repo_id, target.version, dataset=target.dataset, private=target.private)))
    except (PublishError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
