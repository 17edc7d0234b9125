"""Sources: every format streams, sharding partitions a corpus, bad input is quarantined."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora import corpus_path, read_corpus
from xinstruction_dataset.filtering.runner import filter_documents
from xinstruction_dataset.filtering.filters.base import BaseFilter
from xinstruction_dataset.filtering.sources import BadInput, iter_source, parse_shard
from xinstruction_dataset.documents import Document
from xinstruction_dataset.recipe import SourceSpec


def docs(items):
    return [item for item in items if isinstance(item, Document)]


def test_jsonl_streams_real_corpus():
    spec = SourceSpec(path="sw.jsonl", language="sw")
    got = docs(iter_source(spec, str(corpus_path("sw"))))
    expected = read_corpus("sw")
    assert [d.id for d in got] == [r["id"] for r in expected]
    assert got[0].text == expected[0]["text"] and got[0].url == expected[0]["url"]
    assert got[0].metadata["origin"].endswith("sw.jsonl:1")


def test_jsonl_gz_and_parquet_match_jsonl(tmp_path):
    rows = read_corpus("th", limit=40)
    gz = tmp_path / "th.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    parquet = tmp_path / "th.parquet"
    pq.write_table(pa.Table.from_pylist([{"body": r["text"], "doc": r["id"], "link": r["url"]} for r in rows]), parquet)
    from_gz = docs(iter_source(SourceSpec(path="", language="th"), str(gz)))
    from_parquet = docs(iter_source(SourceSpec(path="", language="th", text_field="body", id_field="doc", url_field="link"), str(parquet)))
    assert [(d.id, d.text, d.url) for d in from_gz] == [(r["id"], r["text"], r["url"]) for r in rows]
    assert [(d.id, d.text, d.url) for d in from_parquet] == [(r["id"], r["text"], r["url"]) for r in rows]


def test_parquet_without_text_column_names_the_fix(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"content": ["a"]}), path)
    with pytest.raises(ValueError, match="no column 'text'.*text_field"):
        list(iter_source(SourceSpec(path="", language="sw"), str(path)))


def test_hub_source_streams_with_datasets(tmp_path):
    """`hf:` sources go through datasets' streaming loader (here on a local repo folder)."""
    repo = tmp_path / "culturax-like"
    (repo / "sw").mkdir(parents=True)
    rows = read_corpus("sw", limit=25)
    pq.write_table(pa.Table.from_pylist([{"text": r["text"], "url": r["url"]} for r in rows]), repo / "sw" / "train-00000.parquet")
    spec = SourceSpec(path="", language="sw", id_field="missing")
    got = docs(iter_source(spec, f"hf:{repo}"))
    assert [d.text for d in got] == [r["text"] for r in rows]
    assert got[3].id.endswith(":4")  # no id column: a stable position-based id


def test_glob_and_missing_source(tmp_path):
    for name in ("a", "b"):
        shutil.copy(corpus_path("ta"), tmp_path / f"{name}.jsonl")
    got = docs(iter_source(SourceSpec(path="", language="ta"), str(tmp_path / "*.jsonl")))
    assert len(got) == 2 * len(read_corpus("ta"))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(iter_source(SourceSpec(path="", language="ta"), str(tmp_path / "nope-*.jsonl")))


@pytest.mark.parametrize("count", [1, 3, 16])
def test_shards_partition_the_corpus(count, tmp_path):
    files = []
    for lang in ("hi", "ur"):
        shutil.copy(corpus_path(lang), tmp_path / f"{lang}.jsonl")
        files.append(lang)
    spec = SourceSpec(path="", language="hi")
    everything = [d.id for d in docs(iter_source(spec, str(tmp_path / "*.jsonl")))]
    shards = [[d.id for d in docs(iter_source(spec, str(tmp_path / "*.jsonl"), (i, count)))] for i in range(count)]
    union = [doc_id for shard in shards for doc_id in shard]
    assert sorted(union) == sorted(everything)
    assert len(set(union)) == len(union) == len(everything)
    # Deterministic: the same shard twice is the same documents in the same order.
    assert shards[-1] == [d.id for d in docs(iter_source(spec, str(tmp_path / "*.jsonl"), (count - 1, count)))]


@pytest.mark.parametrize("text", ["3", "3/2", "-1/4", "a/b", "1/0"])
def test_bad_shard_spec(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def _bad_input_file(tmp_path):
    good = read_corpus("vi", limit=3)
    lines = [
        json.dumps(good[0], ensure_ascii=False).encode(),
        b'{"id": "broken", "text": "unterminated',  # 2: invalid JSON
        "Chào".encode("utf-16"),  # 3: not UTF-8
        json.dumps({"id": "no-text", "body": "x"}).encode(),  # 4: missing text field
        json.dumps({"id": "num", "text": 42}).encode(),  # 5: wrong type
        b"[1, 2, 3]",  # 6: not an object
        json.dumps(good[1], ensure_ascii=False).encode(),
        b"",  # blank line: ignored
        json.dumps(good[2], ensure_ascii=False).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, good


def test_bad_lines_are_quarantined_with_file_line_and_reason(tmp_path):
    path, good = _bad_input_file(tmp_path)
    items = list(iter_source(SourceSpec(path="", language="vi"), str(path)))
    bad = [i for i in items if isinstance(i, BadInput)]
    assert [d.id for d in docs(items)] == [g["id"] for g in good]
    assert [(b.file, b.line) for b in bad] == [(str(path), n) for n in (2, 3, 4, 5, 6)]
    reasons = [b.reason for b in bad]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1].startswith("undecodable bytes: not UTF-8")
    assert "missing text field 'text'" in reasons[2]
    assert "is int, expected a string" in reasons[3]
    assert "expected a JSON object" in reasons[4]


def test_huge_line_is_quarantined_and_reading_goes_on(tmp_path, monkeypatch):
    from xinstruction_dataset.filtering import sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    good = read_corpus("id", limit=1)[0]
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"id": "huge", "text": "x" * 5000}) + "\n" + json.dumps(good) + "\n")
    items = list(iter_source(SourceSpec(path="", language="id"), str(path)))
    assert isinstance(items[0], BadInput) and items[0].line == 1 and "longer than 1000 bytes" in items[0].reason
    assert docs(items)[0].id == good["id"]


class _RejectShort(BaseFilter):
    name = "short"

    def filter(self, doc):
        return len(doc.text) >= 400 or (False, f"under_400:{len(doc.text)}")


def test_filter_run_accounts_for_every_input(tmp_path):
    path, good = _bad_input_file(tmp_path)
    out = tmp_path / "out"
    summary = filter_documents(iter_source(SourceSpec(path="", language="vi"), str(path)), [_RejectShort()], out, progress=False)
    kept = [json.loads(line) for line in (out / "kept.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(kept) + len(rejects) == len(good) and len(quarantine) == 5
    assert summary.documents_in == 8 and summary.kept == len(kept)
    assert all(r["reason"].startswith("short:under_400:") and r["text"] for r in rejects)
    assert json.loads((out / "summary.json").read_text())["documents_in"] == 8
    assert not list(out.glob("*.tmp"))


def test_killed_filter_run_leaves_no_partial_output(tmp_path):
    def exploding():
        yield from docs(iter_source(SourceSpec(path="", language="fi"), str(corpus_path("fi"))))[:5]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        filter_documents(exploding(), [], tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
