"""The files of a hub-ready folder and of a Hub revision, and the difference between them.

Only the paths a publish manages are compared: the card (`README.md`) and everything under
`data/`. Other remote files (`.gitattributes`, files a maintainer added on the Hub) are left alone.
Large files are compared by sha256 (the Hub's LFS oid), small ones by git blob id, so nothing is
downloaded to compute a diff.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile

from ..errors import UserError
from .layout import CARD_FILE, DATA_DIR, FolderLayout, layout_of

ADDED, CHANGED, REMOVED = "added", "changed", "removed"


@dataclass(frozen=True)
class FileChange:
    """One file that differs: `kind` is added, changed or removed; sizes in bytes (None: absent)."""

    path: str
    kind: str
    local_size: int | None
    remote_size: int | None

    def describe(self) -> str:
        """`+ data/sw/train-00000-of-00001.parquet (21.3 kB)` and the like."""
        if self.kind == ADDED:
            return f"+ {self.path} ({format_size(self.local_size)})"
        if self.kind == REMOVED:
            return f"- {self.path} ({format_size(self.remote_size)})"
        return f"~ {self.path} ({format_size(self.remote_size)} -> {format_size(self.local_size)})"


@dataclass
class RepoDiff:
    """What a commit would change on the remote."""

    changes: list[FileChange] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[FileChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def upload_bytes(self) -> int:
        return sum(c.local_size or 0 for c in self.changes if c.kind != REMOVED)


def format_size(size: int | None) -> str:
    """Human-readable size: `812 B`, `21.3 kB`, `4.1 MB`."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def is_managed(path: str) -> bool:
    """Paths a publish owns: the card and the data folder."""
    return path == CARD_FILE or path.startswith(f"{DATA_DIR}/")


class SymlinkOutOfFolder(UserError, ValueError):
    """A file a folder would publish is a symlink that leaves the folder (exit 2)."""


@dataclass(eq=False)
class LocalFile:
    """A file to publish: a path on disk, or content in memory (the rendered card). Its size and
    hashes are computed once, however many diffs compare it."""

    source: Path | bytes

    @cached_property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    @cached_property
    def _digests(self) -> tuple[str, str]:
        # One read gives both: the LFS oid (sha256) and the git blob id of a regular file.
        sha256, blob = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % self.size)
        for block in self._blocks():
            sha256.update(block)
            blob.update(block)
        return sha256.hexdigest(), blob.hexdigest()

    @property
    def sha256(self) -> str:
        return self._digests[0]

    @property
    def git_oid(self) -> str:
        return self._digests[1]

    def upload_source(self) -> bytes | str:
        """What `CommitOperationAdd` takes: the bytes, or the file's path."""
        return self.source if isinstance(self.source, bytes) else str(self.source)

    def _blocks(self) -> Iterator[bytes]:
        if isinstance(self.source, bytes):
            yield self.source
            return
        with open(self.source, "rb") as f:
            yield from iter(lambda: f.read(1 << 20), b"")


@dataclass
class LocalFolder:
    """One scan of a hub-ready folder, passed down a whole publish: its managed files (repo path
    -> file) and its layout (configs, splits, row counts)."""

    root: Path
    files: dict[str, LocalFile]
    layout: FolderLayout

    def with_card(self, card_text: str) -> dict[str, LocalFile]:
        """The files to publish, with `card_text` as the card (it goes up from memory)."""
        return {**self.files, CARD_FILE: LocalFile(card_text.encode("utf-8"))}


def scan_local(folder: str | Path) -> LocalFolder:
    """Walk `folder` once: its card and the files under `data/` (hidden staging files skipped).

    Raises SymlinkOutOfFolder naming every one of those paths that is a symlink resolving outside
    the folder: publishing it would upload a file from elsewhere, and the card would describe it.
    Raises NotARegularFile naming those that are neither a folder nor a regular file (a FIFO or
    device, which a read would block on or never finish; a dangling link, a link loop or a link
    to a folder under `data/`, which a publish would silently leave out): nothing of such a
    folder is read.
    """
    root = Path(folder)
    listed, leaving, odd = _walk(root)
    _refuse(root, leaving, odd)
    return LocalFolder(root, {path: LocalFile(root / path) for path in listed}, layout_of(root, listed))


def refuse_symlinks_out_of(folder: str | Path) -> None:
    """Raise SymlinkOutOfFolder (or NotARegularFile) as `scan_local` does, for the card and the
    files under `data/` of `folder`."""
    _refuse(Path(folder), *_walk(Path(folder))[1:])


