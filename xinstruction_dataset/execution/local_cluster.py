"""`LocalRayCluster`: a real multi-node Ray cluster on this machine, for tests and benchmarks.

Each node is one `ray start` in a session of its own (its daemons share that process group)
with a temp dir of its own, so stopping the cluster ends exactly its processes: `ray stop`
would end every Ray process of the machine, other users' clusters included. Ray's worker
processes run in groups of their own under their node's raylet, so they are found as the
raylet's children before the group is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayNode:
    group: int  # process group of the node's daemons (the `ray start` session)
    temp_dir: Path

    def processes(self) -> list[psutil.Process]:
        """The node's daemons and, under its raylet, its worker processes."""
        found: dict[int, psutil.Process] = {}
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(process.pid) == self.group:
                    found[process.pid] = process
                    for child in process.children(recursive=True):
                        found[child.pid] = child
            except (ProcessLookupError, psutil.Error):
                continue
        return list(found.values())

    def kill(self) -> None:
        processes = self.processes()
        for process in processes:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass  # it ended on its own between the listing and the kill
        psutil.wait_procs(processes, timeout=10)


@dataclass
class LocalRayCluster:
    cpus_per_node: int = 1
    object_store_bytes: int = 100 * 1024 * 1024  # bounded: Ray's default is 30% of memory per node
    port: int = field(default_factory=free_port)
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, nodes: int = 2) -> "LocalRayCluster":
        self._start_node(["--head", "--port", str(self.port), "--include-dashboard=false"])
        for _ in range(nodes - 1):
            self.add_node()
        return self

    def add_node(self) -> RayNode:
        return self._start_node(["--address", self.address])

    def _start_node(self, role: list[str]) -> RayNode:
        temp_dir = Path(tempfile.mkdtemp(prefix="xi-ray-"))
        ray = Path(sys.executable).with_name("ray")
        command = [str(ray), "start", *role, "--num-cpus", str(self.cpus_per_node), "--object-store-memory", str(self.object_store_bytes),
                   "--temp-dir", str(temp_dir), "--disable-usage-stats"]
        process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        node = RayNode(group=process.pid, temp_dir=temp_dir)
        self.nodes.append(node)  # before the wait: a failed start is still stopped
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            self.stop()
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{output[-3000:]}")
        return node

    def wait_for_nodes(self, count: int, timeout: float = 60.0) -> None:
        """Block until `count` nodes are alive (a joining node registers a moment after its start)."""
        ray = Path(sys.executable).with_name("ray")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = subprocess.run([str(ray), "status", "--address", self.address], capture_output=True, text=True, timeout=60)
            if status.stdout.count("node_") >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Ray cluster at {self.address} did not reach {count} nodes")

    def stop(self) -> None:
        for node in reversed(self.nodes):  # workers first, the head last
            node.kill()
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        self.nodes.clear()
