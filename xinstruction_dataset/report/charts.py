"""The report's charts: matplotlib figures, embedded in the page as SVG (text kept as text, so
the page stays small and searchable). `Figure` is used without pyplot: no global state."""

from __future__ import annotations

import io
import math
from typing import Iterable

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from ..languages import language_name

# The paper's released figures (Li et al. 2024): instruction 100 ± 85 characters, output means
# 1,000 to 1,290 across languages, sd about 500.
PAPER_LENGTHS = {"instruction": [(100.0, 85.0)], "output": [(1000.0, 500.0), (1290.0, 500.0)]}
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "x-instruction-report", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
LABEL_COLOURS = {"good": "#2e7d32", "needs_refinement": "#f9a825", "bad": "#c62828", "malformed": "#6d4c41"}


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with rc_context(STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # the XML prolog and doctype do not belong inside HTML


def _figure(width: float, height: float) -> Figure:
    with rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def _stacked_bars(names: list[str], parts: list[tuple[str, str, list[float]]], xlabel: str, height: float) -> str:
    """One horizontal bar per name, its `parts` (label, colour, value per name) stacked left to right.
    Call inside the report's `rc_context`."""
    figure = _figure(7.5, height)
    axes = figure.add_subplot()
    left = np.zeros(len(names))
    for label, colour, values in parts:
        values = np.asarray(values, dtype=float)
        axes.barh(names, values, left=left, color=colour, label=label)
        left += values
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.legend(loc="lower right", fontsize=8)
    return _svg(figure)


def funnel_chart(steps: dict[str, list[tuple[str, int]]]) -> str:
    """Main funnel steps per language, as a share of each language's first step."""
    with rc_context(STYLE):
        labels = list(dict.fromkeys(label for language in steps.values() for label, _ in language))
        figure = _figure(7.5, 0.45 * len(labels) * max(1, min(len(steps), 4) / 2) + 1.2)
        axes = figure.add_subplot()
        height = 0.8 / max(1, len(steps))
        for i, (language, found) in enumerate(steps.items()):
            first = found[0][1] if found and found[0][1] else 1
            values = dict(found)
            shares = [100 * values.get(label, 0) / first for label in labels]
            y = np.arange(len(labels)) + i * height
            bars = axes.barh(y, shares, height=height, label=language_name(language))
            axes.bar_label(bars, labels=[f"{values.get(label, 0):,}" for label in labels], fontsize=7, padding=2)
        axes.set_yticks(np.arange(len(labels)) + 0.4 - height / 2, labels)
        axes.invert_yaxis()
        axes.set_xlabel("% of the language's documents in")
        axes.set_xlim(0, 118)
        axes.legend(loc="lower right", fontsize=8)
        return _svg(figure)


def judge_chart(rounds: dict[str, dict[int, dict[str, int]]]) -> str:
    """Judge labels per language and round, as stacked bars of pairs."""
    with rc_context(STYLE):
        rows = [(language, round_, labels) for language, by_round in rounds.items() for round_, labels in sorted(by_round.items())]
        names = [f"{language_name(language)}, round {round_}" for language, round_, _ in rows]
        parts = [(label, colour, [labels.get(label, 0) for _, _, labels in rows]) for label, colour in LABEL_COLOURS.items()]
        # A label no pair got stays out of the legend.
        return _stacked_bars(names, [part for part in parts if any(part[2])], "pairs judged", 0.35 * len(rows) + 1.2)


def length_chart(column: str, lengths: dict[str, list[int]]) -> str:
    """Character lengths of the curated records per language, against the paper's figures."""
    with rc_context(STYLE):
        figure = _figure(7.5, 3.0)
        axes = figure.add_subplot()
        top = max([np.percentile(values, 99) for values in lengths.values() if values] + [m + 3 * s for m, s in PAPER_LENGTHS[column]])
        bins = np.linspace(0, top, 50)
        for language, values in lengths.items():
            if values:
                mean, sd = float(np.mean(values)), float(np.std(values))
                axes.hist(np.clip(values, 0, top), bins=bins, density=True, histtype="step", linewidth=1.5,
                          label=f"{language_name(language)}: {mean:,.0f} ± {sd:,.0f} (n={len(values):,})")
        xs = np.linspace(0, top, 300)
        for mean, sd in PAPER_LENGTHS[column]:
            axes.plot(xs, _normal(xs, mean, sd), "k--", linewidth=1, label=f"paper: {mean:,.0f} ± {sd:,.0f}")
        axes.set_xlabel(f"{column} length (characters)")
        axes.set_ylabel("density")
        axes.legend(fontsize=7)
        return _svg(figure)


def _normal(xs: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((xs - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def histogram_chart(series: dict[str, list[float]], xlabel: str, *, bins: int | Iterable[float] = 30, discrete: bool = False) -> str:
    """One step histogram per named series (counts); `discrete`: one bin per whole number."""
    with rc_context(STYLE):
        figure = _figure(7.5, 2.8)
        axes = figure.add_subplot()
        values_all = [v for values in series.values() for v in values]
        if discrete and values_all and max(values_all) - min(values_all) < 80:
            bins = np.arange(math.floor(min(values_all)) - 0.5, math.ceil(max(values_all)) + 1.5)
        for name, values in series.items():
            if values:
                axes.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{name} (n={len(values):,})")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("count")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
        return _svg(figure)


def cost_chart(stages: dict[str, tuple[int, int, int]]) -> str:
    """Calls per stage: paid, served from the cache, failed."""
    with rc_context(STYLE):
        names = list(stages)
        parts = [
            (part, colour, [stages[name][i] for name in names])
            for i, (part, colour) in enumerate((("paid", "#1565c0"), ("from cache", "#90caf9"), ("failed", "#c62828")))
        ]
        return _stacked_bars(names, parts, "LLM calls", 0.4 * len(stages) + 1.0)
