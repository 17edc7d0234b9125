"""Two orders, one outcome: PLUG's rules (`calculate_pair_judge_score.py`), from model 1's side.

Each order's verdict is first put in model terms (`model_1`, `model_2`, `tie`, `error`), then:

    the same winner in both orders             -> win / loss
    a winner in one order, a tie in the other  -> slight win / slight loss (counted as a win / loss)
    opposite winners, or two ties              -> tie
    an error in either order                   -> error

Percentages are over all items, errors included, as PLUG prints them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

OUTCOMES = ("win", "slight_win", "tie", "slight_loss", "loss", "error")
ORDER_VERDICTS = ("model_1", "model_2", "tie", "error")


def in_model_terms(verdict: str | None, model_1_shown_first: bool) -> str:
    """An order's verdict ("A", "B", "tie" or None) as the model it favours."""
    if verdict is None:
        return "error"
    if verdict == "tie":
        return "tie"
    first, second = ("model_1", "model_2") if model_1_shown_first else ("model_2", "model_1")
    return first if verdict == "A" else second


def combine(one: str, other: str) -> str:
    """The outcome of an item from its two orders' verdicts in model terms (PLUG's winner sets)."""
    verdicts = {one, other}
    if not verdicts <= set(ORDER_VERDICTS):
        raise ValueError(f"order verdicts are {', '.join(ORDER_VERDICTS)}; got {one!r}, {other!r}")
    if "error" in verdicts:
        return "error"
    if verdicts == {"model_1"}:
        return "win"
    if verdicts == {"model_2"}:
        return "loss"
    if verdicts == {"model_1", "tie"}:
        return "slight_win"
    if verdicts == {"model_2", "tie"}:
        return "slight_loss"
    return "tie"  # {model_1, model_2}: the orders disagree; {tie}: both ties


def tally(outcomes: Iterable[str]) -> dict[str, Any]:
    """Counts and rates of a group of items: `win` and `loss` include the slight ones."""
    counts = Counter(outcomes)
    items = sum(counts.values())
    summary: dict[str, Any] = {
        "items": items,
        "win": counts["win"] + counts["slight_win"],
        "slight_win": counts["slight_win"],
        "tie": counts["tie"],
        "loss": counts["loss"] + counts["slight_loss"],
        "slight_loss": counts["slight_loss"],
        "error": counts["error"],
    }
    for key in ("win", "tie", "loss", "error"):
        summary[f"{key}_rate"] = round(summary[key] / items, 4) if items else 0.0
    return summary


def group_tallies(judgments: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """`tally` per value of `key` (`language`, `dataset`), in sorted order."""
    groups: dict[str, list[str]] = {}
    for judgment in judgments:
        groups.setdefault(str(judgment[key]), []).append(judgment["outcome"])
    return {name: tally(groups[name]) for name in sorted(groups)}
