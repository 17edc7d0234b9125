"""The supervisor: one keeper thread per replica starts it, health-checks it until it is
healthy (within `serve.start_timeout`), publishes it, watches it, and restarts it when it dies.

    start -> healthy? -> published -> ... died -> unpublished -> backoff -> start -> ...

- The first start of a replica that fails (it exits, or is not healthy within the start
  timeout) is fatal at once: the same command would fail again. The error is one line: the
  command, its exit code or "still running after N s", and the last lines of its log.
- A replica that was healthy and died is restarted up to `serve.restarts` times, waiting the
  project's retry backoff (retry.RetryPolicy) in between; one more death is fatal.
- The published file (`<output_dir>/run/servers/<name>.endpoints.json`, endpoints.py) lists the
  healthy replicas; it is rewritten atomically on every change, so every reader (this process's
  backends, other driver processes) sees replicas come and go.
- A fatal error is kept (`Fleet.error`) and `on_fatal` is called (the fleet's `with` block in
  fleet.py stops the run with it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...errors import EnvironmentFault, UserError
from ...retry import RetryPolicy
from ...storage import write_json
from ..endpoints import endpoints_document
from .launch import ServedModel
from .replicas import Replica

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a keeper looks at its replica
RESTART_BACKOFF = 1.0
RESTART_BACKOFF_MAX = 30.0


class ServerGroup:
    """The replicas of one served model and their published endpoints."""

    def __init__(self, model: ServedModel, replicas: list[Replica], endpoints_file: Path, fleet: "Fleet") -> None:
        self.model = model
        self.replicas = replicas
        self.endpoints_file = endpoints_file
        self.fleet = fleet
        self.restart_policy = RetryPolicy(retries=model.serve.restarts, backoff=RESTART_BACKOFF, backoff_max=RESTART_BACKOFF_MAX)
        self._healthy: dict[int, str] = {}
        self._lock = threading.Lock()
        self.first_healthy = threading.Event()
        self.restarts = 0  # replicas started again after dying, over the whole group
        self._threads = [threading.Thread(target=self._keep, args=(r,), name=f"serve-{model.name}-{r.index}", daemon=True) for r in replicas]

    def start(self) -> None:
        self._publish()  # no endpoint yet: a reader waits instead of reading a previous run's file
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def healthy_urls(self) -> list[str]:
        with self._lock:
            return [self._healthy[i] for i in sorted(self._healthy)]

    def _set(self, replica: Replica, healthy: bool) -> None:
        with self._lock:
            if healthy:
                self._healthy[replica.index] = replica.url
            else:
                self._healthy.pop(replica.index, None)
            self._publish()

    def _publish(self) -> None:
        write_json(self.endpoints_file, endpoints_document([(url, i) for i, url in sorted(self._healthy.items())]))

    def _keep(self, replica: Replica) -> None:
        try:
            self._keep_running(replica)
        except UserError as error:
            self.fleet.fail(error)
        except Exception as error:  # noqa: BLE001 - a keeper's own bug ends the run as an error too
            log.exception("the keeper of %s replica %d failed", self.model.name, replica.index)
            self.fleet.fail(EnvironmentFault(f"the supervisor of server {self.model.name} replica {replica.index} failed: {error!r}"))
        finally:
            self._set(replica, False)
            replica.stop()

    def _keep_running(self, replica: Replica) -> None:
        name = f"server {self.model.name} replica {replica.index}"
        stopping = self.fleet.stopping
        deaths = 0
        while not stopping.is_set():
            started = time.monotonic()
            replica.start()
            if not self._wait_healthy(replica, started):
                if stopping.is_set():
                    return
                failure = replica.failure(time.monotonic() - started)
                if deaths == 0:
                    raise EnvironmentFault(f"{name} failed to start: {failure}")
                log.warning("%s failed to start again: %s", name, failure)
            else:
                self._set(replica, True)
                seconds = time.monotonic() - started
                if not self.first_healthy.is_set():
                    self.first_healthy.set()
                    log.info("%s healthy at %s %.1f s after start (%.1f s after the fleet's start): requests can go out",
                             name, replica.url, seconds, time.monotonic() - self.fleet.started)
                else:
                    log.info("%s healthy at %s %.1f s after start", name, replica.url, seconds)
                while not stopping.wait(POLL_S) and replica.exited() is None:
                    pass
                self._set(replica, False)
                if stopping.is_set():
                    return
                log.warning("%s %s; %d of %d restarts used", name, replica.exited(), deaths, self.model.serve.restarts)
            replica.stop()
            deaths += 1
            if deaths > self.model.serve.restarts:
                raise EnvironmentFault(
                    f"{name} died {deaths} times, more than serve.restarts ({self.model.serve.restarts}) allows: "
                    f"{replica.failure(time.monotonic() - started)}"
                )
            self.restarts += 1
            if stopping.wait(self.restart_policy.delay(deaths)):
                return

    def _wait_healthy(self, replica: Replica, started: float) -> bool:
        """Until it is healthy (True), it exits or the start timeout passes, or the fleet stops (False)."""
        deadline = started + self.model.serve.start_timeout
        while not self.fleet.stopping.is_set():
            if replica.exited() is not None:
                return False
            if replica.healthy():
                return True
            if time.monotonic() >= deadline:
                return False
            self.fleet.stopping.wait(min(POLL_S, max(0.0, deadline - time.monotonic())))
        return False


class Fleet:
    """Every server group of a run (see the module docstring)."""

    def __init__(self, on_fatal: Callable[[UserError], None] = lambda error: None) -> None:
        self.on_fatal = on_fatal
        self.groups: list[ServerGroup] = []
        self.stopping = threading.Event()
        self.error: UserError | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def add(self, model: ServedModel, replicas: list[Replica], endpoints_file: Path) -> ServerGroup:
        group = ServerGroup(model, replicas, endpoints_file, self)
        self.groups.append(group)
        return group

    def start(self) -> None:
        self.started = time.monotonic()
        for group in self.groups:
            group.start()

    def wait_until_serving(self) -> None:
        """Until every group has had a healthy replica; the first fatal error is raised."""
        for group in self.groups:
            while not group.first_healthy.wait(POLL_S):
                if self.error is not None:
                    raise self.error
        if self.error is not None:
            raise self.error

    def fail(self, error: UserError) -> None:
        with self._lock:
            if self.error is not None:
                return
            self.error = error
        log.error("%s", error)
        self.stopping.set()
        self.on_fatal(error)

    def stop(self) -> None:
        """Every replica stopped (each keeper stops its own; they do it side by side)."""
        self.stopping.set()
        for group in self.groups:
            group.join()
