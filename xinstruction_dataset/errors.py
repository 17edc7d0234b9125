"""Errors the command line shows as one clear line instead of a traceback, and the exit codes of
every command (the traceback only with `-v`):

    0    done
    1    partial failure: some languages produced nothing, or some calls failed
    2    usage or recipe error: the command line or the recipe must change
    3    environment: disk, lock, an unreachable server, a corrupt cache or output file
    70   a bug in the toolkit: the full traceback and a request to report it
    129  stopped by SIGHUP (the terminal closed); finished work is kept, the lock released
    130  stopped by Ctrl-C (SIGINT); likewise
    143  stopped by SIGTERM (`kill`, a scheduler); likewise

Only `UserError` (and its subclasses below) and `OSError` are expected failures: every other
exception, a `ValueError` included, is a broken invariant and is reported as a bug (exit 70), so
an input or recipe check must raise one of these classes, never a bare `ValueError`.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_BUG = 70  # EX_SOFTWARE of sysexits.h
EXIT_SIGNAL_BASE = 128  # a run stopped by signal N exits 128 + N, as a shell reports it


class UserError(Exception):
    """An error the user can fix by changing the command or the recipe (exit 2)."""

    exit_code = EXIT_USAGE


class UsageError(UserError, ValueError):
    """A bad recipe, option or input (exit 2), raised where callers and pydantic validators expect a
    `ValueError` (a validator's ValueError becomes part of the recipe's one-line report)."""


class PartialFailure(UserError):
    """The run finished, but some of its work produced nothing (exit 1)."""

    exit_code = EXIT_PARTIAL


class EnvironmentFault(UserError):
    """The machine or a service is in the way: disk, lock, server, a corrupt file (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class CorruptFile(EnvironmentFault, ValueError):
    """A file the toolkit wrote (a cache, a run's output) is damaged (exit 3), like a corrupt call
    cache: a `ValueError` too, for the readers that catch one."""


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space (or point output_dir at a larger disk), then run the same command again",
    errno.EDQUOT: "the disk quota is used up: free space, then run the same command again",
    errno.EACCES: "permission denied: check the owner and mode of that path",
    errno.EROFS: "the filesystem is read-only: point output_dir somewhere writable",
    errno.ENOTDIR: "a file stands where a folder is needed: move it, or choose another output_dir",
    errno.EISDIR: "a folder stands where a file is needed: give a file",
}


def describe_os_error(error: OSError) -> str:
    """One line for an environment fault: what happened, to which file, and what to do."""
    where = f" ({error.filename})" if error.filename else ""
    hint = _OS_HINTS.get(error.errno or 0, "check the path and the machine, then run the same command again")
    return f"{error.strerror or error}{where}: {hint}"
