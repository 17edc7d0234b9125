"""The project's one retry policy, and its two runners: `retrying` (async: the LLM endpoints and
the TEI embedder) and `retry_call` (sync: steps a caller classifies itself, e.g. the Hub's).

A policy is `retries` attempts after the first, waiting `backoff * 2**(n - 1)` seconds after the
n-th failed attempt, capped at `backoff_max`, times a random 0.5-1.0 when `jitter` is on (many
clients of one busy server then do not retry in step). A server's own `Retry-After` wins over the
backoff (still capped). Only the retry loop lives here; what counts as worth another attempt is
the caller's: the runners are given the exception type, or a predicate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 60.0
    jitter: bool = True
    # How a sync runner waits (tests pass a recorder); the async runner awaits asyncio.sleep.
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, failed: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failed`-th failed attempt (1-based); a server's Retry-After
        wins over the backoff, both capped at `backoff_max`."""
        if retry_after is not None:
            return min(self.backoff_max, max(0.0, retry_after))
        wait = min(self.backoff_max, self.backoff * 2 ** (failed - 1))
        return wait * random.uniform(0.5, 1.0) if self.jitter else wait


def final_error(errors: list[str]) -> str:
    """The text of a call that failed on every attempt: the last error, and how many there were."""
    last = errors[-1]
    return f"failed after {len(errors)} attempts; last error: {last}" if len(errors) > 1 else last


E = TypeVar("E", bound=Exception)


async def retrying(
    attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, retry_on: type[E],
    scrub: Callable[[str], str] = str,
) -> T:
    """`await attempt()`, again after a backoff while it raises `retry_on` (up to
    `policy.retries` times); then `retry_on(final_error(...))`, its text passed through `scrub`
    (an error body may echo a secret). Any other error ends it at once. `retry_on` must take
    its message as its one argument."""
    errors: list[str] = []
    for n in range(policy.attempts):
        if n:
            await asyncio.sleep(policy.delay(n))
        try:
            return await attempt()
        except retry_on as error:
            errors.append(str(error))
    raise retry_on(scrub(final_error(errors))) from None


def retry_call(
    step: Callable[[], T], policy: RetryPolicy, retryable: Callable[[BaseException], bool],
    *, retry_after: Callable[[BaseException], float | None] = lambda error: None,
    on_retry: Callable[[BaseException, int, float], None] = lambda error, failed, delay: None,
) -> T:
    """`step()`, again after `policy.sleep(delay)` while it raises an error `retryable` says is
    worth another attempt, up to `policy.attempts` in all; the last error (or any other) is
    raised as it is. `on_retry(error, failed, delay)` is told before each wait (to log it)."""
    for failed in range(1, policy.attempts + 1):
        try:
            return step()
        except Exception as error:
            if failed == policy.attempts or not retryable(error):
                raise
            delay = policy.delay(failed, retry_after(error))
            on_retry(error, failed, delay)
            policy.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")
