"""Diversification: embed instructions (the embedders are `curation.embedders`), cluster them,
keep one pair per cluster."""

from .cluster import Clustering, allocate, cluster
from ..embedders import Embedder, LocalEmbedder, TEIEmbedder, build_embedder
from .embed import embed_texts, embedding_key
from .select import pick_per_cluster
from .stage import Selection, diversify, quality

__all__ = [
    "Clustering", "Selection", "Embedder", "LocalEmbedder", "TEIEmbedder", "allocate", "build_embedder",
    "cluster", "diversify", "embed_texts", "embedding_key", "pick_per_cluster", "quality",
]
