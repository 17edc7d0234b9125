"""The managed servers' supervisor on this machine (llm/serving/), against a real `llama-server`
(the packaged GGUF) and small server scripts that fail on purpose:

- two replicas are started, health-checked and published; a replica killed by PID is taken out
  of the published endpoints, restarted with a new process and published again; the stop ends
  every server (checked by PID);
- SIGKILL of the process that started the servers leaves none running: the parent-death signal
  ends the server, the watchdog what the server started in its group;
- a server that exits at once, one never healthy within its start timeout, a taken port, one
  that keeps dying past `serve.restarts`: each one error line (exit 3) naming the command, its
  exit code or how long it ran, and its log's last lines; a missing model file or an unknown
  placeholder: exit 2 before anything starts;
- the GPU slices of local replicas and the Ray placement spec of a multi-GPU replica (no GPU here).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from serving_helpers import (
    EXITS_AT_ONCE, HEALTHY_THEN_DIES, NEVER_HEALTHY, alive, llama_model, read_endpoints, script_model, wait_gone,
)
from xinstruction_dataset.errors import EXIT_ENVIRONMENT, EXIT_USAGE, EnvironmentFault, UsageError
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.llm.serving.config import ServeConfig
from xinstruction_dataset.llm.serving.launch import ServedModel, launch_command, model_path
from xinstruction_dataset.llm.serving.ray_replicas import actor_options, placement_spec
from xinstruction_dataset.llm.serving.replicas import LocalReplica, gpu_slice
from xinstruction_dataset.llm.serving.supervisor import Fleet

pytestmark = pytest.mark.timeout(300)


def start_fleet(model: ServedModel, root: Path, on_fatal=lambda error: None) -> tuple[Fleet, list[LocalReplica]]:
    layout = RunLayout(root)
    replicas = [LocalReplica(model, i, model_path(model), layout.server_log(model.name, i)) for i in range(model.serve.replicas)]
    fleet = Fleet(on_fatal=on_fatal)
    fleet.add(model, replicas, layout.server_endpoints(model.name))
    fleet.start()
    return fleet, replicas


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(scope="module")
def llama_fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    fleet, replicas = start_fleet(llama_model(replicas=2, restarts=2), root)
    try:
        fleet.wait_until_serving()
        wait_for(lambda: len(fleet.groups[0].healthy_urls()) == 2, 120, "both replicas healthy")
        yield fleet, replicas, RunLayout(root)
    finally:
        fleet.stop()


def test_replicas_are_started_health_checked_and_published(llama_fleet):
    fleet, replicas, layout = llama_fleet
    urls = read_endpoints(layout.server_endpoints("generator"))
    assert urls == [r.url for r in replicas] and len(set(urls)) == 2
    body = json.dumps({"model": "gemma-3-270m", "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}).encode()
    for url in urls:
        request = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            assert json.loads(reply.read())["choices"][0]["text"]
    assert "start: " in layout.server_log("generator", 0).read_text()  # the server's output goes to run/servers/


def test_a_killed_replica_is_unpublished_restarted_and_published_again(llama_fleet):
    fleet, replicas, layout = llama_fleet
    endpoints = layout.server_endpoints("generator")
    killed, old_url = replicas[0].pid, replicas[0].url
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: read_endpoints(endpoints) == [replicas[1].url], 10, "the dead replica unpublished")
    wait_for(lambda: len(read_endpoints(endpoints)) == 2, 120, "the replica restarted and published again")
    assert replicas[0].pid != killed and not alive(killed)
    assert fleet.groups[0].restarts == 1 and fleet.error is None
    assert read_endpoints(endpoints) == [replicas[0].url, replicas[1].url] and old_url != "" 


def test_stop_ends_every_server(llama_fleet):
    fleet, replicas, layout = llama_fleet
    pids = [r.pid for r in replicas]
    assert all(alive(pid) for pid in pids)
    fleet.stop()
    assert wait_gone(pids, timeout=1) == []  # stop returns once they have ended
    assert read_endpoints(layout.server_endpoints("generator")) == []


DRIVER = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from serving_helpers import llama_model, script_model
from test_serving import start_fleet
model = llama_model() if sys.argv[1] == "llama" else script_model(sys.argv[2])
fleet, replicas = start_fleet(model, Path(sys.argv[3]))
fleet.wait_until_serving()
print(replicas[0].pid, flush=True)
time.sleep(600)
"""

