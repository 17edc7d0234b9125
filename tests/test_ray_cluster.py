"""Filtering on a real Ray cluster of two nodes on this machine (`ray start --head`, then
`ray start --address`, one CPU each, no dashboard, a bounded object store), started once for
the module and stopped exactly (only its own processes; `ray stop` would end every Ray process
of the machine).

- a 10-language `xinstruction build --executor ray` exports the same data as the local executor;
- a worker node killed mid-filter is survived: the run completes with the same output;
- a near-duplicate pair in two files (two tasks, possibly two nodes) is caught.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from corpora import read_corpus
from filtered_output import language_files, reject_rows
from test_curate_faults import reply
from test_dedup_across_tasks import chain_texts, unrelated
from tgi_server import TGIServer

from xinstruction_dataset.execution.local_cluster import LocalRayCluster
from xinstruction_dataset.execution.local import LocalExecutor
from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS, filter_languages
from xinstruction_dataset.recipe import Recipe

pytest.importorskip("ray", reason='the Ray tests need the [ray] extra: pip install -e ".[ray]"')

LANGUAGES = ["bn", "fi", "hi", "id", "sw", "ta", "th", "tr", "ur", "vi"]


@pytest.fixture(scope="module")
def cluster():
    groups_before = _raylets()
    cluster = LocalRayCluster(cpus_per_node=1).start(nodes=2)
    try:
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()
    assert _raylets() == groups_before  # nothing of ours left running


def _raylets() -> int:
    ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout.splitlines()
    return sum("raylet" in line and not line.startswith("Z") for line in ps)


@pytest.fixture(scope="module")
def server():
    server = TGIServer(reply=reply, slots=8, latency=0.01, max_input_tokens=2048, max_total_tokens=4096).start()
    yield server
    server.kill()


def run_cli(args: list[str], log: Path, timeout: float = 300) -> None:
    with open(log, "wb") as out:
        result = subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", *args, "--no-progress"], stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    assert result.returncode == 0, log.read_text(errors="replace")[-4000:]


def write_build_recipe(root: Path, server_url: str) -> Path:
    sources = []
    for language in LANGUAGES:
        rows = read_corpus(language, 4)
        for part in range(2):  # two files: two tasks per language
            path = root / "sources" / language / f"part-{part}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({**row, "text": row["text"][:500]}, ensure_ascii=False) + "\n" for row in rows[part * 2:part * 2 + 2]), encoding="utf-8")
        sources.append({"path": str(root / "sources" / language / "*.jsonl"), "language": language})
    spec = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 5.0, "retries": 8, "backoff": 0.05, "backoff_max": 0.5}
    recipe = {
        "name": "ray-build", "languages": LANGUAGES, "sources": sources,
        "filters": [{"type": "length", "min_chars": 100}, {"type": "language"}, {"type": "dedup"}],
        "output_dir": str(root / "run"),
        "curation": {"models": {"generator": spec}, "generate": {"candidates": 1}, "refine": {"rounds": 1}, "diversify": {"target_size": 2}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def exported_rows(run: Path) -> dict[str, list[dict]]:
    data = run / "x-instruction"
    return {str(f.relative_to(data)): pq.read_table(f).to_pylist() for f in sorted(data.rglob("*.parquet"))}


def without_root(folder: Path, root: Path) -> dict[str, bytes]:
    """A language's filter output (filtered_output.language_files), with the run's own folder (in
    each document's origin) left out, and so the sizes and checksums of files naming it."""
    return {
        name: re.sub(rb'"(sha256|bytes)": ("[0-9a-f]{64}"|[0-9]+)', rb'"\1": -', data.replace(str(root).encode(), b"ROOT"))
        for name, data in language_files(folder).items()
    }


def test_a_ten_language_build_on_ray_exports_what_the_local_executor_does(cluster, server, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_cli(["build", str(write_build_recipe(local, server.url)), "--executor", "local", "--workers", "2"], tmp_path / "local.log")
    run_cli(["build", str(write_build_recipe(on_ray, server.url)), "--executor", "ray", "--ray-address", cluster.address], tmp_path / "ray.log")
    rows = exported_rows(local / "run")
    assert len(rows) >= len(LANGUAGES) and rows == exported_rows(on_ray / "run")
    for language in LANGUAGES:
        kept = [without_root(root / "run" / "filtered" / language, root) for root in (local, on_ray)]
        assert kept[0] == kept[1] and kept[0]["kept"]
    assert f"on the Ray executor at {cluster.address}" in (tmp_path / "ray.log").read_text()


def write_filter_recipe(root: Path, files: int = 3, docs_per_file: int = 40) -> Recipe:
    """10 languages x `files` files, enough work per task for a kill to land mid-run."""
    sources = []
    for language in LANGUAGES:
        rows = read_corpus(language)
        for part in range(files):
            path = root / "sources" / language / f"part-{part}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            chunk = [{**rows[(part * docs_per_file + i) % len(rows)], "id": f"{language}-{part}-{i}"} for i in range(docs_per_file)]
            path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk), encoding="utf-8")
        sources.append({"path": str(root / "sources" / language / "*.jsonl"), "language": language})
    recipe = Recipe.from_dict({"name": "ray-kill", "sources": sources, "filters": DEFAULT_FILTERS, "output_dir": str(root / "run")})
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), allow_unicode=True), encoding="utf-8")
    return recipe


