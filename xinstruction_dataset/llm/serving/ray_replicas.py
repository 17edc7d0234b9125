"""Replicas on a Ray cluster (`--executor ray`): each replica is a Ray actor (`ServerActor`)
that runs the server as a subprocess on its node (process.py: its own process group, the
parent-death signal, the watchdog) and reports its URL (the node's IP and a port free there)
and health. The supervisor on the driver (supervisor.py) watches the actors through
`RayReplica` and restarts a dead one as a new actor.

- Resources: `num_gpus=gpus_per_replica` (Ray sets the actor's CUDA_VISIBLE_DEVICES, which
  the server inherits) and no CPU slot (the CPUs stay for the run's tasks). A replica that spans
  several GPUs is placed in a placement group (`placement_spec`): one bundle of all its GPUs,
  STRICT_PACK. One bundle, not one per GPU: an actor's resources must fit one bundle, and the
  server is one process tree started by one actor, so it gets all its GPUs through that
  bundle's CUDA_VISIBLE_DEVICES. The group is reserved first, so a cluster without a node of
  that many free GPUs is one clear error after `start_timeout`, not a start that hangs.
- Without GPUs (`gpus_per_replica: 0`) the actors are spread over the nodes.
- `serve.host` 127.0.0.1 (the default) means "this node": on Ray the server listens on the
  node's IP, which the driver and the other nodes reach.
- The actors are not detached: when the driver dies (SIGKILL included) Ray ends the job's
  actors, and the servers with them (their parent-death signal).
- Logs go to `<output_dir>/run/servers/` as on one machine: the run folder is on a filesystem
  every node sees (as for every other output of a Ray run).

Ray is imported when a replica starts, never when a recipe loads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import EnvironmentFault
from .launch import ServedModel, launch_command
from .process import STOP_GRACE_S, ServerProcess, log_tail
from .replicas import HEALTH_TIMEOUT_S, answers_health, pick_port, url_of

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0  # an actor's answer to a call (its start included: it only launches)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _ray():
    from ...execution.ray_executor import _import_ray

    return _import_ray()


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[None]:
    """This process connected to the Ray cluster at `address` (a local instance without one)
    while the block runs; an existing connection is kept (and left open)."""
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    options: dict[str, Any] = {"logging_level": logging.WARNING}
    if not address:
        options["include_dashboard"] = False
    try:
        ray.init(address=address or None, **options)
    except ConnectionError as error:
        raise EnvironmentFault(f"cannot reach the Ray cluster at {address!r} ({error}); start it with `ray start --head` or fix --ray-address") from None
    try:
        yield
    finally:
        ray.shutdown()


def placement_spec(gpus_per_replica: int) -> dict[str, Any] | None:
    """The placement group of one replica: None for 0 or 1 GPU (num_gpus places it), else one
    STRICT_PACK bundle of all its GPUs (see the module docstring)."""
    if gpus_per_replica <= 1:
        return None
    return {"bundles": [{"GPU": float(gpus_per_replica)}], "strategy": "STRICT_PACK"}


def actor_options(gpus_per_replica: int, placement_group: Any = None) -> dict[str, Any]:
    """The options of one replica's actor, in its placement group when it has one."""
    options: dict[str, Any] = {"num_cpus": 0, "num_gpus": gpus_per_replica, "max_restarts": 0, "max_concurrency": 4}
    if placement_group is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(placement_group=placement_group, placement_group_bundle_index=0)
    elif gpus_per_replica == 0:
        options["scheduling_strategy"] = "SPREAD"
    return options


class ServerActor:
    """The body of a replica's Ray actor: one server subprocess on the actor's node. Its calls
    may come side by side (max_concurrency): a health check while a stop runs."""

    def __init__(self) -> None:
        self.server: ServerProcess | None = None
        self.url = ""

    def start(self, model: ServedModel, replica: int, model_path: str, log_file: str) -> str:
        import ray

        host = model.serve.host
        if host in LOOPBACK:
            host = ray.util.get_node_ip_address()
        port = pick_port(model, replica, host)
        argv = launch_command(model, host=host, port=port, replica=replica, model_path=model_path)
        self.url = url_of(host, port)
        self.server = ServerProcess(argv, Path(log_file), model.serve.env)
        return self.url

    def pid(self) -> int | None:
        return self.server.pid if self.server else None

    def exit_code(self) -> int | None:
        return self.server.exit_code() if self.server else None

    def healthy(self, route: str) -> bool:
        return bool(self.url) and answers_health(self.url, route)

    def failure(self, running_for: float) -> str:
        return self.server.describe_exit(running_for) if self.server else "not started"

    def stop(self) -> int | None:
        return self.server.stop() if self.server else None


@dataclass
class RayReplica:
    """A replica as a Ray actor, seen from the driver's supervisor (replicas.Replica)."""

    model: ServedModel
    index: int
    model_path: str
    log_file: Path
    url: str = ""
    actor: Any = None
    group: Any = None

    def start(self) -> None:
        ray = _ray()
        spec = placement_spec(self.model.serve.gpus_per_replica)
        if spec is not None:
            from ray.util.placement_group import placement_group

            self.group = placement_group(**spec)
            if not _wait(ray, self.group.ready(), self.model.serve.start_timeout):
                raise EnvironmentFault(
                    f"server {self.model.name} replica {self.index}: no node of the Ray cluster has {self.model.serve.gpus_per_replica} free GPUs "
                    f"after {self.model.serve.start_timeout:.0f} s (serve.gpus_per_replica); add such a node or lower it"
                )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        remote = ray.remote(ServerActor).options(**actor_options(self.model.serve.gpus_per_replica, self.group))
        self.actor = remote.remote()
        self.url = self._call("start", self.model, self.index, self.model_path, str(self.log_file), timeout=max(CALL_TIMEOUT_S, self.model.serve.start_timeout))

    def _call(self, method: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        """The actor's answer; its own exception raised as itself (a UsageError from the start)."""
        ray = _ray()
        try:
            return ray.get(getattr(self.actor, method).remote(*args), timeout=timeout)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error.as_instanceof_cause()
            raise cause from None

    def healthy(self) -> bool:
        ray = _ray()
        try:
            return bool(self._call("healthy", self.model.health_route, timeout=HEALTH_TIMEOUT_S + CALL_TIMEOUT_S))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False

    def exited(self) -> str | None:
        ray = _ray()
        try:
            code = self._call("exit_code")
        except ray.exceptions.RayActorError:
            return "lost its Ray actor (the actor or its node died)"
        except ray.exceptions.GetTimeoutError:
            return None  # busy or slow: asked again at the next look
        return None if code is None else f"exited with code {code}"

    def failure(self, running_for: float) -> str:
        ray = _ray()
        try:
            return str(self._call("failure", running_for))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return f"its Ray actor died; last lines of {self.log_file}: {log_tail(self.log_file)}"

    def pid(self) -> int | None:
        return self._call("pid")

    def stop(self) -> None:
        ray = _ray()
        if self.actor is not None:
            try:
                self._call("stop", timeout=STOP_GRACE_S + CALL_TIMEOUT_S)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as error:
                log.warning("server %s replica %d: its actor did not stop the server (%s); the actor is killed", self.model.name, self.index, type(error).__name__)
            ray.kill(self.actor)  # the server's parent-death signal ends it if it still runs
            self.actor = None
        if self.group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.group)
            self.group = None


def _wait(ray, ref: Any, timeout: float) -> bool:
    ready, _ = ray.wait([ref], timeout=timeout)
    return bool(ready)
