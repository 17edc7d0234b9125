"""`xinstruction eval judge` SIGKILLed in the middle of judging, then run again: it finishes with
the same verdicts, and the only calls made twice are those that were in flight at the kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from eval_models import EXPECTED_OUTCOMES, ScriptedJudge, answerer
from hub_folders import write_xalpacaeval_sources
from xinstruction_dataset.cli import main

ITEMS = 30
SLOTS = 4


class CountingJudge(ScriptedJudge):
    """The scripted judge, also counting generations per call identity (prompt, sampling, seed)."""

    def __init__(self) -> None:
        super().__init__()
        self.identities: Counter = Counter()

    def __call__(self, prompt: str, parameters: dict) -> str:
        with self.lock:
            self.identities[(prompt, parameters.get("do_sample"), parameters.get("seed"))] += 1
        return super().__call__(prompt, parameters)


def spec(url: str, model: str) -> str:
    return json.dumps({"backend": "tgi", "model": model, "endpoints": [url], "timeout": 10.0, "retries": 8, "backoff": 0.05, "backoff_max": 0.5})


def judge_command(url: str, source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "xinstruction_dataset.cli", "eval", "judge", "M1", "M2", "--judge", spec(url, "test/judge"),
            "--configs", "cross-ta", "--limit", str(ITEMS), "--source-dir", str(source), "--output-dir", str(out), "--no-progress"]


@pytest.mark.timeout(300)
def test_kill_in_the_middle_of_judging_then_resume(tmp_path: Path, start_tgi_server) -> None:
    source = write_xalpacaeval_sources(tmp_path / "source")
    out = tmp_path / "eval"
    for tag in ("M1", "M2"):
        server = start_tgi_server(reply=answerer(tag), max_total_tokens=8192)
        assert main(["eval", "answer", "--model", spec(server.url, tag), "--name", tag, "--configs", "cross-ta", "--limit", str(ITEMS),
                     "--source-dir", str(source), "--output-dir", str(out), "--no-progress"]) == 0
    model = CountingJudge()
    server = start_tgi_server(reply=model, slots=SLOTS, latency=0.05, max_total_tokens=8192)

    process = subprocess.Popen(judge_command(server.url, source, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while sum(server.successes.values()) < ITEMS and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the judge finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = sum(model.identities.values())
    assert ITEMS <= before < 2 * ITEMS + 8  # killed in the middle: some verdicts done, not all

    finished = subprocess.run(judge_command(server.url, source, out), capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    repeated = sum(n - 1 for n in model.identities.values() if n > 1)
    assert repeated <= SLOTS, f"{repeated} finished calls were made again"
    # Every call is made: both orders of every item, and the sampled retries of items 4 and 6.
    assert len(model.identities) == 2 * ITEMS + 4
    judgments = [json.loads(line) for line in (out / "judgments" / "plug" / "M1-vs-M2" / "judgments.jsonl").read_text().splitlines()]
    assert [j["id"] for j in judgments] == list(range(ITEMS))
    assert all(j["outcome"] == EXPECTED_OUTCOMES.get(j["id"], "win") for j in judgments)
