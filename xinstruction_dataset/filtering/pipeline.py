"""Recipe-level wiring: which sources and filters a language gets, the tasks they make, and the
whole-language dedup and merge that turn task outputs into the language's files.

    plan_tasks         one task per source file (see tasks.py)
    executor           every task of every language at once, on local processes or Ray, and
                       each language's merge as soon as its tasks are done (`map_reduce`)
    merge_language     repeated ids, then dedup, across the language's tasks (duplicates.py),
                       then kept.jsonl, rejects.jsonl and quarantine.jsonl in input order
                       (summary.json: the driver)
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

from ..documents import Document
from ..errors import UsageError
from ..execution import Executor, Group, make_executor
from ..layout import RunLayout
from ..redact import Scrubber
from ..storage import AtomicFile, write_json
from .duplicates import DEDUP_BLOCKS, DedupPlan, find_duplicates, find_repeated_ids
from .runner import OUTPUT_FILES, FilterSummary
from .hub_files import HubListings, task_inputs
from .sources import BadInput, SourceSpec, glob_base, iter_source
from .tasks import FilterTask, run_filter_task, summary_of, task_folder


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
    chain = [spec for spec in recipe.filters]
    filters = tuple(json.dumps(spec.model_dump(), sort_keys=True) for spec in chain if spec.type not in DEDUP_BLOCKS)
    dedup = DedupPlan.from_chain(chain)
    tasks: list[FilterTask] = []
    listings = HubListings(RunLayout(recipe.output_path).source_listings(language))
    for source in _sources(recipe, language):
        path = recipe.resolve(source.path)
        files = [path] if shard[1] > 1 else task_inputs(source, path, listings)  # a hub source: one task per data file
        base = None if path.startswith("hf:") else glob_base(path)
        for file in files:
            index = len(tasks)
            tasks.append(FilterTask(language, index, source.task_fields(), file, shard, filters, dedup, str(task_folder(out_dir, index)), base))
    return tasks


def filter_languages(
    recipe: RecipeLike,
    languages: list[str],
    *,
    executor: Executor | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> dict[str, FilterSummary]:
    """Filter every language: all tasks on the executor at once, each language's dedup and merge
    on the same workers as soon as its tasks are done (not one language after another on this
    process at the end). Finished tasks (completion markers) are not run again."""
    executor = executor or make_executor()
    start = time.perf_counter()
    plans = {language: plan_tasks(recipe, language, output_dir_for(recipe, language, shard), shard) for language in languages}
    tasks = [task for language in languages for task in plans[language]]
    executor = executor.sized_for(_input_bytes(tasks))
    merges, position = [], 0
    for language in languages:
        count = len(plans[language])
        merges.append(Group(LanguageMerge(tuple(plans[language]), str(output_dir_for(recipe, language, shard))), tuple(range(position, position + count))))
        position += count
    log.info("filter: %d task(s) for %d language(s) on the %s", len(tasks), len(languages), executor.describe())
    merged = executor.map_reduce(run_filter_task, tasks, run_language_merge, merges, desc="filter tasks", progress=progress)
    summaries = {}
    for language, summary in zip(languages, merged):
        summary.elapsed_s = time.perf_counter() - start
        write_json(output_dir_for(recipe, language, shard) / "summary.json", summary.to_dict())
        summaries[language] = summary
    return summaries


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
class LanguageMerge:
    """The reduce task of a language: its filter tasks (input order) and its output folder."""

    tasks: tuple[FilterTask, ...]
    out_dir: str


def run_language_merge(merge: LanguageMerge, results: list[dict[str, Any]]) -> FilterSummary:
    """`merge_language` as an executor reduce (runs in a worker process or on a Ray node)."""
    return merge_language(list(merge.tasks), results, Path(merge.out_dir))


DUPLICATE_ID = "duplicate_id"


def merge_language(tasks: list[FilterTask], results: list[dict[str, Any]], out_dir: Path) -> FilterSummary:
    """Reject repeated ids and dedup across `tasks`, then write the language's files from the
    tasks' (input order). A kept document whose id was kept before in source order is rejected
    as `duplicate_id`, with the first one's `first_file` and `first_line` (separate fields: file
    names and hub ids hold `:`), so no later step ever sees two documents under one id."""
    summary = FilterSummary()
    for result in results:
        summary.add(summary_of(result))
    folders = [Path(t.folder) for t in tasks]
    repeats = find_repeated_ids(folders)
    plan = tasks[0].dedup if tasks else None
    duplicates = find_duplicates(folders, plan, repeats) if plan else [{} for _ in tasks]
    merge = _Merge(repeats, summary)
    sinks = {name: AtomicFile(out_dir / name) for name in OUTPUT_FILES}
    try:
        for folder, rejected, repeated in zip(folders, duplicates, repeats):
            merge.task(folder, rejected, repeated, sinks)
        for sink in sinks.values():
            sink.commit()
    except BaseException:
        for sink in sinks.values():
            sink.discard()
        raise
    if plan:
        dedup_stats = {"in": summary.kept + sum(len(r) for r in duplicates), "kept": summary.kept}
        for rejected in duplicates:
            for reason in rejected.values():
                block, why, _ = reason.split(":", 2)
                key = f"rejected:{why}"
                dedup_stats[key] = dedup_stats.get(key, 0) + 1
        summary.block_stats[plan.near_block or plan.exact_block] = dedup_stats
    return summary


class _Merge:
    """Writes the tasks' files into the language's, in task order, turning the rows the reduce
    rejected (repeated ids, duplicates) into rejects."""

    def __init__(self, repeats: list[dict[int, int]], summary: FilterSummary) -> None:
        self.firsts = {first for rows in repeats for first in rows.values()}
        self.origins: dict[int, tuple[str, int]] = {}  # global row of a first -> its file and line
        self.offset = 0  # global row of the current task's first kept row
        self.summary = summary
        self.scrub = Scrubber()

    def task(self, folder: Path, rejected: dict[int, str], repeated: dict[int, int], sinks: dict[str, AtomicFile]) -> None:
        for name in ("rejects.jsonl", "quarantine.jsonl"):
            with open(folder / name, encoding="utf-8") as f:
                for line in f:
                    sinks[name].write(line)
        rows = 0
        with open(folder / "kept.jsonl", encoding="utf-8") as f:
            for row, line in enumerate(f):
                rows += 1
                index = self.offset + row
                if index in self.firsts:
                    self.origins[index] = _origin(json.loads(line))
                first = repeated.get(row)
                reason = rejected.get(row)
                if first is None and reason is None:
                    sinks["kept.jsonl"].write(line)
                    continue
                self.summary.kept -= 1
                if first is not None:
                    file, line_number = self.origins[first]
                    fields = {"reason": DUPLICATE_ID, "first_file": self.scrub(file), "first_line": line_number}
                    self.summary.rejected[DUPLICATE_ID] += 1
                else:
                    fields = {"reason": self.scrub(reason)}
                    self.summary.rejected[":".join(reason.split(":")[:2])] += 1
                sinks["rejects.jsonl"].write_json_line({**json.loads(line), **fields})
        self.offset += rows


def _origin(row: dict[str, Any]) -> tuple[str, int]:
    """The file and line (or row) a kept document was read from: its `origin` is `<file>:<n>`."""
    file, _, position = row.get("metadata", {}).get("origin", "").rpartition(":")
    return file, int(position) if position.isdigit() else 0
