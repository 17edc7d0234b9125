"""Live progress of the labelling engine: documents done / remaining with an ETA, and for each
endpoint (each distinct backend, i.e. each `CallScheduler`) the calls in flight against its
current limit, the ramp's window against the servers' slots, the failures so far, the
generated tokens a second, and with prices (`curation.cost`) the money so far; the documents
line then adds the projected total (money so far / documents done x documents in all).

The figures are read from counters the schedulers and backends keep anyway (plain integers, no
lock): drawing them costs a call nothing. Two renderings of the same figures:
- on a terminal: the `curate` bar (done / total, rate, ETA) and one status line per endpoint
  under it, redrawn every `REFRESH_S` seconds;
- anywhere else (a log file, CI, `nohup`): one line for the documents and one per endpoint every
  `XINSTRUCTION_PROGRESS_INTERVAL` seconds (default `LINE_INTERVAL_S`) and once at the end, so
  the log of a long run tells where it stands without a carriage-return soup.

An endpoint is named by its roles, model id and servers' `host:port`, never by a URL's user
info, path or query; the name also goes through `redact`, so no token reaches the output.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import IO, Any
from tqdm.auto import tqdm

from ..errors import UserError
from ..llm.calls import CallScheduler
from ..llm.ledger import Price, host_port
from ..redact import redact

REFRESH_S = 0.5  # terminal: how often the endpoint lines are redrawn
LINE_INTERVAL_S = 30.0  # log: seconds between two progress lines (XINSTRUCTION_PROGRESS_INTERVAL)
INTERVAL_ENV = "XINSTRUCTION_PROGRESS_INTERVAL"
HOSTS_SHOWN = 2  # servers named in an endpoint's name; the rest are counted (`+3`)


@dataclass(frozen=True)
class EndpointFigures:
    """One endpoint at one moment. `window` / `server_slots` exist for backends with a ramp over
    servers (TGI and OpenAI-compatible); `retries` counts failed attempts that were tried again."""

    in_flight: int
    limit: int
    peak: int
    window: int | None
    server_slots: int | None
    sent: int
    cached: int
    failed: int
    retries: int
    tokens_per_s: float = 0.0  # generated tokens a second of this run's paid calls
    cost: float | None = None  # money of this run's paid calls (with a price)
    currency: str = ""

    @property
    def share(self) -> float:
        return self.in_flight / self.limit if self.limit else 0.0

    def format(self) -> str:
        parts = [f"in_flight={self.in_flight}/{self.limit} ({self.share:.0%})", f"peak={self.peak}"]
        if self.window is not None:
            parts.append(f"window={self.window}/{self.server_slots}")
        parts += [f"sent={self.sent}", f"cached={self.cached}", f"failed={self.failed}", f"retries={self.retries}"]
        parts.append(f"tok/s={self.tokens_per_s:.1f}")
        if self.cost is not None:
            parts.append(f"cost={format_money(self.cost, self.currency)}")
        return " ".join(parts)


def format_money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}".strip()


def scheduler_cost(scheduler: CallScheduler, prices: dict[str, Price] | None) -> float | None:
    """Money of a scheduler's paid calls so far: token prices, and GPU-hours since it started."""
    price = (prices or {}).get(scheduler.backend.model_id)
    if price is None:
        return None
    totals = scheduler.totals
    prompt, completion = totals.by_model.get(scheduler.backend.model_id, (0, 0))
    held = time.monotonic() - totals.started if price.gpu_hour and totals.paid else 0.0
    return price.of_tokens(prompt, completion) + price.of_time(held)


def read_figures(scheduler: CallScheduler, prices: dict[str, Price] | None = None, currency: str = "") -> EndpointFigures:
    stats = scheduler.stats
    servers = _server_stats(scheduler)
    failed_attempts = sum(s.get("failed", 0) for s in servers.values())
    return EndpointFigures(
        in_flight=scheduler.in_flight,
        limit=scheduler.limit,
        peak=scheduler.peak_in_flight,
        # A window wider than the server's slots opens nothing more: what counts is the smaller.
        window=sum(min(s["window"], s["limit"]) for s in servers.values()) if servers else None,
        server_slots=sum(s["limit"] for s in servers.values()) if servers else None,
        sent=stats.sent,
        cached=stats.cache_hits,
        failed=stats.failed,
        # Every failed attempt was retried, except the last one of each call that failed for good.
        retries=max(0, failed_attempts - stats.sends_failed),
        tokens_per_s=scheduler.totals.completion_tokens / max(time.monotonic() - scheduler.totals.started, 1e-9),
        cost=scheduler_cost(scheduler, prices),
        currency=currency,
    )


