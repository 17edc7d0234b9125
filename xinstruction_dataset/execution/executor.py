"""`Executor`: maps a task function over tasks and, as each group of tasks finishes, runs the
group's reduce task on the same workers (a language's merge after its filter tasks)."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from .groups import Group, ReduceFunction, TaskFunction
from .settings import ExecutorSettings


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


def make_executor(settings: ExecutorSettings | None = None) -> Executor:
    settings = settings or ExecutorSettings()
    if settings.kind == "ray":
        from .ray_executor import RayExecutor  # only here: the local path must not need ray

        return RayExecutor(address=settings.ray_address, retries=settings.retries)
    from .local import LocalExecutor

    return LocalExecutor(workers=settings.workers, retries=settings.retries)
