"""Shared by the managed-server tests: the packaged GGUF served by a real `llama-server`, small
server scripts that misbehave on purpose, and process checks by PID."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from xinstruction_dataset.llm.backends.local import packaged_gguf
from xinstruction_dataset.llm.serving.config import ServeConfig
from xinstruction_dataset.llm.serving.launch import ServedModel

# One thread, two slots: on a 2-core machine shared with the run itself (see test_llama_server.py).
LLAMA_ARGS = ["--threads", "1", "--parallel", "2", "--ctx-size", "2048", "--no-webui"]


def llama_model(replicas: int = 1, **serve) -> ServedModel:
    config = ServeConfig(model=str(packaged_gguf()), replicas=replicas, gpus_per_replica=0, args=LLAMA_ARGS, start_timeout=120, **serve)
    return ServedModel(name="generator", kind="llamacpp", served_model="gemma-3-270m", serve=config)


def script_model(script: str, **serve) -> ServedModel:
    """A served model whose server is `python -c script` (the port is its first argument)."""
    config = ServeConfig(model="unused/hub-id", command=[sys.executable, "-c", script, "{port}"], gpus_per_replica=0, **serve)
    return ServedModel(name="generator", kind="openai", served_model="m", serve=config)


# Healthy on /v1/models (openai's health route) for DIES_AFTER seconds, then exits with code 9.
HEALTHY_THEN_DIES = """
import http.server, sys, threading, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a): pass
server = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)
threading.Timer(float(os.environ.get('DIES_AFTER', '1')), lambda: os._exit(9)).start()
server.serve_forever()
"""

NEVER_HEALTHY = "import time, sys; print('loading forever', flush=True); time.sleep(600)"
EXITS_AT_ONCE = "import sys; print('cannot open the model: no such file', flush=True); sys.exit(7)"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """The PIDs still running after `timeout` seconds (empty: all ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.2)
    return [pid for pid in pids if alive(pid)]


def llama_pids() -> set[int]:
    """Every llama-server process of this machine (other tests' included: compare before/after)."""
    found = set()
    for process in psutil.process_iter(["name", "status"]):
        if process.info["name"] == "llama-server" and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.add(process.pid)
    return found


def read_endpoints(path: Path) -> list[str]:
    import json

    return [entry["url"] for entry in json.loads(path.read_text())["endpoints"]]
