"""Small hub-ready folders for the hub tests: X-Instruction (real corpus text as outputs) and
X-AlpacaEval source files in the exact hub shape (clearly fake, deterministic instructions)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from corpora import read_corpus
from xinstruction_dataset.features import XINSTRUCTION_FEATURES
from xinstruction_dataset.hub.export import export_dataset
from xinstruction_dataset.records import Provenance, Record
from xinstruction_dataset.xalpacaeval import EXPECTED_ITEMS, SOURCE_FILES

LABELS = ("good", "good", "needs_refinement")  # labels the judge gives (curation/pairs.py LABELS)
SUBSETS = ("helpful_base", "koala", "oasst", "selfinstruct", "vicuna")


def xinstruction_records(language: str, count: int, offset: int = 0) -> list[Record]:
    """`count` records whose outputs are real paragraphs of `../shared/corpora/<language>.jsonl`."""
    rows = read_corpus(language, limit=offset + count)[offset:]
    return [
        Record(
            id=f"{language}-{offset + i:05d}",
            instruction=f"Write a short piece on topic {offset + i} for a general audience.",
            output=row["text"],
            language=language,
            provenance=Provenance(
                source_dataset=row.get("source", "corpus"), source_id=row["id"], source_url=row.get("url", ""),
                generator_model="test/generator", judge_model="test/judge", prompt_version="instruction_v1",
                label=LABELS[i % len(LABELS)], score=4.0, refinement_round=i % 3, cluster_id=i % 4,
            ),
        )
        for i, row in enumerate(rows)
    ]


def write_xinstruction_config(folder: Path, language: str, count: int, offset: int = 0) -> None:
    """Export one language into `folder` with the toolkit's own export (which renders the card)."""
    records = [r.to_dict() for r in xinstruction_records(language, count, offset)]
    dataset = datasets.Dataset.from_list(records, features=XINSTRUCTION_FEATURES)
    export_dataset(dataset, folder, language, "train", progress=False)


def xinstruction_folder(root: Path, counts: dict[str, int]) -> Path:
    """`root/x-instruction` with `counts[language]` records per language."""
    folder = root / "x-instruction"
    for language, count in counts.items():
        write_xinstruction_config(folder, language, count)
    return folder


def write_xalpacaeval_sources(folder: Path, items: int = EXPECTED_ITEMS) -> Path:
    """The five released files, hub shape: a JSON array of {id, dataset, instruction} each."""
    folder.mkdir(parents=True, exist_ok=True)
    for code, name in SOURCE_FILES.items():
        payload = [
            {"id": i, "dataset": SUBSETS[i % len(SUBSETS)], "instruction": f"[fake {code} instruction #{i}] Describe item {i * 7 % 101}."}
            for i in range(items)
        ]
        (folder / name).write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return folder
