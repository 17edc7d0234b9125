"""`RayExecutor`: the same tasks on a Ray cluster (`pip install -e ".[ray]"`).

Each task is a Ray task of one CPU, spread over the nodes; a group's reduce (a language's merge)
is a Ray task that takes its tasks' results as arguments, so Ray starts it when they are ready.
Ray runs a task again when its worker process or its whole node dies (`max_retries`); a task's
own exception is not retried (bad input stays bad). Tasks write their outputs to the run folder,
so that folder must be on a filesystem every node sees (NFS, a mounted bucket); the results sent
back are small (counts and paths).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, Sequence

from pydantic import Field
from tqdm.auto import tqdm

from ..errors import EnvironmentFault
from ..registry import PluginSpec
from .executor import EXECUTORS
from .groups import Group, ReduceFunction, TaskFunction

log = logging.getLogger(__name__)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EnvironmentFault('--executor ray needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")') from None
    return ray


class RayExecutorSpec(PluginSpec):
    """`executor: {kind: ray, ray_address: ADDR, retries: N}` (pip install -e ".[ray]")."""

    kind: Literal["ray"] = "ray"
    # A running cluster (`ray start --head` prints it; `auto` finds the local one); empty: a
    # Ray instance of this machine, started for the run and stopped after it.
    ray_address: str | None = None
    # How many times a task whose worker or node died is run again.
    retries: Annotated[int, Field(ge=0, le=100)] = 3


@EXECUTORS.register(RayExecutorSpec)
def ray_executor(spec: RayExecutorSpec) -> "RayExecutor":
    return RayExecutor(address=spec.ray_address, retries=spec.retries)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, retries: int = 3):
        self.address = address
        self.retries = retries

    def describe(self) -> str:
        return f"Ray executor at {self.address or 'a local Ray instance'}"

    def sized_for(self, input_bytes: int | None) -> "RayExecutor":
        return self  # asked for by name: a cluster runs whatever the input

    def map(self, function: TaskFunction, tasks: Sequence[Any], *, desc: str = "tasks", progress: bool = True) -> list[Any]:
        return self._execute(function, tasks, None, (), desc, progress)[: len(tasks)]

    def map_reduce(
        self, function: TaskFunction, tasks: Sequence[Any], reduce: ReduceFunction, groups: Sequence[Group], *, desc: str = "tasks", progress: bool = True
    ) -> list[Any]:
        return self._execute(function, tasks, reduce, groups, desc, progress)[len(tasks):]

    def _execute(self, function, tasks, reduce, groups, desc: str, progress: bool) -> list[Any]:
        """The tasks' results, then the reduces': each reduce is a Ray task that takes its
        members' results as arguments, so Ray starts it when they are ready, on any node."""
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            self._connect(ray)
        try:
            # SPREAD: tasks go to every node from the start. The default packs the driver's node
            # and reaches the others by spillback, a lease round trip per task: on bench_scale's
            # 2-node cluster the second node sat idle ~1 s between tasks (14.5-15.1 s -> 12.9-13.5 s).
            options = ray.remote(num_cpus=1, max_retries=self.retries, retry_exceptions=False, scheduling_strategy="SPREAD")
            run_task, run_reduce = options(function), options(_reduce_group)
            refs = [run_task.remote(task) for task in tasks]
            refs += [run_reduce.remote(reduce, group.task, *(refs[index] for index in group.members)) for group in groups]
            return self._gather(ray, refs, desc, progress)
        finally:
            if started_here:
                ray.shutdown()

    def _gather(self, ray, refs: list, desc: str, progress: bool) -> list[Any]:
        index_of = {ref: index for index, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        waiting = list(refs)
        with tqdm(total=len(refs), desc=f"{desc} (ray)", unit="task", disable=not progress, smoothing=0.1) as bar:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    results[index_of[ref]] = self._result(ray, ref)
                    bar.update()
        return results

    def _connect(self, ray) -> None:
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if not self.address:
            options["include_dashboard"] = False  # a local instance for this run only
        try:
            ray.init(address=self.address or None, **options)
        except ConnectionError as e:
            raise EnvironmentFault(f"cannot reach the Ray cluster at {self.address!r} ({e}); start it with `ray start --head` or fix --ray-address") from None

    @staticmethod
    def _result(ray, ref) -> Any:
        """The task's value; its own exception raised as itself (Ray wraps it in RayTaskError)."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.as_instanceof_cause()
            raise (e.cause if isinstance(e.cause, BaseException) else cause) from None


def _reduce_group(reduce: ReduceFunction, task: Any, *results: Any) -> Any:
    """A reduce as a Ray task: Ray passes the members' results (refs given as arguments) as values."""
    return reduce(task, list(results))
