"""The XInstruction builder on each source kind, and the hub-ready export/load round trip."""

from __future__ import annotations

import gzip
import json
import os

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora import read_corpus
from hub_folders import xinstruction_records
from xinstruction_dataset.builder import PAPER_REPO_ID, build_language
from xinstruction_dataset.features import XINSTRUCTION_FEATURES
from xinstruction_dataset.hub.export import export_language
from xinstruction_dataset.hub.layout import scan_folder
from xinstruction_dataset.records import ShardWriter, read_shard


def make_records(language, limit=12, offset=0):
    return xinstruction_records(language, limit, offset)


def write_jsonl_shard(path, records):
    with ShardWriter(path) as writer:
        for record in records:
            writer.write(record)


def build(language, tmp_path, **kwargs):
    return build_language(language, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_builder_reads_every_shard_format(tmp_path):
    records = make_records("tr", limit=30)
    shards = tmp_path / "curated" / "tr"
    write_jsonl_shard(shards / "shard-00000.jsonl", records[:10])
    write_jsonl_shard(shards / "shard-00001.jsonl.gz", records[10:20])
    pq.write_table(pa.Table.from_pylist([r.to_dict() for r in records[20:]], schema=XINSTRUCTION_FEATURES.arrow_schema), shards / "shard-00002.parquet")
    ds = build("tr", tmp_path, data_dir=str(tmp_path / "curated"))
    assert ds.features == XINSTRUCTION_FEATURES
    assert sorted(ds["id"]) == sorted(r.id for r in records)
    row = ds.filter(lambda r: r["id"] == records[25].id)[0]
    assert row == records[25].to_dict()


def test_gzip_shard_is_really_compressed(tmp_path):
    write_jsonl_shard(tmp_path / "s.jsonl.gz", make_records("fi", limit=2))
    with gzip.open(tmp_path / "s.jsonl.gz", "rt", encoding="utf-8") as f:
        assert json.loads(f.readline())["language"] == "fi"
    assert [r.language for r in read_shard(tmp_path / "s.jsonl.gz")] == ["fi", "fi"]


def test_builder_rejects_invalid_shards(tmp_path):
    shards = tmp_path / "curated" / "sw"
    shards.mkdir(parents=True)
    (shards / "bad.jsonl").write_text(json.dumps({"id": "x", "instruction": "", "output": "y", "language": "sw"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a valid X-Instruction record.*instruction"):
        build("sw", tmp_path, data_dir=str(tmp_path / "curated"))
    with pytest.raises(FileNotFoundError, match="no curated shards"):
        build("bn", tmp_path, data_dir=str(tmp_path / "curated"))


def test_builder_refuses_records_of_another_language(tmp_path):
    write_jsonl_shard(tmp_path / "curated" / "hi" / "s.jsonl", make_records("ur", limit=2))
    with pytest.raises(ValueError, match="is language 'ur' in config 'hi'"):
        build("hi", tmp_path, data_dir=str(tmp_path / "curated"))


def test_builder_maps_the_papers_released_files(tmp_path):
    """Local files of the released shape (`<code>.json`: a JSON array of instruction/output)."""
    rows = read_corpus("bn", limit=8)
    items = [{"instruction": f"Explain topic {i}.", "input": "", "output": r["text"]} for i, r in enumerate(rows)]
    items.append({"instruction": "", "input": "", "output": "dropped: no instruction"})
    (tmp_path / "bn.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    ds = build("bn", tmp_path, source="paper", data_dir=str(tmp_path))
    assert ds.num_rows == 8
    assert ds[0]["output"] == rows[0]["text"] and ds[0]["language"] == "bn"
    assert ds[0]["provenance"]["source_dataset"].startswith(PAPER_REPO_ID + "@")
    assert ds[0]["provenance"]["source_id"] == "bn.json#0"
    assert ds[0]["id"].startswith("bn-")


def test_paper_source_needs_its_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build("sw", tmp_path, source="paper", data_dir=str(tmp_path))


def test_export_and_load_round_trip_for_several_languages(tmp_path, monkeypatch):
    folder = tmp_path / "x-instruction"
    expected = {}
    for language in ("sw", "th", "ur"):
        expected[language] = make_records(language, limit=15)
        write_jsonl_shard(tmp_path / "curated" / language / "shard-00000.jsonl", expected[language])
        export_language(folder, language, data_dir=tmp_path / "curated", cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.chdir(tmp_path)
    assert sorted(datasets.get_dataset_config_names("x-instruction")) == ["sw", "th", "ur"]
    for language, records in expected.items():
        ds = datasets.load_dataset("x-instruction", language, split="train")
        assert [r for r in ds] == [r.to_dict() for r in records]
    sw = datasets.load_dataset("x-instruction", "sw")
    assert list(sw) == ["train"]


def test_exporting_one_language_leaves_the_others_untouched(tmp_path):
    folder = tmp_path / "x-instruction"
    for language in ("fi", "id"):
        write_jsonl_shard(tmp_path / "curated" / language / "s.jsonl", make_records(language, limit=5))
        export_language(folder, language, data_dir=tmp_path / "curated", cache_dir=tmp_path / "cache", progress=False)
    fi_file = folder / "data" / "fi" / "train-00000-of-00001.parquet"
    before = (fi_file.read_bytes(), os.stat(fi_file).st_mtime_ns)
    write_jsonl_shard(tmp_path / "curated" / "id" / "s.jsonl", make_records("id", limit=9, offset=5))
    export_language(folder, "id", data_dir=tmp_path / "curated", cache_dir=tmp_path / "cache", progress=False)
    assert (fi_file.read_bytes(), os.stat(fi_file).st_mtime_ns) == before
    layout = scan_folder(folder)
    assert layout.num_examples("fi") == 5 and layout.num_examples("id") == 9
    assert not [p for p in (folder / "data").iterdir() if p.name.startswith(".")]
    card = (folder / "README.md").read_text()
    assert "config_name: fi" in card and "config_name: id" in card


def test_large_config_is_split_into_numbered_files(tmp_path):
    from xinstruction_dataset.hub.export import export_dataset

    records = make_records("vi", limit=25)
    ds = datasets.Dataset.from_list([r.to_dict() for r in records], features=XINSTRUCTION_FEATURES)
    result = export_dataset(ds, tmp_path / "x", "vi", max_rows_per_file=10, progress=False)
    assert result.files == [f"data/vi/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [pq.ParquetFile(tmp_path / "x" / f).metadata.num_rows for f in result.files] == [10, 10, 5]
    assert datasets.load_dataset(str(tmp_path / "x"), "vi", split="train")["id"] == [r.id for r in records]


def test_paper_release_is_downloaded_at_the_pinned_revision(hub, tmp_path):
    """The real `hf_hub_download` path, against the local Hub: the builder reads the file of the
    pinned commit, not whatever the repo's main branch holds later."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(PAPER_REPO_ID, repo_type="dataset", exist_ok=True)
    rows = read_corpus("sw", limit=6)

    def upload(items, message):
        path = tmp_path / "sw.json"
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        return api.upload_file(path_or_fileobj=str(path), path_in_repo="sw.json", repo_id=PAPER_REPO_ID, repo_type="dataset", commit_message=message).oid

    pinned = upload([{"instruction": f"Explain {i}.", "input": "", "output": r["text"]} for i, r in enumerate(rows[:4])], "release")
    upload([{"instruction": "Later.", "input": "", "output": rows[5]["text"]}], "later change")
    ds = build("sw", tmp_path, source="paper", paper_revision=pinned)
    assert ds["output"] == [r["text"] for r in rows[:4]]
    assert ds[0]["provenance"]["source_dataset"] == f"{PAPER_REPO_ID}@{pinned}"


def test_building_a_language_with_no_records_says_so(tmp_path):
    (tmp_path / "curated" / "ta").mkdir(parents=True)
    (tmp_path / "curated" / "ta" / "train-00000-of-00001.jsonl").write_text("")
    with pytest.raises(ValueError, match="no 'ta' records in .*curation rejects"):
        build("ta", tmp_path, data_dir=str(tmp_path / "curated"))


def test_invalid_parquet_shard_row_is_named_by_its_row_number(tmp_path):
    """Rows are counted across read batches (1024 rows each), not from 1 in every batch."""
    template = make_records("fi", limit=1)[0].to_dict()
    rows = [{**template, "id": f"fi-{i}"} for i in range(1030)]
    rows[1029]["output"] = ""
    path = tmp_path / "shard.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=XINSTRUCTION_FEATURES.arrow_schema), path)
    with pytest.raises(ValueError, match=r"shard.parquet:1030: not a valid X-Instruction record.*output"):
        list(read_shard(path))


def folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_staged_export_changes_data_and_card_together_or_not_at_all(tmp_path, monkeypatch):
    from xinstruction_dataset.hub.cards import update_card
    from xinstruction_dataset.hub.export import staged_folder

    folder = tmp_path / "x-instruction"
    curated = tmp_path / "curated"
    write_jsonl_shard(curated / "fi" / "s.jsonl", make_records("fi", limit=5))
    with staged_folder(folder) as staging:
        export_language(staging, "fi", data_dir=curated, cache_dir=tmp_path / "cache", progress=False, update_card=False)
        update_card(staging)
    before = folder_bytes(folder)

    # A new fi, then a language with no curated shard fails: the folder keeps its old data AND card.
    write_jsonl_shard(curated / "fi" / "s.jsonl", make_records("fi", limit=7, offset=5))
    with pytest.raises(FileNotFoundError, match="no curated shards .* for 'sw'"):
        with staged_folder(folder) as staging:
            export_language(staging, "fi", data_dir=curated, cache_dir=tmp_path / "cache", progress=False, update_card=False)
            export_language(staging, "sw", data_dir=curated, cache_dir=tmp_path / "cache", progress=False, update_card=False)
    assert folder_bytes(folder) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left

    # Killed between the two renames of the swap: only the retired folder is there; it comes back.
    folder.rename(tmp_path / ".x-instruction.retired-0000")
    with staged_folder(folder) as staging:
        export_language(staging, "fi", data_dir=curated, cache_dir=tmp_path / "cache", progress=False, update_card=False)
        update_card(staging)
    monkeypatch.chdir(tmp_path)
    assert datasets.load_dataset("x-instruction", "fi", split="train").num_rows == 7
    assert "num_examples: 7" in (folder / "README.md").read_text()
