"""`LocalExecutor`: tasks on worker processes of this machine, one per core by default.

Workers are spawned (not forked): a fork would copy the parent's threads and open files half
way. One pool serves a whole `map_reduce`: a group's reduce (a language's merge) goes to the
next free worker as soon as its tasks are done, ahead of the tasks still waiting, so no second
pool is started, merges overlap the other languages' tasks, and the driver does no CPU work of
its own. A worker that dies (killed, out of memory) breaks the pool: the
pool is made again and the unfinished tasks and reduces run again, up to `retries` times. A
task's own exception is raised at once.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Annotated, Any, Literal, Sequence

from pydantic import Field
from tqdm.auto import tqdm

from ..errors import EnvironmentFault
from ..registry import PluginSpec
from .executor import EXECUTORS
from .groups import Group, GroupTracker, ReduceFunction, TaskFunction

log = logging.getLogger(__name__)


# Below this much input, the tasks run in this process when the worker count was not chosen: a
# worker takes ~1 s to start (interpreter, imports, language profiles), about what one core
# filters of 2 MB of web text, so smaller inputs finish sooner without workers.
IN_PROCESS_BELOW_BYTES = 2 << 20


class LocalExecutorSpec(PluginSpec):
    """`executor: {kind: local, workers: N, retries: N}` (the default)."""

    kind: Literal["local"] = "local"
    # Worker processes; default: every core of the machine. 1 runs tasks in this process.
    workers: Annotated[int, Field(ge=1)] | None = None
    # How many times a task whose worker process died is run again.
    retries: Annotated[int, Field(ge=0, le=100)] = 3


@EXECUTORS.register(LocalExecutorSpec)
def local_executor(spec: LocalExecutorSpec) -> "LocalExecutor":
    return LocalExecutor(workers=spec.workers, retries=spec.retries)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None, retries: int = 3):
        self.workers = workers or os.cpu_count() or 1
        self.chosen = workers is not None  # set by the user: kept whatever the input
        self.retries = retries

    def describe(self) -> str:
        if self.workers == 1 and not self.chosen:
            return "local executor, in this process (a small input)"
        return f"local executor, {self.workers} worker process(es)"

    def sized_for(self, input_bytes: int | None) -> "LocalExecutor":
        if self.chosen or input_bytes is None or input_bytes >= IN_PROCESS_BELOW_BYTES:
            return self
        small = LocalExecutor(retries=self.retries)
        small.workers = 1
        return small

    def map(self, function: TaskFunction, tasks: Sequence[Any], *, desc: str = "tasks", progress: bool = True) -> list[Any]:
        return self._execute(_Run(function, tasks, None, ()), desc, progress).results

    def map_reduce(
        self, function: TaskFunction, tasks: Sequence[Any], reduce: ReduceFunction, groups: Sequence[Group], *, desc: str = "tasks", progress: bool = True
    ) -> list[Any]:
        return self._execute(_Run(function, tasks, reduce, groups), desc, progress).reduced

    def _execute(self, run: "_Run", desc: str, progress: bool) -> "_Run":
        workers = min(self.workers, run.size)
        with tqdm(total=run.size, desc=desc, unit="task", disable=not progress, smoothing=0.1) as bar:
            if workers <= 1:  # one worker: this process, no pool to start
                run.in_process(bar)
                return run
            for attempt in range(self.retries + 1):
                try:
                    self._run_pool(run, workers, bar)
                    return run
                except BrokenProcessPool:
                    log.warning("a worker process died; running its %d unfinished task(s) again (retry %d of %d)", run.unfinished, attempt + 1, self.retries)
        raise EnvironmentFault(
            f"worker processes died {self.retries + 1} times ({run.unfinished} task(s) unfinished): check memory "
            "(dmesg shows the OOM killer) or lower `executor.workers`; finished tasks are kept for the next run"
        )

    @staticmethod
    def _run_pool(run: "_Run", workers: int, bar) -> None:
        """Run what `run` has left on a fresh pool; finished work leaves `run` as it finishes.

        One piece of work per worker at a time, the next chosen when one finishes: a ready
        reduce before the next task (the pool's own queue is first come, first served, so a
        reduce queued behind every task would wait for all of them). The hand-over costs a
        round trip of about a millisecond per task; tasks take seconds."""
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=end_without_teardown)
        try:
            reduces, maps = run.reduces_ready(), run.maps_left()
            futures: dict[Future, tuple[str, int]] = {}
            while futures or reduces or maps:
                while len(futures) < workers and (reduces or maps):
                    if reduces:
                        number = reduces.pop(0)
                        futures[pool.submit(*run.reduce_call(number))] = ("reduce", number)
                    else:
                        index = maps.pop(0)
                        futures[pool.submit(run.function, run.tasks[index])] = ("map", index)
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, key = futures.pop(future)
                    value = future.result()  # a task's error, or BrokenProcessPool
                    if kind == "map":
                        reduces += run.map_done(key, value)
                    else:
                        run.reduce_done(key, value)
                    bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _Run:
    """One `map_reduce`: the results so far, and what is left to run."""

    def __init__(self, function: TaskFunction, tasks: Sequence[Any], reduce: ReduceFunction | None, groups: Sequence[Group]):
        self.function, self.tasks, self.reduce, self.groups = function, tasks, reduce, groups
        self.results: list[Any] = [None] * len(tasks)
        self.reduced: list[Any] = [None] * len(groups)
        self._maps_left = set(range(len(tasks)))
        self._reduces_left = set(range(len(groups)))
        self._tracker = GroupTracker(groups)

    @property
    def size(self) -> int:
        return len(self.tasks) + len(self.groups)

    @property
    def unfinished(self) -> int:
        return len(self._maps_left) + len(self._reduces_left)

    def maps_left(self) -> list[int]:
        return sorted(self._maps_left)

    def reduces_ready(self) -> list[int]:
        """Reduces not done whose tasks all are (after a broken pool: those it lost)."""
        return [number for number in sorted(self._reduces_left) if not self._tracker.missing[number]]

    def map_done(self, index: int, value: Any) -> list[int]:
        """Record a task's result; the reduces it makes ready."""
        self.results[index] = value
        self._maps_left.discard(index)
        return self._tracker.done(index)

    def reduce_done(self, number: int, value: Any) -> None:
        self.reduced[number] = value
        self._reduces_left.discard(number)

    def reduce_call(self, number: int) -> tuple[Any, ...]:
        group = self.groups[number]
        return self.reduce, group.task, [self.results[index] for index in group.members]

    def in_process(self, bar) -> None:
        """Every task in order, each reduce as soon as its tasks are done."""
        for number in self.reduces_ready():
            self._reduce_here(number, bar)
        for index in self.maps_left():
            ready = self.map_done(index, self.function(self.tasks[index]))
            bar.update()
            for number in ready:
                self._reduce_here(number, bar)

    def _reduce_here(self, number: int, bar) -> None:
        function, *arguments = self.reduce_call(number)
        self.reduce_done(number, function(*arguments))
        bar.update()


def end_without_teardown() -> None:
    """Worker initializer: when the pool closes, the worker ends with os._exit instead of a full
    interpreter teardown. Teardown frees what the tasks loaded one object at a time (langdetect's
    profiles alone take ~0.4 s of CPU) while the driver waits for the pool to close; the OS frees
    a process's memory at once. Registered last, so it runs first of the exit handlers: the
    handlers skipped are the ones registered before it, at import (logging's, run here)."""
    atexit.register(_exit_now)


def _exit_now() -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
