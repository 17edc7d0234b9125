"""Deduplication over a whole language, across every task and machine.

Each filter task records, for every document that passed the rest of the chain, a digest of its
normalised text and its MinHash signature (`SignatureWriter`, files beside the task's outputs).
`find_duplicates` then reads every task's files of one language:

1. exact: documents with the same digest are linked;
2. near: each signature is cut into LSH bands (datasketch's band count for the threshold); the
   band keys of all tasks are sorted together, so a bucket groups documents from any task; in
   a bucket, pairs whose signatures agree on >= threshold of their values are linked (`verify`)
   or every member is (`verify: false`);
3. the links make clusters (connected components: A~B and B~C put A, B and C in one cluster);
4. each cluster keeps the document with the smallest id (then the earliest in input order);
   the others are rejected as `exact_duplicate_of:<kept id>` when their text is the kept one's,
   else `near_duplicate_of:<kept id>`.

Every step depends on the set of documents only, never on how they were split into tasks, so a
one-process run and a cluster run of the same input reject exactly the same documents.

Before that, `find_repeated_ids` finds documents whose id (after `str()`: `1` and `"1"` are one
id) was kept before in source order (sources in recipe order, files sorted, lines in order): the
first keeps the id, the others are rejected as `duplicate_id`, naming the first's file and line,
and take no part in dedup (a cluster never keeps a document that is then dropped for its id).

Memory at N documents: digests 16 B x N; one band's keys and sort order, 16 B x N, at a time;
signatures stay on disk (memory-mapped) and only bucket members' rows are read; the cluster
links and ids only for documents that have a candidate. At 10 M documents: about 0.6 GB.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..documents import Document
from ..errors import UsageError
from ..storage import AtomicFile
from .filters.dedup import MinHashIndex, exact_digest, lsh_bands, normalise

DEDUP_BLOCKS = ("exact_dedup", "near_dedup", "dedup")
_FILES = ("digests.npy", "signatures.npy", "ids.json")
_BAND_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class DedupPlan:
    """What the chain's dedup blocks ask for: the block that names exact duplicates, the one that
    names near duplicates, and the MinHash options of the latter."""

    exact_block: str | None
    near_block: str | None
    near: tuple[tuple[str, Any], ...] = ()

    @property
    def near_options(self) -> dict[str, Any]:
        return dict(self.near)

    @classmethod
    def from_chain(cls, specs: Iterable[Any]) -> "DedupPlan | None":
        """The plan of the dedup entries of a chain (options models), None when it has none."""
        exact_block = near_block = None
        near: tuple = ()
        for spec in specs:
            if spec.type not in DEDUP_BLOCKS:
                continue
            options = spec.model_dump(exclude={"type", "near"})
            wants_near = spec.type == "near_dedup" or (spec.type == "dedup" and spec.near)
            if spec.type in ("exact_dedup", "dedup") and exact_block is None:
                exact_block = spec.type
            if wants_near:
                if near_block is not None and dict(near) != options:
                    raise UsageError("a filter chain may have one near-duplicate block (dedup or near_dedup); merge their options")
                near_block, near = spec.type, tuple(sorted(options.items()))
        return cls(exact_block, near_block, near) if exact_block or near_block else None

    def config(self) -> dict[str, Any]:
        return {"exact_block": self.exact_block, "near_block": self.near_block, **self.near_options}


class SignatureWriter:
    """Collects what dedup needs of each document a task keeps, then saves it beside the task."""

    def __init__(self, plan: DedupPlan):
        self.plan = plan
        self.minhash = MinHashIndex(**plan.near_options) if plan.near_block else None
        self.ids: list[str] = []
        self.digests: list[bytes] = []
        self.signatures: list[np.ndarray] = []

    def add(self, doc: Document) -> None:
        normalised = normalise(doc.text)
        self.ids.append(doc.id)
        self.digests.append(exact_digest(normalised))
        if self.minhash is not None:
            self.signatures.append(self.minhash.signature(normalised))

    def save(self, folder: Path) -> None:
        digests = np.frombuffer(b"".join(self.digests), dtype=np.uint64).reshape(-1, 2)
        width = self.minhash.num_perm if self.minhash else 0
        signatures = np.stack(self.signatures) if self.signatures else np.zeros((len(self.ids), width), dtype=np.uint32)
        _save_array(folder / "digests.npy", digests)
        _save_array(folder / "signatures.npy", signatures)
        with AtomicFile(folder / "ids.json") as sink:
            sink.write(json.dumps(self.ids, ensure_ascii=False))


class IdWriter:
    """The ids of the documents a task keeps, in order (`ids.json`), when the chain has no dedup."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, doc: Document) -> None:
        self.ids.append(doc.id)

    def save(self, folder: Path) -> None:
        with AtomicFile(folder / "ids.json") as sink:
            sink.write(json.dumps(self.ids, ensure_ascii=False))


