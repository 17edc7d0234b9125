"""`curation.drivers`: K labelling drivers on the executor (curation/drivers.py), against the
TGI-protocol test server, which counts every generation it answers.

- 2 drivers write the bytes 1 driver writes (curated shards, rejects, judge replies, summary,
  config.yaml, fingerprint), make no call twice, and each writes its own cache file;
- a folder is resumed with another driver count (1, 3) without a call and with the same bytes,
  stale driver parts of another count are never merged;
- the ledger files and the report read the set of cache files (legacy + `<cache>.d/`);
- one driver SIGKILLed mid-run: the executor runs it again, only calls in flight are repeated;
- the drivers share the server's slots: never more requests at once than its limit (it answers
  429 past it), and a driver that is done hands its share to the others;
- `drivers` is not in the fingerprint nor in the written config.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml

from corpora import read_corpus
from test_curate_faults import outputs, reply
from tgi_server import TGIServer

from xinstruction_dataset.curation.drivers import SlotShare, share_slots
from xinstruction_dataset.curation.labelling import driver_of, shard_of
from xinstruction_dataset.fingerprint import fingerprint
from xinstruction_dataset.llm.backends import build_backend
from xinstruction_dataset.llm.backends.base import Completion, LLMRequest
from xinstruction_dataset.llm.cache import CallCache, cache_files, driver_cache
from xinstruction_dataset.llm.ledger import read_rows, read_runs
from xinstruction_dataset.recipe import Recipe
from xinstruction_dataset.report import write_report
from xinstruction_dataset.report.cost import run_cost

DOCS = 8
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

    def total(self) -> int:
        with self.lock:
            return sum(self.calls.values())


@pytest.fixture(scope="module")
def model() -> CountingReply:
    return CountingReply()


@pytest.fixture(scope="module")
def server(model: CountingReply):
    server = TGIServer(reply=model, slots=SLOTS, latency=0.02, max_input_tokens=2048, max_total_tokens=4096).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def reference(server: TGIServer, model: CountingReply, tmp_path_factory) -> tuple[Path, Counter]:
    """One single-driver run, shared: its folder and the calls it made."""
    root = tmp_path_factory.mktemp("reference")
    model.calls.clear()
    finish(curate(write_recipe(root, server.url, drivers=1)))
    assert not (root / "cache" / "calls.sqlite.d").exists()  # one driver: the legacy file only
    return root, Counter(model.calls)


def write_recipe(root: Path, server_url: str, drivers: int, docs: int = DOCS, **model_options) -> Path:
    kept = root / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    rows = read_corpus("sw", docs)
    kept.write_text("".join(json.dumps({"id": r["id"], "text": r["text"][:500], "url": r["url"], "source": r["source"]}) + "\n" for r in rows))
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 5.0, "retries": 8, "backoff": 0.05,
             "backoff_max": 0.5, **model_options}
    curation = {"models": {"generator": model}, "generate": {"candidates": 2}, "diversify": {"target_size": 5}, "drivers": drivers}
    recipe = {"name": "drivers", "languages": ["sw"], "output_dir": str(root), "curation": curation}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def set_drivers(recipe: Path, drivers: int) -> None:
    data = yaml.safe_load(recipe.read_text())
    data["curation"]["drivers"] = drivers
    recipe.write_text(yaml.safe_dump(data))


def curate(recipe: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xinstruction_dataset.cli", "curate", str(recipe), "--no-progress", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=300)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    return text


def every_output(root: Path) -> dict[str, bytes]:
    """What a run writes that must not depend on the driver count."""
    found = outputs(root)
    for path in [root / "curation" / "config.yaml", root / "run" / "fingerprint.json", root / "curation" / "sw" / "judge_replies.jsonl",
                 *sorted((root / "curation" / "sw" / "work").glob("*-of-00001.json*"))]:
        found[str(path.relative_to(root))] = path.read_bytes()
    return found


def test_partition_by_driver_is_independent_of_the_shard() -> None:
    ids = [f"doc-{i}" for i in range(400)]
    in_shard = [i for i in ids if shard_of(i, 2) == 0]
    drivers = Counter(driver_of(i, 2) for i in in_shard)
    assert set(drivers) == {0, 1} and min(drivers.values()) > len(in_shard) // 3  # both drivers of shard 0/2 get work
    assert all(driver_of(i, 3) == driver_of(i, 3) for i in ids)


def test_drivers_are_not_in_the_fingerprint_nor_the_written_config(tmp_path: Path) -> None:
    def recipe(drivers: int | None) -> Recipe:
        curation = {"drivers": drivers} if drivers is not None else {}
        return Recipe.from_dict({"name": "x", "languages": ["sw"], "output_dir": str(tmp_path), "curation": curation})

    assert fingerprint(recipe(4)) == fingerprint(recipe(None)) == fingerprint(recipe(1))
    assert "drivers" not in recipe(4).curation.to_yaml()
    assert recipe(None).curation.drivers == 1


def test_a_driver_s_cache_finds_results_in_every_file_of_the_set_and_writes_only_its_own(tmp_path: Path) -> None:
    configured = tmp_path / "cache" / "calls.sqlite"
    request = LLMRequest(prompt="p")
    with CallCache(configured) as legacy:  # a folder labelled with one driver before
        legacy.put("from-legacy", "m", request, Completion("a"))
        legacy.put_json("embed:x", [1.0])
    with CallCache(driver_cache(configured, 1), configured=configured, run_id="run-1") as other:
        other.put("from-driver-1", "m", request, Completion("b"))
    with CallCache(driver_cache(configured, 0), configured=configured, run_id="run-1") as mine:
        assert mine.get("from-legacy") == Completion("a") and mine.get("from-driver-1") == Completion("b")
        assert "from-driver-1" in mine and mine.get("nowhere") is None and mine.get_json("embed:x") == [1.0]
        mine.put("from-driver-0", "m", request, Completion("c"))
    assert cache_files(configured) == [configured, driver_cache(configured, 0), driver_cache(configured, 1)]
    with CallCache(configured) as alone:  # without `configured`: the one file, as before drivers
        assert alone.get("from-driver-0") is None and alone.also_read == []
    for path, keys in ((configured, ["from-legacy"]), (driver_cache(configured, 0), ["from-driver-0"]), (driver_cache(configured, 1), ["from-driver-1"])):
        with sqlite3.connect(path) as connection:  # each result was written to its writer's file only
            assert [key for (key,) in connection.execute("SELECT key FROM calls")] == keys
    runs = read_runs(cache_files(configured))
    assert set(runs) >= {"run-1"}  # two files list the run: it is one run


def test_slot_share_sums_to_the_limit_and_grows_when_a_driver_is_done(tmp_path: Path) -> None:
    shares = [SlotShare(tmp_path, k, 3) for k in range(3)]
    for limit in (3, 4, 5, 16, 17):
        assert [s(limit) for s in shares] == [limit // 3 + (k < limit % 3) for k in range(3)]
        assert sum(s(limit) for s in shares) == limit
    shares[1].leave()
    assert shares[0].active() == [0, 2] and shares[2].active() == [0, 2]
    assert shares[0](5) == 3 and shares[2](5) == 2  # driver 1's slots went to the others
    shares[0].leave()
    assert shares[2].active() == [2] and shares[2](5) == 5
    shares[1].join()  # a retried driver 1 takes a share again
    assert shares[2].active() == [1, 2]


def test_a_server_backend_takes_its_drivers_share_of_each_endpoint(tmp_path: Path, start_tgi_server) -> None:
    servers = [start_tgi_server(slots=5), start_tgi_server(slots=8)]
    spec = {"backend": "tgi", "model": "test/echo-model", "endpoints": [s.url for s in servers], "ramp_start": 8}
    limits = []
    for driver in range(2):
        backend = build_backend(spec)
        share_slots(backend, SlotShare(tmp_path, driver, 2))

        async def ask() -> None:
            await asyncio.gather(*(backend.acomplete(LLMRequest(prompt=f"hello {i}")) for i in range(4)))
            await backend.aclose()

        asyncio.run(ask())
        limits.append([backend.endpoint_stats()[s.url]["limit"] for s in servers])
    assert limits == [[3, 4], [2, 4]]  # per endpoint, the shares sum to its limit
    assert sum(sum(pair) for pair in limits) == 5 + 8


def test_two_drivers_write_what_one_writes_and_resume_with_any_count(tmp_path: Path, server: TGIServer, model: CountingReply, reference) -> None:
    one, single_calls = reference
    model.calls.clear()

    two = write_recipe(tmp_path / "two", server.url, drivers=2)
    finish(curate(two))
    assert model.calls == single_calls  # every call once, none twice
    assert every_output(tmp_path / "two") == every_output(one)
    configured = tmp_path / "two" / "cache" / "calls.sqlite"
    assert cache_files(configured) == [configured, driver_cache(configured, 0), driver_cache(configured, 1)]
    for k in range(2):
        assert read_rows(driver_cache(configured, k), "kind = 'paid'")  # each driver paid its own calls
    assert not list((tmp_path / "two" / "curation" / "sw" / "work").glob("*.driver-*"))  # parts combined, then gone
    assert not list((tmp_path / "two" / "run" / "drivers").glob("*/*"))

    # The ledger and the report read every file of the set: the paid calls are the server's.
    ledger = json.loads((tmp_path / "two" / "run" / "ledger.json").read_text())
    assert ledger["total"]["paid"] == sum(single_calls.values())
    assert len(ledger["runs"]) == 1  # the drivers share the lead's run
    cost = run_cost(configured, {}, [], 0)
    assert sum(stage.paid for stage in [*cost.stages.values(), cost.unclassed]) == sum(single_calls.values())
    assert cost.embeddings > 0  # the lead's merge stored them in the legacy file
    assert write_report(tmp_path / "two", progress=False).index.is_file()

    # Resumed with another count: the calls are found in whichever file holds them.
    for drivers in (1, 3):
        set_drivers(two, drivers)
        finish(curate(two))
        assert model.calls == single_calls, f"a resume with {drivers} driver(s) made calls"
        assert every_output(tmp_path / "two") == every_output(one)
    # Stale parts of another driver count (a killed 2-driver run) are never merged.
    stale = tmp_path / "two" / "curation" / "sw" / "work" / "pairs-00000-of-00001.driver-00001-of-00002.jsonl"
    stale.write_text((tmp_path / "two" / "curation" / "sw" / "work" / "pairs-00000-of-00001.jsonl").read_text())
    finish(curate(two))
    assert not stale.exists()
    assert every_output(tmp_path / "two") == every_output(one)


def test_drivers_share_the_servers_slots(tmp_path: Path, start_tgi_server) -> None:
    # Slow calls and more documents than slots: each driver alone would fill every slot.
    server = start_tgi_server(reply=reply, slots=SLOTS, latency=0.15, max_input_tokens=2048, max_total_tokens=4096)
    recipe = write_recipe(tmp_path / "run", server.url, drivers=2, ramp_start=SLOTS)
    finish(curate(recipe))
    assert server.status_counts.get(429, 0) == 0, server.status_counts
    assert server.peak_active <= SLOTS
    # Both drivers at work at once held all the slots between them.
    assert max(active for active, _ in server.arrivals) == SLOTS


def _driver_processes(lead: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in lead.children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(600)
def test_a_driver_sigkilled_mid_run_repeats_only_calls_in_flight(tmp_path: Path, start_tgi_server, model: CountingReply) -> None:
    # Calls slow enough that the work outlasts the drivers' start-up: the kill lands mid-run.
    server = start_tgi_server(reply=model, slots=SLOTS, latency=0.15, max_input_tokens=2048, max_total_tokens=4096)
    model.calls.clear()
    clean = write_recipe(tmp_path / "clean", server.url, drivers=2)
    finish(curate(clean))
    clean_calls = Counter(model.calls)
    model.calls.clear()

    killed = write_recipe(tmp_path / "killed", server.url, drivers=2)
    process = curate(killed)
    lead = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    while model.total() < len(clean_calls) // 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    drivers = _driver_processes(lead)
    assert process.poll() is None and len(drivers) == 2, "the run ended before a driver could be killed"
    before = model.total()
    drivers[0].send_signal(signal.SIGKILL)
    out = finish(process)  # the executor runs the killed driver's task again
    assert before < len(clean_calls), "the kill fell after the work"
    assert "worker process died" in out or "running its" in out, out[-2000:]
    assert every_output(tmp_path / "killed") == every_output(tmp_path / "clean")
    assert set(model.calls) == set(clean_calls)
    repeated = sum(model.calls.values()) - sum(clean_calls.values())
    assert 0 <= repeated <= SLOTS, f"{repeated} calls made again"

    # A rerun after that makes no call.
    model.calls.clear()
    finish(curate(killed))
    assert not model.calls


def test_a_budget_stop_with_drivers_exits_1_and_resumes_to_the_same_output(tmp_path: Path, server: TGIServer, model: CountingReply) -> None:
    model.calls.clear()
    clean = write_recipe(tmp_path / "clean", server.url, drivers=2, max_concurrency=1)
    finish(curate(clean))
    total = sum(model.calls.values())
    model.calls.clear()

    # One slot per driver: documents are admitted two at a time, so the budget has a say.
    stopped = write_recipe(tmp_path / "stopped", server.url, drivers=2, max_concurrency=1)
    process = curate(stopped, "--max-calls", str(total // 3))
    out, _ = process.communicate(timeout=300)
    text = out.decode(errors="replace")
    assert process.returncode == 1, text[-3000:]
    assert "error: budget reached: curation.budget.max_calls is" in text and "sw" in text.split("budget reached", 1)[1]
    assert not (tmp_path / "stopped" / "curation" / "sw" / "summary.json").exists()  # not labelled whole: not merged
    paid = sum(model.calls.values())
    assert paid < total
    ledger = json.loads((tmp_path / "stopped" / "run" / "ledger.json").read_text())
    assert ledger["total"]["paid"] == paid  # both drivers' files

    finish(curate(stopped, "--max-calls", str(10 * total)))
    assert sum(model.calls.values()) - paid <= total - paid + SLOTS  # the rest, and at most the calls in flight at the stop again
    assert every_output(tmp_path / "stopped") == every_output(tmp_path / "clean")


def test_shards_by_hand_with_drivers_merge_to_what_one_run_writes(tmp_path: Path, server: TGIServer, model: CountingReply, reference) -> None:
    one, single_calls = reference
    model.calls.clear()
    split = write_recipe(tmp_path / "split", server.url, drivers=2)
    finish(curate(split, "--shard", "0/2"))
    finish(curate(split, "--shard", "1/2", "--drivers", "1"))  # a shard's driver count is its own
    finish(curate(split, "--merge"))
    assert model.calls == single_calls
    split_outputs, one_outputs = outputs(tmp_path / "split"), outputs(one)
    summaries = [json.loads(found.pop("summary.json")) for found in (split_outputs, one_outputs)]
    assert split_outputs == one_outputs
    assert summaries[0].pop("shards") == 2 and summaries[1].pop("shards") == 1 and summaries[0] == summaries[1]  # shards by hand are named


def _skewed_ids(count: int, few: int) -> list[str]:
    """`count` ids, `few` of them labelled by driver 0 of 2, the rest by driver 1."""
    ids, first, second, i = [], 0, 0, 0
    while len(ids) < count:
        candidate = f"doc-{i:04d}"
        if driver_of(candidate, 2) == 0 and first < few:
            ids.append(candidate)
            first += 1
        elif driver_of(candidate, 2) == 1 and second < count - few:
            ids.append(candidate)
            second += 1
        i += 1
    return ids


def _peak(intervals: list[tuple[float, float]], after: float) -> int:
    """The most intervals open at once, counting those that started after `after`."""
    events = sorted([(start, 1) for start, end in intervals if start > after] + [(end, -1) for start, end in intervals if start > after])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_a_driver_done_early_hands_its_slots_to_the_others(tmp_path: Path, start_tgi_server) -> None:
    server = start_tgi_server(reply=reply, slots=SLOTS, latency=0.15, max_input_tokens=2048, max_total_tokens=4096)
    recipe = write_recipe(tmp_path / "run", server.url, drivers=2, ramp_start=SLOTS)
    kept = tmp_path / "run" / "filtered" / "sw" / "kept.jsonl"
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    kept.write_text("".join(json.dumps({**row, "id": doc_id}) + "\n" for row, doc_id in zip(rows, _skewed_ids(len(rows), 1))))
    finish(curate(recipe))
    assert server.status_counts.get(429, 0) == 0 and server.peak_active <= SLOTS
    paid = [row for row in read_rows(cache_files(tmp_path / "run" / "cache" / "calls.sqlite")) if row["kind"] == "paid"]
    by_driver = {k: [(row["ended_at"] - row["service_s"], row["ended_at"]) for row in paid if driver_of(row["doc_id"], 2) == k] for k in (0, 1)}
    first_done = max(end for _, end in by_driver[0])
    # Driver 1 alone, once driver 0 is done: more calls at once than its half share.
    assert _peak(by_driver[1], after=first_done) > SLOTS // 2, by_driver
