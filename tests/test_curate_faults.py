"""`run_curation` against the TGI-protocol test server with faults injected: 429 and 503 bursts,
hangs past the timeout, malformed JSON bodies, dropped connections, the server killed and
restarted mid-run, and one document whose calls always fail. Every document must end curated or
rejected with a reason, no call may be repeated after it succeeded, and a second run makes no
call at all and writes the same bytes."""

from __future__ import annotations

import hashlib
import socket
import json
import threading
import time
from pathlib import Path

import pytest

from corpora import read_corpus
from fake_llm import reply_for_prompt, section
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.recipe import Recipe

DOCS = 16
# Enough retries that the injected faults (taken by the first requests, so one request's retries
# can meet several in a row) and the restart's downtime cannot exhaust a healthy document's.
RETRIES = 9


def documents() -> list[dict]:
    rows = read_corpus("sw", DOCS)
    return [{"id": r["id"], "text": r["text"][:600], "url": r["url"], "source": r["source"], "metadata": {"lang": "sw"}} for r in rows]


def verdict(instruction: str) -> str:
    """The test model's judgement: refined instructions are good; others by a hash of the text."""
    if instruction.startswith("Describe the events"):
        return "good"
    return ("good", "good", "needs_refinement", "bad")[int(hashlib.sha256(instruction.encode()).hexdigest(), 16) % 4]


def reply(prompt: str, parameters: dict) -> str:
    if "### Label" in prompt:
        return verdict(section(prompt, "Instruction"))
    return reply_for_prompt(prompt)


def recipe_for(root: Path, server_url: str, docs: list[dict]) -> Recipe:
    kept = root / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 1.0, "retries": RETRIES, "backoff": 0.05, "backoff_max": 0.2}
    curation = {"models": {"generator": model}, "generate": {"candidates": 1}, "diversify": {"target_size": 8}}
    return Recipe.from_dict({"name": "faults", "languages": ["sw"], "output_dir": str(root), "curation": curation})


def outputs(root: Path) -> dict[str, bytes]:
    """The run's output files; in rejects, the error text of failed calls is left out (it says
    what went wrong last, which differs between a run that met a restart and one that did not)."""
    files = sorted((root / "curated" / "sw").glob("*.jsonl")) + [root / "curation" / "sw" / "summary.json"]
    found = {f.name: f.read_bytes() for f in files}
    rejects = [json.loads(line) for line in (root / "curation" / "sw" / "rejects.jsonl").read_text().splitlines()]
    for reject in rejects:
        for candidate in reject["detail"].get("candidates", []):
            if reject["reason"].endswith("call_failed"):
                candidate.pop("raw")
    found["rejects.jsonl"] = json.dumps(rejects).encode()
    return found


def restart_after(server, successes: int, stop: threading.Event) -> None:
    while not stop.is_set() and sum(server.successes.values()) < successes:
        time.sleep(0.01)
    if not stop.is_set():
        server.restart(downtime=0.3)


@pytest.mark.timeout(300)
def test_every_document_accounted_for_under_faults(tmp_path: Path, start_tgi_server) -> None:
    server = start_tgi_server(reply=reply, slots=4, latency=0.01, max_input_tokens=2048, max_total_tokens=4096)
    docs = documents()
    poisoned = docs[5]
    server.inject("503", 1000, match=poisoned["text"][:80])  # every attempt for this document fails
    for kind, count in [("429", 6), ("503", 6), ("malformed", 3), ("drop", 3), ("hang", 2)]:
        server.inject(kind, count)
    recipe = recipe_for(tmp_path, server.url, docs)

    stop = threading.Event()
    chaos = threading.Thread(target=restart_after, args=(server, 12, stop), daemon=True)
    chaos.start()
    try:
        [report] = run_curation(recipe, progress=False)
    finally:
        stop.set()
        chaos.join()

    curated = [json.loads(line) for f in sorted((tmp_path / "curated" / "sw").glob("*.jsonl")) for line in f.read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "curation" / "sw" / "rejects.jsonl").read_text().splitlines()]
    curated_ids = {r["provenance"]["source_id"] for r in curated}
    rejected_ids = {r["doc_id"] for r in rejects}
    assert curated_ids | rejected_ids == {d["id"] for d in docs} and not curated_ids & rejected_ids
    assert all(r["reason"] for r in rejects)
    by_doc = {r["doc_id"]: r for r in rejects}
    assert by_doc[poisoned["id"]]["reason"] == "generate:call_failed"
    assert f"failed after {RETRIES + 1} attempts" in by_doc[poisoned["id"]]["detail"]["candidates"][0]["raw"]
    assert {r["reason"] for r in rejects} <= {"generate:call_failed", "judge:bad", "diversify:not_selected"}
    # The judge sends some pairs to refinement, and refined pairs reach the dataset; diversify
    # keeps 8 of the pairs that survived the judge (every healthy document but the bad ones).
    assert any(r["provenance"]["refinement_round"] == 1 for r in curated)
    judged_bad = sum(r["reason"] == "judge:bad" for r in rejects)
    assert sum(r["reason"] == "diversify:not_selected" for r in rejects) == DOCS - 1 - judged_bad - 8
    assert len(curated) == report.curated == 8
    assert {429, 503, 200} <= set(server.status_counts)
    assert server.repeated_after_success() == {}

    # Resume on a finished run: no call at all, the same bytes.
    first = outputs(tmp_path)
    attempts = sum(server.attempts.values())
    [again] = run_curation(recipe, progress=False)
    assert sum(server.attempts.values()) == attempts + RETRIES + 1  # only the poisoned document's call, tried again
    assert again.calls["generate_called"] == 1 and again.calls["judge_called"] == 0
    assert outputs(tmp_path) == first


@pytest.mark.timeout(120)  # a hang guard: the early stop itself is asserted on the calls below
def test_a_run_whose_endpoint_is_down_stops_early_and_stays_retryable(tmp_path: Path) -> None:
    from xinstruction_dataset.curation.engine import FAILING_IN_A_ROW, BackendDown
    from xinstruction_dataset.llm.cache import CallCache

    with socket.socket() as probe:  # a port nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    many = [dict(d, id=f"{d['id']}-{i}", text=f"{d['text']} ({i})") for i in range(8) for d in documents()]  # 128 documents
    recipe = recipe_for(tmp_path, dead, many)
    models = recipe.curation.models
    models.generator = models.generator.model_copy(update={"retries": 1})
    with pytest.raises(BackendDown, match=r"the last \d+ calls failed, none succeeded") as stopped:
        run_curation(recipe, progress=False)
    assert "run the same command again" in str(stopped.value)
    with CallCache(tmp_path / "cache" / "calls.sqlite") as cache:
        failures = cache.failures()
    # Stopped after about FAILING_IN_A_ROW calls (plus those in flight), not one per document.
    assert FAILING_IN_A_ROW <= len(failures) < len(many)
    assert not (tmp_path / "curated" / "sw").exists()
