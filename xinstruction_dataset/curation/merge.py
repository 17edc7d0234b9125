"""The merge phase of one language: every finished shard's pairs -> diversify -> curated shards.

Memory holds what diversify needs (each pair's instruction, quality and record id, and the
embeddings), never the documents: the shards' pair files, each sorted by document id, are
merged as streams twice, once to collect that, once to write the picked pairs as records (in
document-id order) and the others as `diversify:not_selected` rejects.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import UsageError
from ..layout import RunLayout
from ..records import Provenance, Record, ShardWriter, stable_id
from ..storage import AtomicFile, write_json
from .config import CurationConfig
from .diversify import Embedder, diversify, quality
from .pairs import Pair, Reject
from .spill import SortedSpill, clear_spills
from .versions import Versions

CURATED_SPLIT = "train"


@dataclass
class Merged:
    counts: Counter
    rejected: Counter
    curated: int
    shards: int


class CurationMerge:
    def __init__(self, layout: RunLayout, config: CurationConfig, cache, embedder: Callable[[], Embedder], language: str, *, progress: bool = True) -> None:
        self.layout, self.config, self.cache, self.language, self.progress = layout, config, cache, language, progress
        self.embedder = embedder  # built on first use: a language with no pair loads no model

    def run(self) -> Merged:
        n = shard_count(self.layout, self.language)
        shards = [(i, n) for i in range(n)]
        metas = [json.loads(self.layout.work(self.language, "meta", s).read_text(encoding="utf-8")) for s in shards]
        models = _same_models(metas, self.language)
        versions = _same_versions(metas, self.language)
        counts = sum((Counter(meta["counts"]) for meta in metas), Counter())
        pair_files = [self.layout.work(self.language, "pairs", s) for s in shards]
        instructions, qualities, ids = [], [], []
        for pair in _pairs(pair_files):
            instructions.append(pair.instruction)
            qualities.append(quality(pair.label, pair.score))
            ids.append(stable_id(self.language, pair.instruction, pair.response))
        embedder = self.embedder() if instructions else None
        selection = diversify(
            instructions, np.asarray(qualities, dtype=np.float64), embedder, self.cache, self.config.diversify,
            self.language, self.config.seed, progress=self.progress,
        )
        counts["clusters"] = selection.clusters
        written = _first_of_each_id(sorted(selection.picked.tolist()), ids)
        extra = SortedSpill(self.layout.merge_spill(self.language), "merge-rejects")
        curated = self._write_records(_pairs(pair_files), written, set(selection.picked.tolist()), selection.labels, models, extra)
        reject_files = [self.layout.work(self.language, "rejects", s) for s in shards]
        rejected = self._write_rejects(reject_files, extra)
        self._write_judge_replies([self.layout.work(self.language, "judge_replies", s) for s in shards])
        clear_spills(self.layout.merge_spill(self.language))
        summary = {
            "language": self.language, "shards": n, "models": models, "counts": dict(counts), "curated": curated, "rejected": dict(rejected),
            **versions.record(),
        }
        write_json(self.layout.summary(self.language), summary)
        return Merged(counts, rejected, curated, n)

    def _write_records(self, pairs: Iterator[Pair], written: set[int], picked: set[int], labels: np.ndarray, models: dict[str, str], extra: SortedSpill) -> int:
        """Write the picked pairs as records (document-id order); the others become rejects."""
        with _CuratedShards(self.layout.curated(self.language), len(written), self.config.records_per_shard) as shards:
            for i, pair in enumerate(pairs):
                cluster_id = int(labels[i])
                if i in written:
                    shards.write(_record(pair, self.language, models, cluster_id))
                elif i in picked:
                    record_id = stable_id(self.language, pair.instruction, pair.response)
                    extra.add(pair.doc.id, Reject.of(pair.doc, self.language, "curate:duplicate_record", record_id=record_id).to_dict())
                else:
                    reject = Reject.of(pair.doc, self.language, "diversify:not_selected", cluster_id=cluster_id, instruction=pair.instruction)
                    extra.add(pair.doc.id, reject.to_dict())
        return len(written)

    def _write_rejects(self, files: list[Path], extra: SortedSpill) -> Counter:
        rejected: Counter = Counter()
        with AtomicFile(self.layout.rejects(self.language)) as f:
            for _, line in heapq.merge(*(_keyed(file, "doc_id") for file in files), extra.lines()):
                rejected[json.loads(line)["reason"]] += 1
                f.write(line + "\n")
        extra.remove()
        return rejected

    def _write_judge_replies(self, files: list[Path]) -> None:
        """The shards' judge replies, in document-id order (shards labelled before the side file
        existed have none)."""
        with AtomicFile(self.layout.judge_replies(self.language)) as f:
            for _, line in heapq.merge(*(_keyed(file, "doc_id") for file in files if file.exists())):
                f.write(line + "\n")


class _CuratedShards:
    """`train-IIIII-of-NNNNN.jsonl` files of `size` records each (one empty file for no record);
    each appears complete on close, and stale files of an earlier run with another N go."""

    def __init__(self, folder: Path, total: int, size: int) -> None:
        self.folder, self.size = folder, size
        count = max(1, -(-total // size))
        self.names = [f"{CURATED_SPLIT}-{i:05d}-of-{count:05d}.jsonl" for i in range(count)]
        self.done = 0
        self.writer: ShardWriter | None = None

    def write(self, record: Record) -> None:
        if self.done % self.size == 0:
            self._next()
        self.writer.write(record)
        self.done += 1

    def _next(self) -> None:
        if self.writer is not None:
            self.writer.__exit__(None, None, None)
        self.writer = ShardWriter(self.folder / self.names[self.done // self.size])

    def __enter__(self) -> "_CuratedShards":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.writer is None and exc_type is None:
            self._next()
        if self.writer is not None:
            self.writer.__exit__(exc_type, exc, tb)
        if exc_type is None:
            for stale in self.folder.glob(f"{CURATED_SPLIT}-*.jsonl"):
                if stale.name not in self.names:
                    stale.unlink()


def shard_count(layout: RunLayout, language: str) -> int:
    """The shard count N of the language's finished work files (all N shards must be there)."""
    found = layout.finished_shards(language)
    complete = [n for n, indices in found.items() if indices == set(range(n))]
    if len(complete) == 1:
        return complete[0]
    if not found:
        raise FileNotFoundError(f"no labelled shards for {language!r} under {layout.language_dir(language)}/work: run `xinstruction curate RECIPE --shard I/N` first")
    if complete:
        raise UsageError(f"{language}: complete shard sets for several counts ({sorted(complete)}); remove the stale work files")
    missing = {n: sorted(set(range(n)) - idx) for n, idx in found.items()}
    raise UsageError(f"{language}: shards not finished yet: " + "; ".join(f"{', '.join(map(str, m))} of {n}" for n, m in missing.items()))


