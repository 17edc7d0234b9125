"""What the HTTP model servers (TGI, the OpenAI-compatible LLM servers, TEI embedders) share:
which hosts get huggingface_hub's login token, and what a failed request means: worth another
attempt (`RetryableError`) or not (`BackendError`), with a message that names the endpoint and
never carries a secret (a server's error body may echo the request's headers: it is scrubbed,
then cut). The retries themselves: xinstruction_dataset/retry.py."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlparse

import aiohttp
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

from ...redact import scrub_secrets
from .base import BackendError, RetryableError
from .http import HTTPStatusError

try:  # huggingface_hub 2.x ships httpx under this name; 1.x uses httpx itself
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx  # type: ignore[no-redef]

# Hosts that get huggingface_hub's login token (HF_TOKEN) without `token_env`: Hugging Face's own.
HF_HOSTS = ("huggingface.co", "hf.space", "endpoints.huggingface.cloud")


def is_hf_host(url: str) -> bool:
    """Whether `url` is one of Hugging Face's hosts (`HF_HOSTS` or a subdomain of one)."""
    host = (urlparse(url).hostname or "").lower().rstrip(".")
    return any(host == h or host.endswith("." + h) for h in HF_HOSTS)


# 424: TGI's "generation" error (e.g. out of GPU memory mid-batch): transient.
RETRYABLE_STATUS = frozenset({408, 409, 424, 425, 429}) | frozenset(range(500, 600))


# How each server says how many tokens it counted in an input over its context:
# - TGI (422): "`inputs` must have less than N tokens. Given: M" / "... Given: M `inputs` tokens and ...";
# - vLLM (400) since v0.18: "... your prompt contains [at least ]M input tokens, ..."; v0.10.2 to
#   v0.17: "... your request has M input tokens ..."; before: "... (M in the messages, K in the completion)";
# - SGLang (400, its tokenizer manager): "The input (M tokens) is longer than the model's context
#   length ..." / "... M tokens from the input messages and K tokens for the completion ...";
# - llama.cpp (400 exceed_context_size_error): "n_prompt_tokens": M;
# - OpenAI (400 context_length_exceeded): "... (M in your prompt; K for the completion) ...".
# vLLM's "at least M" is a lower bound: recalibrating on it still raises the estimate.
SERVER_TOKEN_COUNTS = (
    re.compile(r"`inputs`.*?Given: (\d+)"),
    re.compile(r"\((\d+) in the messages, \d+ in the completion\)"),
    re.compile(r"your prompt contains (?:at least )?(\d+) input tokens"),
    re.compile(r"your request has (\d+) input tokens"),
    re.compile(r"The input \((\d+) tokens\) is longer than the model's context length"),
    re.compile(r"(\d+) tokens from the input messages and \d+ tokens for the completion"),
    re.compile(r'"n_prompt_tokens":\s*(\d+)'),
    re.compile(r"\((\d+) in your prompt; \d+ for the completion\)"),
)


class InputTooLong(BackendError):
    """The server refused an input over its context and said how many tokens it counted
    (`server_tokens`): the client's estimate was low. server.py recalibrates and refits."""

    def __init__(self, message: str, server_tokens: int) -> None:
        super().__init__(message)
        self.server_tokens = server_tokens


def classify_error(error: Exception, url: str, secrets: tuple[str, ...] = ()) -> BackendError:
    """A client-side exception as RetryableError (worth another attempt), InputTooLong or
    BackendError, its text scrubbed of `secrets` and of anything that looks like a token."""
    classified = _classify_raw(error, url)
    text = scrub_secrets(str(classified), secrets)
    if type(classified) is BackendError:
        for pattern in SERVER_TOKEN_COUNTS:
            found = pattern.search(text)
            if found:
                return InputTooLong(text, int(found.group(1)))
    return type(classified)(text)


def _classify_raw(error: Exception, url: str) -> BackendError:
    if isinstance(error, HTTPStatusError):  # the LLM servers' transport (http.py)
        kind = RetryableError if error.status in RETRYABLE_STATUS else BackendError
        return kind(f"{url}: HTTP {error.status}: {_head(error.body)}")
    http_error = _http_error_in(error)
    if http_error is not None:
        status = http_error.response.status_code
        kind = RetryableError if status in RETRYABLE_STATUS else BackendError
        # TGI's typed errors (overloaded, validation...) carry the server's message; else the body.
        detail = f"{type(error).__name__}: {error}" if error is not http_error else _body(http_error.response)
        return kind(f"{url}: HTTP {status}: {detail}")
    if isinstance(error, (asyncio.TimeoutError, InferenceTimeoutError, httpx.TimeoutException)):
        return RetryableError(f"{url}: timed out")
    if isinstance(error, (httpx.TransportError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        # refused, reset, closed mid-body (a killed server): another attempt, maybe elsewhere
        return RetryableError(f"{url}: connection error: {type(error).__name__}: {error}")
    if isinstance(error, aiohttp.ClientResponseError):  # not HTTP at all (a garbled status line or headers)
        return RetryableError(f"{url}: malformed reply: {type(error).__name__}: {error}")
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
    return _head(str(text))


def _head(text: str) -> str:
    # Cut before scrubbing would leave half a token: scrub the whole (bounded) head, then cut.
    return scrub_secrets(" ".join(text[:4000].split()))[:500]
