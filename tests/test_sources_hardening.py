"""Unreadable input never aborts a run: bad files and duplicate keys are quarantined, damaged
kept.jsonl and recipe files are one-line errors naming the path."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora import corpus_path, read_corpus
from xinstruction_dataset.cli import main
from xinstruction_dataset.documents import Document
from xinstruction_dataset.filtering import sources
from xinstruction_dataset.filtering.runner import filter_documents, read_documents
from xinstruction_dataset.filtering.sources import BadInput, iter_source
from xinstruction_dataset.recipe import Recipe, SourceSpec
from filtered_output import kept_rows, reject_rows


def _write_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _gz_folder(tmp_path):
    """a_good, b_truncated (cut mid-stream), c_fake (plain text named .gz), d_good."""
    rows = read_corpus("sw")
    _write_gz(tmp_path / "a_good.jsonl.gz", rows[:60])
    _write_gz(tmp_path / "d_good.jsonl.gz", rows[60:120])
    full = tmp_path / "full.tmp"
    _write_gz(full, rows[120:])
    data = full.read_bytes()
    (tmp_path / "b_truncated.jsonl.gz").write_bytes(data[: len(data) // 2])
    full.unlink()
    (tmp_path / "c_fake.jsonl.gz").write_bytes(corpus_path("sw").read_bytes()[:5000])
    # What a reader gets from the truncated file before the stream ends.
    readable = []
    with pytest.raises(EOFError), gzip.open(tmp_path / "b_truncated.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            readable.append(json.loads(line)["id"])
    good = [r["id"] for r in rows[:120]]
    return good, readable


def test_bad_gz_files_in_a_glob_are_quarantined_and_the_run_goes_on(tmp_path, capsys):
    good, readable = _gz_folder(tmp_path)
    assert readable  # the truncated file had records before the cut: they must not be lost
    run = tmp_path / "run"
    code = main(["filter", "--input", str(tmp_path / "*.jsonl.gz"), "--language", "sw", "--output-dir", str(run), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "quarantined:  2" in out and "unreadable_file" in out
    folder = run / "filtered" / "sw"
    seen = [row["id"] for row in kept_rows(folder) + reject_rows(folder)]
    assert sorted(seen) == sorted(good + readable)
    quarantine = [json.loads(line) for line in (folder / "quarantine.jsonl").read_text().splitlines()]
    by_file = {q["file"]: q for q in quarantine}
    assert set(by_file) == {str(tmp_path / "b_truncated.jsonl.gz"), str(tmp_path / "c_fake.jsonl.gz")}
    truncated = by_file[str(tmp_path / "b_truncated.jsonl.gz")]
    assert truncated["reason"] == f"unreadable_file: truncated gzip stream after line {len(readable)}"
    assert by_file[str(tmp_path / "c_fake.jsonl.gz")]["reason"].startswith("unreadable_file: not valid gzip")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["quarantined"] == {"unreadable_file": 2}


def test_no_filters_keeps_every_readable_document(tmp_path):
    good, readable = _gz_folder(tmp_path)
    spec = SourceSpec(path="", language="sw")
    summary = filter_documents(iter_source(spec, str(tmp_path / "*.jsonl.gz")), [], tmp_path / "out", progress=False)
    assert summary.kept == len(good) + len(readable)
    assert sum(summary.quarantined.values()) == 2


@pytest.mark.parametrize("count", [2, 3, 7])
def test_shards_of_a_glob_with_bad_files_partition_it(tmp_path, count):
    _gz_folder(tmp_path)
    spec = SourceSpec(path="", language="sw")
    glob = str(tmp_path / "*.jsonl.gz")

    def key(item):
        return ("bad", item.file, item.reason) if isinstance(item, BadInput) else ("doc", item.id)

    everything = [key(i) for i in iter_source(spec, glob)]
    shards = [[key(i) for i in iter_source(spec, glob, (index, count))] for index in range(count)]
    union = [k for shard in shards for k in shard]
    assert sorted(union) == sorted(everything) and len(set(union)) == len(union)
    # Each unreadable file is reported by exactly one shard.
    assert sum(k[0] == "bad" for k in union) == 2


def test_corrupt_parquet_beside_a_good_one(tmp_path, capsys):
    rows = read_corpus("fi", limit=50)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    good = tmp_path / "a.parquet"
    (tmp_path / "b.parquet").write_bytes(b"PAR1" + good.read_bytes()[100:400])  # corrupt: no footer
    (tmp_path / "c.parquet").write_bytes(good.read_bytes())
    spec = SourceSpec(path="", language="fi")
    items = list(iter_source(spec, str(tmp_path / "*.parquet")))
    docs = [i for i in items if isinstance(i, Document)]
    bad = [i for i in items if isinstance(i, BadInput)]
    assert [d.id for d in docs] == [r["id"] for r in rows] * 2
    assert len(bad) == 1 and bad[0].file == str(tmp_path / "b.parquet")
    assert bad[0].reason.startswith("unreadable_file: corrupt Parquet file")
    code = main(["filter", "--input", str(tmp_path / "*.parquet"), "--language", "fi", "--output-dir", str(tmp_path / "run"), "--no-progress"])
    assert code == 0
    assert "unreadable_file" in capsys.readouterr().out


def test_parquet_without_text_column_is_still_a_config_error(tmp_path):
    pq.write_table(pa.table({"content": ["a"]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="no column 'text'"):
        list(iter_source(SourceSpec(path="", language="sw"), str(tmp_path / "x.parquet")))


def test_permission_denied_and_folder_are_quarantined(tmp_path, monkeypatch):
    shutil.copy(corpus_path("tr"), tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").mkdir()  # a folder matched by the glob
    shutil.copy(corpus_path("tr"), tmp_path / "c.jsonl")
    real_open = open

    def denying_open(file, *args, **kwargs):
        if str(file).endswith("c.jsonl"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(sources, "open", denying_open, raising=False)  # the tests run as root: chmod would not deny
    items = list(iter_source(SourceSpec(path="", language="tr"), str(tmp_path / "*.jsonl")))
    bad = [i for i in items if isinstance(i, BadInput)]
    assert len(items) - len(bad) == len(read_corpus("tr"))
    assert [(b.file, b.reason) for b in bad] == [
        (str(tmp_path / "b.jsonl"), "unreadable_file:not_a_regular_file"),
        (str(tmp_path / "c.jsonl"), "unreadable_file: permission denied"),
    ]


def test_duplicate_top_level_keys_are_quarantined(tmp_path):
    rows = read_corpus("id", limit=3)
    dup = json.dumps(rows[1], ensure_ascii=False)[:-1] + ', "text": "second text wins silently"}'
    nested = json.dumps({**rows[2], "meta": {"a": 1}}, ensure_ascii=False).replace('{"a": 1}', '{"a": 1, "a": 2}')
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join([json.dumps(rows[0], ensure_ascii=False), dup, nested]) + "\n", encoding="utf-8")
    items = list(iter_source(SourceSpec(path="", language="id"), str(path)))
    assert isinstance(items[1], BadInput) and items[1].reason == "duplicate_key:text" and items[1].line == 2
    assert [i.id for i in items if isinstance(i, Document)] == [rows[0]["id"], rows[2]["id"]]  # nested: not ours to judge
    assert items[0].text == rows[0]["text"]


def test_corrupt_kept_jsonl_names_file_line_and_fix(tmp_path, capsys):
    rows = read_corpus("bn", limit=3)
    kept = tmp_path / "kept.jsonl"
    lines = [json.dumps(Document(id=r["id"], text=r["text"]).to_dict(), ensure_ascii=False) for r in rows]
    kept.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n" + lines[2] + "\n", encoding="utf-8")
    got = []
    with pytest.raises(ValueError) as error:
        for doc in read_documents(kept):
            got.append(doc.id)
    message = str(error.value)
    assert got == [rows[0]["id"]]
    assert f"{kept}, line 2" in message and "re-run `xinstruction filter`" in message and "\n" not in message
    kept.write_bytes(lines[0].encode() + b"\n" + "x".encode("utf-16") + b"\n")
    with pytest.raises(ValueError, match=r"kept.jsonl, line 2.*xinstruction filter"):
        list(read_documents(kept))
    kept.write_text('{"text": "no id"}\n')
    with pytest.raises(ValueError, match=r"kept.jsonl, line 1: not a document.*xinstruction filter"):
        list(read_documents(kept))


def _assert_one_error_line(capsys, path):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    return lines[0]


def test_non_utf8_recipe_is_a_one_line_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes("name: café\nsources: []\n".encode("latin-1"))
    assert main(["filter", str(recipe)]) == 2
    assert "not UTF-8" in _assert_one_error_line(capsys, recipe)
    with pytest.raises(ValueError, match="not UTF-8"):
        Recipe.from_yaml(recipe)


def test_folder_as_recipe_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "recipes"
    folder.mkdir()
    assert main(["filter", str(folder)]) == 2
    assert "is a folder" in _assert_one_error_line(capsys, folder)
