"""Hub sources split into tasks: `hf:<repo>[:<config>]` becomes one filter task per data file of
the config's split, listed through huggingface_hub against the local Hub server (tree listing
paginated as the Hub does), pinned by `revision:` or, unpinned, by the commit recorded at first
listing; resume reads the record, so a moved head neither refuses the resume nor changes it.
Datasets that cannot be split fall back to one streaming task, with a warning saying why."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from corpora import read_corpus
from xinstruction_dataset.cli import main
from xinstruction_dataset.documents import Document
from xinstruction_dataset.filtering.pipeline import plan_tasks
from xinstruction_dataset.filtering.sources import iter_source
from xinstruction_dataset.fingerprint import fingerprint
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.recipe import Recipe, SourceSpec

FILES = 5


def parquet_bytes(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def sw_rows(count: int, offset: int = 0) -> list[dict]:
    rows = read_corpus("sw")
    return [{"id": f"sw-{offset + i}", "text": rows[(offset + i) % len(rows)]["text"], "url": f"https://example.org/{offset + i}"} for i in range(count)]


def make_dataset(repo_id: str, files: int = FILES, per_file: int = 6, extra: dict[str, bytes] | None = None, card: str | None = None) -> list[dict]:
    """A Hub dataset with configs `sw` (`files` Parquet files under sw/) and `fi` (one file);
    returns the sw rows in file order."""
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    rows, operations = [], []
    for index in range(files):
        part = sw_rows(per_file, index * per_file)
        rows += part
        operations.append(CommitOperationAdd(f"sw/train-{index:05d}-of-{files:05d}.parquet", parquet_bytes(part)))
    operations.append(CommitOperationAdd("fi/train-00000-of-00001.parquet", parquet_bytes([{"id": "fi-0", "text": read_corpus("fi", 1)[0]["text"]}])))
    card = card or "---\nconfigs:\n- config_name: sw\n  data_files:\n  - split: train\n    path: sw/*.parquet\n- config_name: fi\n  data_files: fi/*.parquet\n---\n"
    operations.append(CommitOperationAdd("README.md", card.encode()))
    operations += [CommitOperationAdd(path, content) for path, content in (extra or {}).items()]
    api.create_commit(repo_id, operations, commit_message="data", repo_type="dataset")
    return rows


def write_recipe(tmp_path: Path, source: dict, name: str = "recipe.yaml") -> Path:
    data = {"name": "hub-split", "sources": [{"language": "sw", **source}], "filters": [{"type": "length", "min_chars": 20}, {"type": "dedup"}],
            "output_dir": str(tmp_path / "run")}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def task_folders(run: Path) -> list[Path]:
    return sorted((run / "filtered" / "sw" / "tasks").glob("task-*"))


def kept_ids(run: Path) -> list[str]:
    """What the tasks kept, in task order (tasks keep their outputs, however the language's
    files are assembled from them)."""
    return [json.loads(line)["id"] for folder in task_folders(run) for line in (folder / "kept.jsonl").read_text(encoding="utf-8").splitlines()]


def listing(run: Path) -> dict:
    return json.loads(RunLayout(run).source_listings("sw").read_text(encoding="utf-8"))


def requests_since(hub, start: int, route: str | None = None) -> list:
    return [r for r in hub.requests[start:] if route is None or r.route == route]


@pytest.fixture
def small_pages(hub):
    """Tree listings of two entries a page: a config's files take several pages."""
    hub.state.tree_page_size = 2
    yield hub
    hub.state.tree_page_size = 1000


def test_a_hub_source_is_one_task_per_data_file(small_pages, repo_id, tmp_path):
    hub = small_pages
    rows = make_dataset(repo_id)
    start = len(hub.requests)
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"})
    assert main(["filter", str(recipe), "--no-progress", "--workers", "2"]) == 0
    run = tmp_path / "run"
    folders = task_folders(run)
    assert len(folders) == FILES
    # each task read one file; together, in task order, the documents of the config's split
    assert kept_ids(run) == [row["id"] for row in rows]
    head = HfApi().dataset_info(repo_id).sha
    assert listing(run) == {"format": 1, "listings": [{
        "source": f"hf:{repo_id}:sw", "split": "train", "revision": "", "commit": head,
        "files": [f"sw/train-{i:05d}-of-{FILES:05d}.parquet" for i in range(FILES)],
    }]}
    origin = json.loads((folders[2] / "kept.jsonl").read_text(encoding="utf-8").splitlines()[0])["metadata"]["origin"]
    assert origin == f"hf://datasets/{repo_id}@{head}/sw/train-00002-of-{FILES:05d}.parquet:1"
    # the listing went through the Hub's pagination, and files were fetched at the listed commit
    trees = requests_since(hub, start, "tree")
    assert any("cursor=" in r.query for r in trees) and all(r.status == 200 for r in trees)
    downloads = {r.path for r in requests_since(hub, start, "resolve")}
    assert all(f"/resolve/{head}/" in path for path in downloads)
    # the same documents, in the same order, as `datasets` streaming the config gives
    streamed = [item.id for item in iter_source(SourceSpec(path="", language="sw"), f"hf:{repo_id}:sw") if isinstance(item, Document)]
    assert kept_ids(run) == streamed


