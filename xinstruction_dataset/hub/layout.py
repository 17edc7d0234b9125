"""The hub-ready folder layout, and a scan of what a folder holds.

    <folder>/README.md                                   the card; YAML `configs:` per config
    <folder>/data/<config>/<split>-00000-of-00003.parquet

Counts come from Parquet footers, so scanning a folder of millions of records reads kilobytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

DATA_DIR = "data"
CARD_FILE = "README.md"
_SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
SHARD_PATTERN = _SHARD_NAME  # what an export writes: `shard_name`


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


@dataclass
class SplitLayout:
    files: list[str] = field(default_factory=list)  # relative to the folder, posix
    num_examples: int = 0
    num_bytes: int = 0  # on-disk Parquet bytes

    @property
    def pattern(self) -> str:
        """The `data_files` glob for this split (`data/sw/train-*`)."""
        first = Path(self.files[0])
        split = _SHARD_NAME.match(first.name).group("split")
        return f"{first.parent.as_posix()}/{split}-*"


@dataclass
class FolderLayout:
    root: Path
    configs: dict[str, dict[str, SplitLayout]] = field(default_factory=dict)

    def num_examples(self, config: str) -> int:
        return sum(split.num_examples for split in self.configs[config].values())


def scan_folder(folder: str | Path) -> FolderLayout:
    """List configs, splits, files and row counts of a hub-ready folder."""
    root = Path(folder)
    data = root / DATA_DIR
    if not data.is_dir():
        return FolderLayout(root=root)
    listed = [
        file.relative_to(root).as_posix()
        for config_dir in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
        for file in config_dir.glob("*.parquet")
    ]
    return layout_of(root, listed)


def layout_of(root: str | Path, files: list[str]) -> FolderLayout:
    """The layout of `root` given its files (relative posix paths), e.g. from a walk already done:
    `data/<config>/<split>-*.parquet` files count, the rest is ignored."""
    root = Path(root)
    layout = FolderLayout(root=root)
    for relative in sorted(files, key=lambda path: path.split("/")):
        parts = relative.split("/")
        match = _SHARD_NAME.match(parts[-1])
        if len(parts) != 3 or parts[0] != DATA_DIR or parts[1].startswith(".") or not match:
            continue
        split = layout.configs.setdefault(parts[1], {}).setdefault(match.group("split"), SplitLayout())
        file = root / relative
        split.files.append(relative)
        split.num_examples += pq.ParquetFile(file).metadata.num_rows
        split.num_bytes += file.stat().st_size
    return layout
