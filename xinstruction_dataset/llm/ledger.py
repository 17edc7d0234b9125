"""The ledger: one row for every LLM call a run asked for, paid or answered from the cache.

The rows live in the `ledger` table of the call-cache file (llm/cache.py writes them; a paid
call's row is committed in the same transaction as its stored result, so a kill never leaves a
paid call without its row, or a row without its result). The cache keeps what a call returned;
the ledger keeps what it was for and what it cost:

    run          the invocation that asked for it (a UUID; `before-ledger` for calls stored by
                 a toolkit without a ledger, added when such a cache is first opened)
    key          the call-cache key (`LLMRequest.cache_key`), unchanged
    kind         paid (sent and stored), cached (answered by a stored call), shared (an identical
                 call was in flight and its answer was shared) or failed (sent, failed for good)
    stage, role, language, doc_id, round, candidate     what the call was for (`CallLabel`)
    endpoint     the server that answered: `host:port` (never a URL's user, path or query), a
                 managed replica's name, or `local` for the embedded model
    model        the model id
    prompt_tokens, completion_tokens, tokens
                 the counts and where they come from: `reported` by the server, `counted` with the
                 model's tokenizer, or `estimated` from UTF-8 bytes (`TokenCounter`'s default)
    queued_s, service_s, started_at, ended_at
                 seconds waiting for one of the scheduler's slots, seconds in the backend (its
                 retries included), and wall-clock arrival and end (`time.time()`)

Cached rows carry the tokens of the stored answer (what the call would have cost), so an
estimate made on a warm cache still measures documents; money and budgets count paid rows
only, so a resumed run never counts a call twice. `summarise()` turns rows into the figures of
`run/ledger.json` and `curation/<lang>/ledger.json`; `Price` turns them into money.
"""

from __future__ import annotations

import contextvars
import math
import sqlite3
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

LEDGER_FORMAT = 1
BEFORE_LEDGER = "before-ledger"  # the run of calls stored before the cache had a ledger
KINDS = ("paid", "cached", "shared", "failed")
COLUMNS = (
    "run", "key", "kind", "stage", "role", "language", "doc_id", "round", "candidate", "endpoint", "model",
    "prompt_tokens", "completion_tokens", "tokens", "queued_s", "service_s", "started_at", "ended_at",
)
BYTES_PER_TOKEN = 2.0  # TokenCounter's default estimate, for calls no server or tokenizer counted


