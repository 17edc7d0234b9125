"""`eval judge`: a judge model compares two models' answers item by item, in both orders.

Every item is judged twice, once with model 1's answer shown first and once with model 2's, under
one protocol (`protocols.py`). Ours (the default): an order without a verdict is retried once,
sampled (`retry`); a second unreadable reply is an error, recorded with both replies, never
dropped, and every verdict records where it came from (`verdict_from`: `greedy` or
`sampled_retry`). Strict: the paper's script: one call per order, its settings and reading
rules, the bare question. The two orders are combined by the chosen aggregation
(`aggregate.py`). All calls go through one `CallRunner` and the call cache: a killed judge run
repeats, when run again, only the calls that were in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..llm.backends import GenerationParams, LLMRequest
from ..llm.calls import CallResult, CallRunner
from .aggregate import in_model_terms, outcome
from .inputs import AnswerFile
from .prompts import PromptFile
from .protocols import Protocol, judge_question

ORDERS = (True, False)  # model 1 shown first, then model 2 shown first
CALL_FAILED = "call_failed"
BAD_INPUT = "bad_input"
VERDICT_FROM = ("greedy", "sampled_retry")  # by attempt


@dataclass
class JudgeRun:
    judgments: list[dict[str, Any]]
    failed_calls: int  # calls that failed for good this run (a rerun retries them)


def pair_items(rows: list[dict[str, Any]], answers_1: AnswerFile, answers_2: AnswerFile, config: str, *, strict: bool = False) -> list[dict[str, Any]]:
    """The items of one config in the release's order, each with both answers, or, where an
    answer file has a problem with the item, its `input_error` (counted as an error, never judged)."""
    items = []
    for row in rows:
        item = {**row, "config": config, "judge_question": judge_question({**row, "config": config}, strict=strict)}
        problems = [p for p in (answers_1.problem_of(row["id"]), answers_2.problem_of(row["id"])) if p is not None]
        if problems:
            item["input_error"] = "; ".join(f"{BAD_INPUT}: {p.file}: {p.problem}" for p in problems)
        else:
            item["output_1"], item["output_2"] = answers_1.outputs[row["id"]], answers_2.outputs[row["id"]]
        items.append(item)
    return items


def judge_items(
    items: list[dict[str, Any]], protocol: Protocol, prompt: PromptFile, runner: CallRunner, *,
    chat: bool, strict: bool = False, retry: bool = True, aggregation: str = "per-order",
) -> JudgeRun:
    """Judge every item in both orders: greedy, then (`retry`, never in strict mode) one sampled
    retry of the orders without a verdict."""
    if strict and retry:
        raise UsageError("strict mode makes one call per order, as the papers' scripts: no retry")
    read = protocol.read_strict if strict else protocol.read
    replies: dict[tuple[int, bool], list[str]] = {}
    verdicts: dict[tuple[int, bool], tuple[str | None, dict[str, Any], int]] = {}
    failed: dict[tuple[int, bool], str] = {}
    pending = [(index, order) for index, item in enumerate(items) if "input_error" not in item for order in ORDERS]
    for attempt in (0, 1) if retry else (0,):
        params = protocol.params(attempt, strict=strict)
        requests = [((index, order), _request(items[index], order, protocol, params, prompt, chat)) for index, order in pending]
        pending = []
        for result in runner.run(requests):
            if not _read(result, attempt, read, replies, verdicts, failed):
                pending.append(result.tag)
        pending.sort()
    judgments = [_judgment(item, index, replies, verdicts, failed, aggregation) for index, item in enumerate(items)]
    return JudgeRun(judgments, failed_calls=len(failed))


def _request(item: dict[str, Any], model_1_first: bool, protocol: Protocol, params: GenerationParams, prompt: PromptFile, chat: bool) -> LLMRequest:
    shown = (item["output_1"], item["output_2"]) if model_1_first else (item["output_2"], item["output_1"])
    return prompt.request(protocol.values(item, *shown), params, chat=chat)


def _read(result: CallResult, attempt: int, read, replies: dict, verdicts: dict, failed: dict) -> bool:
    """Record one reply; False when it could not be read (worth a retry)."""
    if result.completion is None:
        failed[result.tag] = str(result.error)
        return True  # a failed call is not retried here: the backend already retried it; a rerun will
    text = result.completion.text
    replies.setdefault(result.tag, []).append(text)
    verdict, what = read(text)
    verdicts[result.tag] = (verdict, what, attempt)
    return verdict is not None


def _judgment(item: dict[str, Any], index: int, replies: dict, verdicts: dict, failed: dict, aggregation: str) -> dict[str, Any]:
    orders = []
    for model_1_first in ORDERS:
        tag = (index, model_1_first)
        verdict, read, attempt = verdicts.get(tag, (None, {}, 0))
        order: dict[str, Any] = {
            "model_1_shown_first": model_1_first,
            "verdict": in_model_terms(verdict, model_1_first),
            "read": {k: v for k, v in read.items() if k != "error"},
            "replies": replies.get(tag, []),
        }
        if "input_error" in item:
            order["error"] = item["input_error"]
        elif tag in failed:
            order["error"] = f"{CALL_FAILED}: {failed[tag]}"
        elif verdict is None:
            order["error"] = read.get("error", "unreadable_verdict")
        else:
            order["verdict_from"] = VERDICT_FROM[attempt]
        orders.append(order)
    record = {
        "config": item["config"],
        "id": item["id"],
        "dataset": item["dataset"],
        "language": item["language"],
        "outcome": "error" if "input_error" in item else outcome(orders, aggregation),
        "retried": any(o.get("verdict_from") == "sampled_retry" for o in orders),
        "orders": orders,
        "question": item["judge_question"],
        "output_1": item.get("output_1"),
        "output_2": item.get("output_2"),
    }
    if "category" in item:
        record["category"] = item["category"]
    return record
