"""A language's filter output as tests compare it, read the way curation reads it: through
filtering/kept.py (the task files less the removal list), never a merged copy."""

from __future__ import annotations

import json
from pathlib import Path

from xinstruction_dataset.filtering.kept import open_kept


def kept_lines(folder: Path) -> list[str]:
    """The documents' JSON lines, in order (what a merged kept.jsonl held)."""
    found = open_kept(Path(folder))
    assert found is not None, f"no filtered documents in {folder}"
    return [line.decode("utf-8") for _, _, line in found.lines()]


def kept_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in kept_lines(folder)]


def reject_rows(folder: Path) -> list[dict]:
    found = open_kept(Path(folder))
    assert found is not None, f"no filtered documents in {folder}"
    return list(found.rejects())


def language_files(folder: Path) -> dict[str, bytes]:
    """Everything a language's readers see, as bytes: documents, rejects, quarantine, manifest
    and removal list."""
    folder = Path(folder)
    return {
        "kept": "".join(kept_lines(folder)).encode(),
        "rejects": "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in reject_rows(folder)).encode(),
        **{name: (folder / name).read_bytes() for name in ("quarantine.jsonl", "manifest.json", "removals.jsonl")},
    }
