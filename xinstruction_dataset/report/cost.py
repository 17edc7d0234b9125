"""What a run cost in LLM calls, tokens, time and (with prices) money, per stage, read from the
ledger of its call cache (llm/ledger.py).

Every call's ledger row names its stage, so the cost table does not depend on the prompt
templates' text: a renamed or edited prompt keeps its calls in their stage. Calls stored by a
toolkit without a ledger have no stage of their own; they take the stage of a later row of the
same key (a resumed run asked for them again), else they are counted under `other`. *Asked*
calls come from the summaries' deterministic counters; *paid*, *cached* and *failed* from the
ledger, over every run of the folder, each call paid once. Prices are those the last `curate`
recorded in `run/ledger.json` (`curation.cost`).

Throughput is the generated tokens over the runs' spans (each run from its first call to its
last: a pause between two runs is not work). The projection of the paper's 320k samples uses
the estimate's numbers (curation/estimate.py): each language's mean calls and tokens per
document, over the share of documents that reach the pool.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..curation.estimate import estimate_language, per_document
from ..llm.cache import cache_files
from ..llm.ledger import Price, busy_and_span, cost_of, read_rows, with_known_stages

STAGES = ("generate", "judge", "refine")
PAPER_SAMPLES = 320_000  # the paper's release: 32k per language, 10 languages
PAPER_LANGUAGES = 10


@dataclass
class StageCost:
    stage: str
    asked: int = 0  # calls the stages made (from the summaries' counters)
    paid: int = 0  # calls the servers answered and the cache stored (the ledger's paid rows)
    failed: int = 0  # calls sent that failed for good (the ledger's failed rows)
    cached: int = 0  # calls answered from the cache or by an identical call in flight, every run
    prompt_tokens: int = 0  # of paid calls
    completion_tokens: int = 0
    estimated_tokens: int = 0  # paid calls whose tokens the server did not report (counted or estimated)
    service_s: float = 0.0
    cost: float | None = None

    @property
    def from_cache(self) -> int:
        return max(0, self.asked - self.paid - self.failed)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, row: dict[str, Any]) -> None:
        kind = row["kind"]
        if kind == "paid":
            self.paid += 1
            self.prompt_tokens += row["prompt_tokens"]
            self.completion_tokens += row["completion_tokens"]
            self.estimated_tokens += row["tokens"] != "reported"
        elif kind == "failed":
            self.failed += 1
        else:
            self.cached += 1
        if kind in ("paid", "failed"):
            self.service_s += row["service_s"]


@dataclass
class RunCost:
    stages: dict[str, StageCost]
    curated: int
    embeddings: int = 0  # embedding vectors stored in the cache
    busy_s: float = 0.0
    endpoints: int = 1
    cache_found: bool = True
    unclassed: StageCost = field(default_factory=lambda: StageCost("other"))
    currency: str | None = None
    paper: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> StageCost:
        total = StageCost("total")
        for cost in [*self.stages.values(), self.unclassed]:
            for name in ("asked", "paid", "failed", "cached", "prompt_tokens", "completion_tokens", "estimated_tokens", "service_s"):
                setattr(total, name, getattr(total, name) + getattr(cost, name))
            if cost.cost is not None:
                total.cost = (total.cost or 0.0) + cost.cost
        return total

    @property
    def tokens_per_s(self) -> float:
        return self.total.tokens / self.busy_s if self.busy_s > 0 else 0.0

    def per_kept(self, value: float | None) -> float | None:
        return value / self.curated if self.curated and value is not None else None

    def projection(self) -> dict[str, Any]:
        """The paper's 320k samples at this run's measured means (the estimate's numbers; the
        GPU-hours are computed in the page from its throughput field, by default this run's
        tokens/s per endpoint)."""
        return {
            "samples": PAPER_SAMPLES,
            "calls": self.paper.get("calls"),
            "tokens": self.paper.get("tokens"),
            "cost": self.paper.get("cost"),
            "throughput": round(self.tokens_per_s / max(1, self.endpoints), 1),
        }


def asked_calls(config: dict[str, Any], summaries: list[dict[str, Any]]) -> dict[str, int]:
    """Calls each stage asked for, from the deterministic counters of every language's summary."""
    candidates = int((config.get("generate") or {}).get("candidates", 1))
    asked = dict.fromkeys(STAGES, 0)
    for summary in summaries:
        counts, rejected = summary.get("counts", {}), summary.get("rejected", {})
        entered = counts.get("documents", 0) - sum(n for r, n in rejected.items() if r.startswith("input:"))
        asked["generate"] += entered * candidates
        asked["judge"] += sum(n for key, n in counts.items() if key.startswith("judge_round_"))
        asked["refine"] += sum(n for key, n in counts.items() if key.startswith("refine_round_"))
    return asked


