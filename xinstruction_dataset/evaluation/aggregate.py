"""Two orders, one outcome, from model 1's side.

Each order's verdict is first put in model terms (`model_1`, `model_2`, `tie`, `error`): the same
vocabulary as PLUG's `g1_winner` / `g2_winner`. Then one of the aggregations:

- `per-order` (the default). For `--protocol plug` this is PLUG's own rule
  (PLUG @ 307a35f, src/evaluate/x-alpacaeval/llm_judge/calculate_pair_judge_score.py lines 71-95):

      the same winner in both orders             -> win / loss
      a winner in one order, a tie in the other  -> slight win / slight loss (counted as a win / loss)
      opposite winners, or two ties              -> tie
      an error in either order                   -> error

  For `--protocol xinstruction` it is ours: X-Instruction's release (ZNLP/X-Instruction @ 98abc93)
  writes `score_1`/`score_2` per order and aggregates nothing (its scripts/evaluate.sh does not
  even pass `bash -n`). The higher score wins each order, equal scores tie, and the orders are
  combined with PLUG's rule above.
- `sum` (ours, `--protocol xinstruction` only): the other reading their scripts leave open. Each
  model's scores are summed over both orders; the higher sum wins, equal sums tie; an order
  without two scores is an error. It can flip items: model 1 ahead 6-5 in one order and model 2
  ahead 9-1 in the other is a tie per order, a loss summed (7 against 14).

Rates are over all items, errors included, as PLUG prints them (its `count_results`, lines 20-36).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

OUTCOMES = ("win", "slight_win", "tie", "slight_loss", "loss", "error")
ORDER_VERDICTS = ("model_1", "model_2", "tie", "error")
AGGREGATIONS = ("per-order", "sum")
COUNTED = ("win", "tie", "loss", "error")


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


def model_scores(order: dict[str, Any]) -> tuple[int, int] | None:
    """(model 1's score, model 2's score) of one judged order, or None when it has no two scores."""
    if order.get("verdict") == "error":
        return None
    read = order.get("read") or {}
    first, second = read.get("score1"), read.get("score2")
    if not isinstance(first, int) or not isinstance(second, int):
        return None
    return (first, second) if order["model_1_shown_first"] else (second, first)


def combine_sum(orders: list[dict[str, Any]]) -> str:
    """`sum`: each model's scores added over both orders; the higher total wins."""
    scores = [model_scores(order) for order in orders]
    if any(s is None for s in scores):
        return "error"
    model_1, model_2 = sum(s[0] for s in scores), sum(s[1] for s in scores)
    return "win" if model_1 > model_2 else "loss" if model_2 > model_1 else "tie"


def outcome(orders: list[dict[str, Any]], aggregation: str = "per-order") -> str:
    """The outcome of an item from its judged orders (`judge.py`'s records) under `aggregation`."""
    if aggregation == "per-order":
        return combine(orders[0]["verdict"], orders[1]["verdict"])
    if aggregation == "sum":
        return combine_sum(orders)
    raise ValueError(f"unknown aggregation {aggregation!r}; aggregations: {', '.join(AGGREGATIONS)}")


def tally(outcomes: Iterable[str]) -> dict[str, Any]:
    """Counts and rates of a group of items: `win` and `loss` include the slight ones; `delta` is
    win - loss. Rates are the exact quotients (a table rounds them once, when printing)."""
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
    summary["delta"] = summary["win"] - summary["loss"]
    for key in (*COUNTED, "delta"):
        summary[f"{key}_rate"] = summary[key] / items if items else 0.0
    return summary


def group_tallies(judgments: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """`tally` per value of `key` (`language`, `dataset`), in sorted order."""
    groups: dict[str, list[str]] = {}
    for judgment in judgments:
        groups.setdefault(str(judgment[key]), []).append(judgment["outcome"])
    return {name: tally(groups[name]) for name in sorted(groups)}


def nested_tallies(judgments: list[dict[str, Any]], outer: str, inner: str) -> dict[str, dict[str, dict[str, Any]]]:
    """`tally` per `outer` value, then per `inner` value within it (per language, per source set)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for judgment in judgments:
        groups.setdefault(str(judgment[outer]), []).append(judgment)
    return {name: group_tallies(groups[name], inner) for name in sorted(groups)}
