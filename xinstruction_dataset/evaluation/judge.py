"""`eval judge`: a judge model compares two models' answers item by item, in both orders.

Every item is judged twice, once with model 1's answer shown first and once with model 2's, under
one protocol (`protocols.py`). An unreadable reply is retried once, sampled; a second unreadable
reply is an error, recorded with both replies, never dropped. The two orders are combined with
PLUG's rules (`aggregate.py`). All calls go through one `CallRunner` and the call cache: a killed
judge run repeats, when run again, only the calls that were in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..llm.backends import LLMRequest, backend_config
from ..llm.calls import CallResult, CallRunner
from .aggregate import combine, in_model_terms
from .prompts import PromptFile
from .protocols import Protocol

logger = logging.getLogger(__name__)

ORDERS = (True, False)  # model 1 shown first, then model 2 shown first
CALL_FAILED = "call_failed"


@dataclass
class JudgeRun:
    judgments: list[dict[str, Any]]
    failed_calls: int  # calls that failed for good this run (a rerun retries them)


def uses_chat(spec: dict[str, Any]) -> bool:
    """Whether the judge's backend takes system and user messages (a `chat` route)."""
    kind, config = backend_config(spec)
    return kind == "tgi" and getattr(config, "route", "") == "chat"


def pair_items(rows: list[dict[str, Any]], answers_1: dict[int, dict[str, Any]], answers_2: dict[int, dict[str, Any]], config: str) -> list[dict[str, Any]]:
    """The items of one config both models answered, in the release's order."""
    items = [
        {**row, "config": config, "output_1": answers_1[row["id"]]["output"], "output_2": answers_2[row["id"]]["output"]}
        for row in rows
        if row["id"] in answers_1 and row["id"] in answers_2
    ]
    if len(items) < len(rows):
        logger.warning("%s: %d of %d items lack an answer of one model; judging the %d both answered", config, len(rows) - len(items), len(rows), len(items))
    return items


def judge_items(items: list[dict[str, Any]], protocol: Protocol, prompt: PromptFile, runner: CallRunner, *, chat: bool) -> JudgeRun:
    """Judge every item in both orders (greedy, then one sampled retry of unreadable replies)."""
    replies: dict[tuple[int, bool], list[str]] = {}
    verdicts: dict[tuple[int, bool], tuple[str | None, dict[str, Any]]] = {}
    failed: dict[tuple[int, bool], str] = {}
    pending = [(index, order) for index in range(len(items)) for order in ORDERS]
    for attempt in (0, 1):
        requests = [((index, order), _request(items[index], order, attempt, protocol, prompt, chat)) for index, order in pending]
        pending = []
        for result in runner.run(requests):
            tag = result.tag
            if not _read(result, protocol, replies, verdicts, failed):
                pending.append(tag)
        pending.sort()
    judgments = [_judgment(items[index], index, replies, verdicts, failed) for index in range(len(items))]
    return JudgeRun(judgments, failed_calls=len(failed))


def _request(item: dict[str, Any], model_1_first: bool, attempt: int, protocol: Protocol, prompt: PromptFile, chat: bool) -> LLMRequest:
    shown = (item["output_1"], item["output_2"]) if model_1_first else (item["output_2"], item["output_1"])
    return prompt.request(protocol.values(item, *shown), protocol.params(attempt), chat=chat)


def _read(result: CallResult, protocol: Protocol, replies: dict, verdicts: dict, failed: dict) -> bool:
    """Record one reply; False when it could not be read (worth the retry)."""
    if result.completion is None:
        failed[result.tag] = str(result.error)
        return True  # a failed call is not retried here: the backend already retried it; a rerun will
    text = result.completion.text
    replies.setdefault(result.tag, []).append(text)
    verdicts[result.tag] = protocol.read(text)
    return verdicts[result.tag][0] is not None


def _judgment(item: dict[str, Any], index: int, replies: dict, verdicts: dict, failed: dict) -> dict[str, Any]:
    orders = []
    for model_1_first in ORDERS:
        tag = (index, model_1_first)
        verdict, read = verdicts.get(tag, (None, {}))
        order: dict[str, Any] = {
            "model_1_shown_first": model_1_first,
            "verdict": in_model_terms(verdict, model_1_first),
            "read": read,
            "replies": replies.get(tag, []),
        }
        if tag in failed:
            order["error"] = f"{CALL_FAILED}: {failed[tag]}"
        elif verdict is None:
            order["error"] = "unreadable_verdict"
        orders.append(order)
    return {
        "config": item["config"],
        "id": item["id"],
        "dataset": item["dataset"],
        "language": item["language"],
        "outcome": combine(orders[0]["verdict"], orders[1]["verdict"]),
        "orders": orders,
    }
