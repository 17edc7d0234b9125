"""Kill and resume: `xinstruction curate` in a subprocess against the TGI-protocol test server,
SIGKILLed at random moments several times, then run to the end, must write the same bytes as an
uninterrupted run, and must not have repeated finished calls (only calls in flight at a kill may
be made again)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from corpora import read_corpus
from test_curate_faults import outputs, reply

DOCS = 24
KILLS = 4
SLOTS = 4


class CountingReply:
    """The test model, counting generations per (prompt, seed): the identity of a call."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, prompt: str, parameters: dict) -> str:
        with self.lock:
            self.calls[(prompt, parameters.get("seed"))] += 1
        return reply(prompt, parameters)


def write_recipe(root: Path, server_url: str) -> Path:
    kept = root / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True)
    rows = read_corpus("sw", DOCS)
    kept.write_text("".join(json.dumps({"id": r["id"], "text": r["text"][:500], "url": r["url"], "source": r["source"]}) + "\n" for r in rows))
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 5.0, "retries": 8, "backoff": 0.05, "backoff_max": 0.5}
    recipe = {
        "name": "kill-resume",
        "languages": ["sw"],
        "output_dir": str(root),
        "curation": {"models": {"generator": model}, "generate": {"candidates": 2}, "diversify": {"target_size": 10}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def curate(recipe: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xinstruction_dataset.cli", "curate", str(recipe), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def finish(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 0, out.decode(errors="replace")[-3000:]


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_then_resume_gives_identical_output(tmp_path: Path, start_tgi_server) -> None:
    model = CountingReply()
    server = start_tgi_server(reply=model, slots=SLOTS, latency=0.05, max_input_tokens=2048, max_total_tokens=4096)

    clean = write_recipe(tmp_path / "clean", server.url)
    finish(curate(clean))
    clean_calls = Counter(model.calls)
    model.calls.clear()

    killed = write_recipe(tmp_path / "killed", server.url)
    rng = random.Random(20240527)
    kills = []
    mid_run = 0  # kills that fell after this process had made calls, with calls still to make
    total = len(clean_calls)
    for k in range(KILLS):
        before = sum(model.calls.values())
        # Killed at a point of the work, not of the clock (start-up time varies with the machine's
        # load): once a random share of the distinct calls, rising kill after kill, is made.
        target = int(total * rng.uniform(k, k + 1) / (KILLS + 1))
        process = curate(killed)
        deadline = time.monotonic() + 120
        while process.poll() is None and len(set(model.calls)) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is not None:
            kills.append(f"finished before {target} distinct calls")
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        made = sum(model.calls.values()) - before
        work_left = set(clean_calls) - set(model.calls)
        mid_run += made > 0 and bool(work_left)
        kills.append(f"killed at {target} distinct calls after {made} calls, {len(work_left)} left")
    assert mid_run >= 1, f"no kill landed mid-run (every one fell in start-up or after the work): {kills}"
    left_before_resume = set(clean_calls) - set(model.calls)
    finish(curate(killed))
    assert left_before_resume, f"the kills left nothing for the resume to do: {kills}"

    assert outputs(tmp_path / "killed") == outputs(tmp_path / "clean"), kills
    assert set(model.calls) == set(clean_calls), kills
    repeated = sum(model.calls.values()) - sum(clean_calls.values())
    assert repeated <= KILLS * SLOTS, f"{repeated} calls made again after {kills}"

    # Once finished, a run makes no call at all.
    before = sum(model.calls.values())
    finish(curate(killed))
    assert sum(model.calls.values()) == before
    assert outputs(tmp_path / "killed") == outputs(tmp_path / "clean")
