"""Files that are whole or absent: every output of the toolkit is written through `AtomicFile`.

A file is written under a temporary name beside its final one, flushed to disk, then renamed:
a run killed at any moment leaves the previous complete file (or none), never a truncated one.
Each writer has its own temporary name (`<name>.<pid>.<random>.tmp`, in the same folder so the
rename stays atomic): two writers of one path never write into, or rename away, each other's file.
The next writer of a path removes the temporary files of earlier writers that were killed.

Folders are whole or absent too: `staged_folder` builds a folder beside its final place and swaps
it in under a journal, recoverable from a kill at any step (see the notes above it). A folder the
toolkit swaps in carries a marker (`MARKER_FILE`); it replaces only folders it wrote itself.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import logging
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from .errors import EnvironmentFault, UserError


logger = logging.getLogger(__name__)


class AtomicFile:
    """A file that appears at `path` only on `commit()`, fsynced first; `.gz` paths are
    gzip-compressed. Text by default; `binary=True` for bytes (a chart, a download).

    Use as a context manager (commit on success, abort on error) or call commit/abort yourself
    when the file outlives one block (e.g. the three sinks of a filter run)."""

    def __init__(self, path: str | Path, *, binary: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_writers_files(self.path)
        self.tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        # "xb": never reuse a file that is there (a name collision is an error, not a shared file)
        self._raw: IO[bytes] = open(self.tmp, "xb")
        try:
            gz, mode = self.path.name.endswith(".gz"), "wb" if binary else "wt"
            if gz:
                self.file: IO = gzip.open(self._raw, mode, encoding=None if binary else "utf-8")
            else:
                self.file = open(self._raw.fileno(), mode.replace("t", ""), encoding=None if binary else "utf-8", closefd=False)
        except BaseException:
            self._raw.close()
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, data: str | bytes) -> None:
        with self._naming_errors():
            self.file.write(data)

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


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine; when it cannot be told, True (keep its files)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to ask
        return True
    return True


def _remove_dead_writers_files(path: Path) -> None:
    """Temporary files of earlier writers of `path` whose process is gone (a killed run: a filter
    merge, a shard writer) are removed by the next writer of the same path. The name carries the
    writer's PID, so a live writer's file (this process's included) is never touched; writers of
    one path on two machines at once (a shared disk) are not a case the run lock allows."""
    prefix = path.name
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        match = _TEMP_SUFFIX.match(entry.name[len(prefix):]) if entry.name.startswith(prefix) else None
        if match and not pid_alive(int(match["pid"])):
            Path(entry.path).unlink(missing_ok=True)
            logger.debug("removed %s, left by a killed writer", entry.path)


# --- folders replaced whole ------------------------------------------------------------------------
#
# A folder the toolkit writes whole (an export, the run report) is built in a staging folder beside
# it and swapped in by two renames, under a journal:
#
#     .<name>.staging-<pid>-<hex>   the new folder being written (removed if the run fails)
#     .<name>.swap.json             the journal, written (atomically) before the first rename
#     .<name>.retired               the previous folder, between the renames and until removed
#
# The second rename (staging -> folder) is the commit. The journal names the staging and retired
# folders, so whoever comes next knows where a killed swap stood: the staging folder still there
# means the retired one is whole (it is removed only after the commit), and it comes back; the
# staging folder gone means the new folder is in place and the retired one, perhaps half removed,
# goes. So there is at most one retired folder and its state is known; a swap killed at any step
# leaves the previous folder or the new one, whole. Every swap first finishes what a killed one
# left, and removes staging folders of processes that are gone. The journal and the renames run
# under an exclusive lock of the parent folder (flock), so two swaps of one folder take turns.

MARKER_FILE = ".xinstruction-folder.json"
_TEMP_SUFFIX = re.compile(r"^\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
# staging-<pid>-<hex>; staging-<hex> and retired-<hex> are the names of versions before the journal
_LEFTOVER = re.compile(r"^(?:staging-(?:(?P<pid>\d+)-)?[0-9a-f]+|(?P<retired>retired(?:-[0-9a-f]+)?))$")


_ANY_LEFTOVER = re.compile(r"^\..+\.(?:staging-[0-9a-f-]+|retired(?:-[0-9a-f]+)?|swap\.json)$|\.\d+\.[0-9a-f]{8}\.tmp$")


def left_by_killed_runs(_folder: str, names: list[str]) -> set[str]:
    """The names among `names` that a killed swap or writer left (staging and retired copies,
    journals, temporary files); a `shutil.copytree` ignore, so that a copy leaves them behind."""
    return {name for name in names if _ANY_LEFTOVER.search(name)}


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder the toolkit writes whole. Its marker file names the kind; `legacy`
    recognises a folder of this kind written before markers existed."""

    name: str  # "report", "export": what the marker says
    description: str  # "run report folder": for messages
    legacy: Callable[[Path], bool]


class FolderNotOurs(UserError):
    """A target that holds something the toolkit did not write there: it is never replaced."""


def written_as(folder: Path) -> str | None:
    """The kind a folder's marker names; None without a (readable) marker."""
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) else None


