"""One X-Instruction record, and the curated-shard format the curation backend writes.

A curated shard is a JSONL file (optionally gzip-compressed, `.jsonl.gz`) or a Parquet file whose
rows have exactly the fields of `XINSTRUCTION_FEATURES`: `id`, `instruction`, `output`,
`language` and a `provenance` object. The builder reads shards; the curation backend writes them
with `ShardWriter`, an `AtomicFile`: a killed run never leaves a half-written shard behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import CorruptFile
from .languages import get_language
from .storage import AtomicFile, open_parquet_stream

# Defaults for provenance a source does not know (e.g. the paper's released data).
UNKNOWN = ""
NO_ROUND = 0
NO_CLUSTER = -1


@dataclass
class Provenance:
    source_dataset: str = UNKNOWN
    source_id: str = UNKNOWN
    source_url: str = UNKNOWN
    generator_model: str = UNKNOWN
    judge_model: str = UNKNOWN
    prompt_version: str = UNKNOWN
    label: str = UNKNOWN
    score: float | None = None
    refinement_round: int = NO_ROUND
    cluster_id: int = NO_CLUSTER


@dataclass
class Record:
    id: str
    instruction: str
    output: str
    language: str
    provenance: Provenance = field(default_factory=Provenance)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        missing = [k for k in ("instruction", "output", "language") if not data.get(k)]
        if missing:
            raise ValueError(f"record is missing required field(s): {', '.join(missing)}")
        get_language(data["language"])
        prov = dict(data.get("provenance") or {})
        unknown = set(prov) - set(Provenance.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown provenance field(s): {', '.join(sorted(unknown))}")
        record_id = data.get("id") or stable_id(data["language"], data["instruction"], data["output"])
        return cls(
            id=str(record_id),
            instruction=data["instruction"],
            output=data["output"],
            language=data["language"],
            provenance=Provenance(**prov),
        )


def stable_id(language: str, *parts: str) -> str:
    """A content-derived id: the same pair always gets the same id, across runs and machines."""
    digest = hashlib.sha256("\x1f".join((language, *parts)).encode("utf-8")).hexdigest()
    return f"{language}-{digest[:16]}"


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def read_shard(path: str | Path) -> Iterator[Record]:
    """Yield the records of one curated shard (JSONL, JSONL.gz or Parquet), validated."""
    path = Path(path)
    if path.suffix == ".parquet":
        rows = (row for batch in open_parquet_stream(path).iter_batches(batch_size=1024) for row in batch.to_pylist())
        for row_number, row in enumerate(rows, start=1):
            yield _parse(row, path, row_number)
        return
    with _open_text(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorruptFile(f"{path}:{line_number}: invalid JSON in curated shard ({e.msg})") from e
            yield _parse(data, path, line_number)


def _parse(data: dict[str, Any], path: Path, where: int) -> Record:
    try:
        return Record.from_dict(data)
    except (ValueError, TypeError) as e:
        raise CorruptFile(f"{path}:{where}: not a valid X-Instruction record: {e}") from e


class ShardWriter:
    """Write records to a JSONL(.gz) shard that appears only when complete (see AtomicFile)."""

    def __init__(self, path: str | Path):
        self._file = AtomicFile(path)
        self.path = self._file.path
        self.count = 0

    def write(self, record: Record) -> None:
        self._file.write_json_line(record.to_dict())
        self.count += 1

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.__exit__(exc_type, exc, tb)
