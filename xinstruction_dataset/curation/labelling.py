"""The label phase of one language shard: its documents streamed from disk, its outcomes collected.

`documents()` streams the filtered documents of a shard (a repeated id is a reject, not a second
document). `LabelSink` takes each document's outcome as the engine finishes it, in completion
order, spills pairs and rejects to sorted runs, and `finish()` writes the shard's work files in
document-id order (see layout.RunLayout.work):

    pairs-IIIII-of-NNNNN.jsonl     one labelled pair per pooled document (diversify's input)
    rejects-IIIII-of-NNNNN.jsonl   every other document, with the reason of the stage that dropped it
    judge_replies-IIIII-of-NNNNN.jsonl  every judged document's judge replies, in the order made
    meta-IIIII-of-NNNNN.json       models, counters and the resolved config; written last, so its
                                   presence marks the shard finished
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any, Iterable, Iterator

from ..documents import Document
from ..layout import RunLayout
from ..storage import AtomicFile, write_json
from .pairs import Reject
from .spill import SortedSpill, clear_spills
from .stage import Work


def shard_of(doc_id: str, count: int) -> int:
    """The shard of a document: a stable hash of its id, the same on every machine."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") % count


def documents(stream: Iterable[Document], language: str, shard: tuple[int, int] | None) -> Iterator[Document | Reject]:
    """The documents of `stream` (filtering/kept.py) in shard `shard` (None: every document, the
    stream is the shard)."""
    seen: set[str] = set()  # ids only: memory grows by ~100 bytes a document, never by its text
    for doc in stream:
        if shard is not None and shard_of(doc.id, shard[1]) != shard[0]:
            continue
        if doc.id in seen:
            yield Reject.of(doc, language, "input:duplicate_id")
            continue
        seen.add(doc.id)
        yield doc


class LabelSink:
    """The outcomes of one language shard, in any order; written sorted by `finish()`."""

    def __init__(self, layout: RunLayout, language: str, shard: tuple[int, int]) -> None:
        self.layout, self.language, self.shard = layout, language, shard
        self.spill_folder = layout.spill(language, shard)
        clear_spills(self.spill_folder)  # a killed run's runs: everything is rebuilt from the cache
        self.pairs = SortedSpill(self.spill_folder, "pairs")
        self.rejects = SortedSpill(self.spill_folder, "rejects")
        self.judge_replies = SortedSpill(self.spill_folder, "judge_replies")
        self.counts: Counter = Counter(documents=0, pool=0, pool_kept_exhausted=0)  # deterministic
        self.rejected: Counter = Counter()  # reason -> documents
        self.calls: Counter = Counter()  # this run only: <stage>_called/_cached/_failed

    def add(self, outcome: Work | Reject) -> None:
        self.counts["documents"] += 1
        self.counts.update(outcome.events)
        if outcome.judged:
            doc_id = outcome.doc_id if isinstance(outcome, Reject) else outcome.doc.id
            self.judge_replies.add(doc_id, {"doc_id": doc_id, "judgements": list(outcome.judged)})
        if isinstance(outcome, Reject):
            self.rejected[outcome.reason] += 1
            self.rejects.add(outcome.doc_id, outcome.to_dict())
            return
        (pair,) = outcome.pairs
        self.counts["pool"] += 1
        self.counts["pool_kept_exhausted"] += pair.label == "needs_refinement"
        self.pairs.add(pair.doc.id, pair.to_dict())

    def finish(self, meta: dict[str, Any]) -> None:
        """Write the work files (pairs, rejects and judge replies sorted, then meta) and drop the spill runs."""
        for spill, kind in ((self.pairs, "pairs"), (self.rejects, "rejects"), (self.judge_replies, "judge_replies")):
            with AtomicFile(self.layout.work(self.language, kind, self.shard)) as f:
                for _, line in spill.lines():
                    f.write(line + "\n")
            spill.remove()
        write_json(self.layout.work(self.language, "meta", self.shard), {**meta, "counts": dict(self.counts)})
        clear_spills(self.spill_folder)
