"""The fleet of a run: every served model (a model entry with `serve:`) started before curation
needs it, supervised while it runs, stopped when it ends.

    with managed_servers(config.models, layout, executor, resolve=recipe.resolve) as sources:
        models = Models.build(config.models, sources)    # {role: PublishedEndpoints}

- Distinct specs (by their JSON: a judge spelt like the generator is the same server) are one
  served model each, named by the first role (config.ROLES order) that uses it. The name is a
  function of the config alone, so any process of the run finds the same files:
  `published_endpoints(models, layout)` gives the same sources without starting anything (a
  driver task in another process, on another node).
- On this machine the replicas are subprocesses (replicas.LocalReplica); with the Ray executor,
  subprocesses of Ray actors (ray_replicas.py).
- The block is entered once every served model has a healthy replica (the log says how long that
  took: "managed servers: generator serving 2.1 s after the start, 9.8 s after the command
  started"); the others join as they become
  healthy. The block's end stops every replica: on success, on an error, on Ctrl-C and SIGTERM
  (the CLI raises SIGTERM as KeyboardInterrupt). SIGKILL of the driver: process.py.
- A fatal server error while the run goes on (a replica died more than `serve.restarts` times)
  interrupts the main thread, and the block raises it as its one-line error (exit 3).
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...layout import RunLayout
from ..endpoints import PublishedEndpoints
from .launch import ServedModel, check_command, model_path
from .replicas import LocalReplica, Replica, visible_gpus
from .supervisor import Fleet

log = logging.getLogger(__name__)


def served_models(models: Any) -> dict[str, tuple[ServedModel, list[str]]]:
    """{served model name: (what the launcher needs, the roles it serves)} for every distinct
    spec with `serve:` of a curation's models config (see the module docstring)."""
    by_key: dict[str, tuple[ServedModel, list[str]]] = {}
    for role, spec in models.specs().items():
        serve = getattr(spec, "serve", None)
        if serve is None:
            continue
        key = spec.model_dump_json()
        if key not in by_key:
            served_as = getattr(spec, "served_model", None) or spec.model
            by_key[key] = (ServedModel(name=role, kind=spec.backend, served_model=served_as, serve=serve), [])
        by_key[key][1].append(role)
    return {model.name: (model, roles) for model, roles in by_key.values()}


def published_endpoints(models: Any, layout: RunLayout) -> dict[str, PublishedEndpoints]:
    """{role: the endpoints its served model publishes} for every role whose spec has `serve:`;
    any process of the run may call it (it starts nothing)."""
    return {
        role: PublishedEndpoints(layout.server_endpoints(name))
        for name, (_, roles) in served_models(models).items()
        for role in roles
    }


@contextlib.contextmanager
def managed_servers(models: Any, layout: RunLayout, executor: Any = None, *, resolve: Callable[[str], str] | None = None) -> Iterator[dict[str, PublishedEndpoints]]:
    """Start, supervise and stop the served models of `models` (see the module docstring);
    yields `published_endpoints(models, layout)`. `executor` is the run's executor or its spec:
    the Ray one puts the replicas on Ray actors, any other (or None) runs them here. `resolve`
    makes a recipe's `serve.model` path absolute (`Recipe.resolve`: relative to its folder)."""
    served = served_models(models)
    if not served:
        yield {}
        return
    paths = {name: model_path(model, resolve) for name, (model, _) in served.items()}  # exit 2 before anything starts
    for name, (model, _) in served.items():
        check_command(model, paths[name])
    fleet = Fleet(on_fatal=_MainThreadInterrupt())
    on_ray = "ray" in (getattr(executor, "name", None), getattr(executor, "kind", None))
    with _placement(executor) if on_ray else contextlib.nullcontext():
        gpus = [] if on_ray else visible_gpus()
        for name, (model, _) in served.items():
            fleet.add(model, _replicas(model, paths[name], layout, gpus, on_ray), layout.server_endpoints(name))
        described = ", ".join(f"{name} ({model.serve.replicas} x {model.kind}{' on Ray' if on_ray else ''})" for name, (model, _) in served.items())
        log.info("managed servers: starting %s; logs in %s", described, layout.servers_folder)
        interrupted: BaseException | None = None
        try:
            fleet.start()
            fleet.wait_until_serving()
            log.info("managed servers: %s serving %.1f s after the start%s", ", ".join(served), time.monotonic() - fleet.started, _since_command_start())
            with fleet.on_fatal.armed():
                if fleet.error is not None:  # failed before the interrupt was armed
                    raise fleet.error
                yield published_endpoints(models, layout)
        except KeyboardInterrupt as stop:
            interrupted = stop
        finally:
            try:
                fleet.stop()
            except KeyboardInterrupt:  # the fleet's own interrupt arriving late, or a second Ctrl-C
                fleet.stop()
        if fleet.error is not None:
            raise fleet.error from None  # the interrupt was the fleet's own, or came with its failure
        if interrupted is not None:
            raise interrupted


class _MainThreadInterrupt:
    """The fleet's `on_fatal` while the run goes on: a KeyboardInterrupt in the main thread (as
    Ctrl-C), which `managed_servers` turns into the fleet's error. Armed only while the `with`
    block's body runs in the main thread: before, the start-up wait raises the error itself;
    after, nothing is left to stop."""

    def __init__(self) -> None:
        self._armed = False
        self._lock = threading.Lock()

    def __call__(self, error: BaseException) -> None:
        with self._lock:
            if self._armed:
                _thread.interrupt_main()

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        with self._lock:
            self._armed = threading.current_thread() is threading.main_thread()
        try:
            yield
        finally:
            with self._lock:
                self._armed = False


def _since_command_start() -> str:
    """`, N s after the command started` (the time to the first request the issue's closing note
    asks for, filtering included), from the process's start time in /proc; empty elsewhere."""
    try:
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return ""
    return f", {uptime - started_ticks / os.sysconf('SC_CLK_TCK'):.1f} s after the command started"


def _replicas(model: ServedModel, path: str, layout: RunLayout, gpus: list[str], on_ray: bool) -> list[Replica]:
    logs = [layout.server_log(model.name, i) for i in range(model.serve.replicas)]
    if on_ray:
        from .ray_replicas import RayReplica

        return [RayReplica(model, i, path, logs[i]) for i in range(model.serve.replicas)]
    return [LocalReplica(model, i, path, logs[i], gpus) for i in range(model.serve.replicas)]


@contextlib.contextmanager
def _placement(executor: Any) -> Iterator[None]:
    """Connected to the executor's Ray cluster while the servers run (and disconnected after,
    when this block connected)."""
    from .ray_replicas import connected

    with connected(getattr(executor, "address", None) or getattr(executor, "ray_address", None)):
        yield


__all__ = ["managed_servers", "published_endpoints", "served_models"]
