"""Where a served model's endpoints come from: the one contract between the backends that send
requests (backends/server.py and the kinds) and whatever keeps the servers running.

- `StaticEndpoints`: the URLs a recipe lists (`endpoints:`), servers someone else runs.
- `PublishedEndpoints`: the replicas the toolkit runs itself (`serve:`, llm/serving/). Their
  supervisor writes `<output_dir>/run/servers/<name>.endpoints.json` (atomically) whenever a
  replica becomes healthy, dies or is restarted; any process of the run (the driver that started
  them, another driver process, a Ray task on another node that sees the run folder) reads it.

A backend asks `urls()` before handing out a slot; it is cheap (a stat at most every
`POLL_S` seconds, the file re-read only when it changed), so endpoints come and go while the
run goes on: a new URL gets slots, a vanished one gets no new request (those in flight finish
or fail and are retried elsewhere).

The file: `{"format": 1, "endpoints": [{"url": "http://127.0.0.1:PORT", "replica": 0}, ...]}`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Protocol, Sequence

logger = logging.getLogger(__name__)

POLL_S = 0.2
FORMAT = 1


class EndpointSource(Protocol):
    def urls(self) -> tuple[str, ...]:
        """The base URLs serving now (no trailing slash), in a stable order."""


class StaticEndpoints:
    """A fixed list of URLs (the recipe's `endpoints:`)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = tuple(url.rstrip("/") for url in urls)

    def urls(self) -> tuple[str, ...]:
        return self._urls

    def __repr__(self) -> str:
        return f"StaticEndpoints({list(self._urls)!r})"


class PublishedEndpoints:
    """The endpoints a supervisor publishes in `path` (see the module docstring). A missing file
    is no endpoint yet (the servers are starting); an unreadable one keeps the last good list
    (a reader never sees a torn file, as the writer replaces it atomically, but a hand-edited
    or truncated one must not empty a running fleet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._urls: tuple[str, ...] = ()
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0

    def urls(self) -> tuple[str, ...]:
        now = time.monotonic()
        if now - self._checked < POLL_S:
            return self._urls
        self._checked = now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._urls, self._seen = (), None
            return self._urls
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # each write is a new file (atomic replace)
        if key != self._seen:
            try:
                body = json.loads(self.path.read_text(encoding="utf-8"))
                self._urls = tuple(str(e["url"]).rstrip("/") for e in body["endpoints"])
                self._seen = key
            except (OSError, ValueError, KeyError, TypeError) as error:
                # keep the last good list; read again once the file changes
                self._seen = key
                logger.warning("%s is unreadable (%s); keeping the %d endpoint(s) read before", self.path, error, len(self._urls))
        return self._urls

    def __reduce__(self):  # a driver process or Ray task rebuilds it from the path alone
        return (PublishedEndpoints, (str(self.path),))

    def __repr__(self) -> str:
        return f"PublishedEndpoints({str(self.path)!r})"


def endpoints_document(urls: Sequence[tuple[str, int]]) -> dict:
    """The published file's content for `(url, replica)` pairs (the supervisor writes it with
    storage.write_json)."""
    return {"format": FORMAT, "endpoints": [{"url": url.rstrip("/"), "replica": replica} for url, replica in urls]}
