"""The report of one judged pairing: win/tie/loss/error and Δ (win - loss) of model 1 against
model 2, overall, per language and per AlpacaEval source set within each language (as PLUG's
scoring script breaks a language's run down by set); as a terminal table, as JSON and as a bar
chart of rates per language (PNG, or SVG by the file's suffix); and the judgments in the papers'
own formats (`export_judgments`), so their scripts can be run on our verdicts.

`report.json` holds the counts and the exact rates (`win` and `loss` include the slight ones, which
are also given apart), who was compared, by which judge, protocol, prompt version, mode (strict or
ours, retries on or off) and aggregation, which verdicts came from a retry, and the input problems
counted as errors. The table prints each rate once from its counts, as PLUG's `count_results`
prints them (`f"{count / total:.1%}"`, calculate_pair_judge_score.py line 30): rounding a stored
rate first and then printing it would print 33 of the 806 possible counts out of 805 a tenth of a
point off.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..languages import language_name
from ..storage import AtomicFile, read_jsonl, write_json, write_text
from .aggregate import AGGREGATIONS, group_tallies, nested_tallies, outcome, tally

JUDGMENTS_FILE = "judgments.jsonl"
REPORT_FILE = "report.json"
CHART_FILE = "win_rates.png"
EXPORT_DIR = "export"
EXPORT_FORMATS = ("plug", "xinstruction")
_TABLES = ("overall", "languages", "datasets", "language_datasets", "retried")

AGGREGATION_RULES = {
    ("plug", "per-order"): "PLUG's rule (calculate_pair_judge_score.py): a win in both orders, or a win and a tie, is a win; "
                           "opposite winners or two ties a tie; an error in either order an error",
    ("xinstruction", "per-order"): "ours (X-Instruction's release has no aggregation): the higher score wins each order, "
                                   "the orders combined with PLUG's rule; an order without two scores (their -1) is an error",
    ("xinstruction", "sum"): "ours (X-Instruction's release has no aggregation): each model's scores summed over both orders, "
                             "the higher sum wins; an order without two scores (their -1) makes the item an error",
}


def aggregation_rule(protocol: str, aggregation: str) -> str:
    """What an aggregation is, named as ours where it is ours; an error for a pairing that has none."""
    if (protocol, aggregation) not in AGGREGATION_RULES:
        raise UsageError(f"--aggregation {aggregation} needs scores; protocol {protocol} gives verdicts: use --aggregation per-order (PLUG's rule)")
    return AGGREGATION_RULES[(protocol, aggregation)]


def build_report(judgments: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Counts and rates from judgment records (`judge.JudgeRun.judgments` or a judgments file)."""
    retried: dict[str, list[Any]] = {}
    verdicts = 0
    for judgment in judgments:
        from_retry = [o for o in judgment.get("orders", ()) if o.get("verdict_from") == "sampled_retry"]
        verdicts += len(from_retry)
        if from_retry:
            retried.setdefault(str(judgment.get("config", judgment["language"])), []).append(judgment["id"])
    return {
        **meta,
        "overall": tally(j["outcome"] for j in judgments),
        "languages": group_tallies(judgments, "language"),
        "datasets": group_tallies(judgments, "dataset"),
        "language_datasets": nested_tallies(judgments, "language", "dataset"),
        "retried": {"verdicts": verdicts, "items": sum(map(len, retried.values())), "ids": retried},
    }


