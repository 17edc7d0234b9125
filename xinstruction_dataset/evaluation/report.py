"""The report of one judged pairing: win/tie/loss/error of model 1 against model 2, overall, per
language and per AlpacaEval source set; as a terminal table, as JSON and as a bar chart of
win rates per language (PNG, or SVG by the file's suffix).

`report.json` holds the counts and rates (`win` and `loss` include the slight ones, which are also
given apart), who was compared, by which judge, protocol and prompt version.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from ..languages import language_name
from ..storage import AtomicFile, read_jsonl, write_json
from .aggregate import group_tallies, tally

JUDGMENTS_FILE = "judgments.jsonl"
REPORT_FILE = "report.json"
CHART_FILE = "win_rates.png"
_COLUMNS = ("items", "win", "tie", "loss", "error", "win_rate", "tie_rate", "loss_rate", "error_rate")


def build_report(judgments: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Counts and rates from judgment records (`judge.JudgeRun.judgments` or a judgments file)."""
    return {
        **meta,
        "overall": tally(j["outcome"] for j in judgments),
        "languages": group_tallies(judgments, "language"),
        "datasets": group_tallies(judgments, "dataset"),
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table: one row per language, per source set, and overall."""
    header = f"{report.get('model_1', 'model 1')} vs {report.get('model_2', 'model 2')}  (judge {report.get('judge', '?')}, protocol {report.get('protocol', '?')})"
    lines = [header, f"{'group':<24}{'items':>6}{'win':>6}{'tie':>6}{'loss':>6}{'error':>6}{'win%':>8}{'tie%':>8}{'loss%':>8}{'error%':>8}"]
    rows = [(f"{code} {language_name(code)}", counts) for code, counts in report["languages"].items()]
    rows += [(f"set {name}", counts) for name, counts in report["datasets"].items()]
    rows.append(("all", report["overall"]))
    for name, c in rows:
        rates = "".join(f"{100 * c[f'{k}_rate']:>7.1f}%" for k in ("win", "tie", "loss", "error"))
        lines.append(f"{name:<24}{c['items']:>6}{c['win']:>6}{c['tie']:>6}{c['loss']:>6}{c['error']:>6}{rates}")
    return "\n".join(lines)


def win_rate_chart(report: dict[str, Any]):
    """A matplotlib Figure: per language, stacked bars of win, tie, loss and error rates (in %)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    languages = list(report["languages"])
    figure, axes = plt.subplots(figsize=(max(4.0, 1.0 + 0.9 * len(languages)), 4.0))
    bottom = [0.0] * len(languages)
    for key, colour in (("win", "#2a9d8f"), ("tie", "#e9c46a"), ("loss", "#e76f51"), ("error", "#adb5bd")):
        heights = [100 * report["languages"][code][f"{key}_rate"] for code in languages]
        axes.bar(languages, heights, bottom=bottom, color=colour, label=key)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes.set_ylim(0, 100)
    axes.set_ylabel("% of items")
    axes.set_title(f"{report.get('model_1', 'model 1')} vs {report.get('model_2', 'model 2')} ({report.get('protocol', '')})", fontsize=9)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def write_report(folder: str | Path, judgments: list[dict[str, Any]], meta: dict[str, Any], chart_name: str = CHART_FILE) -> dict[str, Any]:
    """Write judgments.jsonl, report.json and the chart into `folder`; return the report."""
    folder = Path(folder)
    with AtomicFile(folder / JUDGMENTS_FILE) as f:
        for judgment in judgments:
            f.write_json_line(judgment)
    report = build_report(judgments, meta)
    write_json(folder / REPORT_FILE, report)
    save_chart(report, folder / chart_name)
    return report


def save_chart(report: dict[str, Any], path: Path) -> None:
    """Draw the chart and swap it in whole (a kill never leaves half a picture)."""
    import matplotlib.pyplot as plt

    figure = win_rate_chart(report)
    try:
        picture = io.BytesIO()
        figure.savefig(picture, format=path.suffix.lstrip(".") or "png", dpi=120)
    finally:
        plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(picture.getvalue())
    os.replace(tmp, path)


def report_from_folder(folder: str | Path) -> dict[str, Any]:
    """Rebuild the report of a judged pairing from its judgments file (`eval report`)."""
    folder = Path(folder)
    path = folder / JUDGMENTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give a folder written by `xinstruction eval judge`")
    meta = {}
    if (folder / REPORT_FILE).is_file():
        old = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        meta = {k: v for k, v in old.items() if k not in ("overall", "languages", "datasets")}
    return build_report(list(read_jsonl(path)), meta)
