"""The labelling engine: every document of every language moves through the stages on its own.

A document's next call is issued the moment its previous one returns: there is no stage barrier
and no per-language barrier. All documents share one `CallScheduler` per distinct backend, so
a backend ramps up once per run and the generator, judge and refiner share a server's slots
when they are the same server. New documents are admitted while fewer than
`ADMIT_PER_SLOT x (sum of the schedulers' limits)` are in flight, which keeps every endpoint's
queue full from the first request to the last and bounds memory (documents are streamed from
disk; finished ones go to the language's `LabelSink` at once).

While it runs, `progress.LiveProgress` shows documents done / remaining and, per endpoint, the
calls in flight against the limit, the failures, tokens/s and (with prices) money so far.

Every call goes out with its `CallLabel` (stage, role, language, document, round, candidate),
which the scheduler writes into the call's ledger row (llm/ledger.py). With a `Budget`, each
document is admitted only if the budget allows one more (budget.py); once it refuses, no
document is admitted, the documents in flight finish, and `stopped` names the limit reached.
A language whose documents were not all admitted then never runs its `finish`: its work files
stay as they were, so nothing half-labelled is diversified or exported.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from ..documents import Document
from ..errors import EnvironmentFault
from ..llm.calls import CallScheduler
from ..llm.ledger import CallLabel, Price
from .budget import Budget
from .flow import FIRST
from .pairs import Reject
from .progress import LiveProgress, endpoint_name
from .stage import DONE, Stage, Work

logger = logging.getLogger(__name__)

ADMIT_PER_SLOT = 2  # documents in flight per server slot: each has one or two calls queued
# Fresh calls failing in a row (each after the backend's own retries) that mean the backend is
# down, not one bad document: the run stops instead of burning through every document.
FAILING_IN_A_ROW = 16


class BackendDown(EnvironmentFault):
    """Every recent call to a backend failed: the run stops; finished calls stay in the cache and
    the failed documents are tried again by the next run."""


@dataclass
class LanguageJob:
    """One language (shard) to label: its documents, streamed, and where its outcomes go.
    `documents` may yield a `Reject` for input that never reaches a stage (a duplicate id)."""

    language: str
    documents: Iterable[Document | Reject]
    sink: "Sink"
    finish: Callable[[], None]  # writes the language's results; run in a worker thread
    active: int = 0
    fed: bool = False  # every document admitted (a budget stop leaves it False)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


CLOSE_TIMEOUT_S = 10.0


async def _close(scheduler: CallScheduler) -> None:
    """Close a backend's clients, within a deadline: a client whose requests were just cancelled
    must not hold the run open (the results are all stored; the sockets go with the process)."""
    try:
        await asyncio.wait_for(scheduler.aclose(), timeout=CLOSE_TIMEOUT_S)
    except asyncio.TimeoutError:
        logger.warning("closing the clients of %s took over %.0f s; left to the process exit", scheduler.backend.model_id, CLOSE_TIMEOUT_S)


class Sink(Protocol):
    """Where a language's outcomes go (see labelling.LabelSink)."""

    calls: Counter  # <stage>_called / _cached / _failed

    def add(self, outcome: Work | Reject) -> None: ...


