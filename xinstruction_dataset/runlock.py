"""`RunLock`: an output_dir belongs to one run at a time.

`filter`, `curate` and `build` hold `<output_dir>/run/lock.json` (`RunLayout.lock_file`) while
they write. A second run on the same folder is refused at once, with a one-line error naming the
holder (PID, host, start, last heartbeat) and the lock file; without the lock, two runs tore each
other's files and sent every LLM call twice.

The protocol (standard library only):

- **Acquire** atomically: the JSON body (pid, host, started_at, heartbeat, a random token) is
  written to a private temporary file, then hard-linked to `lock.json`; `link` fails if the name
  exists, on local disks and on NFS alike, and the lock never appears half-written. (Where a
  filesystem has no hard links, `O_CREAT | O_EXCL` and a write are used instead.)
- **Heartbeat**: a daemon thread rewrites the body with a new `heartbeat` every
  `HEARTBEAT_INTERVAL` seconds (write beside, then `os.replace`).
- **Stale locks** are taken over, with a warning: on this host, a holder whose PID is dead
  (`os.kill(pid, 0)` raises ProcessLookupError) or was reused by another process (its start time
  in /proc differs); on another host, where the PID cannot be checked, a heartbeat older than
  `STALE_AFTER` seconds (clocks must agree to well within that). A run killed with SIGKILL, or a
  machine that died, therefore never blocks a folder for long.
- **Take over** safely: the stale file is renamed aside (only one contender's rename succeeds),
  and if what was moved is not the stale lock that was judged (its holder just refreshed it, or a
  new run took it), it is linked back and the new contender is refused.
- **Release** on leaving the block, on success, errors, Ctrl-C, SIGTERM and SIGHUP alike (the
  command line turns the two signals into a KeyboardInterrupt, cli.py); only our own lock (same
  token) is ever removed.

Why not `filelock`: it is installed (a dependency of `datasets` / `huggingface_hub`), and its
`FileLock` (flock) is sound on one host, where the kernel frees the lock of a dead process. But the
lock file says nothing about its holder, so the refusal could not name the PID and host, and flock
over network filesystems is unreliable or local-only, so runs on two machines sharing an output_dir
would not see each other; the cross-host heartbeat rule needs a body anyway. The create-exclusive
body above gives both with a few lines of standard library.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EnvironmentFault
from .storage import pid_alive

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 10.0  # seconds between heartbeats of the holding run
STALE_AFTER = 60.0  # a lock from another host without a heartbeat for this long is taken over
_ATTEMPTS = 5


@dataclass(frozen=True)
class _Found:
    raw: bytes
    body: dict[str, Any] | None  # None: empty or unreadable (being written, or damaged)
    mtime: float


class RunLock:
    """Context manager holding `path` (`RunLayout(output_dir).lock_file`) for one run.

    Raises `EnvironmentFault` (exit 3) on entry while another live run holds it."""

    def __init__(self, path: str | Path, *, stale_after: float = STALE_AFTER, heartbeat_interval: float = HEARTBEAT_INTERVAL):
        self.path = Path(path)
        self.stale_after = stale_after
        self.heartbeat_interval = heartbeat_interval
        self.host = socket.gethostname()
        self.token = secrets.token_hex(16)
        self.lost = False  # set when another run took the lock from under us (see _beat)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = ""

    # --- the context manager ----------------------------------------------------------------------

    def __enter__(self) -> "RunLock":
        try:
            self.acquire()
        except KeyboardInterrupt:  # Ctrl-C or a stop signal just after the lock file was made
            self._release_even_if_interrupted()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._release_even_if_interrupted()

    def _release_even_if_interrupted(self) -> None:
        """`release`, run again when a Ctrl-C or stop signal lands inside it (the command line
        raises one stop signal only, see cli.py), so a stopped run never leaves its lock behind."""
        try:
            self.release()
        except KeyboardInterrupt:
            self.release()
            raise

    # --- acquire / release ------------------------------------------------------------------------

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for _ in range(_ATTEMPTS):
            if self._create():
                self._stop.clear()
                self._thread = threading.Thread(target=self._beat, name="runlock-heartbeat", daemon=True)
                self._thread.start()
                return
            found = _read(self.path)
            if found is None:
                continue  # released between our two looks: try again
            reason = self._stale_reason(found)
            if reason is None:
                raise EnvironmentFault(self._refusal(found))
            log.warning("taking over the stale lock %s (%s)", self.path, reason)
            self._take_over(found)
        raise EnvironmentFault(f"could not take the run lock {self.path}: other runs keep taking it; run again when they are done")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        found = _read(self.path)
        if found is not None and found.body is not None and found.body.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    # --- internals --------------------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "pid": pid,
            "host": self.host,
            "pid_start": _process_start(pid),
            "started_at": self._started_at,
            "heartbeat": time.time(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
            "token": self.token,
        }

    def _write_beside(self) -> Path:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(json.dumps(self._body(), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _create(self) -> bool:
        """Create the lock file with our body if it does not exist; False if it does."""
        tmp = self._write_beside()
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this filesystem
            return self._create_exclusive()
        finally:
            tmp.unlink(missing_ok=True)

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self._body(), sort_keys=True) + "\n")
        return True

    def _stale_reason(self, found: _Found) -> str | None:
        """Why the lock `found` is stale, or None while its holder may be alive."""
        body = found.body
        if body is None:
            age = time.time() - found.mtime
            return f"unreadable and {age:.0f} s old" if age > self.stale_after else None
        pid, host = body.get("pid"), body.get("host")
        if host == self.host and isinstance(pid, int) and pid > 0:
            if not pid_alive(pid):
                return f"PID {pid} on this host is not running"
            start = _process_start(pid)
            if body.get("pid_start") and start and start != body["pid_start"]:
                return f"PID {pid} on this host is now another process"
            return None
        age = time.time() - float(body.get("heartbeat") or found.mtime)
        return f"no heartbeat from {host} for {age:.0f} s" if age > self.stale_after else None

    def _take_over(self, judged: _Found) -> None:
        aside = self.path.with_name(f"{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another contender moved it first
        try:
            moved = _read(aside)
            if moved is not None and moved.raw != judged.raw:
                # Changed since we judged it: a heartbeat or a new holder. Put it back.
                try:
                    os.link(aside, self.path)
                except FileExistsError:  # the moved holder sees the loss at its next beat
                    log.warning("a third run took the lock %s while it was being handed back", self.path)
        finally:
            aside.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            try:
                found = _read(self.path)
                if found is None or found.body is None or found.body.get("token") != self.token:
                    self.lost = True
                    log.error("the run lock %s was taken by another run; this run's outputs may be mixed with it", self.path)
                    return
                os.replace(self._write_beside(), self.path)
            except OSError as e:  # a full disk or a network filesystem hiccup: try at the next beat
                log.warning("could not refresh the run lock %s: %s", self.path, e)

    def _refusal(self, found: _Found) -> str:
        folder = self.path.parent.parent
        advice = (
            "wait for that run to finish or stop it, or use another --output-dir; "
            f"if that run is gone for good, delete {self.path} and run again"
        )
        body = found.body
        if body is None:
            return f"output_dir {folder} is in use by another run (its lock file {self.path} is being written); {advice}"
        age = time.time() - float(body.get("heartbeat") or found.mtime)
        command = f", running `{body['command']}`" if body.get("command") else ""
        return (
            f"output_dir {folder} is in use by another run: PID {body.get('pid')} on host {body.get('host')}{command}, "
            f"started {body.get('started_at')}, last heartbeat {age:.0f} s ago (lock file {self.path}); {advice}"
        )


def _read(path: Path) -> _Found | None:
    """The lock file's bytes and body; None when there is no lock file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return _Found(raw, body if isinstance(body, dict) else None, mtime)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