def _rate(count: int, items: int, sign: bool = False) -> str:
    if not items:
        return "-"
    return f"{count / items:+.1%}" if sign else f"{count / items:.1%}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table: per language, then per source set within it, overall;
    then what produced the numbers (mode, aggregation, retries, input problems)."""
    header = f"{report.get('model_1', 'model 1')} vs {report.get('model_2', 'model 2')}  (judge {report.get('judge', '?')}, protocol {report.get('protocol', '?')})"
    columns = f"{'group':<24}{'items':>6}{'win':>6}{'tie':>6}{'loss':>6}{'error':>6}{'Δ':>6}{'win%':>8}{'tie%':>8}{'loss%':>8}{'error%':>8}{'Δ%':>8}"
    lines = [header, columns]
    rows: list[tuple[str, dict[str, Any]]] = []
    nested = report.get("language_datasets", {})
    for code, counts in report["languages"].items():
        rows.append((f"{code} {language_name(code)}", counts))
        rows += [(f"  {code} set {name}", c) for name, c in nested.get(code, {}).items()]
    rows.append(("all", report["overall"]))
    for name, c in rows:
        delta = c.get("delta", c["win"] - c["loss"])
        rates = "".join(f"{_rate(c[k], c['items']):>8}" for k in ("win", "tie", "loss", "error")) + f"{_rate(delta, c['items'], sign=True):>8}"
        lines.append(f"{name:<24}{c['items']:>6}{c['win']:>6}{c['tie']:>6}{c['loss']:>6}{c['error']:>6}{delta:>+6d}{rates}")
    lines += _notes(report)
    return "\n".join(lines)


def _notes(report: dict[str, Any]) -> list[str]:
    notes = ["win and loss include the slight ones; Δ = win - loss (PLUG prints its absolute value); rates over all items, errors included"]
    if "aggregation" in report:
        notes.append(f"aggregation {report['aggregation']}: {report.get('aggregation_rule', '')}")
    if report.get("strict"):
        notes.append(f"mode strict: the {report.get('protocol')} paper's script (its settings, its reading of replies, chat messages, "
                     "the bare question, one call per order: no retry)")
    elif "retry" in report:
        retried = report.get("retried", {})
        if report["retry"]:
            notes.append(f"mode ours: an order without a verdict is retried once, sampled (T=0.7): {retried.get('verdicts', 0)} verdicts "
                         f"in {retried.get('items', 0)} items came from it (`verdict_from` in {JUDGMENTS_FILE}; --no-retry turns it off)")
        else:
            notes.append("mode ours, retries off: one greedy call per order")
    for problem in report.get("input_errors", []):
        notes.append(f"counted as errors (--missing-as-error): {problem['message']}")
    return notes


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


def write_judge_report(folder: str | Path, judgments: list[dict[str, Any]], meta: dict[str, Any], chart_name: str = CHART_FILE) -> dict[str, Any]:
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
    with AtomicFile(path, binary=True) as f:
        f.write(picture.getvalue())


def read_judgments(folder: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The judgment records and the report's metadata of a judged pairing."""
    folder = Path(folder)
    path = folder / JUDGMENTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give a folder written by `xinstruction eval judge`")
    meta = {}
    if (folder / REPORT_FILE).is_file():
        old = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        meta = {k: v for k, v in old.items() if k not in _TABLES}
    return list(read_jsonl(path)), meta


def report_from_folder(folder: str | Path, aggregation: str | None = None) -> dict[str, Any]:
    """Rebuild the report of a judged pairing from its judgments file (`eval report`)."""
    return recount(*read_judgments(folder), aggregation)


def recount(judgments: list[dict[str, Any]], meta: dict[str, Any], aggregation: str | None = None) -> dict[str, Any]:
    """The report of judgment records, under another aggregation when asked (the verdicts are
    kept per order, so no call is made)."""
    if aggregation is not None and aggregation != meta.get("aggregation", "per-order"):
        if aggregation not in AGGREGATIONS:
            raise UsageError(f"unknown aggregation {aggregation!r}; aggregations: {', '.join(AGGREGATIONS)}")
        meta = {**meta, "aggregation": aggregation, "aggregation_rule": aggregation_rule(meta.get("protocol", "plug"), aggregation)}
        judgments = [{**j, "outcome": outcome(j["orders"], aggregation)} for j in judgments]
    return build_report(judgments, meta)


# --- the papers' formats -------------------------------------------------------------------------


def export_judgments(judgments: list[dict[str, Any]], meta: dict[str, Any], folder: str | Path, formats: list[str]) -> list[Path]:
    """Write the judgments in each of `formats` under `folder`/export/<format>/<config>/; the paths written."""
    written: list[Path] = []
    for name in formats:
        if name not in EXPORT_FORMATS:
            raise UsageError(f"unknown export format {name!r}; formats: {', '.join(EXPORT_FORMATS)}")
        out = Path(folder) / EXPORT_DIR / name
        by_config: dict[str, list[dict[str, Any]]] = {}
        for judgment in judgments:
            by_config.setdefault(str(judgment["config"]), []).append(judgment)
        for config, group in by_config.items():
            written += (_export_plug if name == "plug" else _export_xinstruction)(group, meta, out / config)
    return written


