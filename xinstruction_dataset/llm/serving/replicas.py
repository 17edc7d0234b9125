"""A replica: one server of a served model, wherever it runs. The supervisor (supervisor.py)
sees only this interface, so it keeps local subprocesses and Ray actors alike:

    start()            launch it (a port is picked, or `serve.port + replica` is checked free)
    url                its base URL once started
    healthy()          whether its health route answers 200 now
    exited()           None while it runs; else how it ended (for the error line)
    failure(seconds)   the one-line description of a failed start
    stop()             SIGTERM to its process group, SIGKILL after a grace period

`LocalReplica` runs the server as a subprocess of this process (process.py); `RayReplica`
(ray_replicas.py) as a subprocess of a Ray actor on some node of the cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ...errors import UsageError
from .launch import ServedModel, check_port_free, free_port, launch_command
from .process import ServerProcess

HEALTH_TIMEOUT_S = 5.0


class Replica(Protocol):
    index: int
    url: str

    def start(self) -> None: ...
    def healthy(self) -> bool: ...
    def exited(self) -> str | None: ...
    def failure(self, running_for: float) -> str: ...
    def stop(self) -> None: ...


def answers_health(url: str, route: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """GET url+route is 200 (a loading server answers 503, a starting one refuses)."""
    try:
        with urllib.request.urlopen(url + route, timeout=timeout) as reply:
            return reply.status == 200
    except (OSError, ValueError):  # refused, reset, timed out, HTTPError (an OSError too)
        return False


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def pick_port(model: ServedModel, replica: int, host: str) -> int:
    """`serve.port + replica` if given (checked free: exit 3 if taken), else a free port."""
    if model.serve.port is None:
        return free_port(host)
    return check_port_free(host, model.serve.port + replica, f"models.{model.name}.serve.port")


def visible_gpus() -> list[str]:
    """The GPUs this machine lets a process use: CUDA_VISIBLE_DEVICES when it is set, else
    what `nvidia-smi` lists; none without either."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [gpu for gpu in given.split(",") if gpu.strip() and gpu.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def gpu_slice(model: ServedModel, replica: int, gpus: list[str]) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES of one local replica: its `gpus_per_replica` GPUs of those visible
    (replica i takes the i-th group); nothing set without GPUs or with gpus_per_replica 0."""
    per = model.serve.gpus_per_replica
    if per == 0 or not gpus:
        return {}
    needed = per * model.serve.replicas
    if needed > len(gpus):
        raise UsageError(
            f"models.{model.name}.serve: {model.serve.replicas} replicas x {per} GPUs need {needed} GPUs, "
            f"this machine has {len(gpus)}; lower replicas or gpus_per_replica, or run on a cluster with --executor ray"
        )
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus[replica * per:(replica + 1) * per])}


@dataclass
class LocalReplica:
    """A server subprocess of this process (see the module docstring)."""

    model: ServedModel
    index: int
    model_path: str
    log_file: Path
    gpus: list[str] = field(default_factory=list)
    url: str = ""
    _server: ServerProcess | None = None

    def start(self) -> None:
        host = self.model.serve.host
        port = pick_port(self.model, self.index, host)
        argv = launch_command(self.model, host=host, port=port, replica=self.index, model_path=self.model_path)
        env = {**gpu_slice(self.model, self.index, self.gpus), **self.model.serve.env}
        self.url = url_of("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host, port)
        self._server = ServerProcess(argv, self.log_file, env)

    def healthy(self) -> bool:
        return answers_health(self.url, self.model.health_route)

    def exited(self) -> str | None:
        code = self._server.exit_code() if self._server else None
        return None if code is None else f"exited with code {code}"

    def failure(self, running_for: float) -> str:
        return self._server.describe_exit(running_for) if self._server else "not started"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server else None
