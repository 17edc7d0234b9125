"""Executors: run a list of deterministic tasks on every core of this machine (`local`, the
default, worker processes) or on a Ray cluster (`ray`, the optional `[ray]` extra).

A task function is a plain module-level function of one picklable task; it writes its own
outputs and a completion marker, so running it twice is harmless (a re-run, or the engine's
retry after a worker died, skips or redoes it). Only `ray_executor.py` imports ray, and only when
a Ray executor runs.

Each kind is one file, registered in `executor.EXECUTORS` (its spec and the function that builds
it); a new kind is one more such file and its name on the import line below.
"""

from . import local, ray_executor  # noqa: F401 - the kinds: each file registers itself in EXECUTORS
from .executor import EXECUTORS, Executor, make_executor, respecified
from .groups import Group
from .settings import ExecutorSpec, default_executor

__all__ = ["EXECUTORS", "Executor", "ExecutorSpec", "Group", "default_executor", "make_executor", "respecified"]