class Engine:
    def __init__(
        self, stages: dict[str, Stage], schedulers: dict[str, CallScheduler], *, progress: bool = True, total: int | None = None,
        budget: Budget | None = None, prices: dict[str, Price] | None = None, currency: str = "",
    ) -> None:
        self.stages = stages
        self.schedulers = schedulers  # by model role (config.ROLES: the roles the registered stages declare)
        self.distinct = list({id(s): s for s in schedulers.values()}.values())
        self.progress = progress
        self.total = total
        self.budget = budget
        self.stopped: str | None = None  # the budget limit that stopped admissions
        self.in_flight_docs = 0
        self._room: asyncio.Condition | None = None
        self.live = LiveProgress(self.endpoint_names(), total, enabled=progress, prices=prices, currency=currency)

    def endpoint_names(self) -> dict[str, CallScheduler]:
        """Each distinct scheduler by its name in the progress view (its roles, model, servers)."""
        return {
            endpoint_name([role for role, s in self.schedulers.items() if s is scheduler], scheduler): scheduler
            for scheduler in self.distinct
        }

    async def run(self, jobs: list[LanguageJob]) -> None:
        """Label every job's documents; each job's `finish` runs as soon as its last one is done."""
        self._room = asyncio.Condition()
        # Before the first call: a stage's lazy load would stall the loop, and so every slot.
        await asyncio.to_thread(self._prepare_stages)
        ticker = asyncio.create_task(self.live.ticking()) if self.progress else None
        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    if self.stopped is None:
                        await self._feed(job, group)
        except BaseExceptionGroup as group_error:
            # One document's failure (the cache's disk is full, a bug) stops the run: raise
            # that error itself, not the group the task group wraps it in.
            raise group_error.exceptions[0] from None
        finally:
            if ticker is not None:
                ticker.cancel()
                await asyncio.wait([ticker])  # gone before the final figures are drawn
            self.live.close()
            for scheduler in self.distinct:
                await _close(scheduler)

    def _prepare_stages(self) -> None:
        for stage in self.stages.values():
            stage.prepare()

    def admit_limit(self) -> int:
        return ADMIT_PER_SLOT * sum(s.limit for s in self.distinct)

    async def _feed(self, job: LanguageJob, group: asyncio.TaskGroup) -> None:
        for item in job.documents:
            if isinstance(item, Reject):
                job.sink.add(item)
                self.live.document_done()  # counted in the total: done, without a call
                continue
            async with self._room:
                await self._room.wait_for(lambda: self.in_flight_docs < self.admit_limit())
            if self.budget is not None and (reached := self.budget.refuses(self.in_flight_docs)) is not None:
                self.stopped = reached  # the in-flight documents finish; this language is not finished
                return
            self.in_flight_docs += 1
            job.active += 1
            group.create_task(self._document(job, item))
        job.fed = True
        if job.active == 0:
            job.idle.set()
        group.create_task(self._finish(job))

    async def _finish(self, job: LanguageJob) -> None:
        await job.idle.wait()
        await asyncio.to_thread(job.finish)

    async def advance(self, item: Work, calls: Counter, entries: list | None = None) -> Work | Reject:
        """Move one document through the stages until it is done or rejected; `calls` counts
        its calls per stage (called, cached, failed), `entries` collects their ledger rows."""
        outcome: Work | Reject = item
        depth = 0  # the stages this document has been through: its calls' priority (llm/calls.py SlotQueue)
        while isinstance(outcome, Work) and outcome.next != DONE:
            stage = self.stages[outcome.next]
            scheduler = self.schedulers[stage.role]
            requests = stage.requests(outcome)
            labels = [
                CallLabel(stage.name, stage.role, outcome.language, outcome.doc.id, round_, candidate)
                for round_, candidate in stage.call_rounds(outcome, len(requests))
            ]
            results = await asyncio.gather(
                *(scheduler.complete(r, label=label, priority=depth) for r, label in zip(requests, labels))
            )
            depth += 1
            for result in results:
                calls[f"{stage.name}_{'cached' if result.cached else 'called'}"] += 1
                calls[f"{stage.name}_failed"] += not result.ok
                if entries is not None and result.entry is not None:
                    entries.append(result.entry)
            self._stop_if_down(scheduler)
            await self._limit_may_have_grown()
            outcome = stage.accept(outcome, list(results))
        return outcome

    def _stop_if_down(self, scheduler: CallScheduler) -> None:
        if scheduler.failing_in_a_row >= FAILING_IN_A_ROW:
            raise BackendDown(
                f"{scheduler.backend.model_id}: the last {scheduler.failing_in_a_row} calls failed, none succeeded "
                f"(last error: {scheduler.last_error}); check the endpoints, then run the same command again: "
                "finished calls are kept, the failed documents are retried"
            )

    async def _limit_may_have_grown(self) -> None:
        """A remote backend raises its limit as calls succeed (its /info, its ramp): let the
        feeder admit more documents now rather than when the next document finishes."""
        if self._room is not None and self.in_flight_docs < self.admit_limit():
            async with self._room:
                self._room.notify()

    async def _document(self, job: LanguageJob, doc: Document) -> None:
        entries: list = []
        job.sink.add(await self.advance(Work(doc, job.language, FIRST), job.sink.calls, entries))
        if self.budget is not None:
            self.budget.document_done(entries)
        await self._done(job)

    async def _done(self, job: LanguageJob) -> None:
        self.in_flight_docs -= 1
        job.active -= 1
        if job.fed and job.active == 0:
            job.idle.set()
        async with self._room:
            self._room.notify()
        self.live.document_done()
