"""The two papers' pairwise judges: what the judge is shown and how its reply is read.

- `plug`: PLUG's pair-v2 (MT-Bench's pairwise judge plus a sentence on unnatural language). The
  verdict is read as fastchat does: `[[A]]`, else `[[B]]`, else `[[C]]` (a tie), else none.
- `xinstruction`: X-Instruction's GPT-4 judge: integer scores 0-10 for both answers in
  `<score1>` / `<score2>`; a missing score is -1 as in the paper, and an order with a -1 has no
  verdict. The higher score wins that order, equal scores are a tie.

Either way one order's verdict is "A" (the answer shown first is better), "B", "tie", or None
(unreadable: retried once, sampled, then an error). Both orders are combined in `aggregate.py`.
Both papers judge greedily (temperature 0); the retry samples (temperature 0.7, another seed)
because a greedy retry would repeat the same reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UsageError
from ..languages import language_name
from ..llm.backends.base import GenerationParams

Verdict = str  # "A" | "B" | "tie"
RETRY_SEED = 1


@dataclass(frozen=True)
class Protocol:
    name: str
    prompt: str  # the packaged prompt file (evaluation/prompts/<prompt>.txt)
    max_new_tokens: int
    values: Callable[[dict[str, Any], str, str], dict[str, str]]  # (row, shown first, shown second) -> prompt fields
    read: Callable[[str], tuple[Verdict | None, dict[str, Any]]]  # reply -> (verdict, what was read)

    def params(self, attempt: int) -> GenerationParams:
        """Attempt 0 is greedy, as in both papers; the retry samples with another seed."""
        if attempt == 0:
            return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.0, top_p=1.0, top_k=0, seed=0)
        return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.7, top_p=0.9, top_k=50, seed=RETRY_SEED)


def read_plug_verdict(reply: str) -> tuple[Verdict | None, dict[str, Any]]:
    """fastchat's order of checks: a reply holding both `[[A]]` and `[[B]]` is A."""
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in reply:
            return verdict, {"mark": mark}
    return None, {}


_SCORE = {n: re.compile(rf"<score{n}>(.*?)</score{n}>") for n in (1, 2)}
MISSING_SCORE = -1


def read_scores(reply: str) -> tuple[int, int]:
    """(score1, score2) as X-Instruction's `extract_score` reads them; a missing score is -1.
    Where the paper's script would crash (a score that is no number) or a score falls outside
    0-10, the score is missing too."""
    return _score(reply, 1), _score(reply, 2)


def _score(reply: str, n: int) -> int:
    match = _SCORE[n].search(reply)
    if match is None:
        return MISSING_SCORE
    try:
        score = int(float(match.group(1)))
    except (ValueError, OverflowError):
        return MISSING_SCORE
    return score if 0 <= score <= 10 else MISSING_SCORE


def read_xinstruction_verdict(reply: str) -> tuple[Verdict | None, dict[str, Any]]:
    first, second = read_scores(reply)
    scores = {"score1": first, "score2": second}
    if MISSING_SCORE in (first, second):
        return None, scores
    return ("A" if first > second else "B" if second > first else "tie"), scores


def _plug_values(row: dict[str, Any], first: str, second: str) -> dict[str, str]:
    return {"question": row["instruction"], "answer_a": first, "answer_b": second}


def _xinstruction_values(row: dict[str, Any], first: str, second: str) -> dict[str, str]:
    return {"language": language_name(row["language"]), "instruction": row["instruction"], "output1": first, "output2": second}


PROTOCOLS: dict[str, Protocol] = {
    "plug": Protocol("plug", "judge_plug_pair_v2", 1024, _plug_values, read_plug_verdict),
    "xinstruction": Protocol("xinstruction", "judge_xinstruction_v1", 256, _xinstruction_values, read_xinstruction_verdict),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UsageError(f"unknown judge protocol {name!r}; protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
