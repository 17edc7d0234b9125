"""Filter tasks: deterministic slices of a language's input, one per source file (a hub
source's data files too, filtering/hub_files.py; a hub source that cannot be listed, or a
`--shard i/n` run, is one task per source). A task runs the chain's filter blocks, writes
kept / rejects / quarantine / summary into its own folder, with what the language steps need of
each kept document (`ids.json`, the dedup arrays: filtering/dedup/signatures.py), and last a
completion marker (`done.json`) holding the task's key and what it wrote (sizes and checksums of
its files, for the language's manifest): a re-run, or a retry of the same task on another node,
finds the marker and returns at once.

A task carries its chain as checked spec objects and its language steps as built steps: they are
pickled to the worker, never turned back into mappings and validated again there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..options import ConfigModel
from ..storage import write_json
from .dedup import LanguageStep
from .dedup.signatures import IdWriter
from .filters import build_filter
from .runner import OUTPUT_FILES, FilterSummary, filter_documents, read_documents
from .sources import SourceSpec, iter_source, leaves_folder

DONE_MARKER = "done.json"


@dataclass(frozen=True)
class FilterTask:
    language: str
    index: int  # in the language's task list: the order outputs are read in
    source: dict[str, Any]  # SourceSpec fields
    path: str  # one file, or an hf: id
    shard: tuple[int, int]
    filters: tuple[ConfigModel, ...]  # the chain's filter entries (checked options models)
    steps: tuple[LanguageStep, ...]  # the chain's language steps (dedup)
    folder: str
    base: str | None = None  # the source glob's base folder (symlinks may not leave it); None: the file's folder

    @property
    def key(self) -> str:
        """What the outputs depend on: a marker with another key is stale. Spelt as tasks made
        before specs travelled typed spelt it (each filter entry as sorted JSON, `dedup` None
        when the chain has none), so the finished tasks of older folders stay finished."""
        described: dict[str, Any] = {
            "language": self.language, "index": self.index, "source": self.source, "path": self.path, "shard": self.shard,
            "filters": [json.dumps(spec.model_dump(), sort_keys=True) for spec in self.filters], "dedup": None,
        }
        described.update({step.key_field: step.task_key() for step in self.steps})
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
    """The task's result when its marker is there and has this task's key."""
    marker = Path(task.folder) / DONE_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("key") != task.key:
        return None
    if "files" in data and not _sizes_match(Path(task.folder), data["files"]):
        return None  # an output changed after the task (damaged, edited): the task runs again
    if "files" not in data:  # a marker written before tasks recorded their files: record them now
        data["files"] = describe_files(Path(task.folder))
        write_json(marker, data)
    return {"summary": data["summary"], "files": data["files"]}


def run_filter_task(task: FilterTask) -> dict[str, Any]:
    """Run one task (or find it done); returns its summary and files. Runs in a worker process
    or on a Ray node: everything it needs is in `task`, everything it makes is in its folder."""
    done = finished(task)
    folder = Path(task.folder)
    if done is not None:
        _sign_again(task, folder)
        return done
    filters = [build_filter(spec, task.language) for spec in task.filters]
    signers = [IdWriter()] + [step.signer() for step in task.steps]

    def on_kept(doc) -> None:
        for signer in signers:
            signer.add(doc)

    summary = filter_documents(
        iter_source(SourceSpec(**task.source), task.path, task.shard, task.base), filters, folder, progress=False, on_kept=on_kept
    )
    for signer in signers:
        signer.save(folder)
    result = {"summary": summary.to_dict(), "files": describe_files(folder)}
    write_json(folder / DONE_MARKER, {"key": task.key, **result})
    return result


def _sizes_match(folder: Path, files: dict[str, dict[str, Any]]) -> bool:
    try:
        return all((folder / name).stat().st_size == entry["bytes"] for name, entry in files.items())
    except OSError:
        return False


def _sign_again(task: FilterTask, folder: Path) -> None:
    """A finished task whose arrays were dropped after its language's manifest (a reduce is
    running again: another task changed) signs its kept documents again, as it did when it ran."""
    missing = [signer for signer in (step.signer() for step in task.steps) if not signer.saved(folder)]
    if not missing:
        return
    for doc in read_documents(folder / "kept.jsonl"):
        for signer in missing:
            signer.add(doc)
    for signer in missing:
        signer.save(folder)


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """{file name: {bytes, sha256, lines}} of a task's output files (read back once, by the task
    itself, so no later pass over the language's text is needed to check them)."""
    described = {}
    for name in OUTPUT_FILES:
        digest, size, lines = hashlib.sha256(), 0, 0
        with open(folder / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
        described[name] = {"bytes": size, "sha256": digest.hexdigest(), "lines": lines}
    return described


def summary_of(result: dict[str, Any]) -> FilterSummary:
    return FilterSummary.from_dict(result["summary"])