def check_replaceable(folder: str | Path, kind: FolderKind) -> None:
    """Raise `FolderNotOurs` (exit 2) unless `folder` is absent, empty, or a `kind` folder the
    toolkit wrote (marker, or `kind.legacy`): a folder the toolkit did not write is never deleted."""
    folder = Path(folder)
    if folder.is_symlink():
        raise FolderNotOurs(f"{folder} is a symbolic link; it is left as it is: give the folder it points to, or another path")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FolderNotOurs(f"{folder} is a file, not a {kind.description}; it is left as it is: choose another path")
    found = written_as(folder)
    if next(folder.iterdir(), None) is None or found == kind.name or (found is None and kind.legacy(folder)):
        return
    if found:
        raise FolderNotOurs(f"{folder} is an xinstruction {found} folder, not a {kind.description}; it is left as it is: choose another folder")
    raise FolderNotOurs(
        f"{folder} is not empty and xinstruction did not write it as a {kind.description} (no {MARKER_FILE}); "
        "it is left as it is: choose a new or empty folder, or move that one away"
    )


@contextmanager
def staged_folder(folder: str | Path, kind: FolderKind | None = None, *, seed: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """A staging folder to build the new `folder` in; it replaces `folder` when the block succeeds
    (see the notes above), and is removed when it fails. `kind`: the folder must be one the
    toolkit wrote (`check_replaceable`, before the block runs) and gets the marker. `seed(old,
    staging)` fills the staging folder from the current one first (an export keeps its other
    languages)."""
    folder = Path(os.path.abspath(folder))
    if not folder.name:
        raise FolderNotOurs(f"{folder} is the root of the filesystem: choose a folder inside it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _parent_locked(folder):
        _recover(folder)
        if kind is not None:
            check_replaceable(folder, kind)
        staging = folder.with_name(f".{folder.name}.staging-{os.getpid()}-{secrets.token_hex(4)}")
        staging.mkdir()
    try:
        if seed is not None and folder.is_dir():
            seed(folder, staging)
        yield staging
        if kind is not None:
            write_json(staging / MARKER_FILE, {"kind": kind.name, "written_by": "xinstruction"})
        _swap(staging, folder, kind)
    except BaseException:
        _discard(staging)
        raise


def recover_folder(folder: str | Path) -> None:
    """Finish or undo what a killed swap of `folder` left (see the notes above); also run by
    every `staged_folder` of it."""
    folder = Path(os.path.abspath(folder))
    if folder.parent.is_dir():
        with _parent_locked(folder):
            _recover(folder)


def _swap(staging: Path, folder: Path, kind: FolderKind | None) -> None:
    journal, retired = _journal(folder), _retired(folder)
    with _parent_locked(folder) as parent:
        _recover(folder)
        if kind is not None:  # again, under the lock: the folder may have changed meanwhile
            check_replaceable(folder, kind)
        write_json(journal, {"folder": folder.name, "retired": retired.name, "staging": staging.name})
        try:
            if os.path.lexists(folder):
                folder.rename(retired)
            staging.rename(folder)
        except BaseException:
            _recover(folder)  # the staging folder is still there: the previous folder comes back
            raise
        os.fsync(parent)
        try:
            if retired.exists():
                shutil.rmtree(retired)
            journal.unlink()
            os.fsync(parent)
        except OSError as error:  # the new folder is in place; the next swap removes the rest
            logger.warning("could not remove the previous %s (%s); the next run removes it", folder, error)


def _recover(folder: Path) -> None:
    """Under the parent's lock: resolve a journaled swap, then remove leftovers of killed runs."""
    journal, parent = _journal(folder), folder.parent
    _remove_dead_writers_files(journal)  # a journal whose writer was killed before its rename
    state = _read_journal(journal, folder)
    if state is not None:
        staging, retired = parent / state["staging"], parent / state["retired"]
        if staging.exists():  # killed before the commit: the retired folder is whole, it comes back
            if not os.path.lexists(folder) and retired.exists():
                retired.rename(folder)
            shutil.rmtree(staging)
        elif retired.exists():  # killed after the commit: the previous folder goes
            shutil.rmtree(retired)
        _fsync_dir(parent)
        journal.unlink()
        logger.info("finished the swap of %s that a killed run left", folder)
    retired_copies = []
    prefix = f".{folder.name}."
    for entry in sorted(os.scandir(parent), key=lambda e: e.name):
        match = _LEFTOVER.match(entry.name[len(prefix):]) if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False) else None
        if match is None:
            continue
        if match["retired"]:
            retired_copies.append(Path(entry.path))
        elif match["pid"] is None or not pid_alive(int(match["pid"])):  # a killed run's staging folder
            shutil.rmtree(entry.path)
            logger.info("removed %s, left by a killed run", entry.path)
    _settle_retired_copies(folder, retired_copies)


def _settle_retired_copies(folder: Path, copies: list[Path]) -> None:
    """Retired folders with no journal: versions before the journal left them (killed between
    their renames, or while removing one). With the folder in place they are stale; without it,
    a single one is the previous folder; several cannot be told apart, so none is guessed."""
    if not copies:
        return
    if os.path.lexists(folder):
        for copy in copies:
            shutil.rmtree(copy)
            logger.info("removed %s, left by a killed run", copy)
    elif len(copies) == 1:
        copies[0].rename(folder)
        logger.warning("%s was missing: put back %s, left by a killed run", folder, copies[0].name)
    else:
        raise EnvironmentFault(
            f"{folder} is missing and killed runs left {len(copies)} earlier copies of it ({', '.join(c.name for c in copies)}), "
            "which cannot be told apart: rename the complete one to "
            f"{folder.name}, remove the others, then run the same command again"
        )


def _read_journal(journal: Path, folder: Path) -> dict[str, str] | None:
    try:
        text = journal.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
        valid = (
            state["folder"] == folder.name
            and state["retired"] == _retired(folder).name
            and state["staging"].startswith(f".{folder.name}.staging-")
            and os.sep not in state["staging"]
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise EnvironmentFault(
            f"{journal} is not a swap journal this version wrote: check {folder} (and {_retired(folder).name} beside it, "
            "the previous version), remove the journal, then run the same command again"
        )
    return state


def _journal(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.swap.json")


def _retired(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.retired")


@contextmanager
def _parent_locked(folder: Path) -> Iterator[int]:
    """An exclusive flock of `folder`'s parent (a directory can be locked like a file): swaps of
    folders there take turns. Released with the descriptor, also when the process is killed."""
    fd = os.open(folder.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as error:  # a filesystem without locks (some network mounts): the journal still holds
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            logger.debug("cannot lock %s (%s): swapping %s without the lock", folder.parent, error, folder.name)
        yield fd
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(staging: Path) -> None:
    """Remove a failed run's staging folder; a failure to do so is logged (the next run removes
    it), not raised over the error that made the run fail."""
    if not os.path.lexists(staging):
        return
    try:
        shutil.rmtree(staging)
    except OSError as error:
        logger.warning("could not remove %s (%s); the next run removes it", staging, error)
