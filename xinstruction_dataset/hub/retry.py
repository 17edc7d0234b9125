"""Retrying Hub calls with exponential backoff on rate limits (429) and server errors (5xx).

`huggingface_hub` already retries single HTTP requests of some routes (LFS uploads, pre-upload);
this wraps whole publishing steps, including the ones it does not retry (commit, tag, refs), so a
transient failure anywhere does not abort a publish. Each wrapped step must be safe to repeat.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from ..errors import EnvironmentFault
from ..retry import RetryPolicy, retry_call

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


# The Hub's steps: no jitter (one client, not many on one server), waits capped at 30 s.
HUB_RETRY = RetryPolicy(retries=4, backoff=1.0, backoff_max=30.0, jitter=False)


def http_status(error: BaseException) -> int | None:
    """The HTTP status behind an error, looking through wrapped causes (`RuntimeError from HfHubHTTPError`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
        current = current.__cause__ or current.__context__
    return None


def _retry_after(error: BaseException) -> float | None:
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class HubUnreachable(EnvironmentFault):
    """No answer from the Hub after every attempt (connection refused, reset, timed out)."""


class HubRefused(EnvironmentFault):
    """The Hub refused the credentials (401/403)."""


def call_with_retries(step: Callable[[], T], policy: RetryPolicy, description: str) -> T:
    """Run `step`; on a 429/5xx answer or a connection failure wait and run it again, up to
    `policy.attempts` times in all (the project's retry runner, retry.py). A Hub that stays
    unreachable, or refuses the token, ends as one clear `EnvironmentFault` (exit 3) instead of
    the transport's traceback."""

    def retryable(error: BaseException) -> bool:
        status = http_status(error)
        return status in RETRYABLE_STATUS or (status is None and _is_connection_error(error))

    def on_retry(error: BaseException, failed: int, delay: float) -> None:
        status = http_status(error)
        shown = f"HTTP {status}" if status else type(error).__name__
        logger.warning("%s: %s, retry %d/%d in %.2f s", description, shown, failed, policy.retries, delay)

    try:
        return retry_call(step, policy, retryable, retry_after=_retry_after, on_retry=on_retry)
    except Exception as error:
        status = http_status(error)
        if status in (401, 403):
            raise HubRefused(
                f"{description}: the Hub refused the request (HTTP {status}): log in with `hf auth login` "
                "or set HF_TOKEN to a token with write access to this repo"
            ) from error
        if status is None and _is_connection_error(error):  # retried: every attempt is spent
            raise HubUnreachable(
                f"{description}: the Hub cannot be reached after {policy.attempts} attempt(s) ({type(error).__name__}: {error}); "
                "check the network and HF_ENDPOINT, then run the same command again"
            ) from error
        raise


def _is_connection_error(error: BaseException) -> bool:
    """A failure to reach the server at all, by the transport's own exception types (httpx's
    ConnectError/ReadTimeout... are not OSErrors, so they are recognised by name)."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, (ConnectionError, TimeoutError)) or any(
            word in type(current).__name__ for word in ("Connect", "Timeout", "RemoteProtocol")
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
