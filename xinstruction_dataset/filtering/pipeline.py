"""Recipe-level wiring: which sources, filter blocks and language steps a language gets, the
tasks they make, and the whole-language decisions taken over the tasks' outputs.

    plan_tasks         one task per source file (see tasks.py), carrying the chain's filter
                       entries and its language steps (filtering/dedup/), typed
    executor           every task of every language at once, on local processes or Ray, and
                       each language's reduce as soon as its tasks are done (`map_reduce`)
    reduce_language    repeated ids, then each language step (dedup), over the tasks' ids and
                       signatures only: the removal list (removals.jsonl), quarantine.jsonl, the
                       summary's counts and the manifest (kept.py); the text stays in the tasks
    the driver         summary.json, then manifest.json last (and, with `consolidate`, the
                       merged kept.jsonl and rejects.jsonl of older runs)
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from ..documents import Document
from ..errors import UsageError
from ..execution import Executor, Group, make_executor
from ..layout import RunLayout
from ..storage import AtomicFile, write_json
from .dedup import LanguageTasks, Removal, find_repeated_ids, plan_steps
from .kept import clear_language, consolidate, manifest_of, read_manifest, write_manifest, write_removals
from .runner import FilterSummary
from .hub_files import HubListings, task_inputs
from .sources import BadInput, SourceSpec, glob_base, iter_source
from .tasks import FilterTask, finished, run_filter_task, summary_of, task_folder


log = logging.getLogger(__name__)


class RecipeLike(Protocol):
    """What filtering needs of a `recipe.Recipe` (the recipe imports filtering, not the reverse)."""

    filters: list[Any]
    output_path: Path

    def sources_for(self, language: str) -> list[SourceSpec]: ...

    def resolve(self, path: str) -> str: ...

# The chain an ad-hoc run (`--input` without a recipe) gets; recipes list their own.
DEFAULT_FILTERS: list[dict] = [
    {"type": "length", "min_chars": 200, "max_chars": 20000},
    {"type": "mojibake"},
    {"type": "markup"},
    {"type": "boilerplate"},
    {"type": "repetition"},
    {"type": "language"},  # each detector's own default threshold (langdetect 0.9, fasttext 0.2)
    {"type": "dedup"},
]


def output_dir_for(recipe: RecipeLike, language: str, shard: tuple[int, int] = (0, 1)) -> Path:
    return RunLayout(recipe.output_path).filtered(language, shard)


def iter_language(recipe: RecipeLike, language: str, shard: tuple[int, int] = (0, 1)) -> Iterator[Document | BadInput]:
    """All sources of `language`, chained, each sharded the same way."""
    sources = _sources(recipe, language)
    return itertools.chain.from_iterable(iter_source(s, recipe.resolve(s.path), shard) for s in sources)


def _sources(recipe: RecipeLike, language: str) -> list[SourceSpec]:
    sources = recipe.sources_for(language)
    if not sources:
        raise UsageError(f"the recipe has no source for language {language!r}; add one under `sources:`")
    return sources


def plan_tasks(recipe: RecipeLike, language: str, out_dir: Path, shard: tuple[int, int] = (0, 1)) -> list[FilterTask]:
    """The language's tasks, in input order. A `--shard i/n` run counts records across the files
    of a source, so there each source is one task (a source's records stay in one stream)."""
    filters, steps = plan_steps(recipe.filters)
    tasks: list[FilterTask] = []
    listings = HubListings(RunLayout(recipe.output_path).source_listings(language))
    for source in _sources(recipe, language):
        path = recipe.resolve(source.path)
        files = [path] if shard[1] > 1 else task_inputs(source, path, listings)  # a hub source: one task per data file
        base = None if path.startswith("hf:") else glob_base(path)
        for file in files:
            index = len(tasks)
            tasks.append(FilterTask(language, index, source.task_fields(), file, shard, tuple(filters), steps, str(task_folder(out_dir, index)), base))
    return tasks


def filter_languages(
    recipe: RecipeLike,
    languages: list[str],
    *,
    executor: Executor | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    consolidate_files: bool = False,
) -> dict[str, FilterSummary]:
    """Filter every language: all tasks on the executor at once, each language's reduce on the
    same workers as soon as its tasks are done (not one language after another on this process
    at the end). Finished tasks (completion markers) are not run again. `consolidate_files`
    also writes each language's merged kept.jsonl and rejects.jsonl (kept.consolidate)."""
    executor = executor or make_executor()
    start = time.perf_counter()
    plans = {language: plan_tasks(recipe, language, output_dir_for(recipe, language, shard), shard) for language in languages}
    summaries: dict[str, FilterSummary] = {}
    pending = []
    for language in languages:
        out_dir = output_dir_for(recipe, language, shard)
        summary = current_summary(plans[language], out_dir)
        if summary is not None:  # every task done as its manifest lists it: nothing to decide again
            summaries[language] = summary
            continue
        clear_language(out_dir)
        pending.append(language)
    tasks = [task for language in pending for task in plans[language]]
    merges, position = [], 0
    for language in pending:
        count = len(plans[language])
        merges.append(Group(LanguageReduce(tuple(plans[language]), str(output_dir_for(recipe, language, shard))), tuple(range(position, position + count))))
        position += count
    if pending:
        executor = executor.sized_for(_input_bytes(tasks))
        log.info("filter: %d task(s) for %d language(s) on the %s", len(tasks), len(pending), executor.describe())
        reduced = executor.map_reduce(run_filter_task, tasks, run_language_reduce, merges, desc="filter tasks", progress=progress)
        for language, (summary, manifest) in zip(pending, reduced):
            out_dir = output_dir_for(recipe, language, shard)
            summary.elapsed_s = time.perf_counter() - start
            write_json(out_dir / "summary.json", summary.to_dict())
            write_manifest(out_dir, manifest)  # last: its presence says every file it lists is complete
            drop_transient_files(plans[language])
            summaries[language] = summary
    for language in languages:
        if consolidate_files:
            consolidate(output_dir_for(recipe, language, shard))
    return {language: summaries[language] for language in languages}


def current_summary(tasks: list[FilterTask], out_dir: Path) -> FilterSummary | None:
    """The language's summary when its manifest is current: every task finished with its key, and
    the manifest lists exactly the files their markers do (so the reduce would decide the same)."""
    manifest = read_manifest(out_dir)
    summary_file = out_dir / "summary.json"
    if manifest is None or not summary_file.is_file() or len(manifest["tasks"]) != len(tasks):
        return None
    for task, listed in zip(tasks, manifest["tasks"]):
        done = finished(task)
        if done is None or Path(task.folder).relative_to(out_dir).as_posix() != listed["folder"]:
            return None
        if {name: {k: v for k, v in entry.items() if k != "path"} for name, entry in listed["files"].items()} != done["files"]:
            return None
    removals = out_dir / manifest["removals"]["path"]
    if not (out_dir / "quarantine.jsonl").is_file() or not removals.is_file() or removals.stat().st_size != manifest["removals"]["bytes"]:
        return None
    try:
        return FilterSummary.from_dict(json.loads(summary_file.read_text(encoding="utf-8")))
    except (ValueError, KeyError):
        return None  # damaged: the reduce writes it again


def drop_transient_files(tasks: list[FilterTask]) -> None:
    """Once the manifest is written, what only the reduce needed (MinHash signatures: 512 bytes a
    document) goes; a later reduce (a task changed) has the finished tasks make it again."""
    for task in tasks:
        for step in task.steps:
            for name in step.transient_files:
                (Path(task.folder) / name).unlink(missing_ok=True)


def _input_bytes(tasks: list[FilterTask]) -> int | None:
    """Bytes of the tasks' input files; None when a source is streamed (size unknown)."""
    total = 0
    for task in tasks:
        if task.path.startswith("hf:") or not os.path.isfile(task.path):
            return None
        total += os.path.getsize(task.path)
    return total


def filter_language(
    recipe: RecipeLike, language: str, *, shard: tuple[int, int] = (0, 1), executor: Executor | None = None, progress: bool = True
) -> FilterSummary:
    return filter_languages(recipe, [language], executor=executor, shard=shard, progress=progress)[language]


@dataclass(frozen=True)
class LanguageReduce:
    """The reduce task of a language: its filter tasks (input order) and its output folder."""

    tasks: tuple[FilterTask, ...]
    out_dir: str


def run_language_reduce(reduce: LanguageReduce, results: list[dict[str, Any]]) -> tuple[FilterSummary, dict[str, Any]]:
    """`reduce_language` as an executor reduce (runs in a worker process or on a Ray node)."""
    return reduce_language(list(reduce.tasks), results, Path(reduce.out_dir))


def reduce_language(tasks: list[FilterTask], results: list[dict[str, Any]], out_dir: Path) -> tuple[FilterSummary, dict[str, Any]]:
    """The whole-language decisions over `tasks`, from their ids and signatures only: repeated
    ids first (a document dropped for its id is nobody's duplicate), then each language step.
    Writes removals.jsonl and quarantine.jsonl; returns the summary and the manifest (the driver
    writes both, the manifest last)."""
    summary = FilterSummary()
    for result in results:
        summary.add(summary_of(result))
    folders = [Path(t.folder) for t in tasks]
    language = LanguageTasks(folders, [result["files"]["kept.jsonl"]["lines"] for result in results])
    removals = find_repeated_ids(language)
    excluded = np.zeros(language.size, dtype=bool)
    for step in tasks[0].steps if tasks else ():
        _exclude(language, excluded, removals)
        documents_in = int((~excluded).sum())
        decided = sorted(step.decide(language, excluded), key=lambda r: (r.task, r.row))
        block, stats = step.stats(documents_in, decided)
        summary.block_stats[block] = stats
        removals += decided
    for removal in sorted(removals, key=lambda r: (r.task, r.row)):  # counted in input order, as rejects are
        summary.kept -= 1
        summary.rejected[removal.counted_as] += 1
    _merge_quarantine(folders, out_dir)
    entry = write_removals(out_dir, removals)
    return summary, manifest_of(out_dir, folders, [result["files"] for result in results], entry)


def _exclude(language: LanguageTasks, excluded: np.ndarray, removals: list[Removal]) -> None:
    for removal in removals:
        excluded[int(language.offsets[removal.task]) + removal.row] = True


def _merge_quarantine(folders: list[Path], out_dir: Path) -> None:
    """The tasks' quarantine files, in task order, as one (unreadable input: small, and read by
    people, who want one file)."""
    with AtomicFile(out_dir / "quarantine.jsonl") as sink:
        for folder in folders:
            with open(folder / "quarantine.jsonl", encoding="utf-8") as f:
                for line in f:
                    sink.write(line)
