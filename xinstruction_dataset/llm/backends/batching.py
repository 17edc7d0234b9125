"""Concurrent requests collected into batches for one worker thread.

The embedded model computes one batch at a time. Callers (the curation engine's tasks, from any
event loop, or plain threads) submit single requests and get a `concurrent.futures.Future`; the
worker takes whatever is waiting, up to `max_batch`, waiting at most `gather_s` for a batch to
fill, so a lone request is not held back and a busy pipeline fills every batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Generic, TypeVar

logger = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    def __init__(self, run_batch: Callable[[list[In]], list[Out]], *, max_batch: int, gather_s: float = 0.02, name: str = "batcher") -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.batch_sizes: list[int] = []  # what each batch held: the benchmark and tests read it
        self._queue: queue.Queue[tuple[In, Future]] = queue.Queue()
        # A daemon: a process that ends mid-batch must not wait for the model (results already
        # returned are stored by their callers; the unfinished batch is simply asked again).
        self._worker = threading.Thread(target=self._serve, name=name, daemon=True)
        self._worker.start()

    def submit(self, item: In) -> Future:
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def _serve(self) -> None:
        while True:
            batch = self._gather()
            if not batch:  # every caller gave up while waiting
                continue
            self.batch_sizes.append(len(batch))
            try:
                results = self.run_batch([item for item, _ in batch])
            except Exception as error:  # noqa: BLE001 - handed to every caller of the batch
                logger.debug("batch of %d failed: %s", len(batch), error)
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)

    def _gather(self) -> list[tuple[In, Future]]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.gather_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
