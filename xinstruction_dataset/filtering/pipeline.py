"""Recipe-level wiring: which sources and filters a language gets, the tasks they make, and the
whole-language dedup and merge that turn task outputs into the language's files.

    plan_tasks         one task per source file (see tasks.py)
    executor           every task of every language at once, on local processes or Ray, and
                       each language's merge as soon as its tasks are done (`map_reduce`)
    merge_language     dedup across the language's tasks (duplicates.py), then kept.jsonl,
                       rejects.jsonl and quarantine.jsonl in input order (summary.json: the driver)
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
from ..storage import AtomicFile, write_json
from .duplicates import DEDUP_BLOCKS, DedupPlan, find_duplicates
from .runner import OUTPUT_FILES, FilterSummary
from .sources import BadInput, SourceSpec, expand_source, iter_source
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
    for source in _sources(recipe, language):
        path = recipe.resolve(source.path)
        files = [path] if path.startswith("hf:") or shard[1] > 1 else expand_source(path)
        for file in files:
            index = len(tasks)
            tasks.append(FilterTask(language, index, source.model_dump(), file, shard, filters, dedup, str(task_folder(out_dir, index))))
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


def merge_language(tasks: list[FilterTask], results: list[dict[str, Any]], out_dir: Path) -> FilterSummary:
    """Dedup across `tasks`, then write the language's files from the tasks' (input order)."""
    summary = FilterSummary()
    for result in results:
        summary.add(summary_of(result))
    plan = tasks[0].dedup if tasks else None
    duplicates = find_duplicates([Path(t.folder) for t in tasks], plan) if plan else [{} for _ in tasks]
    sinks = {name: AtomicFile(out_dir / name) for name in OUTPUT_FILES}
    try:
        for task, rejected in zip(tasks, duplicates):
            _merge_task(Path(task.folder), rejected, sinks, summary)
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


def _merge_task(folder: Path, rejected: dict[int, str], sinks: dict[str, AtomicFile], summary: FilterSummary) -> None:
    for name in ("rejects.jsonl", "quarantine.jsonl"):
        with open(folder / name, encoding="utf-8") as f:
            for line in f:
                sinks[name].write(line)
    with open(folder / "kept.jsonl", encoding="utf-8") as f:
        for row, line in enumerate(f):
            reason = rejected.get(row)
            if reason is None:
                sinks["kept.jsonl"].write(line)
                continue
            sinks["rejects.jsonl"].write_json_line({**json.loads(line), "reason": reason})
            summary.kept -= 1
            summary.rejected[":".join(reason.split(":")[:2])] += 1
