"""Files that are whole or absent: every output of the toolkit is written through `AtomicFile`.

A file is written under a temporary name beside its final one, flushed to disk, then renamed:
a run killed at any moment leaves the previous complete file (or none), never a truncated one.
Each writer has its own temporary name (`<name>.<pid>.<random>.tmp`, in the same folder so the
rename stays atomic): two writers of one path never write into, or rename away, each other's file.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import secrets
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


logger = logging.getLogger(__name__)


class AtomicFile:
    """A text file that appears at `path` only on `commit()`; `.gz` paths are gzip-compressed.

    Use as a context manager (commit on success, abort on error) or call commit/abort yourself
    when the file outlives one block (e.g. the three sinks of a filter run)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        # "xb": never reuse a file that is there (a name collision is an error, not a shared file)
        self._raw: IO[bytes] = open(self.tmp, "xb")
        try:
            self.file: IO[str] = (
                gzip.open(self._raw, "wt", encoding="utf-8") if self.path.name.endswith(".gz") else open(self._raw.fileno(), "w", encoding="utf-8", closefd=False)
            )
        except BaseException:
            self._raw.close()
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, text: str) -> None:
        with self._naming_errors():
            self.file.write(text)

    def write_json_line(self, data: Any, sort_keys: bool = False) -> None:
        self.write(json.dumps(data, ensure_ascii=False, sort_keys=sort_keys) + "\n")

    def commit(self) -> None:
        try:
            with self._naming_errors():
                self.file.close()
                self._raw.flush()
                os.fsync(self._raw.fileno())
                self._raw.close()
                os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()  # a failed commit leaves no temporary file either
            raise

    def abort(self) -> None:
        """Drop the temporary file; it is removed even when closing the streams fails (a disk
        full on the final flush), and the first such error is raised after the cleanup."""
        try:
            try:
                self.file.close()
            finally:
                self._raw.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def discard(self) -> None:
        """abort() after another failure: that failure is the one to report, so this never raises."""
        try:
            self.abort()
        except OSError as error:  # the temp file is gone (abort's finally); the close error is secondary
            logger.debug("closing %s after a failure: %s", self.tmp, error)

    @contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A write error (a full disk says only "No space left on device") names the file."""
        try:
            yield
        except OSError as error:
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from error


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], sort_keys: bool = True) -> int:
    """Write `rows` as JSON lines atomically; returns the number of rows."""
    count = 0
    with AtomicFile(path) as f:
        for row in rows:
            f.write_json_line(row, sort_keys=sort_keys)
            count += 1
    return count


def write_json(path: str | Path, data: Any) -> None:
    with AtomicFile(path) as f:
        f.write(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with AtomicFile(path) as f:
        f.write(text)


def open_parquet_stream(path: str | Path):
    """A ParquetFile for reading in batches with memory that does not grow with the file.

    pyarrow's default `pre_buffer=True` keeps the file's column chunks allocated while batches are
    read (measured: 119 MB still held after streaming 200k records, growing with the file); with
    it off and a bounded read buffer, peak Arrow memory stays at about one batch."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the objects of a JSONL(.gz) file, skipping blank lines."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def swap_in_folder(staging: Path, folder: Path) -> None:
    """`staging` (complete) replaces `folder` with two renames; the old folder is then removed.
    A process killed between the renames leaves only the retired folder: `restore_retired`."""
    retired = folder.with_name(f".{folder.name}.retired-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        folder.rename(retired)
    staging.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)


def restore_retired(folder: Path) -> None:
    """A process killed between the two renames of a swap left only the retired folder: put it back."""
    if folder.exists():
        return
    retired = sorted(folder.parent.glob(f".{folder.name}.retired-*")) if folder.parent.is_dir() else []
    if retired:
        retired[-1].rename(folder)
