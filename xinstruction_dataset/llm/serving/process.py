"""One server process on this machine: started in a process group of its own, with a
parent-death signal, its output appended to a log file; stopped by group (SIGTERM, then SIGKILL
after a grace period).

Three things make sure no server outlives the process that started it:
- a normal end, an error, Ctrl-C or SIGTERM of the driver: `ServerProcess.stop` (the fleet's
  `with` block ends on every one of them);
- SIGKILL of the driver: the server's parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`).
  The kernel sends it when the *thread* that forked the server ends, not the process, so every
  server is forked by one daemon thread (`_Spawner`) that lives as long as the process;
- the same for what a server started itself: the watchdog (watchdog.py), a small process that
  knows the servers' process groups and ends them when its pipe from this process closes.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 10.0  # a server still running this long after SIGTERM is killed
LOG_TAIL_LINES = 5


def _parent_death_signal(parent: int) -> Callable[[], None]:
    """The child's first act after fork (preexec_fn): SIGTERM when its parent thread ends; and if
    the parent already ended between fork and here, end at once."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


class _Spawner:
    """The one thread that forks every server of this process (see the module docstring): a
    daemon thread, so it lives until the process ends, whichever thread asks for a start."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: Sequence[str], **options) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="xinstruction-server-spawner", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._requests.put((future, list(argv), options))
        return future.result()

    def _serve(self) -> None:
        while True:
            future, argv, options = self._requests.get()
            try:
                process = subprocess.Popen(argv, preexec_fn=_parent_death_signal(os.getpid()), start_new_session=True, **options)
            except BaseException as error:  # noqa: BLE001 - handed to the thread that asked (it raises it)
                future.set_exception(error)
            else:
                future.set_result(process)


class _Watchdog:
    """This process's watchdog (watchdog.py), started with the first server."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _tell(self, line: str) -> None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                script = Path(__file__).with_name("watchdog.py")
                self._process = subprocess.Popen(
                    [sys.executable, "-S", str(script), str(STOP_GRACE_S)], stdin=subprocess.PIPE, text=True,
                    start_new_session=True, close_fds=True,
                )
                atexit.register(self._close)
            try:
                self._process.stdin.write(line + "\n")
                self._process.stdin.flush()
            except (BrokenPipeError, OSError) as error:
                log.warning("the server watchdog is gone (%s); the servers' parent-death signal still stops them", error)

    def watch(self, group: int) -> None:
        self._tell(f"+{group}")

    def forget(self, group: int) -> None:
        self._tell(f"-{group}")

    def _close(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.stdin.close()  # nothing listed: it exits at once
                try:
                    self._process.wait(timeout=STOP_GRACE_S + 5)
                except subprocess.TimeoutExpired:
                    self._process.kill()


SPAWNER = _Spawner()
WATCHDOG = _Watchdog()


class ServerProcess:
    """One started server (see the module docstring)."""

    def __init__(self, argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log_file = log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {shown_command(self.argv)}\n".encode())
            out.flush()
            environment = {**os.environ, **(env or {})}
            self.process = SPAWNER.popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=environment, close_fds=True)
        self.pid = self.process.pid  # also its process group (a session of its own)
        self._stopped: int | None = None
        WATCHDOG.watch(self.pid)

    def exit_code(self) -> int | None:
        return self.process.poll()

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """SIGTERM to the server's group, SIGKILL to it after `grace` seconds; its exit code.
        Once: the group's id may belong to another process after that."""
        if self._stopped is not None:
            return self._stopped
        if self.process.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s still running %.0f s after SIGTERM: killed", self.argv[0], grace)
        _signal_group(self.pid, signal.SIGKILL)  # whatever the server left in its group
        self._stopped = self.process.wait()
        WATCHDOG.forget(self.pid)
        return self._stopped

    def describe_exit(self, running_for: float | None = None) -> str:
        """`exited with code N` / `still running after N s`, and the log's last lines: the end
        of a failed start's one error line."""
        code = self.process.poll()
        state = f"still running after {running_for:.0f} s" if code is None else f"exited with code {code}"
        return f"`{shown_command(self.argv)}` {state}; last lines of {self.log_file}: {log_tail(self.log_file)}"


def shown_command(argv: Sequence[str]) -> str:
    """The command as one shell line (a newline in an argument shown as \\n: one error line)."""
    return shlex.join(argv).replace("\n", "\\n")


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: every process of it has ended


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, limit: int = 600) -> str:
    """The last non-empty lines of a log, joined with ` | ` (one error line), at most `limit` characters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as error:
        return f"(unreadable: {error.strerror})"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(tail) or "(empty)"
    return joined if len(joined) <= limit else "..." + joined[-limit:]
