"""Stage 4, diversify: embed the English instructions, k-means them with k = min(target, n), and
keep one pair per cluster (best label and score, then nearest to the centre). Pairs not kept are
rejected as `diversify:not_selected` with their cluster id."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import DiversifyConfig
from ..pairs import LABEL_RANK, Pair, Reject
from .cluster import cluster
from .embed import Embedder, embed_texts
from .select import pick_per_cluster


@dataclass
class DiversifyOutcome:
    selected: list[tuple[Pair, int]] = field(default_factory=list)  # (pair, cluster id), by cluster
    rejects: list[Reject] = field(default_factory=list)
    clusters: int = 0


def quality(pair: Pair) -> float:
    """Label first, then the score (a 1-5 score never outweighs a label step)."""
    return 10.0 * LABEL_RANK.get(pair.label, -1) + (pair.score or 0.0)


def diversify(pairs: list[Pair], embedder: Embedder, cache, config: DiversifyConfig, language: str, seed: int, *, progress: bool = True) -> DiversifyOutcome:
    """`pairs` in a deterministic order (the caller sorts them by document id)."""
    if not pairs:
        return DiversifyOutcome()
    vectors = embed_texts([p.instruction for p in pairs], embedder, cache, config.embedding.batch_size, desc=f"{language} embed", progress=progress)
    k = min(config.target_size, len(pairs))
    clustering = cluster(vectors, k, seed, config.kmeans_batch_size, config.kmeans_epochs)
    picked = pick_per_cluster(clustering.labels, clustering.distances, np.array([quality(p) for p in pairs]), config.target_size)
    outcome = DiversifyOutcome(clusters=int(len(np.unique(clustering.labels))))
    outcome.selected = [(pairs[i], int(clustering.labels[i])) for i in picked]
    kept = set(picked.tolist())
    outcome.rejects = [
        Reject.of(p.doc, language, "diversify:not_selected", cluster_id=int(clustering.labels[i]), instruction=p.instruction)
        for i, p in enumerate(pairs)
        if i not in kept
    ]
    return outcome
