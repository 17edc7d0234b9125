"""Remote models over HTTP: TGI, and any OpenAI-compatible server (vLLM, SGLang, llama.cpp).

One `huggingface_hub.AsyncInferenceClient` per endpoint, speaking one of two routes (`generate`:
TGI's native route; `chat`: OpenAI-compatible). The options (`TGIConfig`) and the routes live in
tgi_config.py; this module runs the endpoints.

Several endpoints of one model share the load: each request takes the endpoint with the lowest
share of its slots in use (least in flight), skipping endpoints cooling down after a failure.
An endpoint's slot count is what its `/info` reports (`max_concurrent_requests`), capped by
`max_concurrency`; until `/info` has answered, an endpoint gets one request, which asks it.
A failed attempt (429, 5xx, connection error, timeout, malformed reply) is retried with
exponential backoff and jitter, on whichever endpoint is best then; the last error is raised.
Input over the context (`max_input_tokens` from `/info` or the config) is fitted first
(`text.fit_to_context`): truncated or rejected by `context_policy`, never sent to fail.

Credentials: `token_env` names an environment variable with the endpoints' token; without it
huggingface_hub's own (HF_TOKEN, `hf auth login`) applies. Tokens are never logged or stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

from .base import BackendError, Completion, LLMBackend, LLMRequest, RetryableError
from .text import ContextLimits, TokenCounter, fit_to_context
from .tgi_config import ROUTE_CLASSES, ROUTES, ChatRoute, GenerateRoute, TGIConfig

__all__ = ["ROUTES", "ChatRoute", "Endpoint", "EndpointPool", "GenerateRoute", "TGIBackend", "TGIConfig"]

try:  # huggingface_hub 2.x ships httpx under this name; 1.x uses httpx itself
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

# 424: TGI's "generation" error (e.g. out of GPU memory mid-batch): transient.
RETRYABLE_STATUS = frozenset({408, 409, 424, 425, 429}) | frozenset(range(500, 600))


# --- endpoints and the pool that spreads load over them -------------------------------------


@dataclass
class EndpointStats:
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0  # attempts that failed (retried or not)


@dataclass
class Endpoint:
    """One server of the model: its client, its slots, what /info said, its health."""

    url: str
    cap: int
    token: str | None
    timeout: float
    ramp_start: int
    window: int = 0  # requests it may have now (AIMD): set to ramp_start, +1 a success, halved a failure
    info: dict[str, Any] | None = None  # None until /info answered ({} if the server has none)
    in_flight: int = 0
    consecutive_failures: int = 0
    cooling_until: float = 0.0
    stats: EndpointStats = field(default_factory=EndpointStats)
    _client: AsyncInferenceClient | None = None
    _client_loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.window = self.ramp_start

    @property
    def limit(self) -> int:
        """Slots: /info's max_concurrent_requests capped by config; one until /info answered."""
        if self.info is None:
            return 1
        reported = self.info.get("max_concurrent_requests")
        return min(self.cap, int(reported)) if reported else self.cap

    @property
    def capacity(self) -> int:
        """Requests it may have in flight now: its limit, reached by the ramp (see TGIConfig)."""
        return min(self.limit, self.window)

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until

    def client(self) -> AsyncInferenceClient:
        """This endpoint's client for the running event loop (an httpx client is loop-bound)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # provider "hf-inference" is the one that talks to a plain endpoint URL (and has /info).
            self._client = AsyncInferenceClient(
                base_url=self.url, provider="hf-inference", token=self.token, timeout=self.timeout
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.close()

    async def probe(self) -> None:
        """Ask /info once. A server without /info (404: vLLM, llama.cpp) gets the configured limits."""
        try:
            self.info = await self.client().get_endpoint_info()
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code in (404, 405):
                self.info = {}
                return
            raise _classify(error, self.url) from error
        except Exception as error:  # noqa: BLE001 - transport or body errors, classified below
            raise _classify(error, self.url) from error
        logger.info("endpoint %s: %s", self.url, {k: self.info.get(k) for k in ("model_id", "max_concurrent_requests", "max_input_tokens")})

    def context(self, config: TGIConfig) -> ContextLimits:
        info = self.info or {}
        return ContextLimits(
            max_input_tokens=config.max_input_tokens or info.get("max_input_tokens") or info.get("max_input_length"),
            max_total_tokens=config.max_total_tokens or info.get("max_total_tokens"),
        )

    def record_success(self) -> int:
        """Count a success; returns the slots it opened (the ramp's +1 while below the limit)."""
        before = self.capacity
        self.stats.succeeded += 1
        self.consecutive_failures = 0
        self.cooling_until = 0.0
        self.window = min(self.window + 1, max(self.limit, self.ramp_start))
        return self.capacity - before

    def record_failure(self, config: TGIConfig) -> None:
        """Count a retryable failure: cool down (backoff) and halve the ramp window."""
        self.stats.failed += 1
        self.consecutive_failures += 1
        self.cooling_until = time.monotonic() + backoff_delay(self.consecutive_failures - 1, config)
        self.window = max(self.ramp_start, self.window // 2)


class EndpointPool:
    """Hands out endpoint slots: a request waits until one is free, then takes the endpoint with
    the lowest share of slots in use. Endpoints cooling down after a failure are skipped while
    any other endpoint is healthy (so a dead server does not eat every request's retries)."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints
        self._condition: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _cond(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._condition is None or self._loop is not loop:
            self._condition, self._loop = asyncio.Condition(), loop
        return self._condition

    async def acquire(self) -> Endpoint:
        condition = self._cond()
        async with condition:
            while (endpoint := self._pick()) is None:
                try:
                    await asyncio.wait_for(condition.wait(), timeout=self._until_cooled())
                except asyncio.TimeoutError:
                    continue  # an endpoint finished cooling down: look again
            endpoint.in_flight += 1
            return endpoint

    async def release(self, endpoint: Endpoint, opened: int = 0) -> None:
        """Give a slot back, and wake one waiter for it and one for each slot the ramp `opened`."""
        condition = self._cond()
        async with condition:
            endpoint.in_flight -= 1
            condition.notify(1 + max(0, opened))

    async def probe(self, endpoint: Endpoint) -> None:
        """Ask the endpoint's /info (its one slot is held), then wake requests for its new slots."""
        await endpoint.probe()
        condition = self._cond()
        async with condition:
            condition.notify(max(0, endpoint.capacity - 1))

    def _pick(self) -> Endpoint | None:
        now = time.monotonic()
        healthy = [e for e in self.endpoints if not e.cooling(now)]
        candidates = [e for e in (healthy or self.endpoints) if e.in_flight < e.capacity]
        if not candidates:
            return None
        return min(candidates, key=lambda e: (e.in_flight / e.capacity, e.in_flight))

    def _until_cooled(self) -> float | None:
        now = time.monotonic()
        waits = [e.cooling_until - now for e in self.endpoints if e.cooling(now)]
        return max(0.001, min(waits)) if waits else None


def backoff_delay(attempt: int, config: TGIConfig) -> float:
    """Exponential backoff with jitter: base * 2^attempt, capped, times a random 0.5-1.0."""
    return min(config.backoff_max, config.backoff * 2**attempt) * random.uniform(0.5, 1.0)


# --- the backend ----------------------------------------------------------------------------


class TGIBackend(LLMBackend):
    """A model served by one or more HTTP endpoints; see the module docstring."""

    def __init__(self, config: TGIConfig) -> None:
        self.config = config
        self.model_id = config.model
        self.route = ROUTE_CLASSES[config.route]()
        token = os.environ[config.token_env] if config.token_env else None
        self.pool = EndpointPool(
            [Endpoint(url, config.max_concurrency, token, config.timeout, config.ramp_start) for url in config.endpoints]
        )
        self.counter = TokenCounter(_tokenizer_counter(config.tokenizer), config.bytes_per_token)

    def __repr__(self) -> str:  # no token in here, ever
        return f"TGIBackend(model={self.model_id!r}, route={self.route.name!r}, endpoints={self.config.endpoints!r})"

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        """Slots over all endpoints: what /info said where it has answered, else the cap."""
        return sum(e.limit if e.info is not None else e.cap for e in self.pool.endpoints)

    def endpoint_stats(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: attempts, successes, failed attempts, slots, in flight."""
        return {
            e.url: {**e.stats.__dict__, "limit": e.limit, "window": e.window, "in_flight": e.in_flight}
            for e in self.pool.endpoints
        }

    async def acomplete(self, request: LLMRequest) -> Completion:
        errors: list[str] = []
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt - 1, self.config))
            try:
                return await self._attempt(request)
            except RetryableError as error:
                errors.append(str(error))
        raise RetryableError(_final_error(errors))

    async def aclose(self) -> None:
        for endpoint in self.pool.endpoints:
            await endpoint.aclose()

    async def _attempt(self, request: LLMRequest) -> Completion:
        endpoint = await self.pool.acquire()
        endpoint.stats.attempts += 1
        opened = 0
        try:
            if endpoint.info is None:
                await self.pool.probe(endpoint)
            fitted = fit_to_context(request, endpoint.context(self.config), self.counter, self.config.context_policy)
            completion = await self._send(endpoint, fitted)
            opened = endpoint.record_success()
            return completion
        except RetryableError:
            endpoint.record_failure(self.config)
            raise
        except BackendError:
            endpoint.stats.failed += 1
            raise
        finally:
            await self.pool.release(endpoint, opened)

    async def _send(self, endpoint: Endpoint, request: LLMRequest) -> Completion:
        try:
            return await asyncio.wait_for(
                self.route.send(endpoint.client(), request, self.config), timeout=self.config.timeout
            )
        except BackendError:
            raise
        except Exception as error:  # noqa: BLE001 - every client/transport error is classified
            raise _classify(error, endpoint.url) from error


def _classify(error: Exception, url: str) -> BackendError:
    """A client-side exception as RetryableError (worth another attempt) or BackendError."""
    http_error = _http_error_in(error)
    if http_error is not None:
        status = http_error.response.status_code
        kind = RetryableError if status in RETRYABLE_STATUS else BackendError
        # TGI's typed errors (overloaded, validation...) carry the server's message; else the body.
        detail = f"{type(error).__name__}: {error}" if error is not http_error else _body(http_error.response)
        return kind(f"{url}: HTTP {status}: {detail}")
    if isinstance(error, (asyncio.TimeoutError, InferenceTimeoutError, httpx.TimeoutException)):
        return RetryableError(f"{url}: timed out")
    if isinstance(error, httpx.TransportError):
        return RetryableError(f"{url}: connection error: {type(error).__name__}: {error}")
    if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError)):
        # A 200 whose body is not (the expected) JSON (proxies, overloaded servers): try again.
        return RetryableError(f"{url}: malformed reply: {type(error).__name__}: {error}")
    return BackendError(f"{url}: {type(error).__name__}: {error}")


def _http_error_in(error: BaseException) -> HfHubHTTPError | None:
    """The HTTP error behind `error`: itself, or the cause of a TGI error huggingface_hub raised
    from it (OverloadedError, ValidationError...)."""
    for candidate in (error, error.__cause__):
        if isinstance(candidate, HfHubHTTPError) and candidate.response is not None:
            return candidate
    return None


def _body(response: Any) -> str:
    try:
        text = response.text
    except Exception:  # noqa: BLE001 - a streamed/closed body: the status says enough
        return "(no body)"
    return " ".join(str(text).split())[:500]


def _final_error(errors: list[str]) -> str:
    last = errors[-1]
    if len(errors) == 1:
        return last
    return f"failed after {len(errors)} attempts; last error: {last}"


def _tokenizer_counter(name: str | None):
    """A token-counting function from a tokenizer name/path, loaded offline; None without one."""
    if not name:
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    return lambda text: len(tokenizer(text, add_special_tokens=True)["input_ids"])