def recorded_prices(ledger_file: Path) -> tuple[dict[str, Price], str | None]:
    """The prices and currency the last `curate` wrote into `run/ledger.json` (none: no prices)."""
    if not ledger_file.is_file():
        return {}, None
    data = json.loads(ledger_file.read_text(encoding="utf-8"))
    prices = {model: Price(**spec) for model, spec in (data.get("prices") or {}).items()}
    return prices, data.get("currency") if prices else None


def run_cost(
    cache_path: Path, config: dict[str, Any], summaries: list[dict[str, Any]], curated: int,
    prices: dict[str, Price] | None = None, currency: str | None = None,
) -> RunCost:
    """The cost figures of a run from its call cache: `cache_path`, the configured file, and the
    per-driver files beside it (`<cache>.d/`, llm/cache.cache_files), read as one ledger."""
    prices = prices or {}
    cost = RunCost({stage: StageCost(stage, asked=n) for stage, n in asked_calls(config, summaries).items()}, curated, currency=currency)
    files = cache_files(cache_path)
    if not files:
        cost.cache_found = False
        return cost
    rows = []
    for path in files:
        try:
            rows += read_rows(path)
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                cost.embeddings += connection.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise OSError(f"the call cache {path} cannot be read ({error}): pass the run's cache with --cache, or move a damaged one aside") from error
    rows = with_known_stages(sorted(rows, key=lambda row: row["started_at"]))
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        target = cost.stages.get(row["stage"] or "", cost.unclassed)
        target.add(row)
        by_stage[target.stage].append(row)
    for stage in [*cost.stages.values(), cost.unclassed]:
        stage.cost = cost_of(by_stage.get(stage.stage, []), prices)
    cost.endpoints = max(1, len({row["endpoint"] for row in rows if row["kind"] == "paid" and row["endpoint"] != "unknown"}))
    cost.busy_s = busy_and_span(rows)[1]
    cost.paper = paper_projection(rows, summaries, prices)
    return cost


def paper_projection(rows: list[dict[str, Any]], summaries: list[dict[str, Any]], prices: dict[str, Price]) -> dict[str, Any]:
    """Calls, tokens (and money) of the paper's 32k curated samples in each of 10 languages, at
    the mean of this run's languages (estimate.py: per document, over the pool share)."""
    documents = per_document(rows, prices)
    needs = []
    for summary in summaries:
        language = summary.get("language")
        counts = summary.get("counts", {})
        measured = documents.get(language, {})
        if not measured:
            continue
        estimate = estimate_language(language, measured, len(measured), min(counts.get("pool", 0), len(measured)),
                                     PAPER_SAMPLES // PAPER_LANGUAGES, priced=bool(prices))
        if estimate.documents_for_target is not None:
            needs.append((estimate, estimate.documents_for_target))
    if not needs:
        return {}
    scale = PAPER_LANGUAGES / len(needs)
    out = {
        "calls": round(sum(e.mean.calls * n for e, n in needs) * scale),
        "tokens": round(sum(e.mean.tokens * n for e, n in needs) * scale),
    }
    if prices:
        out["cost"] = round(sum(e.mean.cost * n for e, n in needs) * scale, 2)
    return out
