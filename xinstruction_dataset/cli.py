"""`xinstruction ...`: the command line. Each subcommand lives in `commands/<name>.py`."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Iterator

from . import __version__
from .commands import COMMAND_MODULES
from .errors import EXIT_BUG, EXIT_ENVIRONMENT, EXIT_SIGNAL_BASE, EXIT_USAGE, UserError, describe_os_error
from .redact import RedactingFilter, redact

__all__ = ["UserError", "build_parser", "main", "run"]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `command` alone: each subcommand imports its part of
    the pipeline, and importing all of them costs ~1.4 s that a `filter` worker run never uses."""
    parser = argparse.ArgumentParser(
        prog="xinstruction",
        description="Build, load and publish X-Instruction and X-AlpacaEval.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if command is None else (command,):
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.commands.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(subparsers)
    return parser


def _named_command(argv: list[str]) -> str | None:
    """The subcommand `argv` names (the first word that is not an option), if it is one; None
    (every subcommand, for help and for argparse's error) otherwise."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in COMMAND_MODULES else None


def quiet_libraries(*, progress: bool) -> None:
    """httpx logs every request at INFO (thousands of lines in a curation run); `--no-progress`
    also silences the progress bars of `datasets` and `huggingface_hub`."""
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not progress:
        import datasets
        import huggingface_hub.utils

        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    quiet_libraries(progress=not getattr(args, "no_progress", False))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with _stop_signals_like_ctrl_c() as stopping:  # until the last line is printed: a second stop signal is ignored
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt as stop:
            return _stopped(stop.signum if isinstance(stop, Stopped) else signal.SIGINT)
        except Exception as error:  # noqa: BLE001 - every failure ends as one line and an exit code
            if stopping:
                # A library that catches every exception (langdetect's profile loader does) turns
                # the Stopped raised inside it into an error of its own: the stop is what happened.
                return _stopped(stopping[0])
            code, message = _classify(error)
            if code is None:  # a bug: the full traceback is what a report needs
                print(redact(traceback.format_exc()), end="", file=sys.stderr)
                print(
                    f"error: this is a bug in xinstruction {__version__}, not a problem with your input: please report it "
                    "on the project's issue tracker, with the traceback above and the command you ran",
                    file=sys.stderr,
                )
                return EXIT_BUG
            if args.verbose:
                traceback.print_exc()
            print(f"error: {redact(message)}", file=sys.stderr)
            return code


def _stopped(signum: int) -> int:
    _reap_children()
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    print(f"{what}: finished work is saved; run the same command again to resume", file=sys.stderr)
    return EXIT_SIGNAL_BASE + signum


def _classify(error: Exception) -> tuple[int | None, str]:
    """(exit code, one-line message) of an expected failure; (None, "") for a bug. A bare
    ValueError is a bug: an input check raises a UserError (errors.UsageError is also a ValueError)."""
    if isinstance(error, UserError):
        return error.exit_code, str(error)
    if isinstance(error, FileNotFoundError):
        return EXIT_USAGE, str(error)
    if isinstance(error, OSError):
        return EXIT_ENVIRONMENT, describe_os_error(error)
    return None, ""


# --- SIGTERM and SIGHUP ---------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CHILD_GRACE_SECONDS = 5.0  # a worker still alive this long after the signal is killed


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C raises KeyboardInterrupt: every
    `with` and `finally` on the way out (the run lock, the worker pool, partial files) cleans up
    exactly as it does for Ctrl-C, and code that handles Ctrl-C handles these too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_signals_like_ctrl_c() -> Iterator[list[int]]:
    """Turn SIGTERM and SIGHUP into `Stopped` while a command runs.

    Ctrl-C reaches every process of the terminal's group, the workers included; `kill PID` and a
    scheduler's SIGTERM reach this process alone, whose default death left the workers running
    (reparented, holding memory and the caller's stdout) and the lock file behind. So the signal
    is passed on to the worker processes, as if it had been sent to the group, and raised here.
    A second signal while the run unwinds is ignored, so the lock is always released. Yields the
    signals received (at most one)."""
    stopping: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopping  # signal handlers belong to the main thread (main() called from a thread in tests)
        return

    def stop(signum: int, frame: object) -> None:
        if stopping:
            return
        stopping.append(signum)
        for child in multiprocessing.active_children():
            with contextlib.suppress(OSError):
                os.kill(child.pid, signum)
        raise Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield stopping
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _reap_children(grace: float = CHILD_GRACE_SECONDS) -> None:
    """After a stop: wait for the worker processes to end, then kill those that have not."""
    deadline = time.monotonic() + grace
    for child in multiprocessing.active_children():
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(1.0)


def run() -> None:
    """The console entry point: `main()`, then an exit without the interpreter's teardown.

    Freeing torch, a loaded model and their modules one by one takes ~2 s after the work is
    done (14% of the README's main job). Every file is closed by then; the exit handlers run
    (they flush, join and shut down: logging, multiprocessing, Ray), then the process ends."""
    code = main()
    atexit._run_exitfuncs()  # what the interpreter's own exit would run first
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
