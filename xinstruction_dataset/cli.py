"""`xinstruction ...`: the command line. Each subcommand lives in `commands/<name>.py`."""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import traceback

from . import __version__
from .commands import COMMAND_MODULES
from .errors import EXIT_ENVIRONMENT, EXIT_USAGE, UserError, describe_os_error
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
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure ends as one line and an exit code
        code, message = _classify(error)
        if code is None:
            raise  # a bug: the full traceback is what a report needs
        if args.verbose:
            traceback.print_exc()
        print(f"error: {redact(message)}", file=sys.stderr)
        return code


def _classify(error: Exception) -> tuple[int | None, str]:
    """(exit code, one-line message) of an expected failure; (None, "") for a bug."""
    if isinstance(error, UserError):
        return error.exit_code, str(error)
    if isinstance(error, (FileNotFoundError, ValueError)):
        return EXIT_USAGE, str(error)
    if isinstance(error, OSError):
        return EXIT_ENVIRONMENT, describe_os_error(error)
    return None, ""


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
