"""The sample browser's data: every curated and rejected pair, in pages the page loads on demand.

    data/index.js          one small row per sample (language, kind, label, round, reason,
                           score), as columns: all the browser's filters run on it
    data/p/NNNNN.js        previews of samples [N x PAGE_ROWS, (N+1) x PAGE_ROWS): ids, the
                           instruction and response cut to PREVIEW_CHARS, the reason
    data/t/NNNNN.js        the same samples in full: instruction, response, provenance or detail

Sample `i` is in pages `i // PAGE_ROWS`; a page of the browser loads only the previews it shows,
and the full text of a sample when it is opened.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data_files import write_data_file

PAGE_ROWS = 250
WRITERS = 2  # pages compressed at once (zlib releases the GIL); at most 2 x WRITERS pages in memory
PREVIEW_CHARS = 300
NO_ROUND = -1


@dataclass
class Sample:
    kind: str  # "curated" or "rejected"
    language: str
    id: str  # the record id (curated) or the document id (rejected)
    doc_id: str
    instruction: str
    output: str
    label: str = ""
    round: int = NO_ROUND
    score: float | None = None
    reason: str = ""  # the full reject reason; "" for a curated record
    group: str = ""  # the reason as the summaries group it (`generate:not_english`)
    cluster: int | None = None
    source: str = ""
    url: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # provenance (curated) or the reject's detail


class _Column:
    """Values stored once in a dictionary, and one number per sample."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.codes: dict[Any, int] = {}
        self.rows: list[int] = []

    def add(self, value: Any) -> None:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.values)
            self.values.append(value)
        self.rows.append(code)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "rows": self.rows}


class SampleBook:
    """Writes samples into a report folder's data files as they come (memory: one page)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.columns = {name: _Column() for name in ("language", "kind", "label", "round", "reason")}
        self.scores: list[float | None] = []
        self.previews: list[dict[str, Any]] = []
        self.texts: list[dict[str, Any]] = []
        self.count = 0
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="report-pages")
        self._writing: list[Future] = []

    def add(self, sample: Sample) -> int:
        number = self.count
        for name, value in (("language", sample.language), ("kind", sample.kind), ("label", sample.label), ("round", sample.round), ("reason", sample.group)):
            self.columns[name].add(value)
        self.scores.append(sample.score)
        self.previews.append({
            "id": sample.id, "doc": sample.doc_id, "ins": sample.instruction[:PREVIEW_CHARS], "out": sample.output[:PREVIEW_CHARS],
            "ins_len": len(sample.instruction), "out_len": len(sample.output), "reason": sample.reason, "cluster": sample.cluster,
        })
        self.texts.append({"ins": sample.instruction, "out": sample.output, "source": sample.source, "url": sample.url, "details": sample.details})
        self.count += 1
        if len(self.previews) == PAGE_ROWS:
            self._flush()
        return number

    def _flush(self) -> None:
        if not self.previews:
            return
        page = (self.count - 1) // PAGE_ROWS
        for kind, rows in (("p", self.previews), ("t", self.texts)):
            self._writing.append(self._writers.submit(write_data_file, self.folder, f"{kind}/{page:05d}", rows))
        self.previews, self.texts = [], []
        while len(self._writing) > 2 * WRITERS:
            self._writing.pop(0).result()  # raises a writer's error here (a full disk)

    def abort(self) -> None:
        """Stop writing (the report failed; its staging folder goes)."""
        self._writers.shutdown(wait=True, cancel_futures=True)

    def close(self) -> dict[str, Any]:
        """Write the last page and the index; returns the index."""
        self._flush()
        try:
            for written in self._writing:
                written.result()
        finally:
            self._writers.shutdown(cancel_futures=True)
        index = {
            "count": self.count,
            "page_rows": PAGE_ROWS,
            "preview_chars": PREVIEW_CHARS,
            "columns": {name: column.to_dict() for name, column in self.columns.items()},
            "score": self.scores,
        }
        write_data_file(self.folder, "index", index)
        return index
