"""k-means over instruction embeddings, sized for a whole language (500k vectors, k = 32k).

scikit-learn's MiniBatchKMeans, seeded: the same vectors in the same order give the same
clusters. A flat k-means costs O(n * k * d) per pass: measured here, 50k x 3.2k clusters took
~6 s per pass on 2 cores, so 500k x 32k would take ~10 minutes per pass. Above
`FLAT_MAX_K` clusters the clustering is two-level (hierarchical k-means): sqrt(k) coarse
clusters, then each coarse cluster split into a share of k proportional to its size, so the
total is exactly k and a pass costs O(n * 2 sqrt(k) * d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLAT_MAX_K = 1024


@dataclass
class Clustering:
    labels: np.ndarray  # cluster id per vector, 0..k-1
    distances: np.ndarray  # distance of each vector to its cluster's centre


def cluster(vectors: np.ndarray, k: int, seed: int, batch_size: int = 4096, epochs: int = 5) -> Clustering:
    """Cluster `vectors` (n x d, float32) into min(k, n) clusters."""
    n = len(vectors)
    if k >= n:  # every vector its own cluster
        return Clustering(np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.float32))
    if k <= FLAT_MAX_K:
        return _flat(vectors, k, seed, batch_size, epochs)
    coarse = _flat(vectors, math.isqrt(k - 1) + 1, seed, batch_size, epochs)
    members = [np.flatnonzero(coarse.labels == c) for c in range(coarse.labels.max() + 1)]
    shares = allocate(k, [len(m) for m in members])
    labels = np.empty(n, dtype=np.int64)
    distances = np.empty(n, dtype=np.float32)
    offset = 0
    for c, (rows, share) in enumerate(zip(members, shares)):
        if share == 0:
            continue
        fine = cluster(vectors[rows], share, seed + 1 + c, batch_size, epochs)
        labels[rows] = fine.labels + offset
        distances[rows] = fine.distances
        offset += share
    return Clustering(labels, distances)


def allocate(k: int, sizes: list[int]) -> list[int]:
    """Split k over groups in proportion to their sizes (largest remainder), at most a group's
    size each, at least one for every non-empty group while k allows; the shares sum to k."""
    total = sum(sizes)
    exact = [k * s / total for s in sizes]
    shares = [min(s, max(1 if s else 0, int(e))) for s, e in zip(sizes, exact)]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (shares[i] - exact[i], -sizes[i], i))
    while sum(shares) > k:  # the minimum of one pushed us over: take back from the largest shares
        i = max(range(len(sizes)), key=lambda j: (shares[j], -j))
        shares[i] -= 1
    while sum(shares) < k:
        for i in by_remainder:
            if shares[i] < sizes[i] and sum(shares) < k:
                shares[i] += 1
    return shares


def _flat(vectors: np.ndarray, k: int, seed: int, batch_size: int, epochs: int) -> Clustering:
    from sklearn.cluster import MiniBatchKMeans

    n = len(vectors)
    if k >= n:
        return Clustering(np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.float32))
    kmeans = MiniBatchKMeans(
        n_clusters=k,
        batch_size=min(n, batch_size),
        init_size=min(n, max(3 * batch_size, 3 * k)),
        max_iter=epochs,
        n_init=1,
        random_state=seed,
    )
    labels = kmeans.fit_predict(vectors)
    distances = np.linalg.norm(vectors - kmeans.cluster_centers_[labels], axis=1)
    return Clustering(labels.astype(np.int64), distances.astype(np.float32))
