"""The two papers' pairwise judges: what the judge is shown, with which settings, and how its
reply is read; in our default mode and in `strict` mode (the paper's script, exactly).

- `plug`: PLUG's pair-v2 (MT-Bench's pairwise judge plus a sentence on unnatural language). The
  verdict is read as fastchat does (PLUG @ 307a35f, src/evaluate/x-alpacaeval/llm_judge/fastchat/
  llm_judge/common.py lines 301-309): `[[A]]`, else `[[B]]`, else `[[C]]` (a tie), else an error.
  The same rule in both modes.
- `xinstruction`: X-Instruction's GPT-4 judge: integer scores 0-10 for both answers in
  `<score1>` / `<score2>`, read as `extract_score` does (X-Instruction @ 98abc93,
  utils/gpt4_eval.py lines 86-112): the first match of each tag, `int(float(text))`, -1 when a tag
  is missing. Ours (default): a score that is no number or lies outside 0-10 is missing too.
  Strict: an out-of-range score such as 85 is kept, as their script keeps it; a score their
  script would crash on (`8/10`: `float()` raises) is an error of that order, since their
  script stops there and writes nothing. A -1 is their "no score" marker: that order is an
  error in every aggregation (their release aggregates nothing, so this is ours too).

Either way one order's verdict is "A" (the answer shown first is better), "B", "tie", or None
(no verdict). Both orders are combined in `aggregate.py`.

Settings. Default (ours): greedy (temperature 0, seed 0) and, when an order has no verdict, one
sampled retry (temperature 0.7, another seed), since a greedy retry would repeat the same reply.
Strict: neither paper retries, so no retry; PLUG sends `temperature=0, top_p=0` and 1024 tokens
(common.py lines 288-290; `max_tokens_by_model`, lines 56-63), X-Instruction `temperature 0,
top_p 1.0` and 256 tokens (gpt4_eval.py lines 154-171); neither sends a seed. Both send two chat
messages, system then user: X-Instruction builds them (gpt4_eval.py lines 288-291); PLUG's
`run_judge_pair` (common.py lines 281-290) goes through fastchat's conversation template, which
for its judge `gpt-4-0613` (llm_judge.py line 226) is `one_shot` (no adapter claims that name:
ChatGPTAdapter matches only "gpt-3.5-turbo" and "gpt-4", fastchat/model/model_adapter.py line
851), and its example turns lie before `offset`, so `to_openai_api_messages`
(fastchat/conversation.py lines 229-240) sends the pair-v2 system prompt and the user prompt
only. Their judge sees the question as written: X-Instruction's
`question[i]["text"]` (gpt4_eval.py line 283; the target language is a separate field, as in
chatgpt_generation.py lines 22-26), PLUG's `instruction` (llm_judge.py line 60). So strict mode
drops the "Answer in X." our `cross-<code>` configs append (`judge_question`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UsageError
from ..languages import LANGUAGES, language_name
from ..llm.backends.base import GenerationParams

Verdict = str  # "A" | "B" | "tie"
RETRY_SEED = 1
# The error of an order whose reply X-Instruction's script could not have read (it would crash).
SCRIPT_WOULD_CRASH = "script_would_crash"


@dataclass(frozen=True)
class Protocol:
    name: str
    prompt: str  # the packaged prompt file (evaluation/prompts/<prompt>.txt)
    max_new_tokens: int
    values: Callable[[dict[str, Any], str, str], dict[str, str]]  # (row, shown first, shown second) -> prompt fields
    read: Callable[[str], tuple[Verdict | None, dict[str, Any]]]  # reply -> (verdict, what was read): ours
    read_strict: Callable[[str], tuple[Verdict | None, dict[str, Any]]]  # as the paper's script reads it
    strict_top_p: float  # the top_p the paper's script sends (with temperature 0 and no seed)

    def params(self, attempt: int, *, strict: bool = False) -> GenerationParams:
        """Attempt 0 is greedy, as in both papers; the retry (ours) samples with another seed."""
        if strict:
            return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.0, top_p=self.strict_top_p, top_k=0, seed=None)
        if attempt == 0:
            return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.0, top_p=1.0, top_k=0, seed=0)
        return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.7, top_p=0.9, top_k=50, seed=RETRY_SEED)


def judge_question(row: dict[str, Any], *, strict: bool) -> str:
    """The question the judge is shown. Ours: the instruction the model answered. Strict: the
    question as the papers' judges saw it, without the " Answer in X." a `cross-<code>` config
    appends (a row's own `question`, when its loader gives one, is that text)."""
    if not strict:
        return row["instruction"]
    if "question" in row:
        return row["question"]
    instruction = row["instruction"]
    language = LANGUAGES.get(row.get("language", ""))
    if str(row.get("config", "")).startswith("cross-") and language is not None:
        suffix = f" {language.answer_suffix}"
        if instruction.endswith(suffix):
            return instruction[: -len(suffix)]
    return instruction


def read_plug_verdict(reply: str) -> tuple[Verdict | None, dict[str, Any]]:
    """fastchat's order of checks: a reply holding both `[[A]]` and `[[B]]` is A."""
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in reply:
            return verdict, {"mark": mark}
    return None, {}


# `re.search('<score1>(.*?)</score1>', review)`: no DOTALL, so a score split over lines is missing.
_SCORE = {n: re.compile(rf"<score{n}>(.*?)</score{n}>") for n in (1, 2)}
MISSING_SCORE = -1


def extract_score_tag(reply: str, n: int) -> int:
    """`<score{n}>` as `extract_score` reads it: `int(float(text))` of the first match, -1 when
    there is none; raises ValueError or OverflowError where their script does."""
    match = _SCORE[n].search(reply)
    return MISSING_SCORE if match is None else int(float(match.group(1)))


def read_scores(reply: str) -> tuple[int, int]:
    """(score1, score2), ours: as `extract_score` reads them, a missing score -1; where their
    script would crash (a score that is no number) or a score falls outside 0-10, the score is
    missing too."""
    return _score_or_missing(reply, 1), _score_or_missing(reply, 2)


def _score_or_missing(reply: str, n: int) -> int:
    try:
        score = extract_score_tag(reply, n)
    except (ValueError, OverflowError):
        return MISSING_SCORE
    return score if 0 <= score <= 10 else MISSING_SCORE


def read_scores_strict(reply: str) -> tuple[int, int] | str:
    """(score1, score2) exactly as `extract_score` returns them (any integer, -1 when a tag is
    missing), or, where it would raise, the text of the error their script would stop on."""
    scores = []
    for n in (1, 2):
        try:
            scores.append(extract_score_tag(reply, n))
        except (ValueError, OverflowError) as error:  # float('8/10'), int(float('nan')), int(float('inf'))
            return f"{SCRIPT_WOULD_CRASH}: <score{n}>{_SCORE[n].search(reply).group(1)}</score{n}>: {type(error).__name__}: {error}"
    return scores[0], scores[1]


def read_xinstruction_verdict(reply: str) -> tuple[Verdict | None, dict[str, Any]]:
    return _scores_verdict(*read_scores(reply))


def read_xinstruction_verdict_strict(reply: str) -> tuple[Verdict | None, dict[str, Any]]:
    scores = read_scores_strict(reply)
    if isinstance(scores, str):
        return None, {"error": scores}
    return _scores_verdict(*scores)


def _scores_verdict(first: int, second: int) -> tuple[Verdict | None, dict[str, Any]]:
    scores = {"score1": first, "score2": second}
    if MISSING_SCORE in (first, second):
        return None, scores
    return ("A" if first > second else "B" if second > first else "tie"), scores


def _plug_values(row: dict[str, Any], first: str, second: str) -> dict[str, str]:
    return {"question": row["judge_question"], "answer_a": first, "answer_b": second}


def _xinstruction_values(row: dict[str, Any], first: str, second: str) -> dict[str, str]:
    return {"language": language_name(row["language"]), "instruction": row["judge_question"], "output1": first, "output2": second}


PROTOCOLS: dict[str, Protocol] = {
    "plug": Protocol("plug", "judge_plug_pair_v2", 1024, _plug_values, read_plug_verdict, read_plug_verdict,
                     strict_top_p=0.0),
    "xinstruction": Protocol("xinstruction", "judge_xinstruction_v1", 256, _xinstruction_values, read_xinstruction_verdict,
                             read_xinstruction_verdict_strict, strict_top_p=1.0),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UsageError(f"unknown judge protocol {name!r}; protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
