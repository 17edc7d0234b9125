"""Publishing a hub-ready folder as an immutable, tagged version of a Hub dataset repo.

One version is one commit on `main` (large files pre-uploaded first, then a single
`create_commit` whose parent is the head we compared against), then the tag `vX.Y.Z`:

- a tag never moves: the same content under an existing version is a no-op, different content
  is refused (publish it as a new version);
- the card is re-rendered first, with this version's changelog entry, and must pass `check`;
- every step is retried with backoff on 429/5xx and is safe to repeat: a run that failed half
  way (uploads done, no commit; or commit done, no tag) is completed by running it again, and
  until the tag exists, the version does not exist;
- another writer that creates the version's tag first wins (a tag never moves): the publish says
  so, with both commits, and which version to publish instead;
- the folder is scanned once (`repo_files.scan_local`, which refuses symlinks that leave it) and
  that scan is passed down: each file is listed, counted and hashed once per publish;
- the token comes from `HF_TOKEN` or `huggingface-cli login` (huggingface_hub reads them); it is
  never passed through this module's messages.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from ..errors import EnvironmentFault, UsageError
from .cards import ChangelogEntry, detect_dataset, named_dataset_id, read_changelog, render_card, write_card
from .check import check_card
from .layout import CARD_FILE, DATA_DIR, FolderLayout, scan_folder
from .repo_files import ADDED, CHANGED, REMOVED, LocalFile, LocalFolder, RepoDiff, diff_files, remote_files, scan_local
from ..retry import RetryPolicy
from .retry import HUB_RETRY, call_with_retries, http_status

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
BRANCH = "main"
REPO_TYPE = "dataset"
# Dry-run and live publish states.
PUBLISHED, UNCHANGED, WOULD_PUBLISH = "published", "unchanged", "would-publish"


class PublishError(UsageError):
    """A publish that must not happen (a changed version, an older version, a bad card): one clear line."""


class IncompletePublish(PublishError, EnvironmentFault):
    """A publish that failed on the way (after its retries): the version is not tagged; re-run it."""


@dataclass
class PublishResult:
    """What a publish did (or, for a dry run, would do)."""

    repo_id: str
    version: str
    status: str
    diff: RepoDiff = field(default_factory=RepoDiff)
    commit: str | None = None

    @property
    def tag(self) -> str:
        return f"v{self.version}"


@dataclass
class _Remote:
    """The remote state a publish starts from."""

    exists: bool
    head: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def publish_folder(
    folder: str | Path,
    repo_id: str,
    version: str,
    *,
    dataset: str | None = None,
    dry_run: bool = False,
    private: bool = False,
    endpoint: str | None = None,
    retry: RetryPolicy = HUB_RETRY,
) -> PublishResult:
    """Publish `folder` to the dataset repo `repo_id` as version `version` (tag `v<version>`).

    Args:
        folder: a hub-ready folder (`README.md` + `data/<config>/<split>-*.parquet`).
        repo_id: `ORG/NAME` of the dataset repo; created (private when `private`) if missing.
        version: `X.Y.Z`; must be new and newer than every published version, or equal to a
            published one with identical content (then nothing happens).
        dataset: card template (`x-instruction`, `x-alpacaeval`); detected from the data if None.
        dry_run: compute and return the changes; change nothing, remote or local.
        endpoint: Hub URL; defaults to `HF_ENDPOINT` / huggingface.co.
        retry: backoff policy for 429/5xx answers.

    Raises:
        PublishError: the version exists with other content, is older than the latest, or the
            rendered card fails `check`.
    """
    folder = Path(folder)
    _parse_version(version)
    tag = f"v{version}"
    # The one scan of the folder (refusing symlinks that leave it), before any request.
    local = scan_local(folder)
    if not local.layout.configs:
        raise PublishError(f"{folder} holds no data (expected {DATA_DIR}/<config>/<split>-*.parquet): nothing to publish")
    dataset = dataset or detect_dataset(folder, local.layout)
    api = HfApi(endpoint=endpoint)
    remote = call_with_retries(lambda: _remote_state(api, repo_id), retry, f"read refs of {repo_id}")

    if tag in remote.tags:
        return _republish(api, local, repo_id, version, dataset, remote, retry)
    _refuse_older(version, remote.tags)

    # The changelog entry compares with the latest published version (not `main`, which a failed
    # earlier attempt may have moved already): every attempt renders the same card.
    previous = _latest_tag(remote.tags)
    previous_card = _remote_card(api, repo_id, remote.tags[previous], retry) if previous else ""
    previous_files = _files_at(api, repo_id, remote.tags[previous], retry) if previous else {}
    entry = ChangelogEntry(version, release_summary(local.layout, _data_diff(local.files, previous_files)))
    changelog = [e for e in read_changelog(previous_card) if e.version != version] + [entry]
    card_text = render_card(folder, dataset, changelog=changelog, repo_id=repo_id, layout=local.layout)
    _require_valid_card(local, card_text)
    files = local.with_card(card_text)  # the new card goes up from memory
    diff = diff_files(files, _files_at(api, repo_id, remote.head, retry) if remote.head else {})
    if dry_run:
        return PublishResult(repo_id, version, WOULD_PUBLISH, diff)

    message = f"Release {tag}"
    step = "create the repo"
    try:
        if not remote.exists:
            call_with_retries(lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True), retry, f"create {repo_id}")
        step = "upload and commit"
        commit = call_with_retries(lambda: _commit_files(api, files, repo_id, message, entry.summary), retry, f"commit {tag}")
        step = "tag"
        taken_at = call_with_retries(lambda: _create_tag(api, repo_id, tag, commit, f"{message}: {entry.summary}"), retry, f"tag {tag}")
    except (PublishError, EnvironmentFault):
        raise
    except Exception as error:
        status = http_status(error)
        raise IncompletePublish(
            f"publishing {tag} to {repo_id} failed at step '{step}' ({type(error).__name__}"
            f"{f', HTTP {status}' if status else ''}): {tag} was not tagged, so it is not published; "
            "run the same command again to complete it"
        ) from error
    if taken_at is not None:
        return _tag_taken(api, local, files, card_text, repo_id, version, commit, taken_at, remote.tags, retry)
    # Only now does the local card take the new changelog entry: a failed publish leaves it as it was.
    write_card(folder, card_text)
    logger.info("published %s as %s (commit %s)", repo_id, tag, commit[:12])
    return PublishResult(repo_id, version, PUBLISHED, diff, commit)


def release_summary(folder: str | Path | FolderLayout, data_diff: RepoDiff) -> str:
    """One changelog line: the records per config, and which configs were added, changed, removed.
    `folder`: the folder, or its scan."""
    layout = folder if isinstance(folder, FolderLayout) else scan_folder(folder)
    counts = ", ".join(f"{name} {layout.num_examples(name):,}" for name in layout.configs)
    total = sum(layout.num_examples(name) for name in layout.configs)
    parts = [f"{len(layout.configs)} configs, {total:,} records ({counts})"]
    for kind in (ADDED, CHANGED, REMOVED):
        configs = sorted({change.path.split("/")[1] for change in data_diff.of_kind(kind)})
        if configs:
            parts.append(f"{kind} {', '.join(configs)}")
    return "; ".join(parts)


def _parse_version(version: str) -> tuple[int, int, int]:
    match = VERSION_PATTERN.match(version)
    if not match:
        raise PublishError(f"version {version!r} is not X.Y.Z (e.g. 1.1.0); the tag will be v<version>")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _remote_state(api: HfApi, repo_id: str) -> _Remote:
    try:
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return _Remote(exists=False)
    heads = {ref.name: ref.target_commit for ref in refs.branches}
    return _Remote(exists=True, head=heads.get(BRANCH), tags={ref.name: ref.target_commit for ref in refs.tags})


def _published_versions(tags: dict[str, str]) -> dict[tuple[int, int, int], str]:
    """Version -> tag name, for the tags that are versions (`v1.2.3`)."""
    return {_parse_version(t[1:]): t for t in tags if t.startswith("v") and VERSION_PATTERN.match(t[1:])}


def _latest_tag(tags: dict[str, str]) -> str | None:
    versions = _published_versions(tags)
    return versions[max(versions)] if versions else None


def _next_version(version: str, tags: dict[str, str]) -> str:
    """The version to suggest instead of `version`: the next patch after it and every published one."""
    latest = _latest_tag(tags)
    major, minor, patch = max(_parse_version(version), _parse_version(latest[1:]) if latest else (0, 0, 0))
    return f"{major}.{minor}.{patch + 1}"


def _refuse_older(version: str, tags: dict[str, str]) -> None:
    latest = _latest_tag(tags)
    if latest and _parse_version(version) < _parse_version(latest[1:]):
        raise PublishError(f"v{version} is older than the latest published version {latest}: publish a newer version")


def _files_at(api: HfApi, repo_id: str, revision: str, retry: RetryPolicy) -> dict:
    return call_with_retries(lambda: remote_files(api, repo_id, revision), retry, f"list files of {repo_id}@{revision[:12]}")


def _data_diff(local: dict[str, LocalFile], remote: dict) -> RepoDiff:
    """The diff of the data files alone (the card is not data)."""
    return diff_files({p: f for p, f in local.items() if p != CARD_FILE}, {p: f for p, f in remote.items() if p != CARD_FILE})


def _remote_card(api: HfApi, repo_id: str, revision: str, retry: RetryPolicy) -> str:
    def download() -> str:
        try:
            path = hf_hub_download(repo_id, CARD_FILE, repo_type=REPO_TYPE, revision=revision, endpoint=api.endpoint)
        except EntryNotFoundError:
            return ""
        return Path(path).read_text(encoding="utf-8")

    return call_with_retries(download, retry, f"read {CARD_FILE} of {repo_id}")


def _require_valid_card(local: LocalFolder, card_text: str) -> None:
    problems = check_card(local.root, card_text, layout=local.layout)
    if problems:
        listed = "; ".join(str(p) for p in problems[:5])
        raise PublishError(f"the card of {local.root} fails its checks, fix them first: {listed}")


def _republish(api: HfApi, local: LocalFolder, repo_id: str, version: str, dataset: str, remote: _Remote, retry: RetryPolicy) -> PublishResult:
    """The version exists: identical content is a no-op, anything else is refused."""
    tag = f"v{version}"
    tagged = remote.tags[tag]
    tagged_files = _files_at(api, repo_id, tagged, retry)
    tagged_card = _remote_card(api, repo_id, tagged, retry)
    # Rendered as it was published (a card of an earlier release may name another dataset id):
    # only the data, the changelog and the hand-written text decide whether the content is the same.
    card_text = render_card(
        local.root, dataset, changelog=read_changelog(tagged_card), repo_id=named_dataset_id(tagged_card) or repo_id, layout=local.layout
    )
    diff = diff_files(local.with_card(card_text), tagged_files)
    if diff.is_empty:
        logger.info("v%s is already published on %s with this content: nothing to do", version, repo_id)
        return PublishResult(repo_id, version, UNCHANGED, diff, tagged)
    changed = ", ".join(c.path for c in diff.changes[:3]) + (" ..." if len(diff.changes) > 3 else "")
    lost = ""
    if remote.head and remote.head not in remote.tags.values() and _data_diff(local.files, _files_at(api, repo_id, remote.head, retry)).is_empty:
        lost = (
            f"; {BRANCH}'s head {remote.head} holds this folder's data without a tag: a publish of it lost the tag "
            f"{tag} to another writer, whose {tag} is commit {tagged}"
        )
    raise PublishError(
        f"{tag} is already published on {repo_id} with different content ({len(diff.changes)} file(s) differ: {changed}){lost}; "
        f"a published version never changes: publish this content as a new version, e.g. --version {_next_version(version, remote.tags)}"
    )


def _tag_taken(
    api: HfApi, local: LocalFolder, files: dict[str, LocalFile], card_text: str, repo_id: str, version: str, commit: str,
    tagged: str, tags: dict[str, str], retry: RetryPolicy,
) -> PublishResult:
    """Another writer created the version's tag, at `tagged`, after this publish committed `commit`.

    A tag never moves: the version is theirs. Same content: the version exists as wanted (this run's
    commit is a harmless duplicate). Other content: refused, saying what happened and what to do.
    """
    tag = f"v{version}"
    if diff_files(files, _files_at(api, repo_id, tagged, retry)).is_empty:
        write_card(local.root, card_text)
        logger.info("another writer published %s on %s with this content (commit %s): nothing left to do", tag, repo_id, tagged[:12])
        return PublishResult(repo_id, version, UNCHANGED, RepoDiff(), tagged)
    raise PublishError(
        f"another writer created the tag {tag} on {repo_id} while this publish ran: {tag} is their commit {tagged}, "
        f"with other content than this folder; this run's release commit {commit} is on {BRANCH} without a tag, so it is "
        f"not a version (a tag never moves, and running the same command again cannot change that). Check what their {tag} "
        f"holds, then publish this folder as a new version: --version {_next_version(version, {**tags, tag: tagged})}"
    )


def _commit_files(api: HfApi, local: dict[str, LocalFile], repo_id: str, message: str, description: str) -> str:
    """Make `main` hold `local` (path in repo -> file); return the commit that does (may be the head).

    Re-reads the head on every attempt, so a retry after a commit that did land finds nothing
    left to do instead of committing twice.
    """
    head = api.dataset_info(repo_id).sha
    diff = diff_files(local, remote_files(api, repo_id, head))
    if diff.is_empty:
        return head
    additions = [CommitOperationAdd(path_in_repo=c.path, path_or_fileobj=local[c.path].upload_source()) for c in diff.changes if c.kind in (ADDED, CHANGED)]
    deletions = [CommitOperationDelete(path_in_repo=c.path) for c in diff.of_kind(REMOVED)]
    # Upload the large files first, so the commit itself is one small request that lands whole.
    api.preupload_lfs_files(repo_id, additions, repo_type=REPO_TYPE, revision=BRANCH)
    info = api.create_commit(
        repo_id, [*additions, *deletions], commit_message=message, commit_description=description,
        repo_type=REPO_TYPE, revision=BRANCH, parent_commit=head,
    )
    return info.oid


def _create_tag(api: HfApi, repo_id: str, tag: str, commit: str, message: str) -> str | None:
    """Tag `commit`. None when the tag is this publish's (made now, or by an earlier attempt whose
    answer was lost); else the commit another writer's tag points at."""
    tagged = _tags(api, repo_id).get(tag)
    if tagged is None:
        try:
            api.create_tag(repo_id, tag=tag, revision=commit, tag_message=message, repo_type=REPO_TYPE)
            return None
        except Exception as error:
            if http_status(error) != 409:
                raise
            # The tag appeared between the listing and the request: whose commit does it name?
            tagged = _tags(api, repo_id).get(tag)
            if tagged is None:
                raise
    return None if tagged == commit else tagged


def _tags(api: HfApi, repo_id: str) -> dict[str, str]:
    return {ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
