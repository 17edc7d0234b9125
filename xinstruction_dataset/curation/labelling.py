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

With several labelling drivers (drivers.py), driver k of K takes the shard's documents whose id
hashes to k (`driver_of`, salted: independent of `shard_of`) and its sink writes the same four
files as parts (`<kind>-IIIII-of-NNNNN.driver-kkkkk-of-KKKKK.*`). Once every part of a language
is there, `combine_parts` merges them by document id into the shard's own files: the bytes a
single driver writes, since each part is sorted the same total way and the counters add up.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import shutil
from collections import Counter
from pathlib import Path
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


def driver_of(doc_id: str, count: int) -> int:
    """The labelling driver of a document: a stable hash of its id, salted so that it splits
    every `--shard` evenly (the unsalted `shard_of` would give a shard's documents one driver)."""
    return int.from_bytes(hashlib.sha256(b"driver\0" + doc_id.encode("utf-8")).digest()[:8], "big") % count


def documents(
    stream: Iterable[Document], language: str, shard: tuple[int, int] | None, driver: tuple[int, int] | None = None,
) -> Iterator[Document | Reject]:
    """The documents of `stream` (filtering/kept.py) in shard `shard` (None: every document, the
    stream is the shard), and of those, driver k's of K (`driver`; None: all of them). Every
    copy of an id goes to one driver, so a repeated id is rejected by the driver of its first."""
    seen: set[str] = set()  # ids only: memory grows by ~100 bytes a document, never by its text
    for doc in stream:
        if shard is not None and shard_of(doc.id, shard[1]) != shard[0]:
            continue
        if driver is not None and driver_of(doc.id, driver[1]) != driver[0]:
            continue
        if doc.id in seen:
            yield Reject.of(doc, language, "input:duplicate_id")
            continue
        seen.add(doc.id)
        yield doc


class LabelSink:
    """The outcomes of one language shard, in any order; written sorted by `finish()`."""

    def __init__(self, layout: RunLayout, language: str, shard: tuple[int, int], driver: tuple[int, int] | None = None) -> None:
        self.layout, self.language, self.shard, self.driver = layout, language, shard, driver
        self.spill_folder = layout.spill(language, shard) if driver is None else layout.driver_spill(language, shard, driver)
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
            with AtomicFile(self._file(kind)) as f:
                for _, line in spill.lines():
                    f.write(line + "\n")
            spill.remove()
        write_json(self._file("meta"), {**meta, "counts": dict(self.counts), **({"rejected": dict(self.rejected)} if self.driver else {})})
        clear_spills(self.spill_folder)

    def _file(self, kind: str) -> Path:
        if self.driver is None:
            return self.layout.work(self.language, kind, self.shard)
        return self.layout.driver_work(self.language, kind, self.shard, self.driver)


KEYED_FILES = {"pairs": ("doc", "id"), "rejects": ("doc_id",), "judge_replies": ("doc_id",)}  # each file's sort key


def parts_done(layout: RunLayout, language: str, shard: tuple[int, int], drivers: int) -> bool:
    """Whether every driver of `drivers` finished its part of the language's shard."""
    return all(layout.driver_work(language, "meta", shard, (k, drivers)).is_file() for k in range(drivers))


def combine_parts(layout: RunLayout, language: str, shard: tuple[int, int], drivers: int) -> tuple[Counter, Counter]:
    """Write the shard's work files from its `drivers` drivers' parts (each sorted, merged by the
    same (key, line) order a single driver's sink sorts by), meta last; then remove every part of
    the shard, of this driver count or a stale one. The shard's (counts, rejected)."""
    parts = [(k, drivers) for k in range(drivers)]
    for kind, key_path in KEYED_FILES.items():
        files = [layout.driver_work(language, kind, shard, part) for part in parts]
        with AtomicFile(layout.work(language, kind, shard)) as f:
            for _, line in heapq.merge(*(_keyed_lines(file, key_path) for file in files)):
                f.write(line + "\n")
    metas = [json.loads(layout.driver_work(language, "meta", shard, part).read_text(encoding="utf-8")) for part in parts]
    counts: Counter = Counter(documents=0, pool=0, pool_kept_exhausted=0)
    rejected: Counter = Counter()
    for meta in metas:
        counts.update(meta.pop("counts"))
        rejected.update(meta.pop("rejected"))
    write_json(layout.work(language, "meta", shard), {**metas[0], "counts": dict(counts)})
    remove_parts(layout, language, shard)
    return counts, rejected


def remove_parts(layout: RunLayout, language: str, shard: tuple[int, int]) -> None:
    """Drop the shard's driver parts (any driver count): a combined shard or a count no longer run."""
    for path in layout.driver_parts(language, shard):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _keyed_lines(path: Path, key_path: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(key, line) of a part file, the order `SortedSpill` wrote it in."""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line:
                value: Any = json.loads(line)
                for part in key_path:
                    value = value[part]
                yield value, line