def new_run_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class CallLabel:
    """What a call is for; the engine gives every call of a document one (None where unknown)."""

    stage: str | None = None
    role: str | None = None
    language: str | None = None
    doc_id: str | None = None
    round: int | None = None
    candidate: int | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger (see the module docstring)."""

    run: str
    key: str
    kind: str
    label: CallLabel
    endpoint: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: str = "reported"
    queued_s: float = 0.0
    service_s: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0

    def row(self) -> tuple[Any, ...]:
        label = self.label
        return (
            self.run, self.key, self.kind, label.stage, label.role, label.language, label.doc_id, label.round,
            label.candidate, self.endpoint, self.model, self.prompt_tokens, self.completion_tokens, self.tokens,
            self.queued_s, self.service_s, self.started_at, self.ended_at,
        )


# --- which server answered ------------------------------------------------------------------

@dataclass
class _Served:
    name: str | None = None


_SERVED: contextvars.ContextVar[_Served | None] = contextvars.ContextVar("xinstruction_served_by", default=None)


def note_server(name: str) -> None:
    """A backend says which server answers the call in progress (`host:port`, a replica's name);
    the scheduler reads it into the call's ledger row. Outside a scheduled call: nothing."""
    served = _SERVED.get()
    if served is not None:
        served.name = name


class ServedBy:
    """`with ServedBy() as served: await backend.acomplete(...)`; then `served.name` (or None)."""

    def __enter__(self) -> _Served:
        self._served = _Served()
        self._token = _SERVED.set(self._served)
        return self._served

    def __exit__(self, *exc: object) -> None:
        _SERVED.reset(self._token)


def host_port(url: str) -> str:
    """`host:port` of a URL (`host` without a port): no user info, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:  # not a number: the URL is refused by the backend anyway; show the host only
        port = None
    return f"{host}:{port}" if port else host


def default_endpoint(backend: Any) -> str:
    """The endpoint of a call whose backend did not name its server: its one server's
    `host:port`, its servers joined with `+`, or `local` (an in-process model)."""
    read = getattr(backend, "endpoint_stats", None)
    urls = list(read()) if callable(read) else []
    return "+".join(host_port(url) for url in urls) if urls else "local"


# --- tokens ---------------------------------------------------------------------------------

def call_tokens(backend: Any, prompt: str, text: str, prompt_tokens: int | None, completion_tokens: int | None) -> tuple[int, int, str]:
    """(prompt tokens, completion tokens, source) of one answered call: as the server reported
    them, else counted with the backend's tokenizer (`counter`, a `TokenCounter`: `counted` when
    it is exact, else its calibrated estimate), else estimated from bytes."""
    if prompt_tokens is not None and completion_tokens is not None:
        return prompt_tokens, completion_tokens, "reported"
    counter = getattr(backend, "counter", None)
    if counter is not None and callable(getattr(counter, "count", None)):
        count, source = counter.count, "counted" if getattr(counter, "exact", False) else "estimated"
    else:
        count, source = _estimate, "estimated"
    return (
        prompt_tokens if prompt_tokens is not None else count(prompt),
        completion_tokens if completion_tokens is not None else count(text),
        source,
    )


def _estimate(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


# --- prices ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Price:
    """A model's price: per 1k prompt and completion tokens, and/or per GPU-hour of the time its
    servers were in use (`gpus` of them; the GPU count also gives tokens per GPU-hour)."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0
    gpu_hour: float = 0.0
    gpus: int | None = None

    def of_tokens(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.prompt_per_1k + completion_tokens / 1000 * self.completion_per_1k

    def of_time(self, span_s: float) -> float:
        return span_s / 3600 * (self.gpus or 1) * self.gpu_hour


# --- reading and summing ----------------------------------------------------------------------

@dataclass
class Figures:
    """Sums over ledger rows: calls by kind, paid tokens and time, and (with prices) money."""

    paid: int = 0
    cached: int = 0
    shared: int = 0
    failed: int = 0
    prompt_tokens: int = 0  # of paid calls
    completion_tokens: int = 0
    not_reported: int = 0  # paid calls whose tokens were counted or estimated, not reported
    queued_s: float = 0.0
    service_s: float = 0.0
    cost: float | None = None

    @property
    def calls(self) -> int:
        return self.paid + self.cached + self.shared + self.failed

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, row: dict[str, Any]) -> None:
        kind = row["kind"]
        setattr(self, kind, getattr(self, kind) + 1)
        if kind == "paid":
            self.prompt_tokens += row["prompt_tokens"]
            self.completion_tokens += row["completion_tokens"]
            self.not_reported += row["tokens"] != "reported"
        if kind in ("paid", "failed"):
            self.queued_s += row["queued_s"]
            self.service_s += row["service_s"]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["calls"], data["tokens"] = self.calls, self.tokens
        data["queued_s"], data["service_s"] = round(self.queued_s, 3), round(self.service_s, 3)
        if self.cost is None:
            del data["cost"]
        else:
            data["cost"] = round(self.cost, 6)
        return data


def _paths(cache: "str | Path | Sequence[str | Path]") -> list[Path]:
    return [Path(cache)] if isinstance(cache, (str, Path)) else [Path(p) for p in cache]


