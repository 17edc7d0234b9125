"""How filtering talks to the Hub: which failures are worth another attempt (429, 5xx, no answer:
the project's retry runner, retry.py, waits and asks again), how a failure is named, and the
download of one data file into the Hugging Face cache. Shared by the listing (hub_files.py) and
the reading (sources.py) of hub sources."""

from __future__ import annotations

import logging

from ..errors import EnvironmentFault
from ..retry import RetryPolicy, retry_call

log = logging.getLogger(__name__)

# A listing or a download is a few requests; a busy Hub or a dropped connection gets a few more tries.
HUB_RETRY = RetryPolicy(retries=3, backoff=1.0, backoff_max=20.0, jitter=False)
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


def status(error: BaseException) -> int | None:
    """The HTTP status the Hub answered, None when it did not answer."""
    code = getattr(getattr(error, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def unreachable(error: BaseException) -> bool:
    """No answer at all (httpx's ConnectError/ReadTimeout are no OSErrors: named by type)."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, (ConnectionError, TimeoutError)) or any(word in type(current).__name__ for word in ("Connect", "Timeout")):
            return True
        current = current.__cause__ or current.__context__
    return False


def transient(error: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    code = status(error)
    return code in _TRANSIENT if code is not None else unreachable(error)


def describe(error: BaseException) -> str:
    code = status(error)
    return f"HTTP {code}" if code is not None else type(error).__name__


def with_retries(step, what: str):
    """`step()`, asked again after a backoff while the Hub is busy or does not answer."""

    def on_retry(error: BaseException, failed: int, delay: float) -> None:
        log.warning("%s: %s, retry %d/%d in %.1f s", what, describe(error), failed, HUB_RETRY.retries, delay)

    return retry_call(step, HUB_RETRY, transient, on_retry=on_retry)


def download(repo: str, commit: str, file: str, url: str) -> str:
    """The local path of `file` of dataset `repo` at `commit`, in the Hugging Face cache (the
    library resumes an interrupted download; with a commit id as revision a cached file answers
    without any request)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    again = "then run the same command again (finished files are not read again)"
    try:
        return with_retries(lambda: _fetch(hf_hub_download, repo, file, commit), f"downloading {url}")
    except HfHubHTTPError as error:
        raise EnvironmentFault(f"{url}: the Hub answered {describe(error)} to its download; check HF_TOKEN (access to {repo}), {again}") from None
    except (LocalEntryNotFoundError, _Unanswered) as error:
        cause = error.__cause__ or error
        raise EnvironmentFault(f"{url}: the Hub cannot be reached ({type(cause).__name__}); check the network and HF_ENDPOINT, {again}") from None


class _Unanswered(ConnectionError):
    """A download with no answer and nothing cached (huggingface_hub says LocalEntryNotFoundError)."""


def _fetch(hf_hub_download, repo: str, file: str, commit: str) -> str:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return hf_hub_download(repo, file, repo_type="dataset", revision=commit)
    except LocalEntryNotFoundError as error:
        # The library answers "not in the cache" for any failed request: judge what failed.
        cause = error.__cause__
        if isinstance(cause, HfHubHTTPError):
            raise cause from None
        if isinstance(cause, Exception) and not isinstance(cause, OfflineModeIsEnabled) and unreachable(cause):
            raise _Unanswered(str(error)) from cause
        raise
