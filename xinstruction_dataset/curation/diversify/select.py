"""Pick the sample of each cluster: the best quality (label, then score), then the nearest to the
cluster's centre, then the lowest index. When clusters came out empty and fewer than `target`
were picked, the runners-up of the largest clusters fill the gap, one per cluster per turn."""

from __future__ import annotations

import numpy as np


def pick_per_cluster(labels: np.ndarray, distances: np.ndarray, quality: np.ndarray, target: int) -> np.ndarray:
    """Indices of the picked vectors, ordered by cluster id (then turn)."""
    n = len(labels)
    index = np.arange(n)
    order = np.lexsort((index, distances, -np.asarray(quality, dtype=np.float64), labels))
    sorted_labels = labels[order]
    group_start = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    sizes = np.diff(np.r_[group_start, n])
    turn = index - np.repeat(group_start, sizes)  # 0 for the best of each cluster, 1 for the next...
    cluster_size = np.repeat(sizes, sizes)
    chosen = np.lexsort((sorted_labels, -cluster_size, turn))[: min(target, n)]
    chosen = chosen[np.lexsort((turn[chosen], sorted_labels[chosen]))]
    return order[chosen]
