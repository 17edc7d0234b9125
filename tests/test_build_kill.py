"""Kill and resume of the whole job: `xinstruction build` of 10 languages, in a subprocess against
the TGI-protocol test server, SIGKILLed several times during curation (at seeded points, decided by
watching the call cache fill), each time run again with the same command in the same folder, then
run to the end. Its curated shards, rejects, summaries and exported Parquet data must equal an
uninterrupted build's, and only calls in flight at a kill may have been made again.

A failure prints the seed and the kill points (cache rows at each kill) to reproduce it."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from corpora import read_corpus
from test_curate_faults import reply
from tgi_server import TGIServer

LANGUAGES = ["bn", "fi", "hi", "id", "sw", "ta", "th", "tr", "ur", "vi"]
DOCS = 4  # documents per language
SLOTS = 4
LATENCY = 0.05
KILLS = 3
SEED = 20250611


def model(prompt: str, parameters: dict) -> str:
    """The test model of test_curate_faults: it labels some pairs needs_refinement (refined in up
    to 2 rounds), others good or bad, by a hash of the instruction. An empty prompt is a request
    whose client was killed after sending its headers, before its body: answered (nobody reads
    it) rather than raising in the server's thread; `successes` counts it under "", left out."""
    return reply(prompt, parameters) if prompt else ""


@pytest.fixture(scope="module")
def server():
    """One TGI-protocol server for the module, `SLOTS` requests at once, `LATENCY` s each."""
    server = TGIServer(reply=model, slots=SLOTS, latency=LATENCY, max_input_tokens=2048, max_total_tokens=4096).start()
    yield server
    server.kill()


