"""`Executor`: maps a task function over tasks, each result back in task order."""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from .settings import ExecutorSettings

TaskFunction = Callable[[Any], Any]


class Executor(Protocol):
    name: str

    def map(self, function: TaskFunction, tasks: Sequence[Any], *, desc: str = "tasks", progress: bool = True) -> list[Any]:
        """Run `function(task)` for every task; results in task order. A task's own exception
        is raised (bad input is not retried); a dead worker's task is run again."""

    def describe(self) -> str:
        """One line for logs: where the tasks run."""


def make_executor(settings: ExecutorSettings | None = None) -> Executor:
    settings = settings or ExecutorSettings()
    if settings.kind == "ray":
        from .ray_executor import RayExecutor  # only here: the local path must not need ray

        return RayExecutor(address=settings.ray_address, retries=settings.retries)
    from .local import LocalExecutor

    return LocalExecutor(workers=settings.workers, retries=settings.retries)
