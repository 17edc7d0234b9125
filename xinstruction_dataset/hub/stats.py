"""Statistics of a hub-ready folder, computed from its Parquet files (the card's generated parts).

Columns are read one file at a time and folded into running sums, so the statistics of a folder
with millions of records need memory for one file's text columns only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..storage import open_parquet_stream
from .layout import FolderLayout
from .making import LedgerFigures
from .review import ReviewCounts

TEXT_COLUMNS = ("instruction", "output")
# Provenance fields the method summary lists (the distinct values found in the data).
METHOD_FIELDS = ("source_dataset", "generator_model", "judge_model", "prompt_version")


@dataclass
class LengthStats:
    """Running mean and standard deviation of string lengths, in characters."""

    count: int = 0
    total: float = 0.0
    total_squares: float = 0.0

    def add(self, lengths: pa.ChunkedArray) -> None:
        lengths = pc.cast(lengths, pa.float64())
        self.count += len(lengths) - lengths.null_count
        self.total += pc.sum(lengths).as_py() or 0.0
        self.total_squares += pc.sum(pc.multiply(lengths, lengths)).as_py() or 0.0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def sd(self) -> float:
        if self.count < 2:
            return 0.0
        variance = (self.total_squares - self.count * self.mean**2) / (self.count - 1)
        return math.sqrt(max(variance, 0.0))

    def __str__(self) -> str:
        return f"{self.mean:.0f} ± {self.sd:.0f}" if self.count else "–"


@dataclass
class ConfigStats:
    """What the card says about one config: counts, text lengths, labels, provenance values."""

    name: str
    splits: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, LengthStats] = field(default_factory=dict)
    labels: Counter[str] = field(default_factory=Counter)
    languages: set[str] = field(default_factory=set)  # values of the `language` column
    method_values: dict[str, Counter[str]] = field(default_factory=dict)
    max_refinement_round: int = 0
    clusters: int = 0
    review: ReviewCounts | None = None  # a hand review applied at export (its vetoed records are gone)
    making: LedgerFigures | None = None  # the LLM calls its curation paid (making.py), when export found them

    @property
    def num_examples(self) -> int:
        return sum(self.splits.values())

    def label_summary(self) -> str:
        """`good 90% · fair 10%`, or `–` when the data has no labels."""
        total = sum(self.labels.values())
        if not total:
            return "–"
        return " · ".join(f"{label} {100 * n / total:.0f}%" for label, n in sorted(self.labels.items(), key=lambda kv: (-kv[1], kv[0])))


def folder_stats(layout: FolderLayout) -> dict[str, ConfigStats]:
    """Statistics of every config of a scanned folder, in config order."""
    return {name: _config_stats(layout.root, name, splits) for name, splits in layout.configs.items()}


def _config_stats(root: Path, name: str, splits: dict) -> ConfigStats:
    stats = ConfigStats(name=name, splits={split: files.num_examples for split, files in splits.items()})
    cluster_ids: set[int] = set()
    for split in splits.values():
        if split.files and stats.review is None and stats.making is None:
            metadata = open_parquet_stream(root / split.files[0]).schema_arrow.metadata
            stats.review, stats.making = ReviewCounts.from_metadata(metadata), LedgerFigures.from_metadata(metadata)
        for table in (t for relative in split.files for t in _read_batches(root / relative)):
            for column in TEXT_COLUMNS:
                if column in table.column_names:
                    stats.lengths.setdefault(column, LengthStats()).add(pc.utf8_length(table[column]))
            if "language" in table.column_names:
                stats.languages.update(v for v in pc.unique(table["language"]).to_pylist() if v)
            if "provenance" in table.column_names:
                cluster_ids |= _add_provenance(stats, table["provenance"])
    stats.clusters = len(cluster_ids)
    return stats


def _read_batches(path: Path, batch_rows: int = 10_000) -> Iterator[pa.Table]:
    """The columns statistics need, a batch at a time: memory stays flat however big the file."""
    parquet = open_parquet_stream(path)
    wanted = [c for c in (*TEXT_COLUMNS, "language", "provenance") if c in parquet.schema_arrow.names]
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
        yield pa.Table.from_batches([batch])


def _add_provenance(stats: ConfigStats, provenance: pa.ChunkedArray) -> set[int]:
    combined = provenance.combine_chunks() if provenance.num_chunks else pa.array([], provenance.type)
    names = {f.name for f in combined.type}
    if "label" in names:
        stats.labels.update(v for v in combined.field("label").to_pylist() if v)
    for name in METHOD_FIELDS:
        if name in names:
            stats.method_values.setdefault(name, Counter()).update(v for v in combined.field(name).to_pylist() if v)
    if "refinement_round" in names and len(combined):
        stats.max_refinement_round = max(stats.max_refinement_round, pc.max(combined.field("refinement_round")).as_py() or 0)
    if "cluster_id" in names:
        return {c for c in combined.field("cluster_id").to_pylist() if c is not None and c >= 0}
    return set()
