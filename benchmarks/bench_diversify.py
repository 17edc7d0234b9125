"""Diversify at full scale: cluster 500k random 384-d unit vectors into k = 32k clusters and pick
one per cluster, in memory. Prints wall time per step and peak RSS.

    python benchmarks/bench_diversify.py [--n 500000] [--k 32000] [--dim 384] [--epochs 5]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from xinstruction_dataset.curation.diversify.cluster import cluster
from xinstruction_dataset.curation.diversify.select import pick_per_cluster


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--k", type=int, default=32_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    print(f"vectors: {args.n} x {args.dim} float32 ({vectors.nbytes / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    clustering = cluster(vectors, args.k, args.seed, epochs=args.epochs)
    clustered = time.perf_counter() - start
    print(f"cluster: k={args.k}, {len(np.unique(clustering.labels))} non-empty clusters in {clustered:.1f} s")

    start = time.perf_counter()
    ranks = rng.integers(0, 3, size=args.n)  # stand-in labels: bad/needs_refinement/good
    picked = pick_per_cluster(clustering.labels, clustering.distances, ranks.tolist(), args.k)
    print(f"pick: {len(picked)} samples in {time.perf_counter() - start:.1f} s")
    print(f"total cluster+pick: {clustered + time.perf_counter() - start:.1f} s; peak RSS: {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
