"""Many labelling drivers, one fleet: `curation.drivers: K` runs the label phase as K driver tasks
on the recipe's executor (worker processes of this machine, or Ray tasks), so the client's CPU
(about 1.5 ms a request) stops bounding a large fleet.

    lead (curate / build; holds run/lock.json)
      |-- map: run_driver(task k) for k < K          each builds its own Models from the recipe,
      |     labels the documents whose id hashes to k (labelling.driver_of) of every language
      |     (one engine, as a single driver does), writes its parts of the shard's work files
      |     and its calls to <cache>.d/driver-<k>.sqlite; marks itself done
      |-- per language whose parts are all done: combine the parts into the shard's work files
      '-- merge (diversify + export), per language, in the lead: as with one driver

Why the merges run in the lead and not as reduce tasks: every language's parts are finished by
every driver at about the same time (each driver interleaves all languages), so a reduce could
not start earlier; the lead builds the embedding model once for every language (a reduce task
would load it once per language); and the merge stores embeddings in the call cache, which in
the lead is the configured (legacy) file that only the lead writes, on one machine.

Output: the combined work files are the bytes one driver writes (labelling.combine_parts), and
the merge is the single-driver merge, so curated/, rejects, judge replies and summary.json are
byte-identical for any K reading the same cache. A folder may be resumed with another K: the
parts of every count are removed before the drivers start (the calls are in the cache; a
driver relabels its documents from it) and after they are combined, so no part is merged twice.

Calls: driver k writes its own cache file (cache.driver_cache) and reads the legacy file and the
other drivers' (cache.cache_files) for lookups, so a resumed run, with any K, pays only the calls
no file holds: for a driver that was SIGKILLed, its calls in flight. Every driver of a run
shares the lead's run id, so the ledger counts one run. The other drivers' files are read while
they are written; on another node SQLite's WAL index is not shared, so such a read may miss a
result just stored (or fail, which counts as a miss, with one warning): a call made again,
never a wrong one. What a driver needs from them is what earlier runs stored (this run's
partitions are disjoint).

Slots: the drivers share each server's slots (`SlotShare`): driver k of the A drivers still
active gets limit // A slots, one more for the limit % A lowest ranks, so the shares sum to the
server's limit; a driver that finishes leaves a marker in run/drivers/<run id>/ and the others
take its slots (shares only grow). A server with fewer slots than drivers still gets a slot from
each (it queues the extra requests).

Budget: each driver's `Budget` counts the whole folder's ledger, the other drivers' files
included (read again every `budget.REFRESH_S`), and stops admitting documents on its own; the
lead raises `BudgetReached` (exit 1) naming the limit when any driver stopped, and leaves the
languages not labelled whole by every driver unmerged. Drivers admit independently, so the
first stop may pass a limit by what every driver's in-flight documents cost.

The orchestration is curate.py's (`label_with_drivers` in the lead, `run_driver` the task: they
drive a `Curation`); this module holds what they share.

Progress: the lead shows one bar, the documents every driver has labelled (each driver writes
its count to run/drivers/<run id>/driver-<k>.progress every `PROGRESS_S`); the drivers' live
views are off (K of them would draw over each other). `curate --estimate` stays single-driver (it measures a sample).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..execution import Executor
from ..execution.local import LocalExecutor
from ..storage import write_json
from .versions import Versions

SHARE_POLL_S = 0.5  # how often a driver looks for the done markers of the others
PROGRESS_S = 1.0  # how often a driver writes its document count, and the lead reads them


class SlotShare:
    """Driver `driver` of `drivers`'s share of a server's slots (see the module docstring):
    a callable the server backend applies to each endpoint's limit. Cheap: the markers are
    listed at most every `SHARE_POLL_S` seconds."""

    def __init__(self, folder: Path, driver: int, drivers: int) -> None:
        self.folder, self.driver, self.drivers = folder, driver, drivers
        self._active = list(range(drivers))
        self._read_at = float("-inf")

    def __call__(self, limit: int) -> int:
        if time.monotonic() - self._read_at > SHARE_POLL_S:
            self._refresh()
        active = self._active
        rank, count = active.index(self.driver), len(active)
        return max(1, limit // count + (rank < limit % count))

    def active(self) -> list[int]:
        """The drivers not done yet (this one always: it is asking)."""
        self._refresh()
        return list(self._active)

    def _refresh(self) -> None:
        done = {number for number in range(self.drivers) if self.marker(number).exists()}
        self._active = [number for number in range(self.drivers) if number not in done or number == self.driver]
        self._read_at = time.monotonic()

    def marker(self, driver: int) -> Path:
        return self.folder / f"driver-{driver}.done"

    def join(self) -> None:
        """A driver (re)starting: a marker of an earlier attempt of it (a retried task) goes."""
        self.marker(self.driver).unlink(missing_ok=True)

    def leave(self) -> None:
        """Done: no call of this driver is in flight any more; the others take its slots."""
        write_json(self.marker(self.driver), {"driver": self.driver, "pid": os.getpid(), "host": os.uname().nodename})


def share_slots(backend: Any, share: SlotShare) -> None:
    """Give a backend the driver's share of its servers' slots. Backends without server slots of
    their own (the embedded model, a test's in-process fake) have none to share."""
    hook = getattr(backend, "share_slots", None)
    if callable(hook):
        hook(share)


@dataclass(frozen=True)
class DriverTask:
    """One driver's work, picklable (it goes to a worker process or a Ray task)."""

    recipe: Any  # the recipe.Recipe (with its base_dir): the driver builds its models from it
    languages: tuple[str, ...]
    shard: tuple[int, int]
    driver: tuple[int, int]  # (k, K)
    run_id: str  # the lead's: every driver's ledger rows are one run
    versions: Versions
    command: str


@dataclass(frozen=True)
class DriverResult:
    driver: int
    finished: tuple[str, ...]  # the languages whose part it wrote (all, unless the budget stopped it)
    stopped: str | None  # the budget limit that stopped it
    pid: int


def driver_executor(executor: Executor, drivers: int) -> Executor:
    """The executor the drivers run on: on this machine, one worker process per driver whatever
    `executor.workers` says (a driver waits on its servers, not a core, and drivers run one after
    another would hold slots for the ones not started); a cluster's executor as it is."""
    if isinstance(executor, LocalExecutor):
        return LocalExecutor(workers=drivers, retries=executor.retries)
    return executor


def progress_file(folder: Path, driver: int) -> Path:
    return folder / f"driver-{driver}.progress"


class _Every:
    """Call `tick` every `seconds` in a daemon thread until the block ends (and once at its end)."""

    def __init__(self, seconds: float, tick: Callable[[], None]) -> None:
        self.seconds, self.tick = seconds, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drivers-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.tick()

    def __enter__(self) -> "_Every":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.tick()


def reporting_progress(folder: Path, driver: int, documents: Callable[[], int]) -> _Every:
    """In a driver: write how many documents it has labelled, every `PROGRESS_S`."""
    return _Every(PROGRESS_S, lambda: write_json(progress_file(folder, driver), {"documents": documents()}))


class DriversProgress:
    """In the lead: one bar of the documents every driver has labelled, read from their files."""

    def __init__(self, folder: Path, drivers: int, total: int | None, *, enabled: bool) -> None:
        self.folder, self.drivers = folder, drivers
        self.bar = tqdm(total=total, desc=f"label ({drivers} drivers)", unit="doc", disable=not enabled, dynamic_ncols=True)
        self._every = _Every(PROGRESS_S, self._read) if enabled else None

    def _read(self) -> None:
        done = 0
        for driver in range(self.drivers):
            try:
                done += json.loads(progress_file(self.folder, driver).read_text(encoding="utf-8"))["documents"]
            except (OSError, ValueError, KeyError):
                continue  # not written yet
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "DriversProgress":
        if self._every is not None:
            self._every.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._every is not None:
            self._every.__exit__(*exc)
        self.bar.close()
