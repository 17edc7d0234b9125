"""What the README promises and no other test checked, each through the real entry point
(`xinstruction_dataset.cli.main`: its parser, one-line errors and exit codes), against the
TGI-protocol and Hub-protocol test servers on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from corpora import read_corpus
from hub_folders import xinstruction_folder, xinstruction_records
from test_curate_faults import reply as curation_model
from xinstruction_dataset.builder import PAPER_REPO_ID, PAPER_REVISION
from xinstruction_dataset.cli import main
from filtered_output import kept_rows

DOCS = 6


def documents(language: str = "sw", count: int = DOCS) -> list[dict]:
    rows = read_corpus(language, count)
    return [{"id": r["id"], "text": r["text"][:600], "url": r["url"], "source": r["source"]} for r in rows]


def write_recipe(root: Path, url: str, *, model: str = "test/echo-model", sources: list[dict] | None = None,
                 target_size: int = 3) -> Path:
    """A recipe curating Swahili through the TGI test server at `url`."""
    spec = {"backend": "tgi", "model": model, "endpoints": [url], "timeout": 5.0, "retries": 2, "backoff": 0.01,
            "backoff_max": 0.05}
    recipe = {"name": "promises", "languages": ["sw"], "output_dir": str(root / "run"),
              "curation": {"models": {"generator": spec}, "generate": {"candidates": 1},
                           "diversify": {"target_size": target_size}}}
    if sources is not None:
        recipe["sources"] = sources
        recipe["filters"] = [{"type": "length", "min_chars": 50}]
    root.mkdir(parents=True, exist_ok=True)
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def write_kept(root: Path, docs: list[dict]) -> None:
    """Filter output as `xinstruction filter` leaves it: run/filtered/sw/kept.jsonl."""
    kept = root / "run" / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("".join(json.dumps({**d, "metadata": {"lang": "sw"}}, ensure_ascii=False) + "\n" for d in docs))


def rejects(root: Path) -> list[dict]:
    path = root / "run" / "curation" / "sw" / "rejects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def curated_ids(root: Path) -> set[str]:
    files = sorted((root / "run" / "curated" / "sw").glob("*.jsonl"))
    return {json.loads(line)["provenance"]["source_id"] for f in files for line in f.read_text().splitlines()}


@pytest.fixture
def llm(start_tgi_server):
    return start_tgi_server(reply=curation_model, slots=4, max_input_tokens=2048, max_total_tokens=4096)


# --- curate ------------------------------------------------------------------------------------


def test_curate_dry_run_prints_the_plan_and_calls_nothing(tmp_path, llm, capsys):
    recipe = write_recipe(tmp_path, llm.url)
    write_kept(tmp_path, documents())
    assert main(["curate", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for promised in ("curate sw", "documents: 6", "generator:", "generate:", "judge", "diversify", "call cache:"):
        assert promised in out, (promised, out)
    assert sum(llm.attempts.values()) == 0
    assert not (tmp_path / "run" / "curated").exists() and not (tmp_path / "run" / "run" / "lock.json").exists()


def test_duplicate_document_ids_are_rejected_with_a_reason_not_curated_twice(tmp_path, llm, capsys):
    docs = documents()
    twin = {**docs[1], "text": docs[2]["text"]}  # the id of docs[1] again, other text
    recipe = write_recipe(tmp_path, llm.url, target_size=10)
    write_kept(tmp_path, docs + [twin])
    assert main(["curate", str(recipe), "--dry-run"]) == 0
    assert "(1 duplicate ids)" in capsys.readouterr().out
    assert main(["curate", str(recipe), "--no-progress"]) in (0, 1)
    duplicates = [r for r in rejects(tmp_path) if r["reason"] == "input:duplicate_id"]
    assert [r["doc_id"] for r in duplicates] == [docs[1]["id"]]
    assert len(curated_ids(tmp_path) | {r["doc_id"] for r in rejects(tmp_path)}) == DOCS


def test_merge_refuses_a_missing_shard_then_merges(tmp_path, llm, capsys):
    recipe = write_recipe(tmp_path, llm.url)
    write_kept(tmp_path, documents())
    assert main(["curate", str(recipe), "--shard", "0/2", "--no-progress"]) in (0, 1)
    capsys.readouterr()
    assert main(["curate", str(recipe), "--merge", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # INFO logs go to stderr too
    assert err.startswith("error:") and "shards not finished yet: 1 of 2" in err, err
    assert not (tmp_path / "run" / "curated" / "sw").exists()
    assert main(["curate", str(recipe), "--shard", "1/2", "--no-progress"]) in (0, 1)
    assert main(["curate", str(recipe), "--merge", "--no-progress"]) in (0, 1)
    assert curated_ids(tmp_path)


def test_merge_refuses_shards_that_used_different_models(tmp_path, llm, capsys):
    recipe = write_recipe(tmp_path, llm.url)
    write_kept(tmp_path, documents())
    assert main(["curate", str(recipe), "--shard", "0/2", "--no-progress"]) in (0, 1)
    other = write_recipe(tmp_path / "other", llm.url, model="test/another-model")
    spec = yaml.safe_load(other.read_text())
    spec["output_dir"] = str(tmp_path / "run")
    other.write_text(yaml.safe_dump(spec))
    assert main(["curate", str(other), "--shard", "1/2", "--no-progress", "--force"]) in (0, 1)
    capsys.readouterr()
    assert main(["curate", str(recipe), "--merge", "--no-progress", "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "model" in err, err
    assert not (tmp_path / "run" / "curated" / "sw").exists()


def test_curate_shard_takes_the_filter_output_of_the_same_shard_as_it_is(tmp_path, llm, capsys):
    """`filter --shard I/N` then `curate --shard I/N`: shard I curates every document its filter
    kept (no second split by id hash, which would drop about half of them)."""
    docs = documents(count=8)
    source = tmp_path / "sw.jsonl"
    source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    recipe = write_recipe(tmp_path, llm.url, sources=[{"path": str(source), "language": "sw"}], target_size=10)
    assert main(["filter", str(recipe), "--shard", "0/2", "--no-progress"]) == 0
    kept_files = sorted((tmp_path / "run" / "filtered" / "sw").rglob("kept*.jsonl"))
    kept = {json.loads(line)["id"] for f in kept_files for line in f.read_text().splitlines()}
    assert 0 < len(kept) < len(docs)  # the filter took its shard
    assert main(["curate", str(recipe), "--shard", "0/2", "--no-progress"]) in (0, 1)
    prompts = " ".join(llm.attempts)
    assert all(doc["text"][:80] in prompts for doc in docs if doc["id"] in kept), "a kept document was not curated"


# --- export --------------------------------------------------------------------------------------


def test_export_recipe_takes_the_recipes_curated_shards(tmp_path, capsys):
    records = xinstruction_records("sw", 4)
    curated = tmp_path / "run" / "curated" / "sw"
    curated.mkdir(parents=True)
    (curated / "part-00000.jsonl").write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "languages": ["sw"], "output_dir": str(tmp_path / "run")}))
    folder = tmp_path / "x-instruction"
    assert main(["export", str(folder), "--language", "sw", "--recipe", str(recipe), "--no-progress"]) == 0
    loaded = datasets.load_dataset(str(folder), "sw", split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted(loaded["id"]) == sorted(r.id for r in records)


def _paper_file(tag: str) -> bytes:
    return json.dumps([{"instruction": f"Describe item {i} ({tag}).", "input": "", "output": f"Habari ya kitu {i}."}
                       for i in range(3)]).encode()


def test_export_from_paper_downloads_the_pinned_revision(hub, tmp_path, capsys):
    """The release repo holds an older sw.json at the pinned revision and a newer one on main:
    `export --from paper` reads the pinned one."""
    api = HfApi()
    api.create_repo(PAPER_REPO_ID, repo_type="dataset", exist_ok=True)
    first = api.upload_file(path_or_fileobj=_paper_file("pinned"), path_in_repo="sw.json", repo_id=PAPER_REPO_ID, repo_type="dataset")
    hub.rename_commit(PAPER_REPO_ID, first.oid, PAPER_REVISION)
    api.upload_file(path_or_fileobj=_paper_file("later"), path_in_repo="sw.json", repo_id=PAPER_REPO_ID, repo_type="dataset")
    folder = tmp_path / "paper"
    assert main(["export", str(folder), "--language", "sw", "--from", "paper", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    loaded = datasets.load_dataset(str(folder), "sw", split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted(loaded["instruction"]) == [f"Describe item {i} (pinned)." for i in range(3)]
    assert {p["source_dataset"] for p in loaded["provenance"]} == {f"{PAPER_REPO_ID}@{PAPER_REVISION}"}


# --- sources -------------------------------------------------------------------------------------


def test_hf_repo_config_source_streams_from_the_hub(hub, repo_id, tmp_path, llm):
    """`hf:<repo>:<config>` reads that config of a Hub dataset (here the Hub server), streaming."""
    docs = documents(count=4)
    wrong = documents("fi", 2)
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    for config, rows in (("sw", docs), ("fi", wrong)):
        body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in rows).encode()
        api.upload_file(path_or_fileobj=body, path_in_repo=f"{config}/train.jsonl", repo_id=repo_id, repo_type="dataset")
    card = "---\nconfigs:\n- config_name: sw\n  data_files: sw/*.jsonl\n- config_name: fi\n  data_files: fi/*.jsonl\n---\n"
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
    recipe = write_recipe(tmp_path, llm.url, sources=[{"path": f"hf:{repo_id}:sw", "language": "sw"}])
    assert main(["filter", str(recipe), "--no-progress"]) == 0
    assert {row["id"] for row in kept_rows(tmp_path / "run" / "filtered" / "sw")} == {d["id"] for d in docs}


# --- publish ---------------------------------------------------------------------------------------


def test_publish_private_creates_a_private_repo(hub, repo_id, tmp_path, monkeypatch):
    folder = xinstruction_folder(tmp_path, {"sw": 3})
    assert main(["publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0", "--private"]) == 0
    assert hub.state.repos[repo_id].private
    assert HfApi().dataset_info(repo_id).private  # the owner sees it
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info(repo_id)  # nobody else does


def test_xalpacaeval_export_from_the_cli(tmp_path, capsys):
    from hub_folders import write_xalpacaeval_sources

    sources = write_xalpacaeval_sources(tmp_path / "sources")
    folder = tmp_path / "x-alpacaeval"
    assert main(["xalpacaeval", "export", str(folder), "--source-dir", str(sources)]) == 0
    loaded = datasets.load_dataset(str(folder), "ko", split="test", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == 805
    assert main(["xalpacaeval", "export", str(tmp_path / "bad"), "--source-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "nowhere" in err, err


# --- the GPU cluster recipe ------------------------------------------------------------------------

CLUSTER_MARKER = "<!-- cluster-recipe:"


def readme_cluster_recipe() -> str:
    """The YAML block right after the cluster-recipe marker in README's "Run on a GPU cluster"."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert text.count(CLUSTER_MARKER) == 1, "README.md must mark its GPU cluster recipe once"
    after = text.split(CLUSTER_MARKER, 1)[1].split("```yaml\n", 1)[1]
    return after.split("```", 1)[0]


