"""The one shape of an LLM stage, and the work item that moves a document through the stages.

A stage is a module with one `Stage` subclass and its prompts beside it:

    requests(item)             -> [LLMRequest]         the calls this step of the document needs
    accept(item, results)      -> next Work | Reject   what the replies mean for the document

`accept` gets one `CallResult` per request, in request order, and returns the document's next
`Work` (naming the stage to run next, or `DONE`) or a `Reject` with its reason. Stages are pure
functions of the item and the stored replies, so a document's outcome does not depend on when
its calls finish, and a resumed run rebuilds it from the cache. The engine (`engine.py`) drives
every document on its own; the route between stages is set in `flow.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..documents import Document
from ..llm.backends.base import LLMRequest
from ..llm.calls import CallResult
from .pairs import Pair, Reject

DONE = "done"  # the `next` of a document whose best pair goes to the pool


@dataclass(frozen=True)
class Work:
    """A document in flight: the pairs it carries and where it goes next."""

    doc: Document
    language: str
    next: str
    pairs: tuple[Pair, ...] = ()  # candidates being judged, or the one pair being refined/kept
    attempt: int = 0  # judge attempts on the unlabelled pairs (malformed replies are retried)
    failures: tuple[tuple[int, str, Any], ...] = ()  # (candidate, reason, detail) of dropped pairs
    replies: tuple[tuple[int, str], ...] = ()  # (candidate, reply) of malformed judge replies so far
    events: tuple[str, ...] = ()  # counters this document adds to its language's summary
    judged: tuple[dict[str, Any], ...] = ()  # every judge reply so far, for the judge_replies side file

    def then(self, next: str, pairs: tuple[Pair, ...], *events: str, **changes: Any) -> "Work":
        return replace(self, next=next, pairs=pairs, events=self.events + events, **changes)

    def reject(self, reason: str, *events: str, **detail: Any) -> Reject:
        return replace(Reject.of(self.doc, self.language, reason, **detail), events=self.events + events, judged=self.judged)


class Stage(ABC):
    """One LLM step; `role` names the model that serves it (generator, judge or refiner)."""

    name: ClassVar[str]
    role: ClassVar[str]

    @abstractmethod
    def requests(self, item: Work) -> list[LLMRequest]:
        """The calls `item` needs now (at least one)."""

    @abstractmethod
    def accept(self, item: Work, results: list[CallResult]) -> Work | Reject:
        """The document's next step, from one result per request of `requests(item)`."""

    def call_rounds(self, item: Work, count: int) -> list[tuple[int, int]]:
        """(round, candidate) of each of the `count` requests of `requests(item)`, for the call
        ledger only: no pairs yet, candidate i of round 0; one request per unlabelled pair, that
        pair's; else a labelled pair being rewritten, its next round. A stage may say otherwise."""
        if not item.pairs:
            return [(0, c) for c in range(count)]
        unlabelled = [pair for pair in item.pairs if not pair.label]
        if len(unlabelled) == count:
            return [(pair.round, pair.candidate) for pair in unlabelled]
        return [(item.pairs[i % len(item.pairs)].round + 1, item.pairs[i % len(item.pairs)].candidate) for i in range(count)]
