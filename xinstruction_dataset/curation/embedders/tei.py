"""`{backend: tei, url: ...}`: a text-embeddings-inference endpoint, posted to as huggingface_hub's
`feature_extraction` does (`POST {"inputs": [...]}` to `url`, with huggingface_hub's HTTP session)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ...errors import EnvironmentFault, UsageError
from ...llm.backends.base import RetryableError, storable_text
from ...llm.backends.remote import classify_error, is_hf_host
from ...options import NotFingerprinted
from ...redact import redact, scrub_secrets
from ...registry import PluginSpec
from ...retry import RetryPolicy, retrying
from .base import EMBEDDERS, MAX_WIDTH, Embedder, vector_problem
from .local import DEFAULT_MODEL

logger = logging.getLogger(__name__)

# The bytes a reply may take per value as JSON (`-1.2345678901234567e-05,`): a reply body larger
# than its vectors can be is a bad reply, read no further, so a hostile reply cannot fill memory.
JSON_BYTES_PER_VALUE = 32
JSON_BODY_MARGIN = 4096

_THROUGHPUT = NotFingerprinted("throughput")


class TEIEmbedding(PluginSpec):
    """A text-embeddings-inference endpoint at `url`; `model` is the id its vectors are recorded
    and cached under."""

    backend: Literal["tei"] = "tei"
    model: Annotated[str, Field(min_length=1)] = DEFAULT_MODEL
    # No meaning for an endpoint, and always empty: it is in the run fingerprints of folders made
    # when both kinds shared one config, which resume unchanged.
    path: str = ""
    url: Annotated[str, _THROUGHPUT] = ""  # the endpoint's base URL
    batch_size: Annotated[int, Field(ge=1), _THROUGHPUT] = 64
    concurrency: Annotated[int, Field(ge=1), _THROUGHPUT] = 8  # requests in flight
    timeout: Annotated[float, Field(gt=0), _THROUGHPUT] = 120.0  # seconds per request, whole
    # A failed request (429, 5xx, timeout, a reply that is not one finite vector per text) is
    # tried again under the LLM endpoints' policy (retry.py): attempts after the first, backoff (s).
    retries: Annotated[int, Field(ge=0, le=100), _THROUGHPUT] = 5
    backoff: Annotated[float, Field(ge=0), _THROUGHPUT] = 1.0
    backoff_max: Annotated[float, Field(gt=0), _THROUGHPUT] = 60.0

    @model_validator(mode="after")
    def _needs_url(self) -> "TEIEmbedding":
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"backend 'tei' needs `url`, an http(s) URL (got {self.url!r})")
        if self.path:
            raise UsageError(f"backend 'tei' has no `path` (a local model folder; got {self.path!r}): leave it out")
        return self


@EMBEDDERS.register(TEIEmbedding)
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

    def __init__(self, config: TEIEmbedding):
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


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
