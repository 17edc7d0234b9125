"""The run report: one folder (`index.html` and its data files) that shows where a run's
documents went, what the judge said, how long the texts are, what it cost, and every curated and
rejected pair, with a review loop (accept / veto, downloaded as `review.jsonl`, applied by
`xinstruction export --review`). It opens from disk with no network and no server.

    report/index.html        the page (Jinja2 template, matplotlib SVG charts inline)
    report/report.js, .css   its script and style
    report/data/             the sample browser's data, compressed and paged (samples.py)

The report reads a run's outputs and writes only its own folder, which replaces the previous
report whole when it is complete (`storage.staged_folder`: a staging folder, then renames). It
replaces only a report folder: one with its marker, or an older version's `index.html` with
its script, style and data files; any other non-empty folder is refused (exit 2), never deleted.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..layout import RunLayout
from ..storage import MARKER_FILE, FolderKind, staged_folder
from .collect import Collected, collect_language
from .cost import recorded_prices, run_cost
from .data_files import DATA_FOLDER
from .page import ASSETS, render_page
from .run_files import RunFiles
from .samples import SampleBook



@dataclass
class ReportResult:
    folder: Path
    samples: int
    seconds: float

    @property
    def index(self) -> Path:
        return self.folder / "index.html"


def _is_older_report(folder: Path) -> bool:
    """A report folder written before markers: its page, script and style, and only data files."""
    names = {p.name for p in folder.iterdir()} - {MARKER_FILE}
    if not {"index.html", *ASSETS} <= names or not names <= {"index.html", *ASSETS, DATA_FOLDER}:
        return False
    data = folder / DATA_FOLDER
    return not data.exists() or (data.is_dir() and all(p.is_dir() or p.suffix == ".js" for p in data.rglob("*")))


REPORT_FOLDER_KIND = FolderKind("report", "run report folder", _is_older_report)


def default_report_folder(run_dir: str | Path) -> Path:
    return RunLayout(Path(run_dir)).report_folder


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, cache: str | Path | None = None, progress: bool = True) -> ReportResult:
    """Write the report of the run in `run_dir` into `out_dir` (default `<run_dir>/report`).
    `cache`: the run's call cache, when the recipe put it elsewhere than `<run_dir>/cache`."""
    started = time.perf_counter()
    run = RunFiles.open(run_dir)
    folder = Path(out_dir) if out_dir else default_report_folder(run.root)
    with staged_folder(folder, REPORT_FOLDER_KIND) as staging:
        summaries = [files.curation_summary for files in run.languages if files.curation_summary]
        curated = sum(summary.get("curated", 0) for summary in summaries)
        with ThreadPoolExecutor(1, thread_name_prefix="report-cost") as background:
            # The cache is read while the samples are written: SQLite works without the GIL.
            prices, currency = recorded_prices(run.layout.ledger_file)
            cost = background.submit(run_cost, Path(cache) if cache else _cache_of(run), run.config, summaries, curated, prices, currency)
            book, collected = SampleBook(staging), Collected()
            try:
                for files in run.languages:
                    collect_language(files, book, collected, progress=progress)
            except BaseException:
                book.abort()
                raise
            book.close()
            cost = cost.result()
        render_page(staging, run, collected, cost, book.count)
    return ReportResult(folder, book.count, time.perf_counter() - started)


def _cache_of(run: RunFiles) -> Path:
    """The run's call cache: the recipe's `curation.cache` when it is absolute (a relative one is
    relative to the recipe, which a run folder does not name: pass `cache`), else the default."""
    configured = Path(run.config.get("cache") or "")
    return configured if configured.is_absolute() else run.layout.default_cache()
