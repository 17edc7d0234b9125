"""`xinstruction publish`: publish a hub-ready folder as a tagged, immutable version."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..hub.publish import PUBLISHED, UNCHANGED, PublishResult, publish_folder
from ..hub.repo_files import ADDED, CHANGED, REMOVED, format_size
from ..hub.retry import HUB_RETRY


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish a hub-ready folder as version X.Y.Z (one commit, tag vX.Y.Z)",
        description=(
            "Publish FOLDER (README.md + data/<config>/*.parquet) to a Hub dataset repo: large files "
            "are pre-uploaded, then one commit, then the tag vX.Y.Z. Re-publishing the same content is "
            "a no-op; different content under a published version is refused. The token comes from "
            "HF_TOKEN or `huggingface-cli login`; it is never printed."
        ),
    )
    parser.add_argument("folder", help="hub-ready dataset folder")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="dataset repo on the Hub (created if missing)")
    parser.add_argument("--version", required=True, metavar="X.Y.Z", help="version to publish; the tag is vX.Y.Z")
    parser.add_argument("--dataset", choices=("x-instruction", "x-alpacaeval"), help="card template (default: detected from the data)")
    parser.add_argument("--dry-run", action="store_true", help="list what would change (added/changed/removed, sizes); change nothing")
    parser.add_argument("--private", action="store_true", help="create the repo private (when it does not exist yet)")
    parser.add_argument("--retries", type=int, default=5, help="attempts per step on 429/5xx answers (default: 5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = publish_folder(
        args.folder, args.repo_id, args.version, dataset=args.dataset, dry_run=args.dry_run,
        private=args.private, retry=replace(HUB_RETRY, retries=max(0, args.retries - 1)),
    )
    print(report(result))
    return 0


def report(result: PublishResult) -> str:
    """The lines the command prints: the outcome, then one line per changed file."""
    if result.status == UNCHANGED:
        return f"{result.tag} is already published on {result.repo_id} with this content: nothing to do"
    diff = result.diff
    counts = ", ".join(f"{len(diff.of_kind(kind))} {kind}" for kind in (ADDED, CHANGED, REMOVED))
    if result.status == PUBLISHED:
        head = f"published {result.repo_id} {result.tag} (commit {result.commit}): {counts}"
    else:
        head = f"dry run: publishing {result.tag} to {result.repo_id} would commit {counts} ({format_size(diff.upload_bytes)} to upload), then tag {result.tag}"
    return "\n".join([head, *(f"  {change.describe()}" for change in diff.changes)])
