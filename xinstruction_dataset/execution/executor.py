"""`Executor`: maps a task function over tasks and, as each group of tasks finishes, runs the
group's reduce task on the same workers (a language's merge after its filter tasks).

`EXECUTORS` is the plug-in point (registry.py): a kind's file (local.py, ray_executor.py) defines
its spec (a `PluginSpec` whose `kind` is a one-value Literal) and registers the function that
builds its executor from it. An `executor:` block without `kind` is `local`."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from ..registry import PluginSpec, Registry
from .groups import Group, ReduceFunction, TaskFunction


class Executor(Protocol):
    name: str

    def map(self, function: TaskFunction, tasks: Sequence[Any], *, desc: str = "tasks", progress: bool = True) -> list[Any]:
        """Run `function(task)` for every task; results in task order. A task's own exception
        is raised (bad input is not retried); a dead worker's task is run again."""

    def map_reduce(
        self, function: TaskFunction, tasks: Sequence[Any], reduce: ReduceFunction, groups: Sequence[Group], *, desc: str = "tasks", progress: bool = True
    ) -> list[Any]:
        """`map`, and `reduce(group.task, [results of group.members])` for every group, started
        as soon as its members are done (so reduces overlap the other groups' tasks instead of
        running one after another on the driver); the reduce results in group order."""

    def describe(self) -> str:
        """One line for logs: where the tasks run."""

    def sized_for(self, input_bytes: int | None) -> "Executor":
        """The executor to run an input of `input_bytes` (None: unknown, e.g. hub streaming) on:
        itself, or a cheaper one where starting workers would cost more than they save."""


# A recipe's `executor:` block -> the function that builds its Executor (see the module docstring).
EXECUTORS: Registry = Registry("executor", key="kind", default="local")


def make_executor(spec: PluginSpec | dict[str, Any] | None = None) -> Executor:
    """The executor of an `executor:` spec (a mapping is checked first; None: the default)."""
    spec = EXECUTORS.parse(spec if spec is not None else {})
    return EXECUTORS.implementation(spec.kind)(spec)


def respecified(spec: PluginSpec, kind: str | None = None, **overrides: Any) -> PluginSpec:
    """`spec` with command-line overrides, as a spec of `kind` (default: its own). The values of
    `spec` and `overrides` that `kind`'s spec has no field for are dropped: `--executor local`
    on a recipe whose executor is a Ray cluster leaves its `ray_address` behind."""
    kind = kind or spec.kind
    fields = EXECUTORS.spec_model(kind).model_fields
    values = {key: value for key, value in {**spec.model_dump(), **overrides}.items() if key in fields}
    return EXECUTORS.parse({**values, "kind": kind})
