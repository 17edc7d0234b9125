"""The files of a hub-ready folder and of a Hub revision, and the difference between them.

Only the paths a publish manages are compared: the card (`README.md`) and everything under
`data/`. Other remote files (`.gitattributes`, files a maintainer added on the Hub) are left alone.
Large files are compared by sha256 (the Hub's LFS oid), small ones by git blob id, so nothing is
downloaded to compute a diff.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile

from .layout import CARD_FILE, DATA_DIR

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


def local_files(folder: str | Path) -> dict[str, Path]:
    """Managed files of a folder (repo path -> local path); hidden staging files are skipped."""
    root = Path(folder)
    files = {CARD_FILE: root / CARD_FILE} if (root / CARD_FILE).exists() else {}
    for path in sorted((root / DATA_DIR).rglob("*")) if (root / DATA_DIR).is_dir() else []:
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files[relative.as_posix()] = path
    return files


def remote_files(api: HfApi, repo_id: str, revision: str) -> dict[str, RepoFile]:
    """Managed files of a Hub revision (repo path -> tree entry)."""
    entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
    return {e.path: e for e in entries if isinstance(e, RepoFile) and is_managed(e.path)}


def diff_files(local: dict[str, bytes | Path], remote: dict[str, RepoFile]) -> RepoDiff:
    """Changes that make `remote` equal to `local` (content as bytes, or a path to read)."""
    changes = []
    for path in sorted(local.keys() | remote.keys()):
        content, entry = local.get(path), remote.get(path)
        local_size = _size(content) if content is not None else None
        if entry is None:
            changes.append(FileChange(path, ADDED, local_size, None))
        elif content is None:
            changes.append(FileChange(path, REMOVED, None, entry.size))
        elif local_size != entry.size or not _same_content(content, entry):
            changes.append(FileChange(path, CHANGED, local_size, entry.size))
    return RepoDiff(changes)


def _size(content: bytes | Path) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


def _same_content(content: bytes | Path, entry: RepoFile) -> bool:
    if entry.lfs is not None:
        return _sha256(content) == entry.lfs.sha256
    data = content if isinstance(content, bytes) else content.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == entry.blob_id


def _sha256(content: bytes | Path) -> str:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    digest = hashlib.sha256()
    with open(content, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