def read_rows(cache_path: "str | Path | Sequence[str | Path]", where: str = "", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The ledger rows of a call-cache file, or of a set of them (a multi-driver run's files,
    `cache.cache_files`), read only, by arrival. A cache written before the ledger (not yet
    opened by this toolkit) reads as its stored calls, each a paid row of run `before-ledger`."""
    rows: list[dict[str, Any]] = []
    paths = _paths(cache_path)
    for path in paths:
        rows += _read_file_rows(path, where, args)
    if len(paths) > 1:
        rows.sort(key=lambda row: row["started_at"])  # stable: a file's own order stays
    return rows


def _read_file_rows(cache_path: Path, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    connection = sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True)
    try:
        has_ledger = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'").fetchone()
        source = "ledger" if has_ledger else f"({BACKFILL_SELECT})"
        sql = f"SELECT {', '.join(COLUMNS)} FROM {source}" + (f" WHERE {where}" if where else "") + " ORDER BY started_at"
        return [dict(zip(COLUMNS, row)) for row in connection.execute(sql, args)]
    finally:
        connection.close()


def read_runs(cache_path: "str | Path | Sequence[str | Path]") -> dict[str, dict[str, Any]]:
    """{run: {started_at, command}} of the runs the ledger knows (none for a cache without one).
    The drivers of one run share its id, each file listing it: the earliest start is the run's."""
    runs: dict[str, dict[str, Any]] = {}
    for path in _paths(cache_path):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if not connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone():
                continue
            for run, started, command in connection.execute("SELECT run, started_at, command FROM runs"):
                if run not in runs or started < runs[run]["started_at"]:
                    runs[run] = {"started_at": started, "command": command}
        finally:
            connection.close()
    return runs


# The stored calls as ledger rows (the migration of a cache made before the ledger, and the
# read of one not yet migrated): paid, stage unknown, tokens as reported or estimated from bytes.
_PROMPT = "coalesce(json_extract(request, '$.prompt'), json_extract(request, '$.messages[#-1][1]'), '')"
BACKFILL_SELECT = (
    f"SELECT '{BEFORE_LEDGER}' AS run, key, 'paid' AS kind, NULL AS stage, NULL AS role, NULL AS language, "
    "NULL AS doc_id, NULL AS round, NULL AS candidate, 'unknown' AS endpoint, model_id AS model, "
    "coalesce(json_extract(completion, '$.prompt_tokens'), "
    f"(length(CAST({_PROMPT} AS BLOB)) + {int(BYTES_PER_TOKEN) - 1}) / {int(BYTES_PER_TOKEN)}) AS prompt_tokens, "
    "coalesce(json_extract(completion, '$.completion_tokens'), "
    f"(length(CAST(json_extract(completion, '$.text') AS BLOB)) + {int(BYTES_PER_TOKEN) - 1}) / {int(BYTES_PER_TOKEN)}) AS completion_tokens, "
    "CASE WHEN json_extract(completion, '$.prompt_tokens') IS NOT NULL AND json_extract(completion, '$.completion_tokens') "
    "IS NOT NULL THEN 'reported' ELSE 'estimated' END AS tokens, 0.0 AS queued_s, 0.0 AS service_s, "
    "created_at AS started_at, created_at AS ended_at FROM calls"
)


def with_known_stages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of calls paid before the ledger take the stage, role and language of a later row of
    the same key (a resumed run that asked for the call again), where there is one."""
    labelled = {row["key"]: row for row in rows if row["stage"] is not None}
    out = []
    for row in rows:
        if row["stage"] is None and row["key"] in labelled:
            known = labelled[row["key"]]
            row = {**row, **{name: known[name] for name in ("stage", "role", "language", "doc_id", "round", "candidate")}}
        out.append(row)
    return out


def busy_and_span(rows: Iterable[dict[str, Any]]) -> tuple[float, float]:
    """(seconds with at least one call in service, seconds from each run's first call to its
    last, summed over runs) of paid and failed rows: a pause between two runs is not work."""
    intervals, by_run = [], defaultdict(list)
    for row in rows:
        if row["kind"] in ("paid", "failed") and row["service_s"] > 0:
            end = row["ended_at"]
            intervals.append((end - row["service_s"], end))
            by_run[row["run"]].append((row["started_at"], end))
    return _union(intervals), sum(max(e for _, e in spans) - min(s for s, _ in spans) for spans in by_run.values())


def _union(intervals: list[tuple[float, float]]) -> float:
    total, current = 0.0, None
    for start, end in sorted(intervals):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    return total + (current[1] - current[0] if current else 0.0)


def cost_of(rows: list[dict[str, Any]], prices: dict[str, Price]) -> float | None:
    """Money of the paid rows (token prices), plus their servers' time (GPU-hour prices, per
    model over that model's rows); None without prices."""
    if not prices:
        return None
    total = 0.0
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    for model, found in by_model.items():
        price = prices.get(model)
        if price is None:
            continue
        paid = [r for r in found if r["kind"] == "paid"]
        total += price.of_tokens(sum(r["prompt_tokens"] for r in paid), sum(r["completion_tokens"] for r in paid))
        if price.gpu_hour:
            total += price.of_time(busy_and_span(found)[1])
    return total


def figures(rows: list[dict[str, Any]], prices: dict[str, Price] | None = None) -> Figures:
    found = Figures()
    for row in rows:
        found.add(row)
    found.cost = cost_of(rows, prices or {})
    return found


def summarise(
    rows: list[dict[str, Any]], *, runs: dict[str, dict[str, Any]] | None = None, prices: dict[str, Price] | None = None,
    gpus: dict[str, int] | None = None, currency: str | None = None, curated: int | None = None,
) -> dict[str, Any]:
    """The figures of a ledger file: the total, per run (each resume on its own, nothing twice),
    per stage x language x endpoint, per endpoint (requests/s, generated tokens/s, with a GPU
    count tokens per GPU-hour and busy share), and per curated sample when `curated` is given."""
    prices = prices or {}
    rows = with_known_stages(rows)
    total = figures(rows, prices)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["stage"] or "unknown", row["language"] or "", row["endpoint"], row["model"])].append(row)
    per_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        per_run[row["run"]].append(row)
    known_runs = runs or {}
    data: dict[str, Any] = {
        "format": LEDGER_FORMAT,
        "currency": currency if prices else None,
        "prices": {model: asdict(price) for model, price in sorted(prices.items())},
        "total": total.as_dict(),
        "runs": [
            {"run": run, **({"started_at": known_runs[run]["started_at"], "command": known_runs[run]["command"]} if run in known_runs else {}),
             **figures(found, prices).as_dict()}
            for run, found in sorted(per_run.items(), key=lambda item: min(r["started_at"] for r in item[1]))
        ],
        "stages": [
            {"stage": stage, "language": language, "endpoint": endpoint, "model": model, **figures(found, prices).as_dict()}
            for (stage, language, endpoint, model), found in sorted(groups.items())
        ],
        "endpoints": endpoint_figures(rows, prices, gpus or {}),
    }
    if curated is not None:
        data["curated"] = curated
        data["per_curated_sample"] = _per_sample(total, curated)
    return data