def _export_plug(judgments: list[dict[str, Any]], meta: dict[str, Any], folder: Path) -> list[Path]:
    """PLUG's shapes: `results.jsonl` as its llm_judge.py writes a pair result (common.py lines
    359-372: question_id, model_1, model_2, g1_winner, g2_winner, judge, g1/g2 judgments, turn),
    where g1 shows model 1 first; and `data.json`, the instruction file its scoring script reads
    beside it (`-data`: id, dataset, and the `category` that script also reads, line 100, set to
    "default" as llm_judge.py does for an item without one, line 57-59). Then:
    `python calculate_pair_judge_score.py -data data.json -results results.jsonl`."""
    judge = [meta.get("judge", ""), "pair-v2" if meta.get("protocol") == "plug" else str(meta.get("prompt_version", ""))]
    results, data = [], []
    for j in judgments:
        first, second = j["orders"]
        results.append({
            "question_id": j["id"], "model_1": meta.get("model_1", "model_1"), "model_2": meta.get("model_2", "model_2"),
            "g1_winner": first["verdict"], "g2_winner": second["verdict"], "judge": judge,
            "g1_judgment": (first["replies"] or [""])[-1], "g2_judgment": (second["replies"] or [""])[-1], "turn": 1,
        })
        data.append({"id": j["id"], "dataset": j["dataset"], "category": j.get("category", "default"), "instruction": j.get("question", "")})
    results_path, data_path = folder / "results.jsonl", folder / "data.json"
    write_text(results_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    write_text(data_path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return [results_path, data_path]


_FILE_PART = re.compile(r"[^A-Za-z0-9_-]+")


def _xinstruction_name(name: str) -> str:
    # Their script names a run by the third dot-separated part of a file name: no dot in a name.
    return _FILE_PART.sub("-", name).strip("-") or "model"


def _export_xinstruction(judgments: list[dict[str, Any]], meta: dict[str, Any], folder: Path) -> list[Path]:
    """X-Instruction's shape: one file per order, as gpt4_eval.py writes it (lines 236 and
    339-347): `gpt4.eval.<answer1>.<answer2>.aug-min-output.jsonl`, a line per item with
    question_id, category, score_1, score_2, gpt4_eval (the reply), answer1, answer2. An order
    without two scores (no reply, or one their script would have crashed on) is written with -1,
    their "no score" value. No `--debug` header: their scripts/evaluate.sh passes `--debug`, which
    puts two lines of settings that are not JSON at the top of the file (gpt4_eval.py lines
    301-306); we write the JSON lines only."""
    if meta.get("protocol") != "xinstruction":
        raise UsageError(f"X-Instruction's format holds 0-10 scores; these judgments are protocol {meta.get('protocol')!r} verdicts: export them as plug")
    names = _xinstruction_name(str(meta.get("model_1", "model_1"))), _xinstruction_name(str(meta.get("model_2", "model_2")))
    written = []
    for position, (answer1, answer2) in enumerate((names, names[::-1])):
        lines = []
        for j in judgments:
            order = j["orders"][position]
            read = order.get("read") or {}
            scores = [read.get(k) if isinstance(read.get(k), int) else -1 for k in ("score1", "score2")]
            shown = (j.get("output_1"), j.get("output_2")) if order["model_1_shown_first"] else (j.get("output_2"), j.get("output_1"))
            lines.append({
                "question_id": j["id"], "category": j.get("category", "default"), "score_1": scores[0], "score_2": scores[1],
                "gpt4_eval": (order["replies"] or [""])[-1], "answer1": shown[0], "answer2": shown[1],
            })
        path = folder / f"gpt4.eval.{answer1}.{answer2}.aug-min-output.jsonl"
        write_text(path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        written.append(path)
    return written