def task_ids(folder: Path) -> list[str]:
    """The ids of a task's kept documents, in order; from kept.jsonl for a task finished before
    tasks wrote ids.json without a dedup block."""
    ids = folder / "ids.json"
    if ids.is_file():
        return json.loads(ids.read_text(encoding="utf-8"))
    with open(folder / "kept.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["id"] for line in f if line.strip()]


def find_repeated_ids(folders: list[Path]) -> list[dict[int, int]]:
    """For each task folder (in task order): {row in its kept.jsonl: global row of the first
    kept document with that id}. Memory: 8 bytes a document, plus the ids of tasks that repeat."""
    hashes, offsets = [], [0]
    for folder in folders:
        ids = task_ids(folder)  # one task's ids at a time
        hashes.append(np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids)))
        offsets.append(offsets[-1] + len(ids))
    offsets_array = np.asarray(offsets, dtype=np.int64)
    repeats: list[dict[int, int]] = [{} for _ in folders]
    if not hashes:
        return repeats
    ids = _IdReader(folders, offsets_array)
    for group in _equal_runs(np.concatenate(hashes)):  # the hash is this process's: confirm by the ids
        same: dict[str, list[int]] = {}
        for index in group:
            same.setdefault(ids[int(index)], []).append(int(index))
        for members in same.values():
            for member in members[1:]:  # members are in global (source) order
                task = int(np.searchsorted(offsets_array, member, side="right")) - 1
                repeats[task][member - offsets[task]] = members[0]
    return repeats


def _save_array(path: Path, array: np.ndarray) -> None:
    """np.save, complete or absent (the task's completion marker is written after it)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class _Clusters:
    """Union-find over the documents that were ever linked (the rest are singletons)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        parent = self.parent
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving
            item = parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for item in self.parent:
            members.setdefault(self.find(item), []).append(item)
        return [sorted(group) for group in members.values() if len(group) > 1]


def find_duplicates(folders: list[Path], plan: DedupPlan, excluded: list[dict[int, Any]] | None = None) -> list[dict[int, str]]:
    """For each task folder (in task order): {row in its kept.jsonl: reject reason}. Rows in
    `excluded` (per task, e.g. repeated ids) are left out, as if they had not been kept."""
    digests = [np.load(folder / "digests.npy") for folder in folders]
    offsets = np.cumsum([0] + [len(d) for d in digests])
    all_digests = np.concatenate(digests) if digests else np.zeros((0, 2), dtype=np.uint64)
    active = np.ones(len(all_digests), dtype=bool)
    for task, rows in enumerate(excluded or ()):
        active[[int(offsets[task]) + row for row in rows]] = False
    clusters = _Clusters()
    if plan.exact_block:
        for group in _equal_runs(all_digests[:, 0] ^ (all_digests[:, 1] * _BAND_MULTIPLIER), all_digests, active):
            for member in group[1:]:
                clusters.union(int(group[0]), int(member))
    if plan.near_block:
        _link_near_duplicates(folders, offsets, plan, clusters, active)
    return _reasons(folders, offsets, all_digests, clusters.groups(), plan)


