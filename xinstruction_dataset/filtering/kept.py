"""A language's filtered documents, stored once: the tasks' own files, a removal list and a manifest.

    filtered/<lang>/
        tasks/task-NNNNN/kept.jsonl       what each task kept (and its rejects, quarantine, arrays)
        removals.jsonl                    the whole-language decisions: one line per removed kept
                                          row (task, row, id, step, reason, kept_task/row/id),
                                          sorted by task then row
        quarantine.jsonl                  every task's unreadable input, in task order
        summary.json                      counts (the driver's, with the run's elapsed time)
        manifest.json                     written last: the task files (relative paths, sizes,
                                          sha256, lines), the removal list's, the documents count

The documents of a language are, in this total order, every line of every task's kept.jsonl by
task then line, less the removed rows: exactly the lines a merged kept.jsonl held before
(`xinstruction filter --consolidate` still writes that file, and the merged rejects.jsonl, for
tools that want one file). The manifest is deterministic (no timestamps, no absolute paths): a
run killed anywhere and resumed writes the same bytes.

`open_kept` is the one reader, for curation, the report and users' tools. It reads a manifest
folder, an older folder with a merged kept.jsonl, the `--shard I/N` layout (`shard-*/`, each
either of those), or a single JSONL file (a user's `curation.input`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..documents import Document
from ..errors import CorruptFile
from ..redact import Scrubber
from ..storage import AtomicFile
from .dedup import DUPLICATE_ID, Removal
from .runner import read_documents

MANIFEST = "manifest.json"
REMOVALS = "removals.jsonl"
MERGED_KEPT = "kept.jsonl"
MERGED_REJECTS = "rejects.jsonl"
FORMAT = "xinstruction-filtered/1"


# --- writing (the language's reduce) ---------------------------------------------------------


def write_removals(language_dir: Path, removals: list[Removal]) -> dict[str, Any]:
    """removals.jsonl, sorted by task then row; returns its manifest entry."""
    ordered = sorted(removals, key=lambda r: (r.task, r.row))
    text = "".join(removal.to_json() + "\n" for removal in ordered).encode("utf-8")
    with AtomicFile(language_dir / REMOVALS) as sink:
        sink.write(text.decode("utf-8"))
    return {"path": REMOVALS, "bytes": len(text), "sha256": hashlib.sha256(text).hexdigest(), "count": len(ordered)}


def manifest_of(language_dir: Path, task_folders: list[Path], task_files: list[dict[str, Any]], removals: dict[str, Any]) -> dict[str, Any]:
    tasks = []
    for folder, files in zip(task_folders, task_files):
        relative = folder.relative_to(language_dir).as_posix()
        tasks.append({"folder": relative, "files": {name: {"path": f"{relative}/{name}", **files[name]} for name in sorted(files)}})
    kept = sum(task["files"][MERGED_KEPT]["lines"] for task in tasks)
    return {"format": FORMAT, "order": "task, then line; removed rows skipped", "documents": kept - removals["count"], "tasks": tasks, "removals": removals}


def read_manifest(language_dir: Path) -> dict[str, Any] | None:
    """The folder's manifest; None when there is none (or it is damaged: the run writes it again)."""
    try:
        manifest = json.loads((language_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def write_manifest(language_dir: Path, manifest: dict[str, Any]) -> None:
    with AtomicFile(language_dir / MANIFEST) as sink:
        sink.write(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def clear_language(language_dir: Path) -> None:
    """Before a filter run writes a language: its manifest goes first (a run killed before the
    new one is written leaves none, so nothing reads half-made outputs), then the merged files
    of older runs and of `--consolidate` (they would be stale)."""
    for name in (MANIFEST, MERGED_KEPT, MERGED_REJECTS):
        (language_dir / name).unlink(missing_ok=True)


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Part:
    """One stream of documents: a manifest folder (task files less removals) or one plain file."""

    root: Path
    manifest: dict[str, Any] | None = None
    removed: dict[int, dict[int, Removal]] = field(default_factory=dict)  # task -> row -> removal

    @property
    def files(self) -> list[Path]:
        if self.manifest is None:
            return [self.root]
        return [self.root / task["files"][MERGED_KEPT]["path"] for task in self.manifest["tasks"]]

    def count(self) -> int:
        if self.manifest is not None:
            return int(self.manifest["documents"])
        with open(self.root, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def documents(self) -> Iterator[Document]:
        if self.manifest is None:
            yield from read_documents(self.root)
            return
        for task, path in enumerate(self.files):
            entry = self.manifest["tasks"][task]["files"][MERGED_KEPT]
            self._check_size(path, entry)
            removed = self.removed.get(task, {})
            row = -1
            for row, doc in enumerate(read_documents(path)):
                if row not in removed:
                    yield doc
            if row + 1 != entry["lines"]:
                raise self._changed(path, f"{row + 1} documents, the manifest lists {entry['lines']}")

    def lines(self) -> Iterator[tuple[int, int, bytes]]:
        """(file index, byte offset, line) of every document line, removed rows skipped."""
        for index, path in enumerate(self.files):
            removed = self.removed.get(index, {}) if self.manifest is not None else {}
            with open(path, "rb") as f:
                offset, row = 0, 0
                for line in f:
                    if line.strip():
                        if row not in removed:
                            yield index, offset, line
                        row += 1
                    offset += len(line)

    def _check_size(self, path: Path, entry: dict[str, Any]) -> None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise self._changed(path, "missing") from None
        if size != entry["bytes"]:
            raise self._changed(path, f"{size} bytes, the manifest lists {entry['bytes']}")

    def _changed(self, path: Path, what: str) -> CorruptFile:
        return CorruptFile(f"{path}: damaged ({what} in {self.root / MANIFEST}); re-run `xinstruction filter` to write it again")


def _open_folder(folder: Path) -> _Part | None:
    manifest_file = folder / MANIFEST
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        except ValueError as error:
            raise CorruptFile(f"{manifest_file}: damaged ({error}); re-run `xinstruction filter` to write it again") from None
        part = _Part(folder, manifest)
        for removal in read_removals(folder, manifest):
            part.removed.setdefault(removal.task, {})[removal.row] = removal
        return part
    if (folder / MERGED_KEPT).is_file():  # a folder of an older run, or a consolidated copy
        return _Part(folder / MERGED_KEPT)
    return None


def read_removals(folder: Path, manifest: dict[str, Any]) -> list[Removal]:
    entry = manifest["removals"]
    path = folder / entry["path"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptFile(f"{path}: missing ({folder / MANIFEST} lists it); re-run `xinstruction filter` to write it again") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorruptFile(f"{path}: its checksum is not the one {folder / MANIFEST} lists; re-run `xinstruction filter` to write it again")
    return [Removal.from_dict(json.loads(line)) for line in data.decode("utf-8").splitlines() if line.strip()]


@dataclass
class KeptDocuments:
    """The filtered documents found at a path, read in the documented order (see the module)."""

    where: Path
    parts: list[_Part]
    presharded: bool = False  # the filter's own shard folder of a `--shard I/N` run

    @property
    def files(self) -> list[Path]:
        """What is read: manifest folders' manifests, or plain files (for `--dry-run` lines)."""
        return [part.root / MANIFEST if part.manifest is not None else part.root for part in self.parts]

    def documents(self) -> Iterator[Document]:
        for part in self.parts:
            yield from part.documents()

    def count(self) -> int:
        """Documents to read, known without reading text where a manifest says it."""
        return sum(part.count() for part in self.parts)

    def lines(self) -> Iterator[tuple[Path, int, bytes]]:
        """(file, byte offset, line) of every document, in order: a reader that seeks back later."""
        for part in self.parts:
            files = part.files
            for index, offset, line in part.lines():
                yield files[index], offset, line

    def rejects(self) -> Iterator[dict[str, Any]]:
        """The language's rejects, as the merged rejects.jsonl held them: per task, its rejects
        file, then its kept rows that a whole-language decision removed (with `reason`; a
        repeated id also names the first's `first_file` and `first_line`)."""
        for part in self.parts:
            if part.manifest is None:
                beside = part.root.with_name(MERGED_REJECTS)
                yield from _json_lines(beside) if beside.is_file() else ()
                continue
            for line in _reject_lines(part):
                yield json.loads(line)


def open_kept(path: Path, shard: tuple[int, int] = (0, 1)) -> KeptDocuments | None:
    """The filtered documents at `path` (a file or a folder; see the module docstring), None when
    there are none. With `shard` = (i, n), n > 1, a folder's own `shard-i-of-n/` is taken alone
    when it is there (the filter ran with the same `--shard`)."""
    if path.is_file():
        return KeptDocuments(path, [_Part(path)])
    if shard[1] > 1:
        own = _open_folder(path / f"shard-{shard[0]:05d}-of-{shard[1]:05d}")
        if own is not None:
            return KeptDocuments(path, [own], presharded=True)
    whole = _open_folder(path) if path.is_dir() else None
    if whole is not None:
        return KeptDocuments(path, [whole])
    parts = [part for folder in sorted(path.glob("shard-*")) if folder.is_dir() for part in [_open_folder(folder)] if part is not None]
    return KeptDocuments(path, parts) if parts else None


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _reject_lines(part: _Part) -> Iterator[str]:
    scrub = Scrubber()
    tasks = part.manifest["tasks"]
    firsts = {(r.kept_task, r.kept_row) for rows in part.removed.values() for r in rows.values() if r.step == DUPLICATE_ID}
    origins: dict[tuple[int, int], tuple[str, int]] = {}
    for task, entry in enumerate(tasks):
        yield from _raw_lines(part.root / entry["files"][MERGED_REJECTS]["path"])
        removed = part.removed.get(task, {})
        if not removed and not any(t == task for t, _ in firsts):
            continue
        for row, line in enumerate(_raw_lines(part.root / entry["files"][MERGED_KEPT]["path"])):
            if (task, row) in firsts:
                origins[(task, row)] = _origin(json.loads(line))
            removal = removed.get(row)
            if removal is None:
                continue
            doc = json.loads(line)
            if removal.step == DUPLICATE_ID:
                file, line_number = origins[(removal.kept_task, removal.kept_row)]
                fields = {"reason": DUPLICATE_ID, "first_file": scrub(file), "first_line": line_number}
            else:
                fields = {"reason": scrub(removal.reject_reason())}
            yield json.dumps({**doc, **fields}, ensure_ascii=False) + "\n"


def _raw_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line


def _origin(row: dict[str, Any]) -> tuple[str, int]:
    """The file and line (or row) a kept document was read from: its `origin` is `<file>:<n>`."""
    file, _, position = row.get("metadata", {}).get("origin", "").rpartition(":")
    return file, int(position) if position.isdigit() else 0


def consolidate(language_dir: Path) -> tuple[Path, Path]:
    """Write the language's merged kept.jsonl and rejects.jsonl (the files filter wrote before
    the manifest), byte for byte as they were, for tools that want one file."""
    found = _open_folder(language_dir)
    if found is None or found.manifest is None:
        raise FileNotFoundError(f"{language_dir} has no {MANIFEST}: run `xinstruction filter` for this language first")
    kept, rejects = language_dir / MERGED_KEPT, language_dir / MERGED_REJECTS
    with AtomicFile(kept) as sink:
        for _, _, line in found.lines():
            sink.write(line.decode("utf-8"))
    with AtomicFile(rejects) as sink:
        for line in _reject_lines(found):
            sink.write(line)
    return kept, rejects
