"""Where the shared human-written corpora live, and small readers for tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

from xinstruction_dataset.languages import LANGUAGE_CODES

CORPORA_DIR = Path(os.environ.get("XINSTRUCTION_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))


def corpus_path(name: str) -> Path:
    """`<code>.jsonl` or `noise.jsonl`; fails with the fix when the shared corpora are missing."""
    path = CORPORA_DIR / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the tests need ../shared/corpora beside the repository "
            "(or set XINSTRUCTION_CORPORA to the corpora folder)"
        )
    return path


def read_corpus(name: str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(corpus_path(name), encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


ALL_LANGUAGES = LANGUAGE_CODES