def _equal_runs(keys: np.ndarray, rows: np.ndarray | None = None, active: np.ndarray | None = None) -> Iterable[np.ndarray]:
    """Indices with equal keys (and equal `rows`, when given), in groups of 2 or more, each sorted;
    only indices where `active` is true, when given."""
    order = np.argsort(keys, kind="stable")
    if active is not None:
        order = order[active[order]]
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        group = np.sort(order[start:end])
        if rows is None:
            yield group
            continue
        for _, same in _split_equal_rows(rows[group], group):  # the key is a hash: confirm
            if len(same) > 1:
                yield same


def _split_equal_rows(values: np.ndarray, group: np.ndarray):
    seen: dict[bytes, list[int]] = {}
    for value, index in zip(values, group):
        seen.setdefault(value.tobytes(), []).append(int(index))
    return seen.items()


def _link_near_duplicates(folders: list[Path], offsets: np.ndarray, plan: DedupPlan, clusters: _Clusters, active: np.ndarray) -> None:
    options = plan.near_options
    signatures = [np.load(folder / "signatures.npy", mmap_mode="r") for folder in folders]
    bands, rows = lsh_bands(options["threshold"], options["num_perm"])
    for band in range(bands):
        keys = np.concatenate([_band_keys(s[:, band * rows:(band + 1) * rows]) for s in signatures]) if signatures else np.zeros(0, np.uint64)
        for group in _equal_runs(keys, active=active):
            _link_bucket(group, signatures, offsets, options, clusters)


def _band_keys(columns: np.ndarray) -> np.ndarray:
    """One 64-bit key per document for one band (a polynomial hash of the band's values)."""
    keys = np.zeros(len(columns), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in np.asarray(columns, dtype=np.uint64).T:
            keys = keys * _BAND_MULTIPLIER + column + np.uint64(1)
    return keys


def _link_bucket(group: np.ndarray, signatures: list[np.ndarray], offsets: np.ndarray, options: dict[str, Any], clusters: _Clusters) -> None:
    if not options["verify"]:
        for member in group[1:]:
            clusters.union(int(group[0]), int(member))
        return
    rows = np.stack([_signature(signatures, offsets, int(index)) for index in group])
    for i in range(len(group) - 1):
        similar = np.mean(rows[i + 1:] == rows[i], axis=1) >= options["threshold"]
        for j in np.flatnonzero(similar):
            clusters.union(int(group[i]), int(group[i + 1 + j]))


def _signature(signatures: list[np.ndarray], offsets: np.ndarray, index: int) -> np.ndarray:
    task = int(np.searchsorted(offsets, index, side="right")) - 1
    return np.asarray(signatures[task][index - offsets[task]])


def _reasons(folders: list[Path], offsets: np.ndarray, digests: np.ndarray, groups: list[list[int]], plan: DedupPlan) -> list[dict[int, str]]:
    """Keep the smallest id of each cluster (then the earliest); name it in the others' reasons."""
    ids = _IdReader(folders, offsets)
    reasons: list[dict[int, str]] = [{} for _ in folders]
    for group in groups:
        keeper = min(group, key=lambda index: (ids[index], index))
        for member in group:
            if member == keeper:
                continue
            exact = plan.exact_block and np.array_equal(digests[member], digests[keeper])
            why = f"{plan.exact_block}:exact_duplicate_of" if exact else f"{plan.near_block or plan.exact_block}:near_duplicate_of"
            task = int(np.searchsorted(offsets, member, side="right")) - 1
            reasons[task][member - int(offsets[task])] = f"{why}:{ids[keeper]}"
    return reasons


class _IdReader:
    """Document ids by global index, a task's id list read only when one of its rows is asked for."""

    def __init__(self, folders: list[Path], offsets: np.ndarray):
        self.folders, self.offsets = folders, offsets
        self._loaded: dict[int, list[str]] = {}

    def __getitem__(self, index: int) -> str:
        task = int(np.searchsorted(self.offsets, index, side="right")) - 1
        if task not in self._loaded:
            self._loaded[task] = task_ids(self.folders[task])
        return self._loaded[task][index - int(self.offsets[task])]
