"""The paper's release in every shape such files take, through `build_language(source="paper")`,
and the one clear error on a shape we do not know."""

from __future__ import annotations

import json
import logging

import pytest

from corpora import read_corpus
from xinstruction_dataset import paper_shapes
from xinstruction_dataset.builder import build_language
from xinstruction_dataset.paper_shapes import PaperShapeError, iter_items, read_pairs

N = 6


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [row["text"] for row in read_corpus("sw", limit=N)]


def alpaca(texts):
    return [{"instruction": f"Explain topic {i}.", "input": "", "output": t} for i, t in enumerate(texts)]


SHAPES = {
    "alpaca_array": lambda texts: json.dumps(alpaca(texts), ensure_ascii=False, indent=2),
    "alpaca_jsonl": lambda texts: "\n".join(json.dumps(item, ensure_ascii=False) for item in alpaca(texts)) + "\n",
    "prompt_response": lambda texts: json.dumps([{"prompt": f"Explain topic {i}.", "response": t} for i, t in enumerate(texts)]),
    "sharegpt": lambda texts: json.dumps([
        {"id": f"c{i}", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": f"Explain topic {i}."}, {"from": "gpt", "value": t}]}
        for i, t in enumerate(texts)
    ]),
    "sharegpt_roles": lambda texts: json.dumps([
        {"conversations": [{"role": "user", "content": f"Explain topic {i}."}, {"role": "assistant", "content": t}]} for i, t in enumerate(texts)
    ]),
    "data_object": lambda texts: json.dumps({"version": 1, "meta": {"n": [1, 2]}, "data": alpaca(texts)}, ensure_ascii=False, indent=1),
    "data_object_one_line": lambda texts: json.dumps({"data": alpaca(texts)}),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_accepted_shape_builds_the_same_records(tmp_path, texts, shape):
    (tmp_path / "sw.json").write_text(SHAPES[shape](texts), encoding="utf-8")
    ds = build_language("sw", source="paper", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == N
    assert ds["instruction"] == [f"Explain topic {i}." for i in range(N)]
    assert ds["output"] == [t.strip() for t in texts]
    assert ds[2]["provenance"]["source_id"] == "sw.json#2"


def test_alpaca_input_is_part_of_the_instruction(tmp_path):
    path = tmp_path / "sw.json"
    path.write_text(json.dumps([{"instruction": "Translate:", "input": "good morning", "output": "habari za asubuhi"}]))
    assert list(read_pairs(str(path))) == [(0, "Translate: good morning", "habari za asubuhi")]


@pytest.mark.parametrize(
    "content, message",
    [
        (json.dumps([{"question": "q", "answer": "a", "lang": "sw"}]), r"item 0 has keys answer, lang, question; expected instruction \+ output \(Alpaca, optional input\), prompt \+ response, or conversations \(ShareGPT\)"),
        (json.dumps({"data": [{"text": "t"}]}), r"item 0 has keys text; expected instruction \+ output"),
        (json.dumps({"rows": [{"instruction": "i", "output": "o"}]}, indent=1), r"a top-level object with keys rows; expected \{\"data\": \[...\]\}"),
        (json.dumps({"rows": [{"instruction": "i", "output": "o"}]}), r"item 0 has keys rows; expected instruction \+ output"),  # one line: JSON lines
        (json.dumps([{"instruction": "i", "output": "o"}, {"prompt": "p", "response": "r"}]), r"item 1 has keys prompt, response; the items before it have instruction \+ output"),
        ('[{"instruction": "i", "output": "o"}, {"instruction": "cut sh', r"not valid JSON .*cut short"),
    ],
)
def test_an_unknown_shape_is_one_error_naming_the_keys(tmp_path, caplog, content, message):
    (tmp_path / "sw.json").write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING), pytest.raises(PaperShapeError, match=message) as raised:
        build_language("sw", source="paper", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert "curation" not in str(raised.value)
    assert [r for r in caplog.records if "sw.json" in r.getMessage()] == []  # no warning per item


def test_empty_records_are_one_warning_and_a_source_specific_error(tmp_path, caplog):
    (tmp_path / "sw.json").write_text(json.dumps([{"instruction": "", "output": "x"}] * 50), encoding="utf-8")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError) as raised:
        build_language("sw", source="paper", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert "every record has an empty instruction or output" in str(raised.value) and "curation" not in str(raised.value)
    warnings = [r.getMessage() for r in caplog.records if "sw.json" in r.getMessage()]
    assert warnings == [f"{tmp_path / 'sw.json'}: 50 records with an empty instruction or output skipped"]


def test_arrays_are_read_streaming_across_chunks(tmp_path, monkeypatch):
    """Records span the reader's buffer boundaries (a tiny chunk size): each is decoded whole, in
    order, and the reader never holds the whole file."""
    items = [{"instruction": f"i{n}", "output": "ü" * (n % 7) + str(10 ** (n % 5)), "n": 10 ** (n % 9)} for n in range(200)]
    path = tmp_path / "sw.json"
    path.write_text(json.dumps({"data": items}, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(paper_shapes, "CHUNK_CHARS", 7)
    assert list(iter_items(str(path))) == items
    path.write_text(json.dumps(items, ensure_ascii=False, indent=3), encoding="utf-8")
    assert list(iter_items(str(path))) == items
