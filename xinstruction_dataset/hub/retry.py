"""Retrying Hub calls with exponential backoff on rate limits (429) and server errors (5xx).

`huggingface_hub` already retries single HTTP requests of some routes (LFS uploads, pre-upload);
this wraps whole publishing steps, including the ones it does not retry (commit, tag, refs), so a
transient failure anywhere does not abort a publish. Each wrapped step must be safe to repeat.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from ..errors import EnvironmentFault

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a step, and how long to wait: `base_delay * 2**n`, capped at `max_delay`.

    `sleep` is how the wait happens (tests pass a recorder instead of waiting).
    """

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based); the server's Retry-After wins."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return min(self.max_delay, retry_after) if retry_after is not None else backoff


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
    `policy.attempts` times in all. A Hub that stays unreachable, or refuses the token, ends as
    one clear `EnvironmentFault` (exit 3) instead of the transport's traceback."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return step()
        except Exception as error:
            status = http_status(error)
            if status in (401, 403):
                raise HubRefused(
                    f"{description}: the Hub refused the request (HTTP {status}): log in with `hf auth login` "
                    "or set HF_TOKEN to a token with write access to this repo"
                ) from error
            unreachable = status is None and _is_connection_error(error)
            if not (unreachable or status in RETRYABLE_STATUS):
                raise
            if attempt == policy.attempts:
                if unreachable:
                    raise HubUnreachable(
                        f"{description}: the Hub cannot be reached after {attempt} attempt(s) ({type(error).__name__}: {error}); "
                        "check the network and HF_ENDPOINT, then run the same command again"
                    ) from error
                raise
            delay = policy.delay(attempt, _retry_after(error))
            logger.warning("%s: %s, retry %d/%d in %.2f s", description, f"HTTP {status}" if status else type(error).__name__, attempt, policy.attempts - 1, delay)
            policy.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


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