def test_documents_are_named_after_the_source_as_its_stream_named_them(hub, repo_id, tmp_path):
    """`source` (provenance's source dataset) is the source's, as streaming gave it, not a file
    name; a document without an id is named by the file in the repo and its row."""
    make_dataset(repo_id, files=2, per_file=3)
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw", "id_field": "no_such_column"})
    assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 0
    folders = task_folders(tmp_path / "run")
    second = [json.loads(line) for line in (folders[1] / "kept.jsonl").read_text(encoding="utf-8").splitlines()]
    name = repo_id.rsplit("/", 1)[-1]
    assert [doc["id"] for doc in second] == [f"{name}:sw/sw/train-00001-of-00002.parquet:{row}" for row in (1, 2, 3)]
    streamed = next(item for item in iter_source(SourceSpec(path=f"hf:{repo_id}:sw", language="sw"), f"hf:{repo_id}:sw") if isinstance(item, Document))
    assert {doc["source"] for doc in second} == {streamed.source} == {f"{name}:sw"}


def test_resume_skips_finished_files_and_a_moved_head_does_not_refuse_it(hub, repo_id, tmp_path):
    rows = make_dataset(repo_id)
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"})
    assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 0
    run = tmp_path / "run"
    recorded = listing(run)
    folders = task_folders(run)
    markers = {folder: (folder / "done.json").stat().st_mtime_ns for folder in folders}
    (folders[3] / "done.json").unlink()  # a run killed before its 4th file was done
    # the head moves: a new file in the config, and an old one rewritten
    HfApi().create_commit(repo_id, [
        CommitOperationAdd(f"sw/train-00009-of-{FILES:05d}.parquet", parquet_bytes(sw_rows(4, 100))),
        CommitOperationAdd(f"sw/train-00000-of-{FILES:05d}.parquet", parquet_bytes(sw_rows(2, 200))),
    ], commit_message="more", repo_type="dataset")
    start = len(hub.requests)
    assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 0
    assert listing(run) == recorded
    assert requests_since(hub, start, "tree") == [] and requests_since(hub, start, "repo_info") == []
    assert task_folders(run) == folders
    for folder in folders:
        if folder != folders[3]:
            assert (folder / "done.json").stat().st_mtime_ns == markers[folder], f"{folder.name} ran again"
    assert (folders[3] / "done.json").exists()
    assert kept_ids(run) == [row["id"] for row in rows]  # the recorded commit's documents, not the new head's


