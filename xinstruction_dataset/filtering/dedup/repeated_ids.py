"""Repeated ids: the first whole-language decision, taken before any step.

A document whose id (after `str()`: `1` and `"1"` are one id) was kept before in source order
(sources in recipe order, files sorted, lines in order) is removed as `duplicate_id`, naming the
first (`kept_*`): the first keeps the id, so no later step ever sees two documents under one id,
and a removed one takes no part in dedup (a cluster never keeps a document then dropped for its
id). Memory: 8 bytes a document, plus the ids of the tasks that repeat.
"""

from __future__ import annotations

import numpy as np

from .clusters import equal_runs
from .steps import LanguageTasks, Removal

DUPLICATE_ID = "duplicate_id"


def find_repeated_ids(tasks: LanguageTasks) -> list[Removal]:
    hashes = []
    for task in range(len(tasks.folders)):
        ids = tasks.ids_of(task)
        hashes.append(np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids)))
    if not hashes:
        return []
    groups = [[int(index) for index in group] for group in equal_runs(np.concatenate(hashes))]
    ids = tasks.ids_at(index for group in groups for index in group)
    removals = []
    for group in groups:  # the hash is this process's: confirm by the ids
        same: dict[str, list[int]] = {}
        for index in group:
            same.setdefault(ids[index], []).append(index)
        for members in same.values():  # members are in global (source) order
            removals += [tasks.removal(member, DUPLICATE_ID, DUPLICATE_ID, members[0], ids) for member in members[1:]]
    return removals