# Healthy, and starts a child of its own in its group (as vLLM starts its engine workers).
SERVER_WITH_A_CHILD = HEALTHY_THEN_DIES.replace(
    "threading.Timer", "import subprocess; child = subprocess.Popen(['sleep', '600']); print('child', child.pid, flush=True)\nthreading.Timer"
)


def start_driver(kind: str, script: str, root: Path) -> tuple[subprocess.Popen, int]:
    code = DRIVER.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "DIES_AFTER": "600"}
    driver = subprocess.Popen([sys.executable, "-c", code, kind, script, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    line = driver.stdout.readline()
    assert line.strip().isdigit(), f"the driver did not start its server (exit {driver.poll()})"
    return driver, int(line)


def test_sigkill_of_the_driver_leaves_no_server(tmp_path):
    driver, server = start_driver("llama", "", tmp_path)
    assert alive(server)
    driver.kill()
    driver.wait()
    assert wait_gone([server], timeout=15) == [], "llama-server outlived the driver that was SIGKILLed"


def test_sigkill_of_the_driver_ends_what_the_server_started(tmp_path):
    driver, server = start_driver("script", SERVER_WITH_A_CHILD, tmp_path)
    log = RunLayout(tmp_path).server_log("generator", 0)
    child = int(wait_for(lambda: [line.split()[1] for line in log.read_text().splitlines() if line.startswith("child ")], 10, "the child's pid")[0])
    assert alive(child)
    driver.kill()
    driver.wait()
    # The parent-death signal reaches the server alone; the watchdog ends its group.
    assert wait_gone([server, child], timeout=15) == []


def failed_start(model: ServedModel, root: Path) -> tuple[EnvironmentFault, float, list[LocalReplica]]:
    started = time.monotonic()
    fleet, replicas = start_fleet(model, root)
    try:
        with pytest.raises(EnvironmentFault) as failure:
            fleet.wait_until_serving()
    finally:
        fleet.stop()
    return failure.value, time.monotonic() - started, replicas


def test_a_server_that_exits_at_once_is_one_line_with_its_exit_code_and_log(tmp_path):
    error, seconds, replicas = failed_start(script_model(EXITS_AT_ONCE), tmp_path)
    message = str(error)
    assert error.exit_code == EXIT_ENVIRONMENT and "\n" not in message
    assert "server generator replica 0 failed to start" in message and sys.executable in message
    assert "exited with code 7" in message and "cannot open the model: no such file" in message
    assert str(RunLayout(tmp_path).server_log("generator", 0)) in message
    assert seconds < 10


def test_a_server_never_healthy_fails_after_its_start_timeout(tmp_path):
    error, seconds, replicas = failed_start(script_model(NEVER_HEALTHY, start_timeout=2), tmp_path)
    message = str(error)
    assert "\n" not in message and "still running after 2 s" in message and "loading forever" in message
    assert 2 <= seconds < 15
    assert not alive(replicas[0].pid)


def test_a_taken_port_is_an_environment_fault(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error, _, _ = failed_start(script_model(HEALTHY_THEN_DIES, port=port), tmp_path)
    assert error.exit_code == EXIT_ENVIRONMENT
    assert f"port {port} on 127.0.0.1 is taken" in str(error) and "leave serve.port out" in str(error)


def test_a_replica_dying_more_often_than_restarts_allows_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DIES_AFTER", "0.5")
    fatal = []
    fleet, replicas = start_fleet(script_model(HEALTHY_THEN_DIES, restarts=1), tmp_path, on_fatal=fatal.append)
    try:
        fleet.wait_until_serving()
        wait_for(lambda: fatal, 30, "the fatal error")
    finally:
        fleet.stop()
    message = str(fatal[0])
    assert fatal[0] is fleet.error and fatal[0].exit_code == EXIT_ENVIRONMENT and "\n" not in message
    assert "server generator replica 0 died 2 times, more than serve.restarts (1) allows" in message
    assert "exited with code 9" in message
    assert fleet.groups[0].restarts == 1
    assert read_endpoints(RunLayout(tmp_path).server_endpoints("generator")) == []


def test_a_missing_model_file_is_a_usage_error(tmp_path):
    missing = llama_model()
    missing = ServedModel(missing.name, missing.kind, missing.served_model, missing.serve.model_copy(update={"model": str(tmp_path / "nope.gguf")}))
    with pytest.raises(UsageError) as error:
        model_path(missing)
    assert error.value.exit_code == EXIT_USAGE and "models.generator.serve.model" in str(error.value) and "nope.gguf does not exist" in str(error.value)


@pytest.mark.parametrize("given, is_path", [("meta-llama/Llama-3.1-8B", False), ("./weights", True), ("/models/llama", True), ("a/b/c", True), ("~/w", True)])
def test_vllm_tells_a_path_from_a_hub_id(given, is_path, tmp_path):
    model = ServedModel("generator", "vllm", "m", ServeConfig(model=given))
    if is_path:
        with pytest.raises(UsageError, match="does not exist"):
            model_path(model, resolve=lambda path: str(tmp_path / path) if not path.startswith("/") else path)
    else:
        assert model_path(model) == given


def test_launch_templates_and_placeholders():
    vllm = ServedModel("generator", "vllm", "llama", ServeConfig(model="org/m", gpus_per_replica=4, args=["--max-num-seqs", "256"]))
    words = launch_command(vllm, host="0.0.0.0", port=8001, replica=1, model_path="/w") if _on_path("vllm") else None
    if words is not None:  # vllm installed: its path resolved
        assert words[1:] == ["serve", "/w", "--host", "0.0.0.0", "--port", "8001", "--tensor-parallel-size", "4", "--served-model-name", "llama", "--max-num-seqs", "256"]
    llama = launch_command(llama_model(), host="127.0.0.1", port=9, replica=0, model_path="/m.gguf")
    assert Path(llama[0]).name == "llama-server" and llama[1:9] == ["-m", "/m.gguf", "--host", "127.0.0.1", "--port", "9", "--alias", "gemma-3-270m"]
    custom = ServedModel("judge", "openai", "m", ServeConfig(model="x/y", command="sh -c 'serve {served_model} {port}' --x {modle}"))
    with pytest.raises(UsageError) as error:
        launch_command(custom, host="h", port=1, replica=0, model_path="x/y")
    assert "models.judge.serve.command: unknown placeholder {modle}" in str(error.value) and "{served_model}" in str(error.value)
    with pytest.raises(UsageError, match="has no launch template of its own"):
        launch_command(ServedModel("judge", "openai", "m", ServeConfig(model="x/y")), host="h", port=1, replica=0, model_path="x/y")


def _on_path(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


def test_unknown_serve_key_is_refused():
    with pytest.raises(ValueError, match="gpus_per_replicas"):
        ServeConfig.model_validate({"model": "x/y", "gpus_per_replicas": 2})


def test_gpu_slices_of_local_replicas():
    model = ServedModel("generator", "vllm", "m", ServeConfig(model="x/y", replicas=2, gpus_per_replica=2))
    gpus = ["0", "1", "2", "3"]
    assert [gpu_slice(model, i, gpus) for i in range(2)] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert gpu_slice(model, 0, []) == {}  # no GPU on this machine: nothing set
    with pytest.raises(UsageError, match="need 4 GPUs, this machine has 3"):
        gpu_slice(model, 0, gpus[:3])


def test_placement_of_a_replica_spanning_several_gpus():
    assert placement_spec(0) is None and placement_spec(1) is None
    assert placement_spec(4) == {"bundles": [{"GPU": 4.0}], "strategy": "STRICT_PACK"}
    group = object()  # what ray.util.placement_group returns; the strategy only holds it
    options = actor_options(4, group)
    assert options["num_gpus"] == 4 and options["num_cpus"] == 0 and options["max_restarts"] == 0
    assert options["scheduling_strategy"].placement_group is group and options["scheduling_strategy"].placement_group_bundle_index == 0
    assert actor_options(0)["scheduling_strategy"] == "SPREAD" and actor_options(1)["num_gpus"] == 1
