"""Durable store of every LLM (and embedding) call, so a killed run resumes without repeating one.

One SQLite file in WAL mode. A result is committed before `put` returns, and the caller uses a
result only after `put`: a process killed at any point (SIGKILL included) loses at most calls that
were still in flight. WAL with `synchronous=NORMAL` is durable against a process crash (the WAL
file is written before commit returns; only an OS crash or power loss can drop the last commits),
and that is the failure this cache exists for; `durable=True` selects `synchronous=FULL`.

Failed calls go to a separate table: they are reported, never served as results, so a resumed
run tries them again; a later success clears the failure.

Every call a run asks for also gets a row in the `ledger` table (llm/ledger.py): a paid call's
row in the same transaction as its result; a cache hit's row (the cached row itself untouched)
buffered and written with the next commit, at most `LEDGER_BUFFER` rows or `flush()` later.
Each `CallCache` object is one run (`run_id`, a UUID, listed in `runs`). The schema's version is
SQLite's `user_version`: a cache made before the ledger (version 0) is migrated when it is first
opened, in one transaction: the tables are added and each stored call becomes a paid row of run
`before-ledger`, so budgets count it. The `calls` rows and their keys never change.

Several drivers (curation/drivers.py) never write one file: SQLite's locking is not safe for
writers on several machines sharing a filesystem. Driver k of a run writes its own file,
`<cache>.d/driver-<k>.sqlite` beside the configured path (`driver_cache`), and reads the others
and the configured (legacy) file read-only (`also_read`): a lookup, `get_json` and the budget
stops find a result whichever file holds it. `cache_files(configured)` is that set, what the
ledger, the report and resume read. A single-driver run writes the configured file, as before.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import EnvironmentFault
from .backends.base import Completion, LLMRequest
from .ledger import BACKFILL_SELECT, COLUMNS, LedgerEntry, new_run_id

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # 0: calls, failures, blobs; 1: + ledger, runs
LEDGER_BUFFER = 256  # cache-hit rows held before they are written (a paid call's commit takes them too)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    request TEXT NOT NULL,
    completion TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    request TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

_LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    stage TEXT, role TEXT, language TEXT, doc_id TEXT, round INTEGER, candidate INTEGER,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    tokens TEXT NOT NULL,
    queued_s REAL NOT NULL,
    service_s REAL NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_run ON ledger (run);
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    command TEXT NOT NULL,
    budget_stop TEXT
);
"""
_INSERT_ROW = f"INSERT INTO ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


DRIVER_FOLDER_SUFFIX = ".d"  # <cache>.d/: the per-driver files beside the configured cache


def driver_cache(configured: str | Path, driver: int) -> Path:
    """The call-cache file driver `driver` of a multi-driver run writes."""
    configured = Path(configured)
    return configured.with_name(configured.name + DRIVER_FOLDER_SUFFIX) / f"driver-{driver}.sqlite"


def cache_files(configured: str | Path) -> list[Path]:
    """Every call-cache file of a run folder: the configured (legacy) file where it exists, then
    the drivers' files of `<cache>.d/` by driver number."""
    configured = Path(configured)
    folder = configured.with_name(configured.name + DRIVER_FOLDER_SUFFIX)
    drivers = []
    for path in folder.glob("driver-*.sqlite") if folder.is_dir() else ():
        number = path.stem.removeprefix("driver-")
        if number.isdigit():
            drivers.append((int(number), path))
    return ([configured] if configured.is_file() else []) + [path for _, path in sorted(drivers)]


def request_to_dict(request: LLMRequest) -> dict[str, Any]:
    """The JSON-able form of a request, stored beside its result for audits and debugging."""
    return {
        "prompt": request.prompt,
        "messages": [list(m) for m in request.messages] if request.messages is not None else None,
        "params": request.params.to_dict(),
    }