def endpoint_figures(rows: list[dict[str, Any]], prices: dict[str, Price], gpus: dict[str, int]) -> list[dict[str, Any]]:
    by_endpoint: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_endpoint[(row["endpoint"], row["model"])].append(row)
    out = []
    for (endpoint, model), found in sorted(by_endpoint.items()):
        sent = [r for r in found if r["kind"] in ("paid", "failed")]
        busy, span = busy_and_span(found)
        generated = sum(r["completion_tokens"] for r in sent if r["kind"] == "paid")
        entry: dict[str, Any] = {
            "endpoint": endpoint, "model": model, "requests": len(sent), "completion_tokens": generated,
            "busy_s": round(busy, 3), "span_s": round(span, 3),
            "requests_per_s": round(len(sent) / span, 3) if span > 0 else None,
            "tokens_per_s": round(generated / span, 2) if span > 0 else None,
        }
        count = gpus.get(model) or (prices.get(model).gpus if prices.get(model) else None)
        if count:
            entry["gpus"] = count
            entry["tokens_per_gpu_hour"] = round(generated / (span / 3600 * count)) if span > 0 else None
            entry["busy_share"] = round(busy / span, 4) if span > 0 else None
        out.append(entry)
    return out


def _per_sample(total: Figures, curated: int) -> dict[str, Any] | None:
    if not curated:
        return None
    per = {"calls": total.calls / curated, "paid_calls": total.paid / curated, "tokens": total.tokens / curated}
    if total.cost is not None:
        per["cost"] = total.cost / curated
    return {name: round(value, 6) for name, value in per.items()}


# --- the counters the engine prints -------------------------------------------------------------

def stage_counters(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """`<stage>_called` / `_cached` / `_failed` of rows, as the engine's per-run counters read:
    called = asked and not served from the cache (paid, shared or failed)."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        stage = row["stage"] or "unknown"
        counts[f"{stage}_{'cached' if row['kind'] == 'cached' else 'called'}"] += 1
        counts[f"{stage}_failed"] += row["kind"] == "failed"
    return dict(counts)


@dataclass
class RunningTotals:
    """What one run has paid so far, kept as its rows are written (budgets and the live view)."""

    paid: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    by_model: dict[str, list[int]] = field(default_factory=dict)  # model -> [prompt, completion]

    def add(self, entry: LedgerEntry) -> None:
        if entry.kind == "paid":
            self.paid += 1
            self.prompt_tokens += entry.prompt_tokens
            self.completion_tokens += entry.completion_tokens
            tokens = self.by_model.setdefault(entry.model, [0, 0])
            tokens[0] += entry.prompt_tokens
            tokens[1] += entry.completion_tokens
        elif entry.kind == "failed":
            self.failed += 1

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
