"""The recipe's `curation.diversify:` block (checked when the recipe is loaded, see config.py).

Diversify is no LLM stage: it runs once over a whole language in the merge phase (merge.py), so
its block is a fixed part of the curation config, after the stages'."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ...options import ConfigModel
from ..embedders import EmbeddingSpec, LocalEmbedding

class DiversifyConfig(ConfigModel):
    """k-means over instruction embeddings, k = min(target_size, pool size); one pair per cluster
    (best label and score, then nearest to the centroid)."""

    target_size: Annotated[int, Field(ge=1)] = 32000  # the paper's per-language size
    embedding: EmbeddingSpec = Field(default_factory=LocalEmbedding)  # curation/embedders: local or tei
    kmeans_batch_size: Annotated[int, Field(ge=1)] = 4096
    kmeans_epochs: Annotated[int, Field(ge=1, le=1000)] = 5  # MiniBatchKMeans max_iter (passes over the data)
