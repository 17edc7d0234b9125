"""Two labelling drivers as Ray tasks on a real 2-node Ray cluster of this machine (`ray start`,
one CPU a node: one driver a node) write the bytes one local driver writes, each driver its own
cache file, and the drivers' slots together never pass the server's limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_drivers import CountingReply, every_output, write_recipe
from tgi_server import TGIServer

from xinstruction_dataset.execution.local_cluster import LocalRayCluster
from xinstruction_dataset.llm.cache import cache_files, driver_cache

pytest.importorskip("ray", reason='the Ray tests need the [ray] extra: pip install -e ".[ray]"')

SLOTS = 4


@pytest.fixture(scope="module")
def cluster():
    cluster = LocalRayCluster(cpus_per_node=1).start(nodes=2)
    try:
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()


def run_cli(args: list[str], log: Path) -> None:
    with open(log, "wb") as out:
        result = subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", *args, "--no-progress"], stdout=out, stderr=subprocess.STDOUT, timeout=300)
    assert result.returncode == 0, log.read_text(errors="replace")[-4000:]


@pytest.mark.timeout(600)
def test_two_drivers_on_a_ray_cluster_write_what_one_local_driver_writes(cluster, tmp_path: Path) -> None:
    model = CountingReply()
    server = TGIServer(reply=model, slots=SLOTS, latency=0.05, max_input_tokens=2048, max_total_tokens=4096).start()
    try:
        one = write_recipe(tmp_path / "one", server.url, drivers=1)
        run_cli(["curate", str(one)], tmp_path / "one.log")
        single = dict(model.calls)
        model.calls.clear()
        on_ray = write_recipe(tmp_path / "ray", server.url, drivers=2)
        run_cli(["curate", str(on_ray), "--executor", "ray", "--ray-address", cluster.address], tmp_path / "ray.log")
    finally:
        server.kill()
    assert dict(model.calls) == single  # every call once, none twice
    assert every_output(tmp_path / "ray") == every_output(tmp_path / "one")
    configured = tmp_path / "ray" / "cache" / "calls.sqlite"
    assert cache_files(configured) == [configured, driver_cache(configured, 0), driver_cache(configured, 1)]
    assert server.status_counts.get(429, 0) == 0 and server.peak_active <= SLOTS
