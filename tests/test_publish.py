"""Versioned publishing against the local Hub-protocol server, driven by the unmodified
`huggingface_hub` and `datasets` clients (`hub` fixture: tests/conftest_hub.py, which also asserts
after every test that the token appears in no output, log, written file or published content)."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import importlib.util
from pathlib import Path

import datasets
import pytest

from hub_folders import write_xalpacaeval_sources, write_xinstruction_config, xinstruction_folder, xinstruction_records
from xinstruction_dataset.cli import main
from xinstruction_dataset.features import XALPACAEVAL_FEATURES
from xinstruction_dataset.hub.publish import IncompletePublish, PublishError, publish_folder
from xinstruction_dataset.hub.retry import HubRefused
from xinstruction_dataset.retry import RetryPolicy
from xinstruction_dataset.xalpacaeval import export_xalpacaeval

FAST_RETRY = RetryPolicy(retries=2, backoff=0.01, backoff_max=0.05, jitter=False)


def run_command(argv: list[str]) -> int:
    """Run a subcommand through the real entry point (`xinstruction` = cli.main: its parser, its
    one-line errors on stderr and exit codes), output moved to stdout for the asserts."""
    with contextlib.redirect_stderr(sys.stdout):
        return main(argv)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """X-Instruction with two languages (sw, fi), as version 1.0.0 will hold."""
    return xinstruction_folder(tmp_path, {"sw": 5, "fi": 4})


def load_ids(repo_id: str, config: str, revision: str) -> list[str]:
    return datasets.load_dataset(repo_id, config, split="train", revision=revision)["id"]


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_each_version_loads_exactly_its_own_data(hub, repo_id, folder):
    first = publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    assert first.status == "published"
    assert sorted(c.path for c in first.diff.changes) == ["README.md", "data/fi/train-00000-of-00001.parquet", "data/sw/train-00000-of-00001.parquet"]
    # v1.1.0: a third language, and Swahili replaced by other records.
    write_xinstruction_config(folder, "tr", 3)
    write_xinstruction_config(folder, "sw", 6, offset=5)
    assert publish_folder(folder, repo_id, "1.1.0", retry=FAST_RETRY).status == "published"

    assert datasets.get_dataset_config_names(repo_id, revision="v1.0.0") == ["fi", "sw"]
    assert datasets.get_dataset_config_names(repo_id, revision="v1.1.0") == ["fi", "sw", "tr"]
    assert load_ids(repo_id, "sw", "v1.0.0") == [r.id for r in xinstruction_records("sw", 5)]
    assert load_ids(repo_id, "sw", "v1.1.0") == [r.id for r in xinstruction_records("sw", 6, offset=5)]
    assert load_ids(repo_id, "tr", "v1.1.0") == [r.id for r in xinstruction_records("tr", 3)]
    with pytest.raises(ValueError, match="tr"):
        datasets.load_dataset(repo_id, "tr", revision="v1.0.0")
    row = datasets.load_dataset(repo_id, "fi", split="train", revision="v1.0.0")[0]
    assert row["output"] == xinstruction_records("fi", 1)[0].output  # the real corpus text, intact

    # One commit per version, each tagged; the card's changelog lists both versions.
    history = hub.commits(repo_id)
    assert [c.title for c in history] == ["Release v1.1.0", "Release v1.0.0", "initial commit"]
    assert hub.refs(repo_id)["tags"] == {"v1.0.0": history[1].oid, "v1.1.0": history[0].oid}
    card = hub.files(repo_id, "v1.1.0")["README.md"].decode()
    assert "- **v1.0.0**: 2 configs, 9 records (fi 4, sw 5); added fi, sw" in card
    assert "- **v1.1.0**: 3 configs, 13 records (fi 4, sw 6, tr 3); added tr; changed sw" in card


def test_dry_run_lists_the_diff_and_touches_nothing(hub, repo_id, folder, capsys):
    publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    write_xinstruction_config(folder, "tr", 3)
    write_xinstruction_config(folder, "sw", 2)
    for removed in (folder / "data" / "fi").iterdir():
        removed.unlink()
    (folder / "data" / "fi").rmdir()
    before, requests_before = snapshot(folder), len(hub.requests)

    assert run_command(["publish", str(folder), "--repo-id", repo_id, "--version", "1.1.0", "--dry-run"]) == 0

    out = capsys.readouterr().out
    tr_size = (folder / "data/tr/train-00000-of-00001.parquet").stat().st_size
    assert "would commit 1 added, 2 changed, 1 removed" in out
    assert f"  + data/tr/train-00000-of-00001.parquet ({tr_size / 1000:.1f} kB)" in out
    assert "  ~ data/sw/train-00000-of-00001.parquet (" in out
    assert "  ~ README.md (" in out
    assert "  - data/fi/train-00000-of-00001.parquet (" in out
    assert snapshot(folder) == before, "a dry run must not touch the folder"
    assert hub.writes_since(requests_before) == []
    assert list(hub.refs(repo_id)["tags"]) == ["v1.0.0"]


def test_republishing_unchanged_creates_no_commit(hub, repo_id, folder, capsys):
    publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    write_xinstruction_config(folder, "tr", 3)
    publish_folder(folder, repo_id, "1.1.0", retry=FAST_RETRY)
    commits, requests_before = len(hub.commits(repo_id)), len(hub.requests)

    assert run_command(["publish", str(folder), "--repo-id", repo_id, "--version", "1.1.0"]) == 0

    assert "v1.1.0 is already published on" in capsys.readouterr().out
    assert len(hub.commits(repo_id)) == commits
    assert hub.writes_since(requests_before) == []


def test_changed_content_under_a_published_version_is_refused(hub, repo_id, folder, capsys):
    publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    write_xinstruction_config(folder, "sw", 2)
    head = hub.refs(repo_id)["branches"]["main"]

    assert run_command(["publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0"]) == 2

    message = capsys.readouterr().out.strip()
    assert message.count("\n") == 0
    assert "v1.0.0 is already published" in message and "data/sw/train-00000-of-00001.parquet" in message
    assert "--version 1.0.1" in message
    assert hub.refs(repo_id)["branches"]["main"] == head
    with pytest.raises(PublishError, match="older than the latest published version v1.0.0"):
        publish_folder(folder, repo_id, "0.9.0", retry=FAST_RETRY)


def test_failed_upload_leaves_no_version_and_a_rerun_completes_it(hub, repo_id, folder):
    publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    v1 = hub.refs(repo_id)["branches"]["main"]
    write_xinstruction_config(folder, "tr", 3)
    write_xinstruction_config(folder, "sw", 6, offset=5)
    # The second LFS upload answers 500 until cleared; huggingface_hub's own retries wait
    # Retry-After + 1 s, so this costs about 5 s, then our step gives up (one attempt).
    hub.inject("lfs_upload", 500, nth=2, times=None, headers={"Retry-After": "0"})

    card_before = (folder / "README.md").read_bytes()
    with pytest.raises(IncompletePublish, match=r"failed at step 'upload and commit'.*HTTP 500.*not tagged.*run the same command again"):
        publish_folder(folder, repo_id, "1.1.0", retry=RetryPolicy(retries=0))

    assert hub.refs(repo_id) == {"branches": {"main": v1}, "tags": {"v1.0.0": v1}}
    assert (folder / "README.md").read_bytes() == card_before  # no changelog entry for a failed publish
    hub.clear_faults()
    assert publish_folder(folder, repo_id, "1.1.0", retry=FAST_RETRY).status == "published"
    assert [c.title for c in hub.commits(repo_id)] == ["Release v1.1.0", "Release v1.0.0", "initial commit"]
    assert sorted(hub.refs(repo_id)["tags"]) == ["v1.0.0", "v1.1.0"]
    assert load_ids(repo_id, "sw", "v1.1.0") == [r.id for r in xinstruction_records("sw", 6, offset=5)]


def test_failed_tag_is_completed_by_a_rerun_without_a_second_commit(hub, repo_id, folder):
    hub.inject("tag", 503, times=None)
    with pytest.raises(IncompletePublish, match="step 'tag'.*HTTP 503"):
        publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)
    assert hub.refs(repo_id)["tags"] == {}
    hub.clear_faults()

    assert publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY).status == "published"
    assert [c.title for c in hub.commits(repo_id)] == ["Release v1.0.0", "initial commit"]
    assert list(hub.refs(repo_id)["tags"]) == ["v1.0.0"]


def test_retries_with_backoff_on_429_and_5xx(hub, repo_id, folder, caplog):
    delays: list[float] = []
    hub.inject("refs", 502)
    hub.inject("commit", 503)
    hub.inject("tag", 429, headers={"Retry-After": "0.02"})
    hub.inject("lfs_upload", 500)  # retried inside huggingface_hub itself

    result = publish_folder(folder, repo_id, "1.0.0", retry=RetryPolicy(retries=3, backoff=0.5, backoff_max=8, jitter=False, sleep=delays.append))

    assert result.status == "published"
    failed = [(r.route, r.status) for r in hub.requests if r.status >= 400 and r.route in ("refs", "commit", "tag", "lfs_upload")]
    assert set(failed) >= {("refs", 502), ("commit", 503), ("tag", 429), ("lfs_upload", 500)}
    assert delays == [0.5, 0.5, 0.02]  # exponential backoff per step; a 429's Retry-After wins
    assert "commit v1.0.0: HTTP 503, retry 1/3" in caplog.text
    assert list(hub.refs(repo_id)["tags"]) == ["v1.0.0"]


def test_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(retries=5, backoff=1.0, backoff_max=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_without_a_token_the_hub_refuses_and_nothing_is_tagged(hub, repo_id, folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubRefused, match="HTTP 401.*hf auth login"):
        publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY)


def test_bad_version_is_refused_before_any_request(hub, repo_id, folder, capsys):
    requests_before = len(hub.requests)
    assert run_command(["publish", str(folder), "--repo-id", repo_id, "--version", "1.0"]) == 2
    assert "version '1.0' is not X.Y.Z" in capsys.readouterr().out
    assert hub.requests[requests_before:] == []


def test_xalpacaeval_publishes_and_loads_per_config(hub, repo_id, tmp_path):
    folder = tmp_path / "x-alpacaeval"
    export_xalpacaeval(folder, source_dir=write_xalpacaeval_sources(tmp_path / "source"))
    assert publish_folder(folder, repo_id, "1.0.0", retry=FAST_RETRY).status == "published"

    assert len(datasets.get_dataset_config_names(repo_id, revision="v1.0.0")) == 15
    korean = datasets.load_dataset(repo_id, "ko", split="test", revision="v1.0.0")
    assert korean.features == XALPACAEVAL_FEATURES and korean.num_rows == 805
    assert korean[3]["instruction"].startswith("[fake ko instruction #3]")
    swahili = datasets.load_dataset(repo_id, "cross-sw", split="test", revision="v1.0.0")
    assert swahili.num_rows == 805 and all(i.endswith(" Answer in Swahili.") for i in swahili["instruction"])
    card = hub.files(repo_id, "v1.0.0")["README.md"].decode()
    assert "license: cc-by-nc-4.0" in card and "{PLUG}: Leveraging Pivot Language" in card


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_publish_all_publishes_both_datasets_from_a_recipe(hub, tmp_path, capsys):
    write_xinstruction_config(tmp_path / "out" / "x-instruction", "id", 3)
    export_xalpacaeval(tmp_path / "out" / "x-alpacaeval", source_dir=write_xalpacaeval_sources(tmp_path / "source"), configs=["en", "cross-id"])
    suffix = tmp_path.name[-8:]
    recipe = tmp_path / "builder" / "release.yaml"
    recipe.parent.mkdir()
    recipe.write_text(
        "name: release\npublish:\n  version: 1.0.0\n  targets:\n"
        f"    x-instruction: {{repo_id: tests/xi-{suffix}, folder: ../out/x-instruction}}\n"
        f"    x-alpacaeval: {{repo_id: tests/xa-{suffix}, folder: ../out/x-alpacaeval, version: 2.0.0}}\n"
    )
    publish_all = _script("publish_all")
    assert publish_all.main([str(recipe), "--dry-run"]) == 0
    assert "would commit 2 added" in capsys.readouterr().out
    assert publish_all.main([str(recipe)]) == 0
    assert list(hub.refs(f"tests/xi-{suffix}")["tags"]) == ["v1.0.0"]
    assert list(hub.refs(f"tests/xa-{suffix}")["tags"]) == ["v2.0.0"]
    assert datasets.load_dataset(f"tests/xa-{suffix}", "cross-id", split="test", revision="v2.0.0").num_rows == 805
    assert _script("regenerate_cards").main([str(recipe)]) == 0
