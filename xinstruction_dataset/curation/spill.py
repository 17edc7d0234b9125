"""`SortedSpill`: JSON lines added in any order, read back sorted, in bounded memory.

The engine finishes documents in completion order, but every output is in document-id order.
Rather than a reorder window (which would hold the scheduler behind one slow document), lines
are buffered, sorted and spilled to run files of `max_rows` lines, and k-way merged
(`heapq.merge`) when read. The order is total, (key, line text), so equal keys still sort the
same way every time: the output is byte-identical whatever order the lines came in.
"""

from __future__ import annotations

import heapq
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

DEFAULT_MAX_ROWS = 2000


class SortedSpill:
    def __init__(self, folder: Path, name: str, *, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.folder, self.name, self.max_rows = folder, name, max_rows
        self.buffer: list[tuple[str, str]] = []
        self.runs: list[Path] = []
        self.count = 0

    def add(self, key: str, row: dict[str, Any]) -> None:
        self.buffer.append((key, json.dumps(row, ensure_ascii=False, sort_keys=True)))
        self.count += 1
        if len(self.buffer) >= self.max_rows:
            self._spill()

    def lines(self) -> Iterator[tuple[str, str]]:
        """Every (key, line) in (key, line) order; the runs are read lazily."""
        self.buffer.sort()
        return heapq.merge(*(_read_run(run) for run in self.runs), iter(self.buffer))

    def remove(self) -> None:
        for run in self.runs:
            run.unlink(missing_ok=True)
        self.runs, self.buffer = [], []

    def _spill(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.buffer.sort()
        run = self.folder / f"{self.name}-{len(self.runs):05d}.run"
        with open(run, "w", encoding="utf-8") as f:
            # json.dumps(key) has no raw tab, so the first tab ends it.
            f.writelines(f"{json.dumps(key, ensure_ascii=False)}\t{line}\n" for key, line in self.buffer)
        self.runs.append(run)
        self.buffer = []


def clear_spills(folder: Path) -> None:
    """Remove a killed run's leftover run files (they are never read again)."""
    if folder.exists():
        shutil.rmtree(folder)


def _read_run(path: Path) -> Iterator[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        for raw in f:
            key, line = raw.rstrip("\n").split("\t", 1)
            yield json.loads(key), line
