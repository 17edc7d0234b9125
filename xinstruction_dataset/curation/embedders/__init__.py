"""Instruction embedders (diversify's `embedding:` entry), one kind per file.

The kinds are registered in `base.EMBEDDERS` (registry.py) by their own files: `local.py`
(sentence-transformers in process, the default) and `tei.py` (a text-embeddings-inference
endpoint). `EmbeddingSpec`, the union of every registered spec, types the recipe's
`curation.diversify.embedding`, so an unknown kind or key is an error when the recipe is loaded.

A new kind is one file here (its spec and `@EMBEDDERS.register(Spec)` on its `Embedder`) and
its name on the import line below. This package imports no other part of curation: the curation
config imports it.
"""

from __future__ import annotations

from . import local, tei  # noqa: F401 - the kinds: each file registers itself in EMBEDDERS
from .base import EMBEDDERS, Embedder, vector_problem
from .local import LocalEmbedder, LocalEmbedding
from .tei import TEIEmbedder, TEIEmbedding

# A recipe's `curation.diversify.embedding` entry: the spec of its `backend` kind (none: local).
EmbeddingSpec = EMBEDDERS.union()

__all__ = [
    "EMBEDDERS", "Embedder", "EmbeddingSpec", "LocalEmbedder", "LocalEmbedding", "TEIEmbedder", "TEIEmbedding",
    "build_embedder", "vector_problem",
]


def build_embedder(spec) -> Embedder:
    """The embedder of an embedding spec (a mapping is checked first)."""
    spec = EMBEDDERS.parse(spec)
    return EMBEDDERS.implementation(spec.backend)(spec)
