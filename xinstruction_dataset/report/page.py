"""The page: `index.html` rendered from a Jinja2 template, with its script and style beside it.

The page context is built here from what `collect` gathered and what `funnel` and `cost` read;
the template only lays it out. Charts are matplotlib SVG (`charts.py`), embedded inline.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import __version__
from ..languages import language_name
from . import charts
from .collect import Collected
from .cost import RunCost
from .funnel import funnel_steps, judge_rounds, reject_reasons
from .run_files import RunFiles

ASSETS = ("report.js", "report.css")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("xinstruction_dataset.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["thousands"] = lambda n: "–" if n is None else f"{n:,}"
    environment.filters["language_name"] = language_name
    environment.filters["number"] = lambda x, digits=1: "–" if x is None else f"{x:,.{digits}f}"
    return environment


def render_page(folder: Path, run: RunFiles, collected: Collected, cost: RunCost, samples: int) -> Path:
    """Write `index.html` and its assets into `folder` (the report being built)."""
    html = _environment().get_template("index.html.j2").render(**page_context(run, collected, cost, samples))
    (folder / "index.html").write_text(html, encoding="utf-8")
    templates = resources.files("xinstruction_dataset.report").joinpath("templates")
    for asset in ASSETS:
        with resources.as_file(templates.joinpath(asset)) as source:
            shutil.copyfile(source, folder / asset)
    return folder / "index.html"


def page_context(run: RunFiles, collected: Collected, cost: RunCost, samples: int) -> dict[str, Any]:
    steps = {files.language: funnel_steps(files.filter_summary, files.curation_summary) for files in run.languages}
    rounds = {files.language: judge_rounds(files.curation_summary) for files in run.languages}
    rounds = {language: found for language, found in rounds.items() if found}
    dist = collected.distributions
    lengths = {column: {lang: v[column] for lang, v in dist.lengths.items() if v[column]} for column in ("instruction", "output")}
    scores = {language_name(lang): v for lang, v in dist.scores.items() if v}
    clusters = {language_name(lang): list(c.values()) for lang, c in dist.clusters.items() if c}
    return {
        "run": str(run.root),
        "version": __version__,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "languages": [files.language for files in run.languages],
        "funnel_rows": _funnel_rows(steps),
        "funnel_svg": charts.funnel_chart({lang: [(s.label, s.count) for s in found if s.main] for lang, found in steps.items() if found}),
        "judge_svg": charts.judge_chart(rounds) if rounds else None,
        "reasons": _reasons(run, collected),
        "length_rows": _length_rows(dist.lengths),
        "instruction_svg": charts.length_chart("instruction", lengths["instruction"]) if lengths["instruction"] else None,
        "output_svg": charts.length_chart("output", lengths["output"]) if lengths["output"] else None,
        "lang_prob_svg": _lang_prob(dist.lang_prob),
        "score_svg": charts.histogram_chart(scores, "judge score", discrete=True) if scores else None,
        "cluster_svg": charts.histogram_chart(clusters, "pairs in a cluster", discrete=True) if clusters else None,
        "cost": cost,
        "cost_rows": [*cost.stages.values(), *([cost.unclassed] if cost.unclassed.paid or cost.unclassed.failed else [])],
        "cost_total": cost.total,
        "projection": cost.projection(),
        "cost_svg": charts.cost_chart({c.stage: (c.paid, c.from_cache, c.failed) for c in cost.stages.values()}),
        "samples": samples,
    }


def _funnel_rows(steps: dict[str, list]) -> list[dict[str, Any]]:
    """One row per step found in any language (in pipeline order), one cell per language."""
    rows: dict[str, dict[str, Any]] = {}
    for language, found in steps.items():
        for step in found:
            row = rows.setdefault(step.key, {"key": step.key, "label": step.label, "main": step.main, "counts": {}})
            row["counts"][language] = step.count
    return list(rows.values())


def _reasons(run: RunFiles, collected: Collected) -> list[dict[str, Any]]:
    found = []
    for files in run.languages:
        for reason in reject_reasons(files.filter_summary, files.curation_summary):
            found.append({
                "language": files.language, "stage": reason.stage, "reason": reason.reason, "count": reason.count,
                "examples": collected.examples.get((files.language, reason.reason), []),
                "in_browser": reason.stage not in ("filter", "quarantine"),
            })
    return found


def _length_rows(lengths: dict[str, dict[str, list[int]]]) -> list[dict[str, Any]]:
    rows = []
    for language, columns in lengths.items():
        row = {"language": language}
        for column, values in columns.items():
            row[column] = f"{np.mean(values):,.0f} ± {np.std(values):,.0f}" if values else "–"
        rows.append(row)
    return rows


def _lang_prob(found: dict[str, dict[str, list[float]]]) -> str | None:
    series = {}
    for language, parts in found.items():
        for part, values in parts.items():
            if values:
                series[f"{language_name(language)}, {part}"] = values
    if not series:
        return None
    low = min(min(values) for values in series.values())
    return charts.histogram_chart(series, "detected-language probability", bins=np.linspace(min(low, 0.9), 1.0, 41))
