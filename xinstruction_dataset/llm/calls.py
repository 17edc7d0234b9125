"""Run LLM calls through a backend: from the durable cache when stored, else through the
backend's slots, stored before anyone sees the result.

Two ways in, one piece of code behind them:
- `CallScheduler` (async) is the per-backend scheduler the curation engine shares between every
  stage and language of a run: `await scheduler.complete(request)`. A call starts the moment a
  slot frees (`in_flight < backend.max_concurrency`, re-read each time: a remote backend learns
  its real limit from the server), and a key already in flight waits for that call instead of
  repeating it. Calls waiting for a slot take it lowest `priority` first, then in arrival order
  (`SlotQueue`; the engine passes a document's depth in its flow). Its counters (`in_flight`, `peak_in_flight`, `stats`) are plain integers that
  curation's live progress reads; nothing on a call's path waits for them.
- `CallRunner` (sync) wraps a scheduler for code that has a stream of requests and no event loop:

      runner = CallRunner(backend, cache, desc="generate sw")
      results = {r.tag: r for r in runner.run((doc.id, request) for doc in docs)}

  It yields results in completion order and reads the request iterator lazily, with at most
  2 x `backend.max_concurrency` requests between "read" and "handed over", so memory stays
  bounded for any number of requests.

Every request also ends as one ledger row (llm/ledger.py), labelled with what the caller says
the call is for (`CallLabel`): paid, cached, shared (the same key was in flight) or failed, with
its tokens, the server that answered, and its time queued for a slot and in service.

Every request ends as exactly one `CallResult`: a completion (fresh or from the cache) or an
error, which is also recorded in the cache's failures table so a resumed run retries it. A reply
is checked before it is stored (`backends.base.unstorable`): one the cache cannot hold (a lone
surrogate in its text...) is a failed call with that reason, never a crash or a cache row.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ..redact import redact
from .backends.base import BackendError, Completion, LLMBackend, LLMRequest, storable_text, unstorable
from .cache import CallCache
from .ledger import CallLabel, LedgerEntry, RunningTotals, ServedBy, call_tokens, default_endpoint

NO_LABEL = CallLabel()


@dataclass(frozen=True)
class CallResult:
    """The outcome of one request: `completion` or `error` (never both), and where it came from."""

    tag: Hashable
    key: str
    completion: Completion | None
    error: str | None
    cached: bool
    entry: LedgerEntry | None = field(default=None, compare=False, repr=False)  # its ledger row

    @property
    def ok(self) -> bool:
        return self.completion is not None


@dataclass
class CallStats:
    """Counters over every `run()` of one runner."""

    requests: int = 0  # read from the callers' iterators
    cache_hits: int = 0
    sent: int = 0  # calls made to the backend (a key repeated within a run is sent once)
    done: int = 0  # results with a completion, cached ones included
    failed: int = 0
    sends_failed: int = 0  # calls to the backend that failed for good (a key shared in flight: once)
    completion_tokens: int = 0  # of fresh calls, where the backend reports them
    busy_s: float = 0.0  # wall time spent inside run()

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.busy_s if self.busy_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tokens_per_s"] = round(self.tokens_per_s, 2)
        return data


_END = object()


class CallRunner:
    """Sends requests to `backend` through `cache`; see the module docstring."""

    def __init__(self, backend: LLMBackend, cache: CallCache, *, desc: str = "", progress: bool = True) -> None:
        self.backend = backend
        self.cache = cache
        self.desc = desc or backend.model_id
        self.progress = progress
        self.stats = CallStats()

    def run(self, requests: Iterable[tuple[Hashable, LLMRequest]]) -> Iterator[CallResult]:
        """Yield one `CallResult` per (tag, request), in completion order."""
        total = len(requests) if isinstance(requests, Sized) else None
        bar = tqdm(total=total, desc=self.desc, unit="call", disable=not self.progress, dynamic_ncols=True)
        drive = _Drive(self, iter(requests), bar)
        worker = threading.Thread(target=drive.main, name=f"calls:{self.desc}", daemon=True)
        started = time.monotonic()
        worker.start()
        try:
            while (item := drive.results.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                drive.handed_over()
                yield item
        finally:
            drive.stop()
            worker.join()
            bar.close()
            self.stats.busy_s += time.monotonic() - started

    def run_all(self, requests: Iterable[tuple[Hashable, LLMRequest]]) -> dict[Hashable, CallResult]:
        """Every result, by tag (tags must be unique)."""
        results: dict[Hashable, CallResult] = {}
        for result in self.run(requests):
            if result.tag in results:
                raise ValueError(f"duplicate request tag {result.tag!r}")
            results[result.tag] = result
        return results


class CallScheduler:
    """The async scheduler of one backend, shared by every caller of a run (see the module doc)."""

    def __init__(self, backend: LLMBackend, cache: CallCache) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = CallStats()
        self.in_flight = 0
        self.peak_in_flight = 0  # the most calls in flight at once (live progress shows it)
        self.failing_in_a_row = 0  # fresh calls failed since the last fresh success
        self.last_error = ""
        self._slots: SlotQueue | None = None
        self._same_key: dict[str, asyncio.Future[Completion]] = {}
        self.totals = RunningTotals()  # this run's paid calls and tokens (budgets, the live view)
        self.busy_s = 0.0  # seconds with at least one call in flight (GPU-hour prices)
        self._busy_since: float | None = None

    @property
    def limit(self) -> int:
        return max(1, self.backend.max_concurrency)

    async def complete(
        self, request: LLMRequest, tag: Hashable = None, label: CallLabel = NO_LABEL, priority: int = 0,
    ) -> CallResult:
        """The result of `request`: stored, shared with an identical call in flight, or fresh.
        `label` says what the call is for; it goes into the call's ledger row only. `priority`:
        among calls waiting for a slot, lower goes first (it changes no result, only the order)."""
        self.stats.requests += 1
        key = request.cache_key(self.backend.model_id)
        arrived, clock = time.time(), time.monotonic()
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            entry = self._entry(key, "cached", label, request, cached, None, arrived, clock, None)
            self.cache.record(entry)
            return self._counted(CallResult(tag, key, cached, None, True, entry))
        call = _Timing(arrived, clock, priority)
        try:
            completion = await self._call_once_per_key(key, request, label, call)
        except _CallFailed as failure:
            # Written to the cache and to rejects: no secret in it, and nothing they cannot store.
            message = storable_text(redact(str(failure)))
            entry = self._entry(key, "failed" if call.sent else "shared", label, request, None, call.endpoint, arrived, clock, call.served)
            if call.sent:
                self.cache.record_failure(key, self.backend.model_id, request, message, entry)
                self.totals.add(entry)
            else:
                self.cache.record(entry)
            self.failing_in_a_row += 1
            self.last_error = message
            return self._counted(CallResult(tag, key, None, message, False, entry))
        self.failing_in_a_row = 0
        if call.entry is None:  # shared an identical call in flight: that call's row holds the cost
            call.entry = self._entry(key, "shared", label, request, completion, call.endpoint, arrived, clock, call.served)
            self.cache.record(call.entry)
        return self._counted(CallResult(tag, key, completion, None, False, call.entry))

    def _entry(
        self, key: str, kind: str, label: CallLabel, request: LLMRequest, completion: Completion | None, endpoint: str | None,
        arrived: float, clock: float, served: float | None,
    ) -> LedgerEntry:
        """The ledger row of one call: `clock` (monotonic) when it arrived, `served` when its
        slot was taken (None: never sent); the times in the row are wall-clock."""
        now = time.monotonic()
        started_service = served if served is not None else now
        prompt = request.prompt if request.prompt is not None else "".join(content for _, content in request.messages or ())
        if completion is not None:
            prompt_tokens, completion_tokens, source = call_tokens(
                self.backend, prompt, completion.text, completion.prompt_tokens, completion.completion_tokens,
            )
        else:
            prompt_tokens, completion_tokens, source = 0, 0, "reported"
        return LedgerEntry(
            run=self.cache.run_id, key=key, kind=kind, label=label, endpoint=endpoint or default_endpoint(self.backend),
            model=self.backend.model_id, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, tokens=source,
            queued_s=max(0.0, started_service - clock), service_s=max(0.0, now - started_service) if served is not None else 0.0,
            started_at=arrived, ended_at=arrived + (now - clock),
        )

    async def aclose(self) -> None:
        await self.backend.aclose()

    def _counted(self, result: CallResult) -> CallResult:
        if result.ok:
            self.stats.done += 1
        else:
            self.stats.failed += 1
        return result

    async def _call_once_per_key(self, key: str, request: LLMRequest, label: CallLabel, call: "_Timing") -> Completion:
        """Call the backend, unless the same key is already in flight: then share that call."""
        if key in self._same_key:
            return await asyncio.shield(self._same_key[key])
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._same_key[key] = future
        try:
            try:
                completion = await self._call(request, call)
                # Checked before stored: a stored reply is served on every rerun, and one the
                # cache cannot take would stop every rerun at the same call.
                problem = unstorable(completion)
                if problem is not None:
                    raise BackendError(f"unstorable reply: {problem}")
            except Exception as error:  # noqa: BLE001 - any failure of one call is that call's result
                self.stats.sends_failed += 1
                raise _CallFailed(_describe(error)) from error
            entry = self._entry(key, "paid", label, request, completion, call.endpoint, call.arrived, call.clock, call.served)
            # Stored before anyone sees it (its ledger row in the same commit): a kill after this
            # line never repeats the call, nor counts it twice.
            self.cache.put(key, self.backend.model_id, request, completion, entry)
            self.totals.add(entry)
            call.entry = entry
            future.set_result(completion)
            return completion
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: a key nobody else waits on must not warn
            raise
        finally:
            del self._same_key[key]

    async def _call(self, request: LLMRequest, call: "_Timing") -> Completion:
        if self._slots is None:
            self._slots = SlotQueue(lambda: self.limit)
        await self._slots.acquire(call.priority)
        self.in_flight += 1
        if self.in_flight == 1:
            self._busy_since = time.monotonic()
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        self.stats.sent += 1
        call.sent, call.served = True, time.monotonic()
        try:
            with ServedBy() as served:
                try:
                    completion = await self.backend.acomplete(request)
                finally:
                    call.endpoint = served.name
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._busy_since is not None:
                self.busy_s += time.monotonic() - self._busy_since
                self._busy_since = None
            self._slots.release()
        self.stats.completion_tokens += completion.completion_tokens or 0
        return completion


class _Drive:
    """One `CallRunner.run()`: an event loop in a worker thread feeding a `CallScheduler`; talks
    to the caller's thread through `results`."""

    def __init__(self, runner: "CallRunner", requests: Iterator[tuple[Hashable, LLMRequest]], bar: tqdm) -> None:
        self.scheduler = CallScheduler(runner.backend, runner.cache)
        self.scheduler.stats = runner.stats
        self.requests = requests
        self.bar = bar
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.ready = threading.Event()
        self.started = time.monotonic()

    # --- caller thread ------------------------------------------------------------------------

    def handed_over(self) -> None:
        """The caller took one result: room for one more request in the window."""
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(self.window.release)
        except RuntimeError:  # the loop has finished (this was among the last results): no window left
            return

    def stop(self) -> None:
        """Cancel whatever is still running (the caller stopped early, or the run is over)."""
        self.ready.wait()
        if self.loop is not None and self.main_task is not None:
            try:
                self.loop.call_soon_threadsafe(self.main_task.cancel)
            except RuntimeError:  # the loop already finished and closed: nothing left to cancel
                return

    # --- loop thread --------------------------------------------------------------------------

    def main(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            return  # stop() was called: the caller is gone, nobody reads `results`
        except BaseException as error:  # noqa: BLE001 - handed to the caller, who re-raises it
            self.results.put(error)
        finally:
            self.ready.set()
        self.results.put(_END)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.main_task = asyncio.current_task()
        # Requests read from the iterator but not yet handed over: bounded, so memory is too.
        self.window = asyncio.Semaphore(2 * self.scheduler.limit)
        self.ready.set()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self.window.acquire()  # before reading: at most the window is read ahead
                item = next(self.requests, _END)
                if item is _END:
                    break
                task = asyncio.create_task(self._one(*item))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*list(tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.scheduler.aclose()

    async def _one(self, tag: Hashable, request: LLMRequest) -> None:
        self.results.put(await self.scheduler.complete(request, tag))
        stats = self.scheduler.stats
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix(
            in_flight=self.scheduler.in_flight, done=stats.done, failed=stats.failed, cached=stats.cache_hits,
            tok_s=f"{stats.completion_tokens / elapsed:.1f}", refresh=False,
        )
        self.bar.update(1)


class SlotQueue:
    """A backend's slots, handed to waiting calls lowest priority first, then first come.

    Why not an asyncio.Condition: it wakes waiters in arrival order only. The engine's calls
    come from documents at every depth of the flow; when the input runs out, the run lasts as
    long as its longest remaining chain of calls, so the calls of the documents with the most
    left to do (the shallowest) go first (highest level first, as in list scheduling), which
    shortens the drain at the end. `limit()` is read at every hand-out: it grows as a server
    reports its slots or a ramp opens."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self.taken = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def acquire(self, priority: int = 0) -> None:
        if not self._waiting and self.taken < self.limit():
            self.taken += 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), future))
        self._hand_out()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot, then cancelled: give it back
                self.release()
            raise

    def release(self) -> None:
        self.taken -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        while self._waiting and self.taken < self.limit():
            _, _, future = heapq.heappop(self._waiting)
            if future.done():  # its caller was cancelled while waiting
                continue
            self.taken += 1
            future.set_result(None)


@dataclass
class _Timing:
    """When one call arrived (wall clock and monotonic), whether and when it took a slot, and
    the server that answered it (what its backend said, see ledger.note_server)."""

    arrived: float
    clock: float
    priority: int = 0
    sent: bool = False
    served: float | None = None
    endpoint: str | None = None
    entry: LedgerEntry | None = None  # the paid row, once stored


class _CallFailed(Exception):
    """A call that failed for good; its message is the text recorded for it. (A failure of the
    cache itself is not a call failure: it stops the run.)"""


def _describe(error: BaseException) -> str:
    """The error text recorded for a failed call: the backend's own message, or type + message."""
    if isinstance(error, BackendError):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"