class NotARegularFile(UserError, ValueError):
    """The card or a file under `data/` is a FIFO, a device, a dangling link or a link loop (exit 2)."""


def _refuse(root: Path, leaving: list[str], odd: list[str]) -> None:
    if leaving:
        raise SymlinkOutOfFolder(
            f"{root} holds {len(leaving)} symlink(s) that leave the folder: {_some(leaving)}; a hub-ready folder "
            "holds its own files: replace each link by a copy of the file it points to (or remove it), then run "
            "the same command again"
        )
    if odd:
        raise NotARegularFile(
            f"{root} holds {len(odd)} path(s) that are not regular files: {_some(odd)}; the card and everything "
            "under data/ must be files or folders: replace each by the file or folder it stands for (or remove it), then "
            "run the same command again"
        )


def _some(paths: list[str]) -> str:
    return ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")


def _kind(path: Path) -> str | None:
    """Why `path` (which exists as a name) is neither a folder nor a regular file, or None."""
    try:
        mode = path.stat().st_mode  # follows links
    except FileNotFoundError:
        return "a dangling link"
    except OSError as error:
        return "a symlink loop" if error.errno == errno.ELOOP else f"unreadable: {error.strerror or error}"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _walk(root: Path) -> tuple[list[str], list[str], list[str]]:
    """(managed files, as repo paths; symlinks among them that leave `root`, as `path -> target`;
    paths that are neither folders nor regular files, as `path (why)`).

    Symlinks that stay inside are followed to files (and `data` itself to its folder); a link to a
    folder under `data/` is refused, not walked into (a link to an ancestor would loop).
    """
    base = root.resolve()
    listed: list[str] = []
    leaving: list[str] = []
    odd: list[str] = []

    def readable(path: Path) -> bool:
        if not os.path.lexists(path):
            return False
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            # os.path.realpath never raises on a loop (Path.resolve does, on Python < 3.13).
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(base):
                leaving.append(f"{name} -> {os.readlink(path)}")
                return False
        why = _kind(path)
        if why is not None:
            odd.append(f"{name} ({why})")
            return False
        return True

    def walked(folder: Path) -> bool:
        # A link to a folder inside is not walked into (it could loop): its files would be left
        # out of the card and of a publish without a word, so it is refused instead.
        if folder.is_symlink():
            odd.append(f"{folder.relative_to(root).as_posix()} (a link to a folder, not followed)")
            return False
        return True

    card, data = root / CARD_FILE, root / DATA_DIR
    if readable(card) and card.is_file():
        listed.append(CARD_FILE)
    if readable(data) and data.is_dir():
        for directory, folders, names in os.walk(data):
            here = Path(directory)
            folders[:] = sorted(name for name in folders if not name.startswith(".") and readable(here / name) and walked(here / name))
            # os.walk lists a link to a folder among `folders`, and a dangling or looping link among `names`.
            for name in sorted(names):
                if not name.startswith(".") and readable(here / name) and (here / name).is_file():
                    listed.append((here / name).relative_to(root).as_posix())
    return listed, leaving, odd


def remote_files(api: HfApi, repo_id: str, revision: str) -> dict[str, RepoFile]:
    """Managed files of a Hub revision (repo path -> tree entry)."""
    entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
    return {e.path: e for e in entries if isinstance(e, RepoFile) and is_managed(e.path)}


def diff_files(local: Mapping[str, LocalFile | bytes | Path], remote: dict[str, RepoFile]) -> RepoDiff:
    """Changes that make `remote` equal to `local` (files, or content as bytes or a path to read)."""
    changes = []
    for path in sorted(local.keys() | remote.keys()):
        content, entry = local.get(path), remote.get(path)
        file = content if isinstance(content, LocalFile) or content is None else LocalFile(content)
        local_size = file.size if file is not None else None
        if entry is None:
            changes.append(FileChange(path, ADDED, local_size, None))
        elif file is None:
            changes.append(FileChange(path, REMOVED, None, entry.size))
        elif local_size != entry.size or not _same_content(file, entry):
            changes.append(FileChange(path, CHANGED, local_size, entry.size))
    return RepoDiff(changes)


def _same_content(file: LocalFile, entry: RepoFile) -> bool:
    return file.sha256 == entry.lfs.sha256 if entry.lfs is not None else file.git_oid == entry.blob_id
