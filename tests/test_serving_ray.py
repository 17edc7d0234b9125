"""Managed servers as Ray actors (llm/serving/ray_replicas.py) on a real 2-node Ray cluster of
this machine (`ray start --head` + `ray start --address`, no GPU), serving the packaged GGUF with
a real `llama-server`; the cluster is started once for the module and stopped by its own PIDs.

- two replicas run under Ray workers of the cluster, each reached at its node's IP, and are published;
- a server killed by PID, and an actor killed with its server, are restarted and published again;
- the stop ends every server; SIGKILL of a driver that started servers on the cluster leaves
  none running (Ray ends the job's actors, the servers' parent-death signal ends them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving_helpers import alive, llama_model, read_endpoints, wait_gone
from xinstruction_dataset.execution.local_cluster import LocalRayCluster
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.llm.serving.launch import model_path
from xinstruction_dataset.llm.serving.ray_replicas import RayReplica, connected
from xinstruction_dataset.llm.serving.supervisor import Fleet

pytest.importorskip("ray", reason='the Ray tests need the [ray] extra: pip install -e ".[ray]"')
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    cluster = LocalRayCluster(cpus_per_node=1).start(nodes=2)
    try:
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def node_of(cluster: LocalRayCluster, pid: int) -> int:
    """Which node of the cluster runs process `pid` (under its raylet's workers)."""
    return next((index for index, node in enumerate(cluster.nodes) if pid in {p.pid for p in node.processes()}), None)


def start_ray_fleet(root: Path, replicas: int) -> tuple[Fleet, list[RayReplica]]:
    model = llama_model(replicas=replicas, restarts=3)
    layout = RunLayout(root)
    ray_replicas = [RayReplica(model, i, model_path(model), layout.server_log(model.name, i)) for i in range(replicas)]
    fleet = Fleet()
    fleet.add(model, ray_replicas, layout.server_endpoints(model.name))
    fleet.start()
    return fleet, ray_replicas


def test_replicas_on_ray_actors_are_published_restarted_and_stopped(cluster, tmp_path):
    endpoints = RunLayout(tmp_path).server_endpoints("generator")
    with connected(cluster.address):
        fleet, replicas = start_ray_fleet(tmp_path, 2)
        try:
            fleet.wait_until_serving()
            wait_for(lambda: len(read_endpoints(endpoints)) == 2, 120, "both replicas healthy")
            pids = [replica.pid() for replica in replicas]
            assert all(node_of(cluster, pid) in (0, 1) for pid in pids)  # servers under the nodes' Ray workers
            assert all(not url.startswith("http://127.0.0.1:") for url in read_endpoints(endpoints))  # the node's IP

            os.kill(pids[0], signal.SIGKILL)  # the server dies, its actor lives: restarted by the actor
            wait_for(lambda: read_endpoints(endpoints) == [replicas[1].url], 15, "the dead server unpublished")
            wait_for(lambda: len(read_endpoints(endpoints)) == 2, 120, "the server restarted")
            assert replicas[0].pid() != pids[0] and fleet.groups[0].restarts == 1

            # The actor's worker process dies (as with its node): a new actor, a new server.
            server = replicas[1].pid()
            worker = next(p for node in cluster.nodes for p in node.processes() if server in {c.pid for c in p.children()})
            worker.kill()
            assert wait_gone([server], timeout=15) == [], "the server outlived its actor"
            wait_for(lambda: fleet.groups[0].restarts == 2 and len(read_endpoints(endpoints)) == 2, 120, "a new actor serving")
            pids = [replica.pid() for replica in replicas]
            assert fleet.error is None
        finally:
            fleet.stop()
        assert wait_gone(pids, timeout=5) == [] and read_endpoints(endpoints) == []


DRIVER = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_serving_ray import start_ray_fleet
import ray
ray.init(address=sys.argv[1], logging_level="WARNING")
fleet, replicas = start_ray_fleet(Path(sys.argv[2]), 1)
fleet.wait_until_serving()
print(replicas[0].pid(), flush=True)
time.sleep(600)
"""


def test_sigkill_of_the_driver_ends_the_servers_on_the_cluster(cluster, tmp_path):
    code = DRIVER.format(tests=str(Path(__file__).parent))
    driver = subprocess.Popen([sys.executable, "-c", code, cluster.address, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    line = driver.stdout.readline()
    assert line.strip().isdigit(), f"the driver did not start its server (exit {driver.poll()})"
    server = int(line)
    assert alive(server)
    driver.kill()
    driver.wait()
    assert wait_gone([server], timeout=30) == [], "llama-server outlived the SIGKILLed driver's Ray job"
