"""Stage 2, judge: label each (instruction, response) pair of a document on the configured scale,
keep the best (label, score, then the lowest candidate number) and route the document.

A reply with no readable label is retried once with the next seed (a new cache key, so the retry
is a real new call); a second malformed reply drops the pair (`judge:malformed`). A document whose
pairs all fail is rejected with the first pair's reason. The best pair's label decides the route:
`good` is done, `bad` is rejected, `needs_refinement` goes to refinement while rounds are left;
after the last round it is rejected (`refine:rounds_exhausted`) or kept (`keep_exhausted`).

Every reply (with the round, candidate, attempt, the instruction judged and what it was read as)
goes with the document to the language's `judge_replies.jsonl`, so a reader can check a label
against the text it came from; the records stay as they are.
"""

from __future__ import annotations

from ...languages import get_language
from ...llm.backends.base import LLMRequest
from ...llm.calls import CallResult
from ..config import JudgeConfig, RefineConfig
from ..pairs import Pair, Reject
from ..prompts import load_prompt
from ..stage import Stage, Work
from .parsing import CURRENT, PARSERS, parse_label

STOP = ("###",)
ATTEMPTS = 2


class Judge(Stage):
    name = "judge"
    role = "judge"

    def __init__(self, config: JudgeConfig, refine: RefineConfig, seed: int, *, good: str, refine_stage: str, parser: str = CURRENT) -> None:
        if parser not in PARSERS:
            raise ValueError(f"no judge parser {parser!r}; known: {', '.join(PARSERS)}")
        self.config, self.refine, self.seed, self.parser = config, refine, seed, parser
        self.good, self.refine_stage = good, refine_stage
        self.template = load_prompt("judge", config.prompt)

    def requests(self, item: Work) -> list[LLMRequest]:
        language = get_language(item.language).name
        return [
            LLMRequest(
                prompt=self.template.render(language=language, instruction=pair.instruction, response=pair.response),
                params=self.config.sampling.params(self.seed + item.attempt, STOP),
            )
            for pair in _unlabelled(item)
        ]

    def accept(self, item: Work, results: list[CallResult]) -> Work | Reject:
        pairs = {pair.candidate: pair for pair in item.pairs}
        failures, replies, events, judged = list(item.failures), list(item.replies), [], list(item.judged)
        round_ = item.pairs[0].round
        last_attempt = item.attempt + 1 >= ATTEMPTS
        for pair, result in zip(_unlabelled(item), results):
            if result.completion is None:
                failures.append((pair.candidate, "judge:call_failed", {"error": str(result.error)}))
                del pairs[pair.candidate]
                continue
            parsed = parse_label(result.completion.text, self.config, self.parser)
            judged.append(_judgement(pair, item.attempt, result.completion.text, parsed))
            if parsed is not None:
                pairs[pair.candidate] = pair.judged(*parsed, self.template.version)
                events.append(f"judge_round_{round_}_{parsed[0]}")
                continue
            events.append(f"judge_round_{round_}_malformed")
            replies.append((pair.candidate, result.completion.text))
            if last_attempt:
                mine = [reply for candidate, reply in replies if candidate == pair.candidate]
                failures.append((pair.candidate, "judge:malformed", {"replies": mine}))
                del pairs[pair.candidate]
        item = item.then(
            item.next, tuple(pairs[c] for c in sorted(pairs)), *events, failures=tuple(failures), replies=tuple(replies), judged=tuple(judged)
        )
        if _unlabelled(item):
            return item.then(self.name, item.pairs, attempt=item.attempt + 1)
        return self._route(item, round_)

    def _route(self, item: Work, round_: int) -> Work | Reject:
        if not item.pairs:  # every pair of this document failed to be judged
            _, reason, detail = min(item.failures, key=lambda failure: failure[0])
            return item.reject(reason, round=round_, **detail)
        best = _best(item.pairs)
        if best.label == "good":
            return item.then(self.good, (best,))
        if best.label == "bad":
            return item.reject("judge:bad", instruction=best.instruction, round=round_, score=best.score)
        if best.round < self.refine.rounds:
            return item.then(self.refine_stage, (best,), f"refine_round_{best.round + 1}", attempt=0, failures=(), replies=())
        if self.refine.keep_exhausted:
            return item.then(self.good, (best,))
        return item.reject("refine:rounds_exhausted", instruction=best.instruction, round=best.round)


def _judgement(pair: Pair, attempt: int, reply: str, parsed: tuple[str, float | None] | None) -> dict:
    """One row of judge_replies.jsonl's `judgements`; label None: the reply was unreadable."""
    label, score = parsed if parsed is not None else (None, None)
    return {"round": pair.round, "candidate": pair.candidate, "attempt": attempt, "instruction": pair.instruction, "reply": reply, "label": label, "score": score}


def _unlabelled(item: Work) -> list[Pair]:
    return [pair for pair in item.pairs if not pair.label]


def _best(pairs: tuple[Pair, ...]) -> Pair:
    """The best-ranked pair; on a tie, the lowest candidate number."""
    best = pairs[0]
    for pair in pairs[1:]:
        if pair.rank() > best.rank():
            best = pair
    return best