def endpoint_name(roles: list[str], scheduler: CallScheduler) -> str:
    """`generator+judge model-id @ host:port, host2:port +3`: no user info, path or query."""
    hosts = [_host(url) for url in _server_stats(scheduler)]
    where = ", ".join(hosts[:HOSTS_SHOWN]) + (f" +{len(hosts) - HOSTS_SHOWN}" if len(hosts) > HOSTS_SHOWN else "")
    name = f"{'+'.join(roles)} {scheduler.backend.model_id}" + (f" @ {where}" if hosts else "")
    return redact(name)


_host = host_port


def _server_stats(scheduler: CallScheduler) -> dict[str, dict[str, Any]]:
    """Per server URL: attempts, failed, limit, window, in_flight (backends with servers only)."""
    read = getattr(scheduler.backend, "endpoint_stats", None)
    return read() if callable(read) else {}


def line_interval() -> float:
    """Seconds between progress lines in a log: `XINSTRUCTION_PROGRESS_INTERVAL`, else the default."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return LINE_INTERVAL_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < math.inf:
        raise UserError(f"{INTERVAL_ENV}={raw!r} is not a number of seconds above 0: set it to e.g. 30, or unset it")
    return seconds


class LiveProgress:
    """The live view of one engine run (see the module docstring). `document_done()` per finished
    document; `await ticking()` in a task while the run lasts; `close()` at the end draws the
    final figures. Disabled (`enabled=False`), it only counts."""

    def __init__(
        self, endpoints: dict[str, CallScheduler], total: int | None, *, enabled: bool = True,
        file: IO[str] | None = None, lines: bool | None = None, prices: dict[str, Price] | None = None, currency: str = "",
    ) -> None:
        self.endpoints = endpoints  # by name
        self.prices, self.currency = prices or {}, currency
        self.total = total
        self.enabled = enabled
        self.file = file or sys.stderr
        self.lines = not _is_terminal(self.file) if lines is None else lines
        self.interval = (line_interval() if self.lines else REFRESH_S) if enabled else 0.0
        self.done = 0
        self.started = time.monotonic()
        self.bar: tqdm | None = None
        self.endpoint_bars: list[tqdm] = []
        if enabled and not self.lines:
            self.bar = tqdm(total=total, desc="curate", unit="doc", file=self.file, dynamic_ncols=True, position=0)
            # One status line per endpoint (a bar of no total showing only its text), cut to the width.
            self.endpoint_bars = [
                tqdm(total=None, desc=self._status(name, scheduler), bar_format="{desc}", file=self.file,
                     position=i + 1, leave=True, dynamic_ncols=True)
                for i, (name, scheduler) in enumerate(endpoints.items())
            ]

    def document_done(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    async def ticking(self) -> None:
        """Draw the figures every interval, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.show()

    def show(self) -> None:
        if not self.enabled:
            return
        if self.lines:
            for line in self.report():
                tqdm.write(line, file=self.file)
            return
        cost = self.cost_so_far()
        if self.bar is not None and cost is not None:
            projected = f" projected={format_money(cost / self.done * self.total, self.currency)}" if self.total and self.done else ""
            self.bar.set_postfix_str(f"cost={format_money(cost, self.currency)}{projected}", refresh=False)
        for bar, (name, scheduler) in zip(self.endpoint_bars, self.endpoints.items()):
            bar.set_description_str(self._status(name, scheduler), refresh=False)
            bar.refresh()

    def report(self) -> list[str]:
        """The lines a log gets: the documents, then one per endpoint."""
        lines = [f"curate: documents {self._documents()}"]
        lines += [f"curate: endpoint {self._status(name, s)}" for name, s in self.endpoints.items()]
        return lines

    def _status(self, name: str, scheduler: CallScheduler) -> str:
        return f"{name}: {read_figures(scheduler, self.prices, self.currency).format()}"

    def cost_so_far(self) -> float | None:
        costs = [scheduler_cost(s, self.prices) for s in self.endpoints.values()]
        known = [c for c in costs if c is not None]
        return sum(known) if known else None

    def _documents(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"done={self.done}"
        if self.total is not None:
            remaining = max(0, self.total - self.done)
            eta = tqdm.format_interval(remaining / rate) if rate > 0 else "?"
            text += f" remaining={remaining} total={self.total} ({self.done / max(self.total, 1):.0%}) eta={eta}"
        text += f" rate={rate:.2f}/s elapsed={tqdm.format_interval(elapsed)}"
        cost = self.cost_so_far()
        if cost is not None:
            text += f" cost={format_money(cost, self.currency)}"
            if self.total and self.done:
                text += f" projected={format_money(cost / self.done * self.total, self.currency)}"
        return text

    def close(self) -> None:
        """Draw the final figures and release the terminal lines."""
        self.show()
        for bar in [self.bar, *self.endpoint_bars]:
            if bar is not None:
                bar.close()


def _is_terminal(file: IO[str]) -> bool:
    isatty = getattr(file, "isatty", None)
    return bool(isatty and isatty())
