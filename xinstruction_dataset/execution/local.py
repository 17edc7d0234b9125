"""`LocalExecutor`: tasks on worker processes of this machine, one per core by default.

Workers are spawned (not forked): a fork would copy the parent's threads and open files half
way. A worker that dies (killed, out of memory) breaks the pool: the pool is made again and the
unfinished tasks run again, up to `retries` times. A task's own exception is raised at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from ..errors import EnvironmentFault
TaskFunction = Callable[[Any], Any]  # a module-level function of one picklable task

log = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None, retries: int = 3):
        self.workers = workers or os.cpu_count() or 1
        self.retries = retries

    def describe(self) -> str:
        return f"local executor, {self.workers} worker process(es)"

    def map(self, function: TaskFunction, tasks: Sequence[Any], *, desc: str = "tasks", progress: bool = True) -> list[Any]:
        results: list[Any] = [None] * len(tasks)
        pending = list(range(len(tasks)))
        workers = min(self.workers, len(tasks))
        with tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress, smoothing=0.1) as bar:
            if workers <= 1:  # one worker: this process, no pool to start
                for index in pending:
                    results[index] = function(tasks[index])
                    bar.update()
                return results
            for attempt in range(self.retries + 1):
                try:
                    self._run_pool(function, tasks, pending, results, workers, bar)
                    return results
                except BrokenProcessPool:
                    log.warning("a worker process died; running its %d unfinished task(s) again (retry %d of %d)", len(pending), attempt + 1, self.retries)
        raise EnvironmentFault(
            f"worker processes died {self.retries + 1} times ({len(pending)} task(s) unfinished): check memory "
            "(dmesg shows the OOM killer) or lower `executor.workers`; finished tasks are kept for the next run"
        )

    def _run_pool(self, function: TaskFunction, tasks: Sequence[Any], pending: list[int], results: list[Any], workers: int, bar) -> None:
        """Run `pending` tasks on a fresh pool; finished indices leave `pending` as they finish."""
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(function, tasks[index]): index for index in pending}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures[future]
                    results[index] = future.result()  # a task's error, or BrokenProcessPool
                    pending.remove(index)
                    bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
