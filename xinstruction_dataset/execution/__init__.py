"""Executors: run a list of deterministic tasks on every core of this machine (`local`, the
default, worker processes) or on a Ray cluster (`ray`, the optional `[ray]` extra).

A task function is a plain module-level function of one picklable task; it writes its own
outputs and a completion marker, so running it twice is harmless (a re-run, or the engine's
retry after a worker died, skips or redoes it). Only `ray_executor.py` imports ray.
"""

from .executor import Executor, make_executor
from .groups import Group
from .settings import ExecutorSettings

__all__ = ["Executor", "ExecutorSettings", "Group", "make_executor"]
