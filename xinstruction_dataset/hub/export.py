"""Export built datasets to a hub-ready folder (`hub/layout.py`), one config at a time.

A config is written into a temporary folder beside its final place and swapped in with renames,
so exporting one language never disturbs the others, and a killed export leaves the previous
version of that config intact. Rows are streamed in Arrow batches: memory does not grow with
the number of records.

Exporting several languages and the card together, `staged_folder` stages the whole folder:
every language and the card are written into a copy (Parquet files hard-linked, not copied),
which replaces the folder only when all of them succeeded. Data and card change together: a
failed language or a killed process leaves the previous folder whole. Both swaps are
`storage.staged_folder`'s; the whole folder is replaced only when it is an export folder the
toolkit wrote (its marker, or the card and `data/<config>/` shards of an older version).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import EnvironmentFault
from ..storage import FolderKind, left_by_killed_runs
from ..storage import staged_folder as staged_swap
from .layout import CARD_FILE, DATA_DIR, SHARD_PATTERN, shard_name
from .making import run_ledger_figures
from .repo_files import refuse_symlinks_out_of
from .review import Review

logger = logging.getLogger(__name__)

BATCH_ROWS = 10_000
MAX_ROWS_PER_FILE = 500_000  # ~600 MB of X-Instruction text: below the hub's 1 GB per-file advice


@dataclass
class ExportResult:
    folder: Path
    config: str
    split: str
    num_examples: int
    files: list[str]


def export_dataset(
    dataset: datasets.Dataset,
    folder: str | Path,
    config: str,
    split: str = "train",
    *,
    max_rows_per_file: int = MAX_ROWS_PER_FILE,
    update_card: bool = True,
    progress: bool = True,
    schema_metadata: dict[bytes, bytes] | None = None,
) -> ExportResult:
    """Write `dataset` as `data/<config>/<split>-*.parquet` in `folder`, replacing that split only,
    then regenerate the folder's card from the data it now holds. `schema_metadata` goes into
    every file's Parquet schema (a review's counts: `review.ReviewCounts`)."""
    folder = Path(folder)
    _refuse_symlinks_out(folder)
    count = max(1, -(-dataset.num_rows // max_rows_per_file))
    table_batches = dataset.with_format("arrow").iter(batch_size=BATCH_ROWS)
    schema = dataset.features.arrow_schema
    if schema_metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **schema_metadata})
    with tqdm(total=dataset.num_rows, desc=f"export {config}/{split}", unit="rec", disable=not progress) as bar:
        files = _write_config_split(folder, config, split, _counting(table_batches, bar), schema, count, max_rows_per_file)
    if update_card:
        from .cards import update_card as regenerate

        regenerate(folder)
    return ExportResult(folder, config, split, dataset.num_rows, files)


def _counting(batches: Iterable[pa.Table], bar: tqdm) -> Iterable[pa.Table]:
    for batch in batches:
        bar.update(batch.num_rows)
        yield batch


def _write_config_split(
    folder: Path, config: str, split: str, batches: Iterable[pa.Table], schema: pa.Schema, count: int, max_rows: int
) -> list[str]:
    def keep_other_splits(old: Path, staging: Path) -> None:
        for file in old.glob("*.parquet"):
            if not file.name.startswith(f"{split}-"):
                shutil.copy2(file, staging / file.name, follow_symlinks=False)  # a link stays a link

    with staged_swap(folder / DATA_DIR / config, seed=keep_other_splits) as staging:
        names = _write_shards(staging, split, batches, schema, count, max_rows)
    return [f"{DATA_DIR}/{config}/{name}" for name in names]


def _write_shards(target: Path, split: str, batches: Iterable[pa.Table], schema: pa.Schema, count: int, max_rows: int) -> list[str]:
    names = [shard_name(split, i, count) for i in range(count)]
    index, rows_in_file, writer = 0, 0, pq.ParquetWriter(target / names[0], schema)
    try:
        for batch in batches:
            offset = 0
            while offset < batch.num_rows:
                if rows_in_file == max_rows:
                    writer.close()
                    index, rows_in_file = index + 1, 0
                    writer = pq.ParquetWriter(target / names[index], schema)
                take = min(max_rows - rows_in_file, batch.num_rows - offset)
                writer.write_table(batch.slice(offset, take).cast(schema))
                offset += take
                rows_in_file += take
    finally:
        writer.close()
    return names


def _is_older_export(folder: Path) -> bool:
    """An export folder written before markers: a card with `configs:` and `data/<config>/` shards."""
    card, data = folder / CARD_FILE, folder / DATA_DIR
    if not card.is_file() or not data.is_dir():
        return False
    with open(card, encoding="utf-8", errors="replace") as f:
        head = f.read(1 << 16)
    if not head.startswith("---") or not re.search(r"^configs:", head, re.M):
        return False
    return any(
        SHARD_PATTERN.match(file.name)
        for config in data.iterdir() if config.is_dir() and not config.name.startswith(".")
        for file in config.iterdir()
    )


EXPORT_FOLDER_KIND = FolderKind("export", "hub-ready export folder", _is_older_export)


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """A staging copy of the export folder `folder` to export into; it replaces `folder` when the
    block succeeds. Refuses (exit 2) a non-empty folder that is not an export the toolkit wrote."""
    _refuse_symlinks_out(Path(folder))
    with staged_swap(folder, EXPORT_FOLDER_KIND, seed=_copy_folder) as staging:
        yield staging


def _copy_folder(folder: Path, staging: Path) -> None:
    """The folder's files into its staging copy. A symbolic link stays a link (never a copy of
    what it points to); a file that cannot be copied stops the export with one line naming it."""
    shutil.rmtree(staging)  # copytree makes the folder itself
    try:
        shutil.copytree(folder, staging, symlinks=True, copy_function=_link_or_copy, ignore=left_by_killed_runs)
    except shutil.Error as error:
        failures = error.args[0] if error.args and isinstance(error.args[0], list) else [(str(folder), "", str(error))]
        source, _, why = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise EnvironmentFault(
            f"cannot copy {source}{more} into the staging copy of {folder}: {why}; "
            "move it out of the folder (or make it readable), then run the same command again"
        ) from error


def _refuse_symlinks_out(folder: Path) -> None:
    """An export into a folder whose card or data is a symlink leaving it stops (exit 2, naming
    the links): the export would describe, and a publish upload, files from elsewhere."""
    if folder.is_dir():
        refuse_symlinks_out_of(folder)


def _link_or_copy(source: str, target: str) -> None:
    """Parquet files are never modified in place (a new export writes new files), so the staging
    copy can share them; the card and the rest are copied, since they are rewritten."""
    if source.endswith(".parquet"):
        try:
            os.link(source, target)
            return
        except OSError as error:  # another filesystem, or no hard links there: copy instead
            logger.debug("hard link %s failed (%s); copying", source, error)
    shutil.copy2(source, target)


def export_language(
    folder: str | Path,
    language: str,
    *,
    source: str = "shards",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    update_card: bool = True,
    review: Review | None = None,
) -> ExportResult:
    """Build one X-Instruction language with the `XInstruction` builder and export it.

    Exporting several languages, pass `update_card=False` and call `cards.update_card(folder)`
    once at the end: each update reads the statistics of every config in the folder.
    `review`: a hand review (`review.py`); its vetoed records are left out, and every record's
    provenance says whether and how it was reviewed. Shards from a run folder's `curated/` carry
    the LLM calls their curation paid into the files' metadata, for the card (`making.py`)."""
    from ..builder import build_language

    dataset = build_language(
        language,
        source=source,
        data_dir=str(data_dir) if data_dir else None,
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    metadata: dict[bytes, bytes] = {}
    if review is not None:
        dataset, counts = review.apply(dataset, language)
        metadata.update(counts.to_metadata())
    # The LLM calls its curation paid, for the card (making.py): found beside a run's curated shards.
    figures = run_ledger_figures(data_dir, language) if source == "shards" and data_dir else None
    if figures is not None:
        metadata.update(figures.to_metadata())
    return export_dataset(dataset, folder, language, "train", progress=progress, update_card=update_card, schema_metadata=metadata or None)
