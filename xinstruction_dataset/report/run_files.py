"""What a report reads of a run folder (paths from `layout.RunLayout`), and nothing else.

A report sits downstream of every step: it reads the filter and curation summaries, the curated
shards, the curation rejects and work files, and the filtered documents and rejects (through
filtering/kept.py, the one reader of a filtered folder: its manifest and removal list, or an
older run's merged files), but never writes them. Big files are streamed; the filtered documents
and the pool pairs are reached by byte offset (`LineIndex`), so joining a reject to its
document's text needs no file in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import CorruptFile
from ..filtering.kept import KeptDocuments, open_kept
from ..layout import RunLayout


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise _damaged(path, error) from None


def _damaged(path: Path, error: Exception, line: int | None = None) -> CorruptFile:
    where = f"{path}, line {line}" if line else str(path)
    return CorruptFile(f"{where}: damaged ({error}); run the command that wrote it again, or pass another run folder")


@dataclass
class LanguageFiles:
    """The summaries and data files of one language of a run."""

    language: str
    layout: RunLayout
    filter_summary: dict[str, Any] = field(default_factory=dict)
    curation_summary: dict[str, Any] = field(default_factory=dict)

    def kept(self) -> KeptDocuments | None:
        """The filter's kept documents (None: the folder has none)."""
        return open_kept(self.layout.filtered(self.language))

    def kept_index(self) -> "LineIndex":
        """A `LineIndex` over the kept documents (removed rows left out), filled by `scan`."""
        return LineIndex.of_kept(self.kept())

    def filter_rejects(self) -> Iterator[dict[str, Any]]:
        """The filter's rejects, in the order a merged rejects.jsonl held them."""
        kept = self.kept()
        if kept is None:
            return
        number = 0
        try:
            for number, row in enumerate(kept.rejects(), start=1):  # noqa: B007 - `number` names the bad row below
                yield row
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise _damaged(kept.where, error, number + 1) from None

    def curated_files(self) -> list[Path]:
        return sorted(self.layout.curated(self.language).glob("*.jsonl"))

    def pair_files(self) -> list[Path]:
        return sorted((self.layout.language_dir(self.language) / "work").glob("pairs-*.jsonl"))

    @property
    def rejects_file(self) -> Path:
        return self.layout.rejects(self.language)


@dataclass
class RunFiles:
    """A finished (or partly finished) run folder."""

    root: Path
    languages: list[LanguageFiles]
    config: dict[str, Any]  # the resolved `curation:` config the run wrote, or {}

    @classmethod
    def open(cls, root: str | Path) -> "RunFiles":
        layout = RunLayout(Path(root))
        if not layout.root.is_dir():
            raise FileNotFoundError(f"run folder {layout.root} does not exist: pass the output_dir of a filter, curate or build run")
        codes = sorted(
            {p.parent.name for p in (layout.root / "curation").glob("*/summary.json")}
            | {p.parent.name for p in (layout.root / "filtered").glob("*/summary.json")}
            | {p.parent.parent.name for p in (layout.root / "filtered").glob("*/shard-*/summary.json")}
        )
        if not codes:
            raise FileNotFoundError(
                f"{layout.root} holds no filter or curation summary (filtered/<lang>/summary.json, curation/<lang>/summary.json): "
                "run `xinstruction build RECIPE` (or filter and curate) into it first"
            )
        languages = [
            LanguageFiles(code, layout, _filter_summary(layout, code), read_json(layout.summary(code)))
            for code in codes
        ]
        config = yaml.safe_load(layout.config_file.read_text(encoding="utf-8")) if layout.config_file.is_file() else {}
        return cls(layout.root, languages, (config or {}).get("curation") or {})

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)


def _filter_summary(layout: RunLayout, language: str) -> dict[str, Any]:
    """The language's filter summary; a sharded filter run's shard summaries, added up."""
    single = layout.filtered(language) / "summary.json"
    if single.is_file():
        return read_json(single)
    total: dict[str, Any] = {"documents_in": 0, "kept": 0, "rejected": {}, "quarantined": {}}
    for path in sorted(layout.filtered(language).glob("shard-*/summary.json")):
        part = read_json(path)
        total["documents_in"] += part.get("documents_in", 0)
        total["kept"] += part.get("kept", 0)
        for key in ("rejected", "quarantined"):
            for reason, n in part.get(key, {}).items():
                total[key][reason] = total[key].get(reason, 0) + n
    return total if total["documents_in"] else {}


def iter_jsonl(files: list[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        with open(path, encoding="utf-8") as f:
            number = 0
            try:
                for number, line in enumerate(f, start=1):  # noqa: B007 - `number` names the bad line below
                    if line.strip():
                        yield json.loads(line)
            except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
                raise _damaged(path, error, number) from None


class LineIndex:
    """Byte offsets of the JSON lines of some files, by a key of each line: `get(key)` reads that
    one line back. Memory holds the keys and offsets, never the text."""

    def __init__(self, files: list[Path], lines: Iterator[tuple[Path, int, bytes]] | None = None) -> None:
        self.files = files
        self.offsets: dict[str, tuple[int, int]] = {}
        self._handles: dict[int, Any] = {}
        self._lines = lines  # (file, offset, line) to scan instead of every line of `files`

    @classmethod
    def of_kept(cls, kept: KeptDocuments | None) -> "LineIndex":
        """Over a filtered folder's documents: its removed rows are not scanned (nor found)."""
        if kept is None:
            return cls([])
        files = [file for part in kept.parts for file in part.files]
        return cls(files, kept.lines())

    def add(self, key: str, file_index: int, offset: int) -> None:
        self.offsets.setdefault(key, (file_index, offset))

    def scan(self, key_of) -> Iterator[dict[str, Any]]:
        """Read every line once, index it under `key_of(row)`, and yield the row."""
        if self._lines is not None:
            numbers = {path: index for index, path in enumerate(self.files)}
            for path, offset, line in self._lines:
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise _damaged(path, error) from None
                self.add(key_of(row), numbers[path], offset)
                yield row
            return
        for index, path in enumerate(self.files):
            with open(path, "rb") as f:
                offset = 0
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except ValueError as error:
                            raise _damaged(path, error, number) from None
                        self.add(key_of(row), index, offset)
                        yield row
                    offset += len(line)

    def get(self, key: str) -> dict[str, Any] | None:
        where = self.offsets.get(key)
        if where is None:
            return None
        index, offset = where
        handle = self._handles.get(index)
        if handle is None:
            handle = self._handles[index] = open(self.files[index], "rb")
        handle.seek(offset)
        return json.loads(handle.readline())

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
