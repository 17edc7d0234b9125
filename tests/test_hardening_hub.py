"""Hardening of publish, cards and export (issue 24: symlinks, the card's dataset id, the tag race;
issue 20: one scan per publish), through the real `xinstruction` command line in a subprocess,
against the local Hub-protocol server (tests/hub_server.py) and the unmodified huggingface_hub."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub_folders import write_xinstruction_config, xinstruction_folder, xinstruction_records
from xinstruction_dataset.hub.publish import publish_folder
from xinstruction_dataset.retry import RetryPolicy
from xinstruction_dataset.records import ShardWriter

FAST_RETRY = RetryPolicy(retries=1, backoff=0.01, backoff_max=0.02, jitter=False)
SHARD = "train-00000-of-00001.parquet"
# Counts, for one command, the opens and listings of paths under a folder (audit hooks: no patching).
AUDITED_CLI = r"""
import json, os, sys
root, out = os.path.abspath(sys.argv[1]), sys.argv[2]
counts = {}
def hook(event, args):
    if event in ("open", "os.scandir", "os.listdir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path.startswith(root + os.sep):
            key = ("open " if event == "open" else "list ") + os.path.relpath(path, root)
            counts[key] = counts.get(key, 0) + 1
sys.addaudithook(hook)
from xinstruction_dataset.cli import main
code = main(sys.argv[3:])
with open(out, "w") as f:
    json.dump(counts, f)
sys.exit(code)
"""


def xinstruction(*args: str, audit: tuple[Path, Path] | None = None) -> subprocess.CompletedProcess:
    """The real command line, in its own process (it inherits HF_ENDPOINT, HF_TOKEN, HF_HOME)."""
    entry = ["-c", AUDITED_CLI, str(audit[0]), str(audit[1])] if audit else ["-m", "xinstruction_dataset.cli"]
    return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return xinstruction_folder(tmp_path, {"sw": 5, "fi": 4})


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    for language, count in (("sw", 4), ("fi", 3)):
        with ShardWriter(tmp_path / "curated" / language / "shard-00000.jsonl") as writer:
            for record in xinstruction_records(language, count):
                writer.write(record)
    return tmp_path / "curated"


def export(folder: Path, curated: Path, *languages: str) -> subprocess.CompletedProcess:
    flags = [part for language in languages for part in ("--language", language)]
    return xinstruction("export", str(folder), *flags, "--data-dir", str(curated), "--cache-dir", str(folder.parent / "cache"), "--no-progress")


def loading_id(card: str) -> str:
    return re.search(r'^ds = load_dataset\("([^"]+)"', card, re.M).group(1)


# -- symlinks ----------------------------------------------------------------------------------


def test_publish_and_card_check_refuse_a_data_file_linked_from_outside(hub, repo_id, folder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shard = folder / "data" / "fi" / SHARD
    shutil.move(shard, outside / "private.parquet")  # same rows: the card still agrees with the data
    shard.symlink_to(outside / "private.parquet")

    check = xinstruction("card", "check", str(folder))
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"data/fi/{SHARD}" in check.stderr and "leave the folder" in check.stderr
    before = len(hub.requests)
    published = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0")
    assert published.returncode == 2, published.stdout + published.stderr
    assert f"data/fi/{SHARD}" in published.stderr and str(outside / "private.parquet") in published.stderr
    assert len(published.stderr.strip().splitlines()) == 1
    assert hub.requests[before:] == [] and repo_id not in hub.state.repos  # refused before any request

    # A link that stays inside the folder is fine: its file is published.
    kept = folder / "store" / "fi.parquet"
    kept.parent.mkdir()
    shutil.move(outside / "private.parquet", kept)
    shard.unlink()
    shard.symlink_to(Path("..", "..", "store", "fi.parquet"))
    assert xinstruction("card", "check", str(folder)).returncode == 0
    published = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0")
    assert published.returncode == 0, published.stdout + published.stderr
    assert hub.files(repo_id, "v1.0.0")[f"data/fi/{SHARD}"] == kept.read_bytes()


def test_card_check_refuses_a_config_folder_linked_from_outside(hub, folder, tmp_path):
    elsewhere = tmp_path / "elsewhere-tr"
    write_xinstruction_config(tmp_path / "other", "tr", 3)
    shutil.move(tmp_path / "other" / "data" / "tr", elsewhere)
    (folder / "data" / "tr").symlink_to(elsewhere, target_is_directory=True)
    for action in ("check", "update"):
        result = xinstruction("card", action, str(folder))
        assert result.returncode == 2, (action, result.stdout + result.stderr)
        assert "data/tr -> " in result.stderr
    assert "`tr`" not in (folder / "README.md").read_text()  # the card does not describe their data


def test_export_keeps_links_as_links_and_refuses_data_linked_from_outside(curated, tmp_path):
    folder = tmp_path / "pub"
    assert export(folder, curated, "sw").returncode == 0
    notes = tmp_path / "notes.md"
    notes.write_text("my notes, not part of the dataset\n")
    (folder / "NOTES.md").symlink_to(notes)
    assert export(folder, curated, "fi").returncode == 0
    # The staging copy and the swap keep a link a link: no copy of what it points to lands here.
    assert (folder / "NOTES.md").is_symlink() and os.readlink(folder / "NOTES.md") == str(notes)

    secret = tmp_path / "secret.parquet"
    shutil.copy(folder / "data" / "sw" / SHARD, secret)
    (folder / "data" / "sw" / "test-00000-of-00001.parquet").symlink_to(secret)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    result = export(folder, curated, "fi")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data/sw/test-00000-of-00001.parquet" in result.stderr
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert (folder / "data" / "sw" / "test-00000-of-00001.parquet").is_symlink()


# -- the card's dataset id ---------------------------------------------------------------------


def test_card_names_the_folder_after_export_and_the_repo_after_publish(hub, repo_id, curated, tmp_path):
    folder = tmp_path / "pub"
    assert export(folder, curated, "sw").returncode == 0
    assert loading_id((folder / "README.md").read_text()) == "pub"  # not its staging copy's name
    repo = repo_id
    result = xinstruction("publish", str(folder), "--repo-id", repo, "--version", "1.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert loading_id(hub.files(repo, "v1.0.0")["README.md"].decode()) == repo
    assert loading_id((folder / "README.md").read_text()) == repo
    # A later export into the published folder keeps naming its repo; republishing is a no-op.
    assert export(folder, curated, "sw").returncode == 0
    assert loading_id((folder / "README.md").read_text()) == repo
    again = xinstruction("publish", str(folder), "--repo-id", repo, "--version", "1.0.0")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


# -- another writer creates the version's tag --------------------------------------------------


def test_tag_taken_by_another_writer_is_explained_and_a_new_version_completes(hub, repo_id, folder):
    v1 = publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY).commit
    write_xinstruction_config(folder, "tr", 3)
    hub.inject_tag_race(repo_id, "v1.1.0", at="parent")  # they tag the commit before this release
    card_before = (folder / "README.md").read_text()

    first = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.1.0")
    ours = hub.refs(repo_id)["branches"]["main"]
    assert first.returncode == 2, first.stdout + first.stderr
    assert ours != v1 and hub.refs(repo_id)["tags"] == {"v1.0.0": v1, "v1.1.0": v1}
    assert "another writer created the tag v1.1.0" in first.stderr
    assert v1 in first.stderr and ours in first.stderr and "--version 1.1.1" in first.stderr
    assert "run the same command again to complete it" not in first.stderr
    assert (folder / "README.md").read_text() == card_before  # no local changelog entry for a lost version

    rerun = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.1.0")
    assert rerun.returncode == 2, rerun.stdout + rerun.stderr
    assert f"main's head {ours} holds this folder's data without a tag" in rerun.stderr
    assert f"whose v1.1.0 is commit {v1}" in rerun.stderr and "--version 1.1.1" in rerun.stderr

    fixed = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.1.1")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    tags = hub.refs(repo_id)["tags"]
    assert tags["v1.1.0"] == v1 and tags["v1.1.1"] == hub.refs(repo_id)["branches"]["main"]
    assert "data/tr/" + SHARD in hub.files(repo_id, "v1.1.1")


@pytest.mark.parametrize("at", ["commit", "copy"])
def test_tag_made_by_another_writer_for_this_content_completes_the_publish(hub, repo_id, folder, at):
    hub.inject_tag_race(repo_id, "v1.0.0", at=at)  # a concurrent run of the same publish
    result = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    tagged = hub.refs(repo_id)["tags"]["v1.0.0"]
    assert hub.files(repo_id, tagged)["README.md"] == (folder / "README.md").read_bytes()
    assert [c.title for c in hub.commits(repo_id)] == ["Release v1.0.0", "initial commit"]
    again = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


# -- one scan per publish ----------------------------------------------------------------------


def test_publish_lists_each_data_folder_once_and_reads_an_unchanged_file_once(hub, repo_id, folder, tmp_path):
    publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    write_xinstruction_config(folder, "tr", 3)
    counts_file = tmp_path / "audit.json"
    result = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.1.0", audit=(folder, counts_file))
    assert result.returncode == 0, result.stdout + result.stderr
    counts = json.loads(counts_file.read_text())
    listings = {key: n for key, n in counts.items() if key.startswith("list data")}
    assert listings == {"list data": 1, "list data/fi": 1, "list data/sw": 1, "list data/tr": 1}, counts
    # fi and sw are unchanged since v1.0.0: hashed once to compare, never uploaded.
    assert counts[f"open data/fi/{SHARD}"] == 1 and counts[f"open data/sw/{SHARD}"] == 1, counts