def test_a_worker_node_killed_mid_filter_is_survived(cluster, tmp_path):
    victim = cluster.add_node()
    cluster.wait_for_nodes(3)
    recipe = write_filter_recipe(tmp_path / "ray")
    log = tmp_path / "ray.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "xinstruction_dataset.cli", "filter", str(tmp_path / "ray" / "recipe.yaml"), "--ray-address", cluster.address, "--no-progress"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        tasks = len(LANGUAGES) * 3
        markers = lambda: len(list(recipe.output_path.glob("filtered/*/tasks/*/done.json")))  # noqa: E731
        deadline = time.monotonic() + 240
        while markers() < 3 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        done_at_kill = markers()
        victim.kill()
        assert 0 < done_at_kill < tasks, f"the kill did not land mid-filter ({done_at_kill} of {tasks} tasks done)"
        assert run.wait(timeout=400) == 0, log.read_text(errors="replace")[-4000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        cluster.nodes.remove(victim) if victim in cluster.nodes else None
    reference = write_filter_recipe(tmp_path / "local")
    filter_languages(reference, LANGUAGES, executor=LocalExecutor(workers=1), progress=False)
    for language in LANGUAGES:
        ours = without_root(recipe.output_path / "filtered" / language, tmp_path / "ray")
        assert ours == without_root(reference.output_path / "filtered" / language, tmp_path / "local"), language


def test_a_near_duplicate_pair_in_two_files_is_caught_on_the_cluster(cluster, tmp_path):
    a, b, _ = chain_texts()
    files = {"one.jsonl": [("doc-b", b)] + [(f"x{i}", t) for i, t in enumerate(unrelated(3))], "two.jsonl": [("doc-a", a)]}
    for name, rows in files.items():
        (tmp_path / name).write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows), encoding="utf-8")
    recipe = {"name": "pair", "sources": [{"path": str(tmp_path / "*.jsonl"), "language": "fi"}], "output_dir": str(tmp_path / "out"),
              "filters": [{"type": "length", "min_chars": 50}, {"type": "dedup"}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run_cli(["filter", str(tmp_path / "recipe.yaml"), "--ray-address", cluster.address], tmp_path / "filter.log")
    tasks = sorted((tmp_path / "out" / "filtered" / "fi" / "tasks").iterdir())
    assert len(tasks) == 2 and all("doc-" in (task / "kept.jsonl").read_text() for task in tasks)  # each task kept its half
    rejects = reject_rows(tmp_path / "out" / "filtered" / "fi")
    assert {(row["id"], row["reason"]) for row in rejects if "duplicate" in row["reason"]} == {("doc-b", "dedup:near_duplicate_of:doc-a")}