def _keyed(path: Path, *key_path: str) -> Iterator[tuple[str, str]]:
    """(key, line) of each line of a work file (sorted by that, as `SortedSpill` wrote it)."""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line:
                value: Any = json.loads(line)
                for part in key_path:
                    value = value[part]
                yield value, line


def _pairs(files: list[Path]) -> Iterator[Pair]:
    """The pairs of every shard, in (document id, line) order."""
    for _, line in heapq.merge(*(_keyed(file, "doc", "id") for file in files)):
        yield Pair.from_dict(json.loads(line))


def _first_of_each_id(picked: list[int], ids: list[str]) -> set[int]:
    """The picked indices whose record id is new (in document-id order): the rest are duplicates."""
    seen, first = set(), set()
    for i in picked:
        if ids[i] not in seen:
            seen.add(ids[i])
            first.add(i)
    return first


def _same_models(metas: list[dict[str, Any]], language: str) -> dict[str, str]:
    models = metas[0]["models"]
    for i, meta in enumerate(metas[1:], start=1):
        if meta["models"] != models:
            raise UsageError(f"{language}: shard {i} was labelled with {meta['models']}, shard 0 with {models}; relabel with one set of models")
    return models


def _same_versions(metas: list[dict[str, Any]], language: str) -> Versions:
    """The rules every shard was labelled with (versions.py); shards must agree."""
    found = [Versions.from_record(meta.get("versions"), f"{language} shard {i} meta") for i, meta in enumerate(metas)]
    for i, versions in enumerate(found[1:], start=1):
        if versions != found[0]:
            raise UsageError(
                f"{language}: shard {i} was labelled with {versions.describe()}, shard 0 with {found[0].describe()}; "
                "relabel the shards with one version of the toolkit (`curate --shard I/N --force`)"
            )
    return found[0]


def _record(pair: Pair, language: str, models: dict[str, str], cluster_id: int) -> Record:
    return Record(
        id=stable_id(language, pair.instruction, pair.response),
        instruction=pair.instruction,
        output=pair.response,
        language=language,
        provenance=Provenance(
            source_dataset=pair.doc.source,
            source_id=pair.doc.id,
            source_url=pair.doc.url,
            generator_model=models["generator_model"],
            judge_model=models["judge_model"],
            prompt_version="+".join(pair.prompts),
            label=pair.label,
            score=pair.score,
            refinement_round=pair.round,
            cluster_id=cluster_id,
        ),
    )
