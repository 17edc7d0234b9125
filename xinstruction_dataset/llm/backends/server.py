"""Served models over HTTP, every kind (vllm, sglang, llamacpp, tgi, openai): one backend,
`ServerBackend`, built from the kind's spec (a `ServerConfig`, server_config.py, with the routes)
and an `EndpointSource` (llm/endpoints.py: the recipe's `endpoints:`, or the replicas a supervisor
publishes for `serve:`). The limits probe lives in server_limits.py; this module runs the endpoints.

One HTTP session per endpoint (http.py: aiohttp, a sixth of huggingface_hub's client's CPU per
request), speaking one of three routes (`generate`: TGI's native route; `chat`: OpenAI chat
completions; `completions`: OpenAI text completions) and asking the limits.

The endpoints follow the source: before handing out a slot the pool asks `source.urls()` (cheap,
see llm/endpoints.py). A new URL becomes a new endpoint (probed for its limits, with one request
until then); one that disappeared gets no new request (those in flight finish or fail, and are
retried elsewhere); one that comes back is probed again (a restarted server). While the source
has no endpoint at all (servers starting or restarting), a request waits, at most the spec's
`timeout`, then that attempt fails with a RetryableError "no endpoint serving <model>", so the
retry policy applies and nothing waits forever.

Several endpoints of one model share the load: each request takes the endpoint with the lowest
share of its slots in use (least in flight), skipping endpoints cooling down after a failure.
An endpoint's slot count is what the server reports (`/info`'s `max_concurrent_requests`, or
llama.cpp's `/props` `total_slots`), capped by `max_concurrency`; until the server has been
asked, an endpoint gets one request, which asks it.
A failed attempt (429, 5xx, connection error, timeout, malformed reply) is retried with
exponential backoff and jitter, on whichever endpoint is best then; the last error is raised.
Input over the context (`max_input_tokens` / `max_total_tokens` from the config, else from the
server: `/info`, `/props` n_ctx, `/v1/models` max_model_len) is fitted first
(`text.fit_to_context`): truncated or rejected by `context_policy`. Without `tokenizer` the
count is an estimate (`bytes_per_token`); a server that refuses an input as too long and says
what it counted (TGI 422, vLLM and llama.cpp 400) lowers the estimate and the request is fitted
again (`TokenCounter.calibrate`), so a low estimate costs one refused request, not a failed call.

The limits are asked once per endpoint, under the endpoint's `timeout`, from the kind's
`LIMIT_SOURCES` (server_limits.py; the source is logged at INFO): if that times out, fails or
answers garbage, the configured limits apply and one warning is logged; only a connection error
(server down) is retried as a failure.

Credentials: `token_env` names an environment variable with the endpoints' token; without it
huggingface_hub's own (HF_TOKEN, `hf auth login`) is sent only to Hugging Face's own hosts
(`HF_HOSTS`); any other endpoint then gets no Authorization header. Tokens are never logged or
stored: every known token value, and anything that looks like one (`Bearer ...`, `hf_...`), is
scrubbed from error text before it leaves this backend (`scrub_secrets`), as a server's error
body may echo the request's headers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from huggingface_hub import get_token
from huggingface_hub.utils import build_hf_headers

from ...errors import UsageError
from ...redact import scrub_secrets
from ...retry import RetryPolicy, retrying
from ..endpoints import POLL_S, EndpointSource, StaticEndpoints
from ..ledger import host_port, note_server
from .http import HTTPSession
from .base import BackendError, Completion, ContextLimits, GenerationParams, LLMBackend, LLMRequest, RetryableError
from .remote import HF_HOSTS, InputTooLong, is_hf_host
from .remote import classify_error as _classify
from .server_config import ROUTE_CLASSES, ROUTES, ChatRoute, CompletionsRoute, GenerateRoute, ServerConfig
from .server_limits import NO_SOURCE, LimitsError, describe, read_limits, read_load
from .text import TokenCounter, fit_to_context

__all__ = [
    "HF_HOSTS", "ROUTES", "ChatRoute", "CompletionsRoute", "Endpoint", "EndpointPool", "GenerateRoute", "ServerBackend",
    "is_hf_host", "scrub_secrets",
]

logger = logging.getLogger(__name__)

REFITS = 3  # times a request refused as too long is fitted again with a recalibrated estimate


# --- endpoints and the pool that spreads load over them -------------------------------------


@dataclass
class EndpointStats:
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0  # attempts that failed (retried or not)


@dataclass
class Endpoint:
    """One server of the model: its clients, its slots, the limits it reported, its health."""

    url: str
    cap: int
    token: str | None
    timeout: float
    ramp_start: int
    limit_sources: tuple[str, ...] = ("/info", "/props", "/v1/models")  # the kind's (ServerConfig.LIMIT_SOURCES)
    load_metrics: tuple[str, ...] = ()  # the kind's /metrics gauges (ServerConfig.LOAD_METRICS), read with the limits
    window: int = 0  # requests it may have now (AIMD): set to ramp_start, +1 a success, halved a failure
    info: dict[str, Any] | None = None  # limits in /info's keys; None until asked ({} if none)
    limits_source: str | None = None  # where `info` came from: one of limit_sources, or "the recipe"
    load: dict[str, float] = field(default_factory=dict)  # the load_metrics gauges when it was probed
    serving: bool = True  # False once its source no longer lists it: no new request goes to it
    in_flight: int = 0
    consecutive_failures: int = 0
    cooling_until: float = 0.0
    stats: EndpointStats = field(default_factory=EndpointStats)
    _session: HTTPSession | None = None
    share: Callable[[int], int] | None = None  # this driver's part of the server's slots (curation/drivers.py)

    def __post_init__(self) -> None:
        self.window = self.ramp_start

    @property
    def shown_url(self) -> str:
        """The URL as logs show it: no user info, no token."""
        return scrub_secrets(self.url, self.secrets())

    @property
    def limit(self) -> int:
        """Slots: the server's max_concurrent_requests capped by config; one until it was asked.
        The one place an endpoint's slot count is computed."""
        if self.info is None:
            return 1
        reported = self.info.get("max_concurrent_requests")
        limit = min(self.cap, int(reported)) if reported else self.cap
        return self.share(limit) if self.share is not None else limit

    @property
    def capacity(self) -> int:
        """Requests it may have in flight now: its limit, reached by the ramp (see ServerConfig.ramp_start)."""
        return min(self.limit, self.window)

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until

    def session(self) -> HTTPSession:
        """This endpoint's HTTP client (http.py; an aiohttp session is made per event loop)."""
        if self._session is None:
            self._session = HTTPSession(self.timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()

    def auth_headers(self) -> dict[str, str]:
        """Every request's headers: huggingface_hub's user agent and the endpoint's token; without
        one, huggingface_hub's login token only for Hugging Face's hosts."""
        return build_hf_headers(token=self.token or (None if is_hf_host(self.url) else False))

    async def probe(self) -> None:
        """Read the server's limits once, within `timeout` (server_limits.py: the first of the
        kind's `limit_sources` the server has; a server with none gets the configured limits). The
        source is logged at INFO. A probe that times out, fails or answers garbage also gets the
        configured limits (one warning). A connection error (server down) raises a RetryableError:
        asked again later."""
        sources = ", ".join(self.limit_sources) or "no limits route"
        try:
            # The endpoint's own client (closed with the endpoint), not a client per probe: closing
            # a client whose connect was just cancelled can wait forever.
            limits = await asyncio.wait_for(
                read_limits(self.session(), self.url, self.auth_headers(), self.limit_sources),
                timeout=self.timeout,
            )
        except asyncio.TimeoutError:
            self._no_info(sources, f"no answer within the timeout ({self.timeout:g}s)")
            return
        except aiohttp.ClientConnectionError as error:  # refused, reset: the server is down
            raise _classify(error, self.url, self.secrets()) from error
        except LimitsError as error:  # an HTTP error or a bad body: as without limits routes
            self._no_info(error.path, str(_classify(error.error, self.url, self.secrets())))
            return
        except Exception as error:  # noqa: BLE001 - anything else the client raised: as without limits routes
            self._no_info(sources, str(_classify(error, self.url, self.secrets())))
            return
        self.info, self.limits_source = limits.info, limits.source
        if limits.source == NO_SOURCE:
            logger.info(
                "endpoint %s: no %s; limits from the recipe (max_concurrency=%d, "
                "max_input_tokens/max_total_tokens from the spec, if set)", self.shown_url, _either(self.limit_sources), self.cap,
            )
        else:
            logger.info(
                "endpoint %s: limits from %s: %s; %d slots (max_concurrency %d)",
                self.shown_url, limits.source, describe(limits), self.limit, self.cap,
            )
        if self.load_metrics:
            await self._read_load()

    async def _read_load(self) -> None:
        """The server's running/waiting gauges now (`/metrics`), logged: requests of other
        clients there share its slots. Shown only: a failure to read them changes nothing."""
        try:
            self.load = await asyncio.wait_for(
                read_load(self.session(), self.url, self.auth_headers(), "/metrics", self.load_metrics),
                timeout=self.timeout,
            )
        except Exception as error:  # noqa: BLE001 - the load is only shown; the limits stand
            logger.info("endpoint %s: /metrics unread (%s)", self.shown_url, type(error).__name__)
            return
        if self.load:
            logger.info(
                "endpoint %s: /metrics: %s", self.shown_url,
                ", ".join(f"{name}={value:g}" for name, value in sorted(self.load.items())),
            )

    def _no_info(self, path: str, why: str) -> None:
        self.info, self.limits_source = {}, NO_SOURCE
        logger.warning(
            "endpoint %s: %s failed (%s); using the configured limits (max_concurrency=%d, "
            "max_input_tokens/max_total_tokens from the spec, if set)", self.shown_url, path, why[:300], self.cap,
        )

    def secrets(self) -> tuple[str, ...]:
        """Token values this endpoint may send: scrubbed from any error text."""
        login = _login_token() if not self.token and is_hf_host(self.url) else None
        return tuple(t for t in (self.token, login) if t)

    def context(self, config: ServerConfig) -> ContextLimits:
        info = self.info or {}
        return ContextLimits(
            max_input_tokens=config.max_input_tokens or info.get("max_input_tokens") or info.get("max_input_length"),
            max_total_tokens=config.max_total_tokens or info.get("max_total_tokens"),
        )

    def rejoin(self) -> None:
        """Back in the source after it was gone (a restarted server): asked for its limits
        again, with one request until then, and a fresh ramp."""
        self.serving = True
        self.info, self.limits_source, self.load = None, None, {}
        self.window = self.ramp_start
        self.consecutive_failures, self.cooling_until = 0, 0.0

    def record_success(self) -> int:
        """Count a success; returns the slots it opened (the ramp's +1 while below the limit)."""
        before = self.capacity
        self.stats.succeeded += 1
        self.consecutive_failures = 0
        self.cooling_until = 0.0
        self.window = min(self.window + 1, max(self.limit, self.ramp_start))
        return self.capacity - before

    def record_failure(self, config: ServerConfig) -> None:
        """Count a retryable failure: cool down (backoff) and halve the ramp window."""
        self.stats.failed += 1
        self.consecutive_failures += 1
        self.cooling_until = time.monotonic() + backoff_delay(self.consecutive_failures, config)
        self.window = max(self.ramp_start, self.window // 2)


class EndpointPool:
    """Hands out endpoint slots: a request waits until one is free, then takes the endpoint with
    the lowest share of slots in use. Endpoints cooling down after a failure are skipped while
    any other endpoint is healthy (so a dead server does not eat every request's retries).

    The endpoints follow `source` (see the module docstring): `sync()` runs before a slot is
    handed out and when one is given back. `endpoints` are the ones serving now, in the source's
    order; `known` holds every endpoint met (their clients are closed, their secrets scrubbed)."""

    def __init__(self, source: EndpointSource, make: Callable[[str], Endpoint], *, model: str = "", wait_s: float = 120.0) -> None:
        self.source = source
        self.model = model
        self.wait_s = wait_s  # how long a request waits while no endpoint serves the model
        self._make = make
        self.known: dict[str, Endpoint] = {}
        self.endpoints: list[Endpoint] = []
        self._urls: tuple[str, ...] | None = None
        self._condition: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sync()

    def sync(self) -> bool:
        """Follow the source: new URLs become endpoints, vanished ones stop serving, returning
        ones are probed again. True when the serving set changed."""
        urls = self.source.urls()
        if urls is self._urls or urls == self._urls:
            return False
        first, self._urls = self._urls is None, urls
        serving: list[Endpoint] = []
        for url in dict.fromkeys(urls):
            endpoint = self.known.get(url)
            if endpoint is None:
                endpoint = self.known[url] = self._make(url)
                if not first:
                    logger.info("endpoint %s now serves %s", endpoint.shown_url, self.model)
            elif not endpoint.serving:
                endpoint.rejoin()
                logger.info("endpoint %s serves %s again; its limits are asked again", endpoint.shown_url, self.model)
            serving.append(endpoint)
        for endpoint in self.endpoints:
            if endpoint.url not in urls:
                endpoint.serving = False
                logger.info("endpoint %s no longer serves %s: no new request goes to it (%d in flight)",
                            endpoint.shown_url, self.model, endpoint.in_flight)
        self.endpoints = serving
        return True

    def _cond(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._condition is None or self._loop is not loop:
            self._condition, self._loop = asyncio.Condition(), loop
        return self._condition

    async def acquire(self) -> Endpoint:
        """A slot of the best endpoint; while no endpoint serves the model, at most `wait_s`
        seconds of waiting, then a RetryableError (the retry policy decides what next)."""
        condition = self._cond()
        empty_since: float | None = None
        async with condition:
            while True:
                self.sync()
                endpoint = self._pick()
                if endpoint is not None:
                    break
                timeout = self._until_cooled()
                if not self.endpoints:
                    now = time.monotonic()
                    empty_since = now if empty_since is None else empty_since
                    left = self.wait_s - (now - empty_since)
                    if left <= 0:
                        raise RetryableError(f"no endpoint serving {self.model} (waited {self.wait_s:g}s for one)")
                    # Nothing will be released to wake this: ask the source again as often as it rereads.
                    timeout = min(POLL_S, left)
                else:
                    empty_since = None
                try:
                    await asyncio.wait_for(condition.wait(), timeout=timeout)
                except asyncio.TimeoutError:
                    # An endpoint finished cooling down (or the source may have changed): look again.
                    # A notify that raced this timeout is lost by asyncio.Condition (3.11): pass it
                    # on, or a waiter with no timeout could wait forever (seen: a run against a dead
                    # server hung 2 times in 7).
                    condition.notify(1)
            endpoint.in_flight += 1
            return endpoint

    async def release(self, endpoint: Endpoint, opened: int = 0) -> None:
        """Give a slot back, and wake one waiter for it and one for each slot the ramp `opened`
        (every waiter when the source changed: new endpoints have room)."""
        condition = self._cond()
        async with condition:
            endpoint.in_flight -= 1
            if self.sync():
                condition.notify_all()
            else:
                condition.notify(1 + max(0, opened))

    async def probe(self, endpoint: Endpoint) -> None:
        """Ask the endpoint's limits (its one slot is held), then wake requests for its new slots."""
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


def retry_policy(config: ServerConfig) -> RetryPolicy:
    return RetryPolicy(config.retries, config.backoff, config.backoff_max)


def backoff_delay(failed: int, config: ServerConfig) -> float:
    """The retry policy's wait after `failed` failures in a row (retry.py: capped, jittered)."""
    return retry_policy(config).delay(failed)


# --- the backend ----------------------------------------------------------------------------


class ServerBackend(LLMBackend):
    """A model served by HTTP endpoints, any server kind (the spec's class says which routes,
    limits and sampling parameters); see the module docstring."""

    def __init__(self, config: ServerConfig, endpoints: EndpointSource | None = None) -> None:
        if endpoints is None:
            if config.endpoints is None:
                # `serve:` entries get theirs from the supervisor that starts the servers (llm/serving/).
                raise UsageError(
                    f"model {config.model!r} has `serve:` and no `endpoints:`: its backend is built with the endpoints "
                    "of the servers the toolkit started (build_backend(spec, endpoints=...)), or give `endpoints:`"
                )
            endpoints = StaticEndpoints(config.endpoints)
        self.config = config
        self.model_id = config.model
        self.kind = config.backend
        self.route = ROUTE_CLASSES[config.route]()
        token = os.environ[config.token_env] if config.token_env else None
        sources, gauges = type(config).LIMIT_SOURCES, type(config).LOAD_METRICS or ()
        self.slot_share: Callable[[int], int] | None = None

        def endpoint(url: str) -> Endpoint:
            made = Endpoint(url, config.max_concurrency, token, config.timeout, config.ramp_start, sources, tuple(gauges))
            made.share = self.slot_share
            return made

        self.pool = EndpointPool(endpoints, endpoint, model=config.model, wait_s=config.timeout)
        self.counter = TokenCounter(_tokenizer_counter(config.tokenizer), config.bytes_per_token)
        if not type(config).SENDS_TOP_K:
            logger.warning(
                "model %r (backend: %s): top_k is not honoured (the server's API has no top_k); temperature and "
                "top_p are sent", config.model, config.backend,
            )

    def __repr__(self) -> str:  # no token in here, ever
        endpoints = [e.shown_url for e in self.pool.endpoints]
        return f"ServerBackend(kind={self.kind!r}, model={self.model_id!r}, route={self.route.name!r}, endpoints={endpoints!r})"

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        """Slots over all endpoints: what the server said where it was asked, else the cap."""
        return sum(e.limit if e.info is not None else e.cap for e in self.pool.endpoints)

    def share_slots(self, share: Callable[[int], int]) -> None:
        """Several drivers use these servers: each endpoint's limit, of those known and those
        the source adds later, becomes `share(limit)`."""
        self.slot_share = share
        for endpoint in self.pool.known.values():
            endpoint.share = share

    def endpoint_stats(self) -> dict[str, dict[str, Any]]:
        """Per endpoint met: attempts, successes, failed attempts, slots, in flight, whether it
        serves now, and the server's own load gauges when it was asked (vLLM's /metrics). One
        that no longer serves offers no slot (limit and window 0): it gets no new request."""
        return {
            e.url: {**e.stats.__dict__, "limit": e.limit if e.serving else 0, "window": e.window if e.serving else 0,
                    "in_flight": e.in_flight, "serving": e.serving, **({"server_load": dict(e.load)} if e.load else {})}
            for e in self.pool.known.values()
        }

    @property
    def supports_chat(self) -> bool:
        return self.route.name == "chat"

    def limits(self, params: GenerationParams | None = None) -> ContextLimits:
        """The tightest context of the endpoints: the spec's limits, else what each server
        reported when it was asked (an endpoint not asked yet knows only the spec's)."""
        contexts = [endpoint.context(self.config) for endpoint in self.pool.endpoints]
        inputs = [c.max_input_tokens for c in contexts if c.max_input_tokens is not None]
        totals = [c.max_total_tokens for c in contexts if c.max_total_tokens is not None]
        return ContextLimits(min(inputs, default=None), min(totals, default=None))

    async def acomplete(self, request: LLMRequest) -> Completion:
        if request.params.no_repeat_ngram_size is not None:
            # TGI, vLLM, SGLang and llama.cpp have no such parameter: sending the rest would decode otherwise, silently.
            raise BackendError(
                f"no_repeat_ngram_size={request.params.no_repeat_ngram_size}: the {self.route.name} route of {self.model_id} "
                "cannot honour it (TGI, vLLM, SGLang and llama.cpp servers have no such parameter); use the embedded "
                "backend ({backend: local, model: <model folder>}) or leave it off"
            )
        try:
            return await retrying(
                lambda: self._attempt(request), retry_policy(self.config), RetryableError,
                lambda text: scrub_secrets(text, self._secrets()),
            )
        except RetryableError:
            raise
        except BackendError as error:  # not retryable: its text may carry a reply's prefix
            raise BackendError(scrub_secrets(str(error), self._secrets())) from None

    def _secrets(self) -> tuple[str, ...]:
        return tuple(s for e in self.pool.known.values() for s in e.secrets())

    async def aclose(self) -> None:
        for endpoint in self.pool.known.values():
            await endpoint.aclose()

    async def _attempt(self, request: LLMRequest) -> Completion:
        endpoint = await self.pool.acquire()
        note_server(host_port(endpoint.url))  # the call's ledger row names the server that answered (its last attempt)
        endpoint.stats.attempts += 1
        opened = 0
        try:
            if endpoint.info is None:
                await self.pool.probe(endpoint)
            completion = await self._send_fitted(endpoint, request)
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

    async def _send_fitted(self, endpoint: Endpoint, request: LLMRequest) -> Completion:
        """Send `request` fitted to the endpoint's context. The byte estimate of its tokens can
        be low (a byte-fallback tokenizer on Thai or Tamil counts about a token a byte): a server
        that refuses the input and says what it counted recalibrates the estimate, and the
        request is fitted again and resent (up to REFITS times). Calls refused side by side
        recalibrate one after another: one whose count implies no lower estimate than another's
        already set is refitted on that one's."""
        for refit in range(REFITS + 1):
            fitted_at = self.counter.bytes_per_token
            fitted = fit_to_context(request, endpoint.context(self.config), self.counter, self.config.context_policy)
            try:
                return await self._send(endpoint, fitted)
            except InputTooLong as refused:
                lowered = self.counter.calibrate(fitted, refused.server_tokens) or self.counter.bytes_per_token < fitted_at
                if refit == REFITS or not lowered:
                    raise
                logger.warning(
                    "endpoint %s counted %d tokens in an input estimated at %d: the estimate is now %.2f bytes a "
                    "token (set `tokenizer` to count exactly)", endpoint.shown_url, refused.server_tokens,
                    self.counter.count_request(fitted), self.counter.bytes_per_token,
                )
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _send(self, endpoint: Endpoint, request: LLMRequest) -> Completion:
        try:
            return await asyncio.wait_for(
                self.route.send(endpoint, request, self.config), timeout=self.config.timeout
            )
        except BackendError:
            raise
        except Exception as error:  # noqa: BLE001 - every client/transport error is classified
            raise _classify(error, endpoint.url, endpoint.secrets()) from error


def _either(paths: tuple[str, ...]) -> str:
    """"/info, /props or /v1/models": the routes a server had none of."""
    if not paths:
        return "limits route"
    return paths[0] if len(paths) == 1 else f"{', '.join(paths[:-1])} or {paths[-1]}"


def _login_token() -> str | None:
    """huggingface_hub's login token (HF_TOKEN, `hf auth login`), or None."""
    try:
        return get_token()
    except Exception:  # noqa: BLE001 - an unreadable token file: nothing to send or scrub
        return None


def _tokenizer_counter(name: str | None):
    """A token-counting function from a tokenizer name/path, loaded offline; None without one."""
    if not name:
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    return lambda text: len(tokenizer(text, add_special_tokens=True)["input_ids"])
