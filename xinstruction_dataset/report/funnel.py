"""Where a language's documents went: the funnel from documents in to curated records.

Every number comes from a summary the run wrote (`filtered/<lang>/summary.json`,
`curation/<lang>/summary.json`); each step carries the summary key it was read from, which the
page shows beside it (`data-key`), so a number on the page can be traced to its file.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..filtering.runner import group_reasons

_JUDGE = re.compile(r"^judge_round_(\d+)_(\w+)$")
_REFINE = re.compile(r"^refine_round_(\d+)$")
JUDGE_LABELS = ("good", "needs_refinement", "bad", "malformed")


@dataclass(frozen=True)
class Step:
    key: str  # where the number comes from: "filter.kept", "curation.counts.pool", ...
    label: str
    count: int
    main: bool = False  # a step of the funnel chart (the others are details under it)


def funnel_steps(filter_summary: dict[str, Any], curation_summary: dict[str, Any]) -> list[Step]:
    """The funnel of one language, in pipeline order."""
    steps: list[Step] = []
    if filter_summary:
        steps.append(Step("filter.documents_in", "documents in", filter_summary.get("documents_in", 0), main=True))
        steps.append(Step("filter.quarantined", "quarantined (unreadable input)", sum(filter_summary.get("quarantined", {}).values())))
        by_block = Counter()
        for reason, n in filter_summary.get("rejected", {}).items():
            by_block[reason.split(":", 1)[0]] += n
        steps += [Step(f"filter.rejected.{block}", f"rejected by filter {block}", n) for block, n in sorted(by_block.items())]
        steps.append(Step("filter.kept", "kept by the filters", filter_summary.get("kept", 0), main=True))
    if curation_summary:
        steps += _curation_steps(curation_summary)
    return steps


def _curation_steps(summary: dict[str, Any]) -> list[Step]:
    counts, rejected = summary.get("counts", {}), summary.get("rejected", {})
    documents = counts.get("documents", 0)
    before_generate = sum(n for reason, n in rejected.items() if reason.startswith("input:"))
    not_generated = sum(n for reason, n in rejected.items() if reason.startswith("generate:"))
    steps = [
        Step("curation.counts.documents", "entered curation", documents, main=True),
        Step("curation.rejected.input", "rejected on input (repeated id)", before_generate),
        Step("curation.rejected.generate", "no usable instruction", not_generated),
        Step("curation.generated", "generated (a usable instruction)", documents - before_generate - not_generated, main=True),
    ]
    judged, refined = _rounds(counts)
    for round_ in sorted(set(judged) | set(refined)):
        if round_ in refined:
            steps.append(Step(f"curation.counts.refine_round_{round_}", f"sent to refinement round {round_}", refined[round_]))
        for label in JUDGE_LABELS:
            if label in judged.get(round_, {}):
                key = f"judge_round_{round_}_{label}"
                steps.append(Step(f"curation.counts.{key}", f"judged in round {round_}: {label} (pairs)", judged[round_][label]))
    steps.append(Step("curation.counts.pool", "pool (labelled pairs)", counts.get("pool", 0), main=True))
    if "curated" in summary:
        steps.append(Step("curation.counts.clusters", "clusters", counts.get("clusters", 0)))
        steps.append(Step("curation.curated", "curated", summary["curated"], main=True))
    return steps


def _rounds(counts: dict[str, int]) -> tuple[dict[int, dict[str, int]], dict[int, int]]:
    judged: dict[int, dict[str, int]] = {}
    refined: dict[int, int] = {}
    for key, n in counts.items():
        if match := _JUDGE.match(key):
            judged.setdefault(int(match[1]), {})[match[2]] = n
        elif match := _REFINE.match(key):
            refined[int(match[1])] = n
    return judged, refined


def judge_rounds(curation_summary: dict[str, Any]) -> dict[int, dict[str, int]]:
    """{round: {label: pairs}} of one language (for the judge chart)."""
    return _rounds(curation_summary.get("counts", {}))[0]


@dataclass(frozen=True)
class ReasonCount:
    stage: str  # "filter", "quarantine" or the curation stage ("generate", "judge", ...)
    reason: str  # grouped: `<block or stage>:<why>` (details such as lengths and ids cut off)
    count: int


def reject_reasons(filter_summary: dict[str, Any], curation_summary: dict[str, Any]) -> list[ReasonCount]:
    """Every reject reason of one language, grouped as the summaries print them, by stage."""
    found = [ReasonCount("quarantine", reason, n) for reason, n in filter_summary.get("quarantined", {}).items()]
    found += [ReasonCount("filter", reason, n) for reason, n in group_reasons(Counter(filter_summary.get("rejected", {}))).items()]
    for reason, n in group_reasons(Counter(curation_summary.get("rejected", {}))).items():
        found.append(ReasonCount(reason.split(":", 1)[0], reason, n))
    order = {"quarantine": 0, "filter": 1, "input": 2, "generate": 3, "judge": 4, "refine": 5, "diversify": 6, "curate": 7}
    return sorted(found, key=lambda r: (order.get(r.stage, 9), -r.count, r.reason))


def group_reason(reason: str) -> str:
    """`judge:bad` of `judge:bad`, `generate:not_english` of `generate:not_english:id`."""
    return ":".join(reason.split(":")[:2])
