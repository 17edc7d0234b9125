"""Dedup over the whole language: near duplicates in different input files (different tasks)
are caught, chains (A~B, B~C, A!~C) make one cluster, the smallest id of a cluster is kept
wherever it sits in the input, and the answer does not depend on how the input is split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from xinstruction_dataset.execution.local import LocalExecutor
from xinstruction_dataset.filtering.dedup import MinHashOptions
from xinstruction_dataset.filtering.dedup.minhash import MinHasher, normalise
from xinstruction_dataset.filtering.kept import open_kept
from xinstruction_dataset.filtering.pipeline import filter_languages
from xinstruction_dataset.recipe import Recipe

CHAIN = [{"type": "length", "min_chars": 50}, {"type": "dedup"}]


def _words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice("abcdefghijklmnoprstuvy") for _ in range(rng.randint(3, 9))) for _ in range(count)]


def chain_texts(seed: int = 13) -> tuple[str, str, str]:
    """A, B = A with 18 words of 300 replaced at the start, C = B with 18 more replaced mid-way."""
    rng = random.Random(seed)
    a = _words(rng, 300)
    b = _words(rng, 18) + a[18:]
    c = b[:150] + _words(rng, 18) + b[168:]
    return " ".join(a), " ".join(b), " ".join(c)


def signature(text: str) -> np.ndarray:
    return MinHasher(MinHashOptions()).signature(normalise(text))


def similarity(x: str, y: str) -> float:
    return float(np.mean(signature(x) == signature(y)))


def share_a_band(x: str, y: str, bands: int = 9, rows: int = 13) -> bool:
    """Whether LSH makes the pair a candidate (datasketch's layout for 0.8 and 128 permutations)."""
    a, b = signature(x), signature(y)
    return any(np.array_equal(a[i * rows:(i + 1) * rows], b[i * rows:(i + 1) * rows]) for i in range(bands))


def unrelated(count: int, seed: int = 99) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(_words(rng, 120)) for _ in range(count)]


def write_files(root: Path, files: dict[str, list[tuple[str, str]]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (root / name).write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows), encoding="utf-8")


def run_filter(root: Path, pattern: str, workers: int = 1) -> tuple[list[str], dict[str, str]]:
    """(kept ids in order, {rejected id: reason}) of a filter run over `root/pattern`."""
    recipe = Recipe.from_dict({"name": "t", "sources": [{"path": str(root / pattern), "language": "fi"}], "filters": CHAIN, "output_dir": str(root / "out")})
    filter_languages(recipe, ["fi"], executor=LocalExecutor(workers=workers), progress=False)
    found = open_kept(root / "out" / "filtered" / "fi")
    kept = [doc.id for doc in found.documents()]
    rejected = {row["id"]: row["reason"] for row in found.rejects()}
    return kept, rejected


def test_the_chain_texts_are_a_chain():
    a, b, c = chain_texts()
    assert similarity(a, b) >= 0.85 and similarity(b, c) >= 0.85 and similarity(a, c) <= 0.75
    assert share_a_band(a, b) and share_a_band(b, c) and not share_a_band(a, c)  # only the chain links A and C


def test_a_near_duplicate_pair_in_two_files_is_caught(tmp_path):
    a, b, _ = chain_texts()
    filler = unrelated(6)
    write_files(tmp_path / "in", {"one.jsonl": [("doc-b", b)] + [(f"x{i}", t) for i, t in enumerate(filler[:3])],
                                   "two.jsonl": [("doc-a", a)] + [(f"y{i}", t) for i, t in enumerate(filler[3:])]})
    kept, rejected = run_filter(tmp_path / "in", "*.jsonl", workers=2)
    tasks = sorted((tmp_path / "in" / "out" / "filtered" / "fi" / "tasks").iterdir())
    assert len(tasks) == 2  # one task per file: each task alone kept its half of the pair
    assert all("doc-" in (task / "kept.jsonl").read_text() for task in tasks)
    assert rejected == {"doc-b": "dedup:near_duplicate_of:doc-a"}  # the smaller id, though read second
    assert kept == ["x0", "x1", "x2", "doc-a", "y0", "y1", "y2"]


def test_a_chain_is_one_cluster_and_the_split_does_not_matter(tmp_path):
    a, b, c = chain_texts()
    filler = [(f"f{i}", t) for i, t in enumerate(unrelated(4))]
    rows = [("m-c", c), filler[0], ("z-a", a), filler[1], ("k-b", b), filler[2], ("z-a-copy", a.upper()), filler[3]]
    write_files(tmp_path / "one", {"all.jsonl": rows})
    write_files(tmp_path / "many", {f"part{i}.jsonl": rows[i * 2:i * 2 + 2] for i in range(4)})
    one = run_filter(tmp_path / "one", "*.jsonl", workers=1)
    many = run_filter(tmp_path / "many", "*.jsonl", workers=2)
    assert one == many
    kept, rejected = one
    assert kept == ["f0", "f1", "k-b", "f2", "f3"]  # k-b: the smallest id of {m-c, z-a, k-b, z-a-copy}
    assert rejected == {
        "m-c": "dedup:near_duplicate_of:k-b",
        "z-a": "dedup:near_duplicate_of:k-b",
        "z-a-copy": "dedup:near_duplicate_of:k-b",  # a copy of z-a, not of the kept text
    }


def test_exact_copies_name_the_kept_copy_and_summaries_count_them(tmp_path):
    texts = unrelated(3)
    write_files(tmp_path / "in", {"a.jsonl": [("b", texts[0]), ("c", texts[1])], "b.jsonl": [("a", "  " + texts[0].title()), ("d", texts[2])]})
    kept, rejected = run_filter(tmp_path / "in", "*.jsonl", workers=2)
    assert kept == ["c", "a", "d"] and rejected == {"b": "dedup:exact_duplicate_of:a"}
    summary = json.loads((tmp_path / "in" / "out" / "filtered" / "fi" / "summary.json").read_text())
    assert summary["documents_in"] == 4 and summary["kept"] == 3
    assert summary["rejected"] == {"dedup:exact_duplicate_of": 1}
    assert summary["block_stats"]["dedup"] == {"in": 4, "kept": 3, "rejected:exact_duplicate_of": 1}


@pytest.mark.parametrize("specs", [[{"type": "near_dedup"}, {"type": "dedup", "threshold": 0.9}]])
def test_two_different_near_duplicate_blocks_are_refused(specs, tmp_path):
    from xinstruction_dataset.filtering.dedup import plan_steps
    from xinstruction_dataset.filtering.filters import parse_filter_spec

    with pytest.raises(ValueError, match="one near-duplicate block"):
        plan_steps([parse_filter_spec(spec) for spec in specs])


def test_every_language_step_kind_is_registered_implemented_and_a_filters_entry():
    """A new language-level step is one file in filtering/dedup/ (its options model and its
    `LanguageStep`, decorated `@LANGUAGE_STEPS.register(ItsOptions)`) and its name on the package
    __init__'s import line: forgetting either fails here, as does a recipe `filters:` union that
    does not offer it."""
    import typing

    import xinstruction_dataset.filtering.dedup as dedup_package
    from plugin_checks import point_problems
    from xinstruction_dataset.filtering.dedup import LANGUAGE_STEPS
    from xinstruction_dataset.filtering.filters import FilterSpec

    offered = {model.model_fields["type"].default for model in typing.get_args(typing.get_args(FilterSpec)[0])}
    assert point_problems(LANGUAGE_STEPS, dedup_package, offered) == []
    assert {"exact_dedup", "near_dedup", "dedup"} <= set(LANGUAGE_STEPS.kinds())
