"""Generate -> judge -> refine rounds for one batch of documents: every document ends as one
labelled pair for diversify, or as a reject with the reason of the stage that dropped it.

Per document: its usable candidates are judged and the best is kept (label, score, then the
lowest candidate number). `good` goes to the pool, `bad` is rejected, `needs_refinement` is
rewritten and judged again, for up to `refine.rounds` rounds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from ..documents import Document
from .config import CurationConfig
from .generate import generate
from .judge import judge
from .pairs import Pair, Reject
from .refine import refine

# stage name ("generate", "judge", "refine") -> a CallRunner-like object with `.run(requests)`
RunnerFor = Callable[[str], Any]


@dataclass
class Labelled:
    pool: list[Pair] = field(default_factory=list)  # ordered by document id
    rejects: list[Reject] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def label_documents(docs: list[Document], runner_for: RunnerFor, config: CurationConfig, language: str) -> Labelled:
    out = Labelled()
    out.counts["documents"] = len(docs)
    generated = generate(docs, runner_for("generate"), config.generate, language, config.seed)
    out.rejects += generated.rejects
    candidates = [pair for doc in docs for pair in generated.candidates.get(doc.id, [])]
    out.counts["candidates_usable"] = len(candidates)
    pending = _judge_and_route(candidates, runner_for, config, language, out)
    for _ in range(config.refine.rounds):
        if not pending:
            break
        out.counts[f"refine_round_{pending[0].round + 1}"] = len(pending)
        refined = refine(pending, runner_for("refine"), config.refine, config.generate, language, config.seed)
        for pair in pending:
            if pair.tag in refined.failed:
                reason, detail = refined.failed[pair.tag]
                out.rejects.append(Reject.of(pair.doc, language, reason, **detail))
        pending = _judge_and_route(refined.rewritten, runner_for, config, language, out)
    for pair in pending:
        if config.refine.keep_exhausted:
            out.pool.append(pair)
        else:
            out.rejects.append(Reject.of(pair.doc, language, "refine:rounds_exhausted", instruction=pair.instruction, round=pair.round))
    out.pool.sort(key=lambda p: p.doc.id)
    out.rejects.sort(key=lambda r: r.doc_id)
    out.counts["pool"] = len(out.pool)
    out.counts["pool_kept_exhausted"] = sum(p.label == "needs_refinement" for p in out.pool)
    return out


def _judge_and_route(pairs: list[Pair], runner_for: RunnerFor, config: CurationConfig, language: str, out: Labelled) -> list[Pair]:
    """Judge `pairs`, keep each document's best; route good to the pool, bad to rejects, and
    return those needing refinement."""
    if not pairs:
        return []
    round_ = pairs[0].round
    judged = judge(pairs, runner_for("judge"), config.judge, language, config.seed)
    out.counts.update({f"judge_round_{round_}_{k}": v for k, v in judged.stats.items()})
    best: dict[str, Pair] = {}
    for pair in judged.judged:
        current = best.get(pair.doc.id)
        if current is None or pair.rank() > current.rank():
            best[pair.doc.id] = pair
    pending = []
    for doc_id, tried in _by_document(pairs).items():
        pair = best.get(doc_id)
        if pair is None:  # every candidate of this document failed to be judged
            reason, detail = judged.failed[tried[0].tag]
            out.rejects.append(Reject.of(tried[0].doc, language, reason, round=round_, **detail))
        elif pair.label == "good":
            out.pool.append(pair)
        elif pair.label == "bad":
            out.rejects.append(Reject.of(pair.doc, language, "judge:bad", instruction=pair.instruction, round=round_, score=pair.score))
        else:
            pending.append(pair)
    return pending


def _by_document(pairs: list[Pair]) -> dict[str, list[Pair]]:
    grouped: dict[str, list[Pair]] = {}
    for pair in pairs:
        grouped.setdefault(pair.doc.id, []).append(pair)
    return grouped