def test_a_pinned_revision_is_listed_there_and_fingerprinted(hub, repo_id, tmp_path, capsys):
    rows = make_dataset(repo_id)
    api = HfApi()
    pinned = api.dataset_info(repo_id).sha
    api.create_tag(repo_id, tag="v1", repo_type="dataset")
    api.create_commit(repo_id, [CommitOperationAdd(f"sw/train-00009-of-{FILES:05d}.parquet", parquet_bytes(sw_rows(4, 100)))],
                      commit_message="more", repo_type="dataset")
    unpinned = Recipe.from_yaml(write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"}, "unpinned.yaml"))
    assert not any("revision" in key for key in fingerprint(unpinned))  # a new field left at default: no new key
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw", "revision": pinned})
    assert fingerprint(Recipe.from_yaml(recipe))["sources[0].revision"] == pinned
    assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 0
    run = tmp_path / "run"
    assert listing(run)["listings"][0]["commit"] == pinned
    assert kept_ids(run) == [row["id"] for row in rows]  # not the file committed after the pin
    capsys.readouterr()
    changed = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw", "revision": "v1"})
    assert main(["filter", str(changed), "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f'sources[0].revision: "{pinned}" → "v1"' in err and "--force" in err


def test_a_revision_on_a_local_source_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {"path": str(tmp_path / "sw.jsonl"), "revision": "main"})
    assert main(["filter", str(recipe), "--no-progress"]) == 2
    assert "`revision` is for hub sources" in capsys.readouterr().err


def test_a_loading_script_falls_back_to_one_streaming_task(hub, repo_id, tmp_path, caplog):
    name = repo_id.rsplit("/", 1)[-1]
    make_dataset(repo_id, extra={f"{name}.py": b"import datasets\n"})
    recipe = Recipe.from_yaml(write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"}))
    with caplog.at_level(logging.WARNING):
        tasks = plan_tasks(recipe, "sw", tmp_path / "run" / "filtered" / "sw")
    assert [task.path for task in tasks] == [f"hf:{repo_id}:sw"]
    assert f"loading script ({name}.py)" in caplog.text and "one streaming task" in caplog.text
    assert not RunLayout(tmp_path / "run").source_listings("sw").exists()


def test_files_that_cannot_be_listed_are_streamed(hub, repo_id, tmp_path, caplog):
    rows = make_dataset(repo_id)
    hub.inject("tree", 403)  # the listing is refused once; the stream after it is not
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"})
    with caplog.at_level(logging.WARNING):
        assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 0
    assert "cannot be listed (the Hub answered HTTP 403)" in caplog.text
    run = tmp_path / "run"
    assert len(task_folders(run)) == 1 and kept_ids(run) == [row["id"] for row in rows]


def test_json_data_files_are_streamed(hub, repo_id, tmp_path, caplog):
    """A `.json` file may be one JSON array, which `datasets` reads and the JSONL reader does not."""
    rows = sw_rows(3)
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=json.dumps(rows).encode(), path_in_repo="data/train.json", repo_id=repo_id, repo_type="dataset")
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}"})
    with caplog.at_level(logging.WARNING):
        assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 0
    assert "include .json files" in caplog.text
    assert kept_ids(tmp_path / "run") == [row["id"] for row in rows]


def test_a_busy_hub_is_asked_again(hub, repo_id, tmp_path, caplog):
    make_dataset(repo_id, files=2)
    hub.inject("repo_info", 503)  # the listing's first request (huggingface_hub retries the tree pages itself)
    recipe = Recipe.from_yaml(write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"}))
    with caplog.at_level(logging.WARNING):
        tasks = plan_tasks(recipe, "sw", tmp_path / "run" / "filtered" / "sw")
    assert len(tasks) == 2 and "HTTP 503, retry 1/3" in caplog.text


def test_a_card_without_configs_uses_the_default_split_patterns(hub, repo_id, tmp_path):
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    train, test = sw_rows(4), sw_rows(2, 50)
    api.create_commit(repo_id, [
        CommitOperationAdd("data/train-00000-of-00002.parquet", parquet_bytes(train[:2])),
        CommitOperationAdd("data/train-00001-of-00002.parquet", parquet_bytes(train[2:])),
        CommitOperationAdd("data/test-00000-of-00001.parquet", parquet_bytes(test)),
    ], commit_message="data", repo_type="dataset")
    recipe = Recipe.from_yaml(write_recipe(tmp_path, {"path": f"hf:{repo_id}"}))
    tasks = plan_tasks(recipe, "sw", tmp_path / "run" / "filtered" / "sw")
    assert [task.path.rsplit("/", 1)[-1] for task in tasks] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]


@pytest.mark.parametrize("source, message", [
    ({"path": "hf:{repo}:xx"}, "no config 'xx' (configs: sw, fi)"),
    ({"path": "hf:{repo}:sw", "split": "test"}, "no split 'test' (splits: train)"),
    ({"path": "hf:{repo}:sw", "revision": "nope"}, "no revision 'nope'"),
    ({"path": "hf:tests/no-such-dataset-anywhere:sw"}, "no dataset 'tests/no-such-dataset-anywhere'"),
])
def test_what_the_hub_does_not_have_is_a_usage_error(hub, repo_id, tmp_path, capsys, source, message):
    make_dataset(repo_id, files=1)
    recipe = write_recipe(tmp_path, {**source, "path": source["path"].format(repo=repo_id)})
    assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_record_is_checked_when_read(hub, repo_id, tmp_path, capsys):
    make_dataset(repo_id, files=1)
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"})
    record = RunLayout(tmp_path / "run").source_listings("sw")
    record.parent.mkdir(parents=True)
    record.write_text('{"format": 1, "listings": [{"source": 3}]}', encoding="utf-8")
    assert main(["filter", str(recipe), "--no-progress", "--workers", "1"]) == 3
    assert "delete it to list the hub sources again" in capsys.readouterr().err


def test_dry_run_asks_the_hub_nothing(hub, repo_id, tmp_path, capsys):
    make_dataset(repo_id, files=2)
    recipe = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"})
    start = len(hub.requests)
    assert main(["build", str(recipe), "--dry-run"]) == 0
    assert f"hf:{repo_id}:sw" in capsys.readouterr().out
    assert requests_since(hub, start) == []
    assert not os.path.exists(tmp_path / "run")


def test_a_refused_download_stops_the_run_with_the_fix(hub, repo_id, tmp_path, capsys):
    make_dataset(repo_id, files=2)
    recipe_path = write_recipe(tmp_path, {"path": f"hf:{repo_id}:sw"})
    plan_tasks(Recipe.from_yaml(recipe_path), "sw", tmp_path / "run" / "filtered" / "sw")  # listed and recorded
    hub.inject("resolve", 403, times=None)  # every download from now on
    assert main(["filter", str(recipe_path), "--no-progress", "--workers", "1"]) == 3
    err = capsys.readouterr().err
    assert f"hf://datasets/{repo_id}@" in err and "HTTP 403" in err and "run the same command again" in err