def test_the_readmes_gpu_cluster_recipe_loads_as_the_recipe_it_describes(tmp_path):
    """The recipe of "Run on a GPU cluster" loads as a recipe and says what the text says of it:
    vLLM serving the 70B model as 2 replicas of 4 GPUs, for every role, 2 labelling drivers, on Ray."""
    from xinstruction_dataset.recipe import Recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(readme_cluster_recipe(), encoding="utf-8")
    recipe = Recipe.from_yaml(path)
    assert recipe.curation.drivers == 2
    assert recipe.executor.kind == "ray"
    specs = recipe.curation.models.specs()
    generator = specs["generator"]
    assert generator.backend == "vllm" and generator.model == "meta-llama/Llama-3.3-70B-Instruct"
    assert (generator.serve.replicas, generator.serve.gpus_per_replica) == (2, 4)
    assert all(spec == generator for spec in specs.values()), "the judge and refiner are the generator's servers"
    assert recipe.curation.diversify.target_size == 32000 and len(recipe.languages) == 10


# --- the main job ----------------------------------------------------------------------------------


@pytest.mark.timeout(1500)
def test_the_readmes_main_job_on_builder_default_yaml(tmp_path, capsys):
    """`xinstruction build builder/default.yaml` (the README's fresh-machine command; the embedded
    model on CPU, the packaged samples), its output moved to tmp_path: a hub-ready folder that
    loads, every document accounted for."""
    recipe = Path(__file__).resolve().parents[1] / "builder" / "default.yaml"
    spec = yaml.safe_load(recipe.read_text())
    assert main(["build", str(recipe), "--output-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    folders = [p.parent for p in (tmp_path / "run").rglob("README.md") if (p.parent / "data").is_dir()]
    assert folders, out
    for language in spec["languages"]:
        loaded = datasets.load_dataset(str(folders[0]), language, split="train", cache_dir=str(tmp_path / "cache"))
        assert loaded.num_rows >= 1 and set(loaded["language"]) == {language}
