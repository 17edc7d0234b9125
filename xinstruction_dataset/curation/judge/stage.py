"""Stage 2, judge: label each (instruction, response) pair on the configured scale.

A reply with no readable label is recorded and retried once with the next seed (a new cache key,
so the retry is a real new call); a second malformed reply rejects the pair (`judge:malformed`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...llm.backends.base import LLMRequest
from ...languages import get_language
from ..config import JudgeConfig
from ..pairs import Pair
from ..prompts import load_prompt
from .parsing import parse_label

STOP = ("###",)
ATTEMPTS = 2


@dataclass
class JudgeOutcome:
    judged: list[Pair] = field(default_factory=list)  # labelled pairs, input order
    failed: dict[tuple[str, int], tuple[str, dict[str, Any]]] = field(default_factory=dict)  # tag -> (reason, detail)
    stats: Counter = field(default_factory=Counter)


def judge_request(pair: Pair, config: JudgeConfig, language: str, seed: int) -> LLMRequest:
    prompt = load_prompt("judge", config.prompt).render(
        language=get_language(language).name, instruction=pair.instruction, response=pair.response
    )
    return LLMRequest(prompt=prompt, params=config.sampling.params(seed, STOP))


def judge(pairs: list[Pair], runner, config: JudgeConfig, language: str, seed: int) -> JudgeOutcome:
    """Label `pairs` (tags must be unique) with the judge behind `runner` (a CallRunner)."""
    version = load_prompt("judge", config.prompt).version
    outcome = JudgeOutcome()
    replies: dict[tuple[str, int], list[str]] = {pair.tag: [] for pair in pairs}
    labels: dict[tuple[str, int], tuple[str, float | None]] = {}
    pending = list(pairs)
    for attempt in range(ATTEMPTS):
        requests = [(pair.tag, judge_request(pair, config, language, seed + attempt)) for pair in pending]
        results = {r.tag: r for r in runner.run(requests)}
        retry = []
        for pair in pending:
            result = results[pair.tag]
            if result.completion is None:
                outcome.failed[pair.tag] = ("judge:call_failed", {"error": str(result.error)})
                continue
            replies[pair.tag].append(result.completion.text)
            parsed = parse_label(result.completion.text, config)
            if parsed is None:
                outcome.stats["malformed"] += 1
                retry.append(pair)
            else:
                labels[pair.tag] = parsed
        pending = retry
    for pair in pending:
        outcome.failed[pair.tag] = ("judge:malformed", {"replies": replies[pair.tag]})
    for pair in pairs:
        if pair.tag in labels:
            label, score = labels[pair.tag]
            outcome.stats[label] += 1
            outcome.judged.append(pair.judged(label, score, version))
    return outcome