def write_recipe(root: Path, server_url: str) -> Path:
    """A build recipe of 10 languages, `DOCS` documents each from the shared corpora (texts cut to
    500 characters, as other curation tests do, so prompts stay within the server's input limit)."""
    root.mkdir(parents=True)
    sources = []
    for language in LANGUAGES:
        path = root / "sources" / f"{language}.jsonl"
        path.parent.mkdir(exist_ok=True)
        rows = read_corpus(language, DOCS)
        path.write_text("".join(json.dumps({**row, "text": row["text"][:500]}, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        sources.append({"path": str(path), "language": language})
    spec = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 5.0, "retries": 8, "backoff": 0.05, "backoff_max": 0.5}
    recipe = {
        "name": "build-kill",
        "languages": LANGUAGES,
        "sources": sources,
        "output_dir": str(root / "run"),
        "curation": {"models": {"generator": spec}, "generate": {"candidates": 2}, "refine": {"rounds": 2}, "diversify": {"target_size": 3}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def build(recipe: Path, log: Path) -> subprocess.Popen:
    """The real command line in its own process group (a kill takes it and anything it started);
    its output goes to `log` (a pipe nobody reads while waiting to kill could fill and stall it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "xinstruction_dataset.cli", "build", str(recipe), "--no-progress"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def finish(process: subprocess.Popen, log: Path) -> None:
    try:
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]


def cached_calls(output_dir: Path) -> int:
    """Rows in the call cache, read as a concurrent reader (WAL); 0 before the cache exists."""
    path = output_dir / "cache" / "calls.sqlite"
    if not path.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            return connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.OperationalError:  # created but its table not yet committed
        return 0


def kill_at(process: subprocess.Popen, log: Path, output_dir: Path, rows: int) -> tuple[str, int | None]:
    """SIGKILL the build's process group once the call cache holds `rows` calls: ("killed", rows
    in the cache after the kill) or ("exited", None) when the build ended by itself first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.returncode == 0, log.read_text(errors="replace")[-3000:]
            return "exited", None
        if cached_calls(output_dir) >= rows:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return "killed", cached_calls(output_dir)  # with calls committed just before the kill
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    raise AssertionError(f"the call cache never reached {rows} rows")


def output_files(run: Path) -> dict[str, bytes]:
    """Every curated shard, rejects and summary file, by path under the run folder."""
    files = sorted((run / "curated").rglob("*")) + sorted((run / "curation").glob("*/rejects.jsonl")) + sorted((run / "curation").glob("*/summary.json"))
    return {str(f.relative_to(run)): f.read_bytes() for f in files if f.is_file()}


def exported_rows(run: Path) -> dict[str, list[dict]]:
    """The exported Parquet data, row by row, per file under x-instruction/data/."""
    data = run / "x-instruction" / "data"
    return {str(f.relative_to(data)): pq.read_table(f).to_pylist() for f in sorted(data.rglob("*.parquet"))}


@pytest.mark.timeout(300)
def test_build_killed_during_curation_then_rerun_gives_identical_output(tmp_path: Path, server: TGIServer) -> None:
    reference = write_recipe(tmp_path / "A", server.url)
    started = time.monotonic()
    finish(build(reference, tmp_path / "A.log"), tmp_path / "A.log")
    reference_seconds = time.monotonic() - started
    run_a = tmp_path / "A" / "run"
    total = cached_calls(run_a)
    assert total > KILLS + 1, f"too few calls ({total}) to kill the build between them"
    # The server counts replies per prompt: a prompt sampled with several seeds (the generate
    # stage's candidates) counts once per seed, so re-runs are measured against these counts.
    reference_successes = Counter(server.successes)
    assert sum(reference_successes.values()) == total
    # summary.json holds counts, models and rejection reasons, no timings: compared byte for byte.
    reference_files = output_files(run_a)
    assert len([name for name in reference_files if name.startswith("curated/")]) >= len(LANGUAGES)
    for language in LANGUAGES:
        assert {f"curation/{language}/rejects.jsonl", f"curation/{language}/summary.json"} <= reference_files.keys()
    reference_rows = exported_rows(run_a)
    assert len(reference_rows) == len(LANGUAGES) and all(reference_rows.values())

    server.successes.clear()
    killed = write_recipe(tmp_path / "B", server.url)
    run_b = tmp_path / "B" / "run"
    rng = random.Random(SEED)
    points = sorted(rng.randint(1, total - 1) for _ in range(KILLS))
    print(f"seed {SEED}: {total} calls in the reference run ({reference_seconds:.1f} s); kill points (cache rows): {points}")
    kills = []  # (cache rows before the run, rows to wait for, outcome, rows after the kill)
    for n, point in enumerate(points):
        before = cached_calls(run_b)
        # Each killed run must store at least one call of its own: a kill is then mid-curation.
        rows = max(point, before + 1)
        log = tmp_path / f"B{n}.log"
        outcome, after = kill_at(build(killed, log), log, run_b, rows)
        kills.append((before, rows, outcome, after))
    print(f"seed {SEED}: kills " + ", ".join(f"[{before} rows before, waited for {rows}: {outcome}, {after} rows after]" for before, rows, outcome, after in kills))
    landed = [k for k in kills if k[2] == "killed" and k[0] < k[3] < total]
    assert landed, f"seed {SEED}: no kill landed during curation: {kills}"
    finish(build(killed, tmp_path / "B.log"), tmp_path / "B.log")

    files = output_files(run_b)
    differing = sorted(name for name in files.keys() | reference_files.keys() if files.get(name) != reference_files.get(name))
    assert not differing, f"seed {SEED}, kills {kills}: these files differ from the uninterrupted run's: {differing}"
    assert exported_rows(run_b) == reference_rows, f"seed {SEED}, kills {kills}"
    assert cached_calls(run_b) == total, f"seed {SEED}, kills {kills}"
    # A finished call is cached before its result is used: only calls in flight at a kill (at most
    # one per server slot) may have been answered again.
    server.successes.pop("", None)
    assert server.successes.keys() == reference_successes.keys(), f"seed {SEED}: prompts differ from the reference run's"
    repeated = server.successes - reference_successes
    examples = [prompt[-120:] for prompt in list(repeated)[:3]]
    assert sum(repeated.values()) <= SLOTS * len(landed), (
        f"seed {SEED}: {sum(repeated.values())} finished calls made again after kills {kills} "
        f"(at most {SLOTS} a kill may be in flight), e.g. prompts ending {examples}"
    )
