"""Kill and resume of `xinstruction filter`, and the folders of older runs.

The real command, in a subprocess, SIGKILLs itself at a chosen step (tests/test_hardening_folders.py's
audit-hook driver): a task half-written, a task's marker, the language's removal list, its summary,
its manifest. Run again with the same command, each run must write the same manifest, removal
list and quarantine (deterministic: no timestamps, relative paths), and curation over it must
write the same curated output as an uninterrupted run's. A folder as older versions left it (a
merged kept.jsonl and rejects.jsonl, task markers without file lists, no manifest) must curate to
the same output, and resume filtering into the new layout.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from corpora import read_corpus
from filtered_output import kept_lines, reject_rows
from test_curate_faults import reply
from test_hardening_folders import cli
from tgi_server import TGIServer
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.filtering.kept import MANIFEST, REMOVALS, consolidate
from xinstruction_dataset.recipe import Recipe

DOCS = 9


def write_sources(root: Path) -> Path:
    """Three files of Swahili text with what the whole-language steps remove: an exact copy
    (re-cased) in another file, and an id repeated in another file."""
    rows = [{"id": r["id"], "text": r["text"][:400], "url": r["url"]} for r in read_corpus("sw", DOCS)]
    files = {
        "a.jsonl": rows[0:3],
        "b.jsonl": rows[3:6] + [{"id": "zz-copy", "text": rows[1]["text"].upper()}],
        "c.jsonl": rows[6:9] + [{"id": rows[4]["id"], "text": rows[8]["text"][::-1]}],
    }
    folder = root / "sources"
    folder.mkdir(parents=True)
    for name, items in files.items():
        (folder / name).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in items), encoding="utf-8")
    return folder


def write_recipe(root: Path, sources: Path, server_url: str) -> Path:
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 5.0, "retries": 8, "backoff": 0.05, "backoff_max": 0.5}
    recipe = {
        "name": "filter-kill",
        "languages": ["sw"],
        "sources": [{"path": str(sources / "*.jsonl"), "language": "sw"}],
        "filters": [{"type": "length", "min_chars": 50, "max_chars": 20000}, {"type": "dedup"}],
        "output_dir": str(root / "run"),
        "curation": {"models": {"generator": model}, "generate": {"candidates": 1}, "diversify": {"target_size": 4}},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def filter_files(run: Path) -> dict[str, bytes]:
    folder = run / "filtered" / "sw"
    return {name: (folder / name).read_bytes() for name in (MANIFEST, REMOVALS, "quarantine.jsonl")}


def curated(recipe: Path) -> dict[str, bytes]:
    """Curate in this process; the curated shards, rejects and summary, by path."""
    loaded = Recipe.from_yaml(recipe)
    run_curation(loaded, progress=False)
    run = loaded.output_path
    files = sorted((run / "curated").rglob("*.jsonl")) + [run / "curation" / "sw" / "rejects.jsonl", run / "curation" / "sw" / "summary.json"]
    return {str(path.relative_to(run)): path.read_bytes() for path in files}


def step(endswith: str) -> dict:
    return {"event": "os.rename", "arg": 1, "endswith": endswith}


KILL_POINTS = {
    "a task half-written": step("/tasks/task-00001/kept.jsonl"),
    "a task before its marker": step("/tasks/task-00002/done.json"),
    "the removal list": step("/filtered/sw/removals.jsonl"),
    "the summary": step("/filtered/sw/summary.json"),
    "the manifest": step("/filtered/sw/manifest.json"),
    "dropping the signatures": {"event": "os.remove", "arg": 0, "endswith": "/tasks/task-00001/signatures.npy"},
}


@pytest.fixture(scope="module")
def server():
    """The TGI-protocol test server with the test model of test_curate_faults, for the module."""
    server = TGIServer(reply=reply, slots=4, latency=0.01, max_input_tokens=2048, max_total_tokens=4096).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("reference")
    sources = write_sources(root)
    recipe = write_recipe(root, sources, server.url)
    done = cli("filter", str(recipe), "--workers", "1", "--no-progress")
    assert done.returncode == 0, done.stderr
    return sources, filter_files(root / "run"), curated(recipe)


def test_the_reference_stores_each_document_once(reference, tmp_path):
    sources, files, _ = reference
    manifest = json.loads(files[MANIFEST])
    assert [task["folder"] for task in manifest["tasks"]] == ["tasks/task-00000", "tasks/task-00001", "tasks/task-00002"]
    assert str(tmp_path.parent) not in files[MANIFEST].decode() and "/" not in manifest["tasks"][0]["folder"][:1]  # relative paths
    removals = [json.loads(line) for line in files[REMOVALS].decode().splitlines()]
    assert [(r["id"], r["step"], r["reason"]) for r in removals] == [
        ("zz-copy", "dedup", "exact_duplicate_of"),  # the larger id of the pair
        (read_corpus("sw", DOCS)[4]["id"], "duplicate_id", "duplicate_id"),
    ]
    assert manifest["documents"] == DOCS and manifest["removals"]["count"] == 2


@pytest.mark.timeout(600)
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_filter_killed_at_each_step_then_resumed_writes_the_same_files(reference, point, tmp_path, server):
    sources, expected_files, expected_curated = reference
    recipe = write_recipe(tmp_path, sources, server.url)
    killed = cli("filter", str(recipe), "--workers", "1", "--no-progress", kill=KILL_POINTS[point])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # nothing reads a half-made folder: until the manifest, there is none
    assert (tmp_path / "run" / "filtered" / "sw" / MANIFEST).exists() == (point == "dropping the signatures")
    done = cli("filter", str(recipe), "--workers", "1", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert filter_files(tmp_path / "run") == expected_files
    assert not list((tmp_path / "run").rglob("*.tmp"))
    assert curated(recipe) == expected_curated


@pytest.mark.timeout(600)
def test_a_folder_of_an_older_run_curates_and_resumes(reference, tmp_path, server):
    """The layout older versions wrote: tasks, then a merged kept.jsonl and rejects.jsonl (the bytes
    `consolidate` writes), markers without their file lists, and no manifest or removal list."""
    sources, expected_files, expected_curated = reference
    recipe = write_recipe(tmp_path, sources, server.url)
    assert cli("filter", str(recipe), "--workers", "1", "--no-progress").returncode == 0
    folder = tmp_path / "run" / "filtered" / "sw"
    consolidate(folder)
    merged_kept, merged_rejects = (folder / "kept.jsonl").read_bytes(), (folder / "rejects.jsonl").read_bytes()
    assert merged_kept.decode().splitlines(keepends=True) == kept_lines(folder)
    for name in (MANIFEST, REMOVALS):
        (folder / name).unlink()
    markers = sorted(folder.glob("tasks/*/done.json"))
    for marker in markers:
        data = json.loads(marker.read_text())
        del data["files"]
        marker.write_text(json.dumps(data))
    assert [json.loads(line)["reason"] for line in merged_rejects.decode().splitlines() if "duplicate" in line] == [
        "dedup:exact_duplicate_of:" + read_corpus("sw", DOCS)[1]["id"], "duplicate_id",
    ]

    assert curated(recipe) == expected_curated  # read from the merged kept.jsonl

    before = {marker: json.loads(marker.read_text())["key"] for marker in markers}
    done = cli("filter", str(recipe), "--workers", "1", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert {marker: json.loads(marker.read_text())["key"] for marker in markers} == before  # no task ran again
    assert filter_files(tmp_path / "run") == expected_files
    assert not (folder / "kept.jsonl").exists() and not (folder / "rejects.jsonl").exists()
    assert [json.loads(line) for line in merged_rejects.decode().splitlines()] == reject_rows(folder)
    assert curated(recipe) == expected_curated


def test_signatures_are_dropped_after_the_manifest_and_made_again_when_a_task_changes(reference, tmp_path, server):
    sources, expected_files, _ = reference
    recipe = write_recipe(tmp_path, sources, server.url)
    assert cli("filter", str(recipe), "--workers", "1", "--no-progress").returncode == 0
    folder = tmp_path / "run" / "filtered" / "sw"
    assert sorted(p.name for p in (folder / "tasks" / "task-00000").iterdir()) == [
        "digests.npy", "done.json", "ids.json", "kept.jsonl", "quarantine.jsonl", "rejects.jsonl", "summary.json",
    ]
    written = {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}
    assert cli("filter", str(recipe), "--workers", "1", "--no-progress").returncode == 0
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()} == written  # nothing decided again

    # A task whose input changed (here only its mtime) runs again; the others sign again for the reduce.
    changed = sources / "b.jsonl"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    try:
        assert cli("filter", str(recipe), "--workers", "2", "--no-progress").returncode == 0
    finally:
        os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns - 10**9))  # the reference's sources again
    assert filter_files(tmp_path / "run") == expected_files
    assert not list(folder.glob("tasks/*/signatures.npy"))


def test_a_damaged_task_file_is_refused_then_a_re_run_writes_it_again(reference, tmp_path, server):
    sources, expected_files, expected_curated = reference
    recipe = write_recipe(tmp_path, sources, server.url)
    assert cli("filter", str(recipe), "--workers", "1", "--no-progress").returncode == 0
    kept = tmp_path / "run" / "filtered" / "sw" / "tasks" / "task-00001" / "kept.jsonl"
    kept.write_text(kept.read_text(encoding="utf-8")[:-40] + "\n", encoding="utf-8")
    refused = cli("curate", str(recipe), "--no-progress")
    assert refused.returncode == 3 and "task-00001/kept.jsonl: damaged" in refused.stderr, refused.stderr
    assert cli("filter", str(recipe), "--workers", "1", "--no-progress").returncode == 0  # that task runs again
    assert filter_files(tmp_path / "run") == expected_files
    assert curated(recipe) == expected_curated


def test_consolidate_writes_one_kept_file_for_other_tools(reference, tmp_path, server):
    sources, expected_files, _ = reference
    recipe = write_recipe(tmp_path, sources, server.url)
    assert cli("filter", str(recipe), "--workers", "2", "--no-progress", "--consolidate").returncode == 0
    folder = tmp_path / "run" / "filtered" / "sw"
    assert filter_files(tmp_path / "run") == expected_files
    assert (folder / "kept.jsonl").read_text().splitlines(keepends=True) == kept_lines(folder)
    assert len((folder / "kept.jsonl").read_text().splitlines()) == DOCS
    assert [json.loads(line) for line in (folder / "rejects.jsonl").read_text().splitlines()] == reject_rows(folder)
