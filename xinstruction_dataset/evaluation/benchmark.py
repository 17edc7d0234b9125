"""The X-AlpacaEval items an evaluation runs on: the configs asked for, the first `limit` of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..xalpacaeval import REVISION, config_names, config_rows, load_source


def benchmark_rows(
    configs: list[str] | None, *, source_dir: str | Path | None = None, revision: str = REVISION, limit: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """config -> rows `{id, dataset, instruction, language}` in the release's order (every config
    when `configs` is None); the source is read once and checked as `xalpacaeval` does."""
    known = config_names()
    unknown = [c for c in configs or () if c not in known]
    if unknown:
        raise UsageError(f"unknown X-AlpacaEval config(s) {', '.join(unknown)}; configs are: {', '.join(known)}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    source = load_source(source_dir, revision)
    return {config: config_rows(config, source)[:limit] for config in configs or known}
