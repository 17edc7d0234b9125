"""Stage 2, judge: label each (instruction, response) pair of a document on the configured scale
and keep the best (label, score, then the lowest candidate number).

A reply with no readable label is retried once with the next seed (a new cache key, so the retry
is a real new call): the document's outcome is then `unreadable`, which the flow sends back
here. A second malformed reply drops the pair (`judge:malformed`). A document whose pairs all fail
is rejected with the first pair's reason. Otherwise the outcome is the best pair's label (`good`,
`needs_refinement`, `bad`); where each leads (done, refinement while rounds are left, rejected)
is the flow's routing table (flow.py), not this stage's. Its calls are served by the `judge`
model; left out of the recipe, the judge is the generator's model.

Every reply (with the round, candidate, attempt, the instruction judged and what it was read as)
goes with the document to the language's `judge_replies.jsonl`, so a reader can check a label
against the text it came from; the records stay as they are.
"""

from __future__ import annotations

from dataclasses import replace

from ...languages import get_language
from ...llm.backends.base import LLMRequest
from ...llm.calls import CallResult
from ..pairs import LABELS, Pair, Reject
from ..prompts import load_prompt
from ..stage import STAGES, Stage, StageContext, Work
from .config import JudgeConfig
from .parsing import PARSERS, parse_label

STOP = ("###",)
ATTEMPTS = 2


@STAGES.register(JudgeConfig)
class Judge(Stage):
    role = "judge"
    role_fallback = "generator"
    outcomes = ("unreadable", *LABELS)
    config: JudgeConfig

    def __init__(self, config: JudgeConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.parser = context.versions.judge_parser  # the run folder's (versions.py)
        if self.parser not in PARSERS:
            raise ValueError(f"no judge parser {self.parser!r}; known: {', '.join(PARSERS)}")
        self.template = load_prompt("judge", config.prompt)

    def requests(self, item: Work) -> list[LLMRequest]:
        language = get_language(item.language).name
        return [
            self.request(
                self.template.render(language=language, instruction=pair.instruction, response=pair.response),
                self.config.sampling.params(self.seed + item.attempt, STOP),
            )
            for pair in _unlabelled(item)
        ]

    def describe(self) -> str:
        return f"{self.template.version}, scale={self.config.scale}, malformed replies retried once"

    def read(self, item: Work, results: list[CallResult]) -> Work | Reject:
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
        kept = tuple(pairs[c] for c in sorted(pairs))
        item = replace(item, events=item.events + tuple(events), judged=tuple(judged))
        if any(not pair.label for pair in kept):  # asked again (the flow routes `unreadable` back here)
            return item.labelled("unreadable", kept, attempt=item.attempt + 1, failures=tuple(failures), replies=tuple(replies))
        if not kept:  # every pair of this document failed to be judged
            _, reason, detail = min(failures, key=lambda failure: failure[0])
            return item.reject(reason, round=round_, **detail)
        best = _best(kept)
        # A next round of judging (after a refinement) starts with no attempts or failures.
        return item.labelled(best.label, (best,), attempt=0, failures=(), replies=())


def _judgement(pair: Pair, attempt: int, reply: str, parsed: tuple[str, float | None] | None) -> dict:
    """One row of judge_replies.jsonl's `judgements`; label None: the reply was unreadable."""
    label, score = parsed if parsed is not None else (None, None)
    return {"round": pair.round, "candidate": pair.candidate, "attempt": attempt, "instruction": pair.instruction, "reply": reply, "label": label, "score": score}


def _unlabelled(item: Work) -> list[Pair]:
    """The pairs this stage still has to label (all of them, but for a retried document)."""
    return [pair for pair in item.pairs if not pair.label]


def _best(pairs: tuple[Pair, ...]) -> Pair:
    """The best-ranked pair; on a tie, the lowest candidate number."""
    best = pairs[0]
    for pair in pairs[1:]:
        if pair.rank() > best.rank():
            best = pair
    return best
