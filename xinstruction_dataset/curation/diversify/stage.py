"""Stage 4, diversify: embed the English instructions, k-means them with k = min(target, n), and
keep one pair per cluster (best label and score, then nearest to the centre).

It is the one step that needs a whole language at once, so it takes only what it needs: the
instructions and the quality of each pair (in document-id order), never the documents. The
caller streams the pairs again to write the picked ones (see curation.merge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import DiversifyConfig
from ..pairs import LABEL_RANK
from .cluster import cluster
from .embed import Embedder, embed_texts
from .select import pick_per_cluster


@dataclass
class Selection:
    picked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # indices, by cluster
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # cluster id per pair
    clusters: int = 0


def quality(label: str, score: float | None) -> float:
    """Label first, then the score (a 1-5 score never outweighs a label step)."""
    return 10.0 * LABEL_RANK.get(label, -1) + (score or 0.0)


def diversify(
    instructions: list[str], qualities: np.ndarray, embedder: Embedder | None, cache, config: DiversifyConfig,
    language: str, seed: int, *, progress: bool = True,
) -> Selection:
    """Pick at most `config.target_size` pairs, one per cluster of their instructions."""
    if not instructions:
        return Selection()
    vectors = embed_texts(instructions, embedder, cache, config.embedding.batch_size, desc=f"{language} embed", progress=progress)
    k = min(config.target_size, len(instructions))
    clustering = cluster(vectors, k, seed, config.kmeans_batch_size, config.kmeans_epochs)
    picked = pick_per_cluster(clustering.labels, clustering.distances, qualities, config.target_size)
    return Selection(picked=picked, labels=clustering.labels, clusters=int(len(np.unique(clustering.labels))))
