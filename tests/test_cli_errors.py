"""Every bad recipe and bad environment, through the real command line (a subprocess, as a user
runs it): the documented exit code (errors.py), one `error:` line that names the input, and no
traceback unless `-v` is given."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from corpora import read_corpus
from xinstruction_dataset.errors import EXIT_ENVIRONMENT, EXIT_USAGE


def run_cli(*args: str, cwd: Path | None = None, prefix: tuple[str, ...] = (), **env_changes: str) -> subprocess.CompletedProcess:
    command = [*prefix, sys.executable, "-m", "xinstruction_dataset.cli", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_changes}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def write_recipe(path: Path, **overrides) -> Path:
    corpus = path.parent / "sw.jsonl"
    if not corpus.exists():
        corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in read_corpus("sw", 20)), encoding="utf-8")
    recipe = {
        "name": "errors",
        "languages": ["sw"],
        "sources": [{"path": str(corpus), "language": "sw"}],
        "filters": [{"type": "length", "min_chars": 20, "max_chars": 20000}],
        "output_dir": str(path.parent / "run"),
    }
    recipe.update(overrides)
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def dead_endpoint() -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@dataclass
class Case:
    name: str
    prepare: Callable[[Path], list[str]]  # builds the input in tmp_path, returns the command's args
    code: int
    names: Callable[[Path], str]  # what the one error line must name


def missing_recipe(tmp: Path) -> list[str]:
    return ["filter", str(tmp / "nope.yaml")]


def misspelt_key(tmp: Path) -> list[str]:
    return ["build", str(write_recipe(tmp / "r.yaml", curation={"judge": {"scael": "five_point"}}))]


def wrong_filter_type(tmp: Path) -> list[str]:
    return ["filter", str(write_recipe(tmp / "r.yaml", filters=[{"type": "length", "min_chars": "many"}]))]


def out_of_range(tmp: Path) -> list[str]:
    return ["curate", str(write_recipe(tmp / "r.yaml", curation={"records_per_shard": 0}))]


def recipe_is_a_folder(tmp: Path) -> list[str]:
    (tmp / "recipe.yaml").mkdir()
    return ["filter", str(tmp / "recipe.yaml")]


def non_utf8_recipe(tmp: Path) -> list[str]:
    (tmp / "r.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    return ["filter", str(tmp / "r.yaml")]


def output_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("not a folder")
    return ["filter", str(write_recipe(tmp / "r.yaml", output_dir=str(tmp / "taken")))]


def corrupt_call_cache(tmp: Path) -> list[str]:
    recipe = write_recipe(tmp / "r.yaml")
    assert run_cli("filter", str(recipe), "--no-progress").returncode == 0
    cache = tmp / "run" / "cache" / "calls.sqlite"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"this is not a SQLite database" * 100)
    return ["curate", str(recipe), "--no-progress"]


def endpoint_down(tmp: Path) -> list[str]:
    model = {"backend": "tgi", "model": "test/m", "endpoints": [dead_endpoint()], "timeout": 1.0, "retries": 0}
    recipe = write_recipe(tmp / "r.yaml", curation={"models": {"generator": model}, "generate": {"candidates": 1}})
    assert run_cli("filter", str(recipe), "--no-progress").returncode == 0
    return ["curate", str(recipe), "--no-progress"]


def lock_held(tmp: Path) -> list[str]:
    recipe = write_recipe(tmp / "r.yaml")
    lock = tmp / "run" / "run" / "lock.json"
    lock.parent.mkdir(parents=True)
    # A live process on this host holds it: the test runner itself.
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time(), "started_at": time.time(), "command": "pytest", "token": "t"}))
    return ["filter", str(recipe)]


CASES = [
    Case("missing recipe", missing_recipe, EXIT_USAGE, lambda t: "nope.yaml"),
    Case("misspelt key deep in curation", misspelt_key, EXIT_USAGE, lambda t: "curation.judge.scael"),
    Case("filter option of the wrong type", wrong_filter_type, EXIT_USAGE, lambda t: "filters[0].min_chars"),
    Case("option out of range", out_of_range, EXIT_USAGE, lambda t: "curation.records_per_shard"),
    Case("recipe path is a folder", recipe_is_a_folder, EXIT_USAGE, lambda t: "recipe.yaml"),
    Case("recipe not UTF-8", non_utf8_recipe, EXIT_USAGE, lambda t: "r.yaml"),
    Case("output_dir is a file", output_dir_is_a_file, EXIT_ENVIRONMENT, lambda t: "taken"),
    Case("corrupt call cache", corrupt_call_cache, EXIT_ENVIRONMENT, lambda t: "calls.sqlite"),
    Case("every endpoint down", endpoint_down, EXIT_ENVIRONMENT, lambda t: "calls failed"),
    Case("output_dir locked by a live run", lock_held, EXIT_ENVIRONMENT, lambda t: f"PID {os.getpid()}"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_an_exit_code(case: Case, tmp_path: Path) -> None:
    args = case.prepare(tmp_path)
    done = run_cli(*args)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == case.code, done.stderr[-2000:]
    assert len(lines) == 1 and case.names(tmp_path) in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    verbose = run_cli("-v", *args)
    assert verbose.returncode == case.code and "Traceback" in verbose.stderr


@pytest.mark.timeout(300)
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A real full disk: a 64 KiB tmpfs in a private mount namespace (`unshare -m`, root)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -m` (root in a Linux container) to mount a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    rows = [dict(r, id=f"{r['id']}-{i}") for i in range(20) for r in read_corpus("sw")]  # ~10x the disk
    (tmp_path / "sw.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    recipe = write_recipe(tmp_path / "r.yaml", output_dir=str(small / "run"))
    # The tmpfs is private to the namespace: list what the run left on it before the shell exits.
    mount = f"mount -t tmpfs -o size=64k tmpfs {small} && {{ \"$@\"; rc=$?; echo LEFT:; find {small} -name '*.tmp'; exit $rc; }}"
    done = run_cli("filter", str(recipe), "--no-progress", prefix=("unshare", "-m", "sh", "-c", mount, "sh"))
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "disk is full" in lines[0] and str(small) in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stdout.split("LEFT:", 1)[1].strip() == "", "temporary files left on the full disk"


@pytest.mark.timeout(300)
def test_hub_down_and_hub_refusing_the_token_are_one_line(hub, tmp_path: Path, monkeypatch) -> None:
    from hub_folders import xinstruction_folder

    folder = xinstruction_folder(tmp_path, {"sw": 3})
    publish = ["publish", str(folder), "--repo-id", "org/errors", "--version", "1.0.0", "--retries", "2"]
    down = run_cli(*publish, HF_ENDPOINT=dead_endpoint())
    assert down.returncode == EXIT_ENVIRONMENT and "Traceback" not in down.stderr, down.stderr[-2000:]
    assert [line for line in down.stderr.splitlines() if line.startswith("error:")] == [
        line for line in down.stderr.splitlines() if "the Hub cannot be reached" in line
    ]
    monkeypatch.delenv("HF_TOKEN")
    refused = run_cli(*publish)
    assert refused.returncode == EXIT_ENVIRONMENT and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert "HTTP 401" in refused.stderr and "hf auth login" in refused.stderr


def test_a_secret_in_an_error_is_never_printed(tmp_path: Path) -> None:
    """The error line is redacted: a token from the environment never reaches the terminal."""
    secret = "hf_" + "S3cr3tT0kenValue" * 2
    recipe = write_recipe(tmp_path / "r.yaml", output_dir=str(tmp_path / secret))
    (tmp_path / secret).write_text("a file where the output folder should be")
    done = run_cli("filter", str(recipe), HF_TOKEN=secret)
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr[-2000:]
    assert secret not in done.stderr and secret not in done.stdout and "***" in done.stderr


@pytest.mark.timeout(300)
def test_a_full_disk_under_the_call_cache_is_one_line_and_keeps_what_was_stored(tmp_path: Path, start_tgi_server) -> None:
    """curate with its call cache on a 64 KiB tmpfs: the cache fills up mid-run."""
    from fake_llm import reply_for_prompt

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -m` (root in a Linux container) to mount a small tmpfs")
    server = start_tgi_server(reply=lambda prompt, params: reply_for_prompt(prompt))
    small = tmp_path / "small"
    small.mkdir()
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server.url], "retries": 0}
    curation = {"cache": str(small / "calls.sqlite"), "models": {"generator": model}, "generate": {"candidates": 1}}
    recipe = write_recipe(tmp_path / "r.yaml", curation=curation)
    assert run_cli("filter", str(recipe), "--no-progress").returncode == 0
    mount = f"mount -t tmpfs -o size=160k tmpfs {small} && exec \"$@\""  # room to open it, not to finish
    done = run_cli("curate", str(recipe), "--no-progress", prefix=("unshare", "-m", "sh", "-c", mount, "sh"))
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "calls.sqlite" in lines[0] and "free disk space" in lines[0], done.stderr[-2000:]
    assert "could not store a result" in lines[0]  # it failed mid-run, with results stored before
    assert "Traceback" not in done.stderr
