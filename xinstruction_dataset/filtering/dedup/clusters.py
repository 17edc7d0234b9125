"""Dedup over a whole language, across every task and machine: signatures -> buckets -> clusters
-> a removal list.

Each filter task saved, for every document it kept, a digest of its normalised text and its
MinHash signature (signatures.py). `find_duplicates` reads those arrays of every task of one
language (never the text):

1. exact: documents with the same digest are linked;
2. near: each signature is cut into LSH bands (datasketch's band count for the threshold); the
   band keys of all tasks are sorted together, so a bucket groups documents from any task; in
   a bucket, pairs whose signatures agree on >= threshold of their values are linked (`verify`)
   or every member is (`verify: false`);
3. the links make clusters (connected components: A~B and B~C put A, B and C in one cluster);
4. each cluster keeps the document with the smallest id (then the earliest in input order);
   the others are removed as `exact_duplicate_of` the kept one when their text is the kept
   one's, else `near_duplicate_of`.

Every step depends on the set of documents only, never on how they were split into tasks, so a
one-process run and a cluster run of the same input remove exactly the same documents.

Memory at N documents: digests 16 B x N; one band's keys and sort order, 16 B x N, at a time;
signatures stay on disk (memory-mapped) and only bucket members' rows are read; the cluster
links only for documents that have a candidate; ids one task at a time. Measured at 200,000
documents (benchmarks/bench_filtered_storage.py): 26 MB allocated, so about 1.3 GB at 10 M.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .minhash import lsh_bands
from .options import MinHashOptions
from .steps import LanguageTasks, Removal

BAND_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


class Clusters:
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


def find_duplicates(
    tasks: LanguageTasks,
    digests: Sequence[np.ndarray],
    signatures: Sequence[np.ndarray],
    *,
    exact_block: str | None,
    near_block: str | None,
    near: MinHashOptions | None,
    excluded: np.ndarray,
) -> list[Removal]:
    """The removals of one clustering over the language (see the module docstring). `digests`
    and `signatures` are per task, in task order; rows where `excluded` is true take no part."""
    all_digests = np.concatenate(digests) if len(digests) else np.zeros((0, 2), dtype=np.uint64)
    active = ~excluded
    clusters = Clusters()
    if exact_block:
        for group in equal_runs(all_digests[:, 0] ^ (all_digests[:, 1] * BAND_MULTIPLIER), all_digests, active):
            for member in group[1:]:
                clusters.union(int(group[0]), int(member))
    if near_block and near is not None:
        _link_near_duplicates(tasks, signatures, near, clusters, active)
    groups = clusters.groups()
    ids = tasks.ids_at(member for group in groups for member in group)
    removals = []
    for group in groups:
        keeper = min(group, key=lambda index: (ids[index], index))
        for member in group:
            if member == keeper:
                continue
            exact = bool(exact_block) and np.array_equal(all_digests[member], all_digests[keeper])
            step, reason = (exact_block, "exact_duplicate_of") if exact else (near_block or exact_block, "near_duplicate_of")
            removals.append(tasks.removal(member, step, reason, keeper, ids))
    return removals


def equal_runs(keys: np.ndarray, rows: np.ndarray | None = None, active: np.ndarray | None = None) -> Iterable[np.ndarray]:
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
        seen: dict[bytes, list[int]] = {}  # the key is a hash: confirm on the rows
        for value, index in zip(rows[group], group):
            seen.setdefault(value.tobytes(), []).append(int(index))
        for same in seen.values():
            if len(same) > 1:
                yield np.asarray(same)


def _link_near_duplicates(tasks: LanguageTasks, signatures: Sequence[np.ndarray], options: MinHashOptions, clusters: Clusters, active: np.ndarray) -> None:
    bands, rows = lsh_bands(options.threshold, options.num_perm)
    for band in range(bands):
        keys = np.concatenate([_band_keys(s[:, band * rows:(band + 1) * rows]) for s in signatures]) if len(signatures) else np.zeros(0, np.uint64)
        for group in equal_runs(keys, active=active):
            _link_bucket(group, tasks, signatures, options, clusters)


def _band_keys(columns: np.ndarray) -> np.ndarray:
    """One 64-bit key per document for one band (a polynomial hash of the band's values)."""
    keys = np.zeros(len(columns), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in np.asarray(columns, dtype=np.uint64).T:
            keys = keys * BAND_MULTIPLIER + column + np.uint64(1)
    return keys


def _link_bucket(group: np.ndarray, tasks: LanguageTasks, signatures: Sequence[np.ndarray], options: MinHashOptions, clusters: Clusters) -> None:
    if not options.verify:
        for member in group[1:]:
            clusters.union(int(group[0]), int(member))
        return
    rows = np.stack([np.asarray(signatures[task][row]) for task, row in map(tasks.locate, (int(i) for i in group))])
    for i in range(len(group) - 1):
        similar = np.mean(rows[i + 1:] == rows[i], axis=1) >= options.threshold
        for j in np.flatnonzero(similar):
            clusters.union(int(group[i]), int(group[i + 1 + j]))
