"""Filter tasks: deterministic slices of a language's input, one per source file (a hub stream,
or a `--shard i/n` run, is one task per source). A task runs the chain without its dedup blocks,
writes kept / rejects / quarantine / summary plus the dedup signatures of what it kept into its
own folder, and last a completion marker (`done.json`) holding the task's key: a re-run, or a
retry of the same task on another node, finds the marker and returns at once. `ids.json` lists
the ids of what the task kept, in order (the language's reduce finds repeated ids in them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..storage import write_json
from .duplicates import DedupPlan, IdWriter, SignatureWriter
from .filters import build_filter
from .runner import FilterSummary, filter_documents
from .sources import SourceSpec, iter_source, leaves_folder

DONE_MARKER = "done.json"


@dataclass(frozen=True)
class FilterTask:
    language: str
    index: int  # in the language's task list: the order outputs are merged in
    source: dict[str, Any]  # SourceSpec fields
    path: str  # one file, or an hf: id
    shard: tuple[int, int]
    filters: tuple[str, ...]  # the chain's non-dedup entries, as JSON
    dedup: DedupPlan | None
    folder: str
    base: str | None = None  # the source glob's base folder (symlinks may not leave it); None: the file's folder

    @property
    def key(self) -> str:
        """What the outputs depend on: a marker with another key is stale."""
        described = {k: v for k, v in asdict(self).items() if k not in ("folder", "base")}
        file = Path(self.path)
        if not self.path.startswith("hf:") and file.is_file():
            stat = file.stat()
            described["file"] = [stat.st_size, stat.st_mtime_ns]
            if not self.source.get("follow_symlinks") and leaves_folder(self.path, self.base or str(file.parent)):
                described["refused"] = "symlink_outside_source"  # read before links were refused: run again
        return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def task_folder(language_dir: Path, index: int) -> Path:
    return language_dir / "tasks" / f"task-{index:05d}"


def finished(task: FilterTask) -> dict[str, Any] | None:
    """The task's summary when its marker is there and has this task's key."""
    marker = Path(task.folder) / DONE_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data["summary"] if data.get("key") == task.key else None


def run_filter_task(task: FilterTask) -> dict[str, Any]:
    """Run one task (or find it done); returns its summary as a dict. Runs in a worker process
    or on a Ray node: everything it needs is in `task`, everything it makes is in its folder."""
    done = finished(task)
    if done is not None:
        return done
    folder = Path(task.folder)
    filters = [build_filter(json.loads(spec), task.language) for spec in task.filters]
    kept = SignatureWriter(task.dedup) if task.dedup else IdWriter()
    summary = filter_documents(
        iter_source(SourceSpec(**task.source), task.path, task.shard, task.base),
        filters,
        folder,
        progress=False,
        on_kept=kept.add,
    )
    kept.save(folder)
    result = summary.to_dict()
    write_json(folder / DONE_MARKER, {"key": task.key, "summary": result})
    return result


def summary_of(result: dict[str, Any]) -> FilterSummary:
    return FilterSummary.from_dict(result)
