"""A hand review of curated records, applied when they are exported.

The report page (`xinstruction report`) lets a maintainer mark curated records `accept` or
`veto`, with a note, and downloads the decisions as `review.jsonl`, one per line:

    {"id": "sw-3f2a...", "language": "sw", "decision": "veto", "note": "machine-translated"}

`xinstruction export ... --review review.jsonl` drops the vetoed records and records the review
in every exported record's provenance (`reviewed`, `decision`, `note`; false / "" / "" for a
record nobody reviewed). A review that names an id the export does not hold is an error listing
those ids: a decision must never be dropped silently. The counts (reviewed, vetoed) go into the
Parquet files' metadata, where the card reads them (`stats.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from ..errors import UserError

DECISIONS = ("accept", "veto")
REVIEW_FEATURES = {"reviewed": datasets.Value("bool"), "decision": datasets.Value("string"), "note": datasets.Value("string")}
METADATA_KEY = b"x-instruction.review"  # Parquet schema metadata: {"reviewed": n, "vetoed": m}
SHOWN_IDS = 10  # unknown ids named in an error


@dataclass(frozen=True)
class Decision:
    id: str
    language: str
    decision: str
    note: str = ""


@dataclass(frozen=True)
class ReviewCounts:
    reviewed: int
    vetoed: int

    def to_metadata(self) -> dict[bytes, bytes]:
        return {METADATA_KEY: json.dumps({"reviewed": self.reviewed, "vetoed": self.vetoed}).encode()}

    @classmethod
    def from_metadata(cls, metadata: dict[bytes, bytes] | None) -> "ReviewCounts | None":
        raw = (metadata or {}).get(METADATA_KEY)
        if raw is None:
            return None
        data = json.loads(raw)
        return cls(int(data["reviewed"]), int(data["vetoed"]))


@dataclass
class Review:
    path: Path
    decisions: dict[str, Decision]  # by record id; a later line for an id replaces an earlier one

    @classmethod
    def load(cls, path: str | Path) -> "Review":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"review file {path} does not exist: download it from the run report's sample browser (Download review.jsonl)")
        decisions: dict[str, Decision] = {}
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    decision = _parse(line, path, number)
                    decisions[decision.id] = decision
        return cls(path, decisions)

    def for_language(self, language: str) -> dict[str, Decision]:
        return {i: d for i, d in self.decisions.items() if d.language == language}

    def check_languages(self, languages: list[str]) -> None:
        """Every decision must be for a language this export writes."""
        others = sorted(i for i, d in self.decisions.items() if d.language not in languages)
        if others:
            found = sorted({self.decisions[i].language for i in others})
            raise UserError(
                f"{self.path}: {len(others)} decision(s) for language(s) not exported ({', '.join(found)}): {_some(others)}; "
                f"export them too (--language {' --language '.join(found)}) or remove those lines"
            )

    def apply(self, dataset: datasets.Dataset, language: str) -> tuple[datasets.Dataset, ReviewCounts]:
        """`dataset` without the vetoed records, with the review in provenance; the counts."""
        mine = self.for_language(language)
        present = set(dataset["id"])
        unknown = sorted(i for i in mine if i not in present)
        if unknown:
            raise UserError(
                f"{self.path}: {len(unknown)} id(s) are not {language!r} records of this export: {_some(unknown)}; "
                "review the report of the run being exported, or remove those lines"
            )
        vetoed = {i for i, d in mine.items() if d.decision == "veto"}
        kept = dataset.filter(lambda ids: [i not in vetoed for i in ids], input_columns="id", batched=True, desc=f"review {language}")
        features = kept.features.copy()
        features["provenance"] = {**kept.features["provenance"], **REVIEW_FEATURES}
        reviewed = kept.map(lambda batch: _with_review(batch, mine), batched=True, features=features, desc=f"review {language}")
        return reviewed, ReviewCounts(len(mine), len(vetoed))


def _with_review(batch: dict[str, list[Any]], decisions: dict[str, Decision]) -> dict[str, list[Any]]:
    provenance = []
    for record_id, fields in zip(batch["id"], batch["provenance"]):
        decision = decisions.get(record_id)
        provenance.append({**fields, "reviewed": decision is not None, "decision": decision.decision if decision else "", "note": decision.note if decision else ""})
    return {**batch, "provenance": provenance}


def _parse(line: str, path: Path, number: int) -> Decision:
    where = f"{path}, line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: not JSON ({error.msg}); each line is {{\"id\", \"language\", \"decision\", \"note\"}} as the report page writes it") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise UserError(f"{where}: a decision needs an \"id\" (the record id shown in the report)")
    if data.get("decision") not in DECISIONS:
        raise UserError(f"{where}: decision must be one of {', '.join(DECISIONS)}, got {data.get('decision')!r}")
    note = data.get("note") or ""
    if not isinstance(note, str):
        raise UserError(f"{where}: note must be text, got {type(note).__name__}")
    language = data.get("language") or data["id"].split("-", 1)[0]
    return Decision(data["id"], str(language), data["decision"], note)


def _some(ids: list[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