class CallCache:
    """Results of LLM calls keyed by `LLMRequest.cache_key(model_id)`, plus free JSON blobs.

    Safe to share between threads (one connection behind a lock) and between processes on one
    machine (SQLite file locking; writers wait up to `busy_timeout_s`). `configured`: the run's
    configured cache path, whose set (`cache_files`) `path` belongs to: the set's other files
    found at open (the legacy file, other drivers') are consulted, read-only, when `path` has no
    result. Without it (or with no other file), the cache is the one file, as before drivers."""

    def __init__(
        self, path: str | Path, *, durable: bool = False, busy_timeout_s: float = 60.0, run_id: str | None = None,
        command: str = "", configured: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.configured = Path(configured) if configured is not None else None
        self.also_read = self.other_files()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.run_id = run_id or new_run_id()
        self._command = command
        self._run_listed = False
        self._pending: list[tuple] = []  # ledger rows of cache hits not yet written
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._conn.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise _unopenable(self.path, error) from error
        self._readers: list[sqlite3.Connection] = []
        self._unreadable: set[Path] = set()
        for other in self.also_read:
            try:
                self._readers.append(sqlite3.connect(f"file:{other}?mode=ro", uri=True, timeout=busy_timeout_s, check_same_thread=False))
                self._readers[-1].execute("SELECT 1 FROM sqlite_master").fetchone()  # a damaged file fails here, not mid-run
            except sqlite3.DatabaseError as error:
                raise _unopenable(other, error) from error

    def other_files(self) -> list[Path]:
        """The set's files besides this one, as they are now (a driver started since is listed)."""
        if self.configured is None:
            return []
        return [other for other in cache_files(self.configured) if other.resolve() != self.path.resolve()]

    def _migrate(self) -> None:
        """Bring the schema to `SCHEMA_VERSION` (one transaction; another process may be doing
        the same: the version is read again once the write lock is held)."""
        if self._conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _LEDGER_SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"INSERT INTO ledger ({', '.join(COLUMNS)}) {BACKFILL_SELECT}")
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- LLM call results -------------------------------------------------------------------

    def get(self, key: str) -> Completion | None:
        """The stored completion for `key`, or None (failures are never served)."""
        row = self._fetch_any("SELECT completion FROM calls WHERE key = ?", (key,))
        return Completion(**json.loads(row[0])) if row else None

    def put(self, key: str, model_id: str, request: LLMRequest, completion: Completion, entry: LedgerEntry | None = None) -> None:
        """Store a result durably (committed on return) and clear any earlier failure of `key`;
        `entry`, the call's ledger row, is committed with it."""
        payload = (
            key,
            model_id,
            json.dumps(request_to_dict(request), ensure_ascii=False),
            json.dumps(asdict(completion), ensure_ascii=False),
            time.time(),
        )
        with self._lock:
            with self._transaction():
                self._conn.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", payload)
                self._conn.execute("DELETE FROM failures WHERE key = ?", (key,))
                self._write_ledger(entry)

    def record_failure(self, key: str, model_id: str, request: LLMRequest, error: str, entry: LedgerEntry | None = None) -> None:
        """Record that the call `key` failed for good in this run (counted across runs), with
        its ledger row `entry`."""
        with self._lock:
            with self._transaction():
                self._write_ledger(entry)
                self._conn.execute(
                    "INSERT INTO failures VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
                    "error = excluded.error, attempts = failures.attempts + 1, failed_at = excluded.failed_at",
                    (key, model_id, json.dumps(request_to_dict(request), ensure_ascii=False), error, time.time()),
                )

    # --- the ledger ---------------------------------------------------------------------------

    def record(self, entry: LedgerEntry) -> None:
        """The ledger row of a call that paid nothing (a cache hit, a shared call): buffered,
        written with the next commit or at `LEDGER_BUFFER` rows."""
        with self._lock:
            self._pending.append(entry.row())
            if len(self._pending) < LEDGER_BUFFER:
                return
            with self._transaction():
                self._write_ledger(None)

    def flush(self) -> None:
        """Write the buffered ledger rows now (before the ledger is read, and at close)."""
        with self._lock:
            if self._pending or not self._run_listed:
                with self._transaction():
                    self._write_ledger(None)

    def paid_totals(self, exclude_run: str | None = None) -> dict[str, Any]:
        """{calls, failed, prompt_tokens, completion_tokens} of every paid call in the ledger (all
        runs and drivers of this cache file), optionally without one run's."""
        where, args = ("AND run != ?", (exclude_run,)) if exclude_run else ("", ())
        row = self._fetch_one(
            "SELECT coalesce(sum(kind = 'paid'), 0), coalesce(sum(kind = 'failed'), 0), "
            "coalesce(sum(CASE WHEN kind = 'paid' THEN prompt_tokens END), 0), "
            f"coalesce(sum(CASE WHEN kind = 'paid' THEN completion_tokens END), 0) FROM ledger WHERE kind IN ('paid', 'failed') {where}",
            args,
        )
        return dict(zip(("calls", "failed", "prompt_tokens", "completion_tokens"), row))

    def record_budget_stop(self, limits: dict[str, float]) -> None:
        """This run stopped at its budget (`limits`, e.g. {"calls": 1000}): a later run with the
        same budget stops at once (see curation/budget.py)."""
        self.flush()
        with self._lock:
            with self._transaction():
                self._conn.execute("UPDATE runs SET budget_stop = ? WHERE run = ?", (json.dumps(limits, sort_keys=True), self.run_id))

    def budget_stops(self) -> list[dict[str, float]]:
        """The budgets earlier runs stopped at."""
        sql = "SELECT budget_stop FROM runs WHERE budget_stop IS NOT NULL AND run != ?"
        with self._lock:
            rows = self._conn.execute(sql, (self.run_id,)).fetchall()
            for reader in self._readers:
                if reader.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone():
                    rows += reader.execute(sql, (self.run_id,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def _write_ledger(self, entry: LedgerEntry | None) -> None:
        """Inside a transaction: this run's `runs` row (once), the buffered rows and `entry`."""
        if not self._run_listed:
            self._conn.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, NULL)", (self.run_id, time.time(), self._command))
        rows, self._pending = self._pending, []
        if entry is not None:
            rows.append(entry.row())
        if rows:
            self._conn.executemany(_INSERT_ROW, rows)
        self._run_listed = True

    def failures(self) -> list[dict[str, Any]]:
        """Every recorded failure not yet cleared by a success: key, model_id, error, attempts."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, model_id, error, attempts, failed_at FROM failures ORDER BY failed_at"
            ).fetchall()
        return [dict(zip(("key", "model_id", "error", "attempts", "failed_at"), row)) for row in rows]

    def __contains__(self, key: str) -> bool:
        return self._fetch_any("SELECT 1 FROM calls WHERE key = ?", (key,)) is not None

    def __len__(self) -> int:
        return int(self._fetch_one("SELECT COUNT(*) FROM calls", ())[0])

    # --- free JSON values (embeddings, ...) ---------------------------------------------------

    def get_json(self, key: str) -> Any | None:
        """The JSON value stored under `key`, or None."""
        row = self._fetch_any("SELECT value FROM blobs WHERE key = ?", (key,))
        return json.loads(row[0]) if row else None

    def put_json(self, key: str, value: Any) -> None:
        """Store a JSON-able value durably under `key` (committed on return)."""
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock:
            with self._transaction():
                self._conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)", (key, blob, time.time()))

    def put_many_json(self, items: dict[str, Any]) -> None:
        """Store several JSON values in one transaction (one commit for a batch of embeddings)."""
        now = time.time()
        rows = [(key, json.dumps(value, ensure_ascii=False), now) for key, value in items.items()]
        with self._lock:
            with self._transaction():
                self._conn.executemany("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        if self._pending:
            self.flush()
        with self._lock:
            self._conn.close()
            for reader in self._readers:
                reader.close()

    def __enter__(self) -> "CallCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers ------------------------------------------------------------------------------

    def _fetch_one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _fetch_any(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of `sql` in this cache's file, else in the files it also reads."""
        with self._lock:
            row = self._conn.execute(sql, args).fetchone()
            for path, reader in zip(self.also_read, self._readers):
                if row is not None:
                    break
                try:
                    row = reader.execute(sql, args).fetchone()
                except sqlite3.DatabaseError as error:
                    # Another driver's file, written now (on another node, its WAL index is not
                    # shared), or one it has only just created: not readable at this moment is not
                    # found, which costs a call made again, never a wrong result.
                    if path not in self._unreadable:
                        self._unreadable.add(path)
                        logger.warning("the call cache %s could not be read (%s): its results are not reused by this driver", path, error)
        return row

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._conn, self.path)


def _unopenable(path: Path, error: sqlite3.DatabaseError) -> EnvironmentFault:
    hint = (
        "free disk space, then run the same command again" if "full" in str(error)
        else "if it is damaged, move it aside and run again (a new cache starts empty: the calls stored in the old one are made again)"
    )
    return EnvironmentFault(f"the call cache {path} cannot be opened ({error}): {hint}")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock up front, so two
    processes sharing a cache wait for each other instead of failing on a lock upgrade."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn, self._path = conn, path

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.OperationalError as error:
            if "full" not in str(error):
                raise
            raise EnvironmentFault(
                f"the call cache {self._path} could not store a result ({error}): free disk space, then run the same "
                "command again (every result stored so far is kept)"
            ) from error
