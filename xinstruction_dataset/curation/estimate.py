"""Estimates before spending: what curating a whole input (or reaching a target number of curated
samples) will take, projected from documents measured in the ledger.

`curate --estimate N` labels the first N documents of each language for real (every call is
stored in the cache, so nothing is wasted: the full run takes them from there), then projects
from what each of those documents asked for, in the ledger (paid or answered from the cache: a
call the cache answered now is one the servers answered once):

    per document     mean calls, tokens and money (token prices) of the measured documents
    whole input      population x mean, with a 95% interval (normal, finite-population corrected:
                     the sample is documents of the same input, drawn without replacement)
    time             projected calls / the calls a second the fleet answered while measuring
                     (GPU-hour prices are charged on that time)
    target           the documents needed for `diversify.target_size` curated samples per
                     language, at the measured share of documents that reach the pool

The report's projection (the paper's 320k samples) uses the same functions on every document
of the run folder's ledger.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..llm.ledger import Price, busy_and_span

Z95 = 1.96


@dataclass
class Projected:
    """A projected total with its 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 3), "low": round(self.low, 3), "high": round(self.high, 3)}


def project_sum(values: list[float], population: int) -> Projected:
    """population x mean(values), with a 95% interval for that sum."""
    n = len(values)
    if n == 0:
        return Projected(0.0, 0.0, 0.0)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    correction = math.sqrt(max(0.0, (population - n) / (population - 1))) if population > 1 else 0.0
    half = Z95 * math.sqrt(variance / n) * correction * population
    total = mean * population
    return Projected(total, max(0.0, total - half), total + half)


@dataclass
class DocumentCost:
    calls: int = 0
    tokens: int = 0
    cost: float = 0.0


def per_document(rows: list[dict[str, Any]], prices: dict[str, Price]) -> dict[str, dict[str, DocumentCost]]:
    """{language: {doc_id: what the document costs when nothing is cached}} of ledger rows: each
    distinct call (key) it asked for once, whether it was paid, failed or answered by the cache
    (a call it asks twice, say two candidates with one instruction, is paid once)."""
    found: dict[str, dict[str, DocumentCost]] = defaultdict(dict)
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        if not row["doc_id"] or not row["language"] or row["kind"] == "shared":
            continue
        if (row["language"], row["doc_id"], row["key"]) in seen:
            continue
        seen.add((row["language"], row["doc_id"], row["key"]))
        cost = found[row["language"]].setdefault(row["doc_id"], DocumentCost())
        cost.calls += 1
        if row["kind"] != "failed":
            cost.tokens += row["prompt_tokens"] + row["completion_tokens"]
            price = prices.get(row["model"])
            if price is not None:
                cost.cost += price.of_tokens(row["prompt_tokens"], row["completion_tokens"])
    return found


@dataclass
class LanguageEstimate:
    language: str
    population: int  # documents of the whole input
    measured: int  # documents measured
    pooled: int  # of those, documents that reached the pool
    calls: Projected
    tokens: Projected
    cost: Projected | None
    target: int  # curated samples wanted
    mean: DocumentCost = field(default_factory=DocumentCost)

    @property
    def pool_share(self) -> float:
        return self.pooled / self.measured if self.measured else 0.0

    @property
    def documents_for_target(self) -> int | None:
        """Documents to label for `target` curated samples (None: none reached the pool)."""
        if not self.pool_share:
            return None
        return math.ceil(self.target / self.pool_share)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "language": self.language, "population": self.population, "measured": self.measured, "pooled": self.pooled,
            "pool_share": round(self.pool_share, 4), "calls": self.calls.as_dict(), "tokens": self.tokens.as_dict(),
            "per_document": {"calls": round(self.mean.calls, 3), "tokens": round(self.mean.tokens, 1)},
            "target": self.target, "documents_for_target": self.documents_for_target,
        }
        if self.cost is not None:
            data["cost"] = self.cost.as_dict()
            data["per_document"]["cost"] = round(self.mean.cost, 6)
        return data


def estimate_language(
    language: str, documents: dict[str, DocumentCost], population: int, pooled: int, target: int, priced: bool,
) -> LanguageEstimate:
    values = list(documents.values())
    n = len(values)
    mean = DocumentCost(
        calls=sum(v.calls for v in values) / n if n else 0.0, tokens=sum(v.tokens for v in values) / n if n else 0.0,
        cost=sum(v.cost for v in values) / n if n else 0.0,
    )
    return LanguageEstimate(
        language, population, n, pooled,
        calls=project_sum([float(v.calls) for v in values], population),
        tokens=project_sum([float(v.tokens) for v in values], population),
        cost=project_sum([v.cost for v in values], population) if priced else None,
        target=target, mean=mean,
    )


@dataclass
class Estimate:
    languages: list[LanguageEstimate]
    calls_per_s: float | None  # the fleet's measured speed
    currency: str = ""
    gpu_cost_per_s: float = 0.0  # GPU-hour prices: money a second of the fleet's time

    def total(self, name: str) -> Projected | None:
        parts = [getattr(e, name) for e in self.languages]
        if any(p is None for p in parts):
            return None
        return Projected(sum(p.value for p in parts), sum(p.low for p in parts), sum(p.high for p in parts))

    def seconds(self, calls: float) -> float | None:
        return calls / self.calls_per_s if self.calls_per_s else None

    def for_target(self) -> dict[str, float] | None:
        """Calls, tokens (and money) to reach every language's target, at the mean per document."""
        needed = [(e, e.documents_for_target) for e in self.languages]
        if not needed or any(n is None for _, n in needed):
            return None
        calls = sum(e.mean.calls * n for e, n in needed)
        out = {"documents": sum(n for _, n in needed), "calls": calls, "tokens": sum(e.mean.tokens * n for e, n in needed)}
        if all(e.cost is not None for e in self.languages):
            out["cost"] = sum(e.mean.cost * n for e, n in needed) + self.gpu_cost_per_s * (self.seconds(calls) or 0.0)
        return out

    def as_dict(self) -> dict[str, Any]:
        calls = self.total("calls")
        data = {
            "languages": [e.as_dict() for e in self.languages],
            "calls": calls.as_dict() if calls else None,
            "tokens": (self.total("tokens") or Projected(0, 0, 0)).as_dict(),
            "calls_per_s": round(self.calls_per_s, 3) if self.calls_per_s else None,
            "seconds": self.seconds(calls.value) if calls else None,
            "for_target": self.for_target(),
        }
        cost = self.total("cost")
        if cost is not None:
            data["cost"] = cost.as_dict()
            data["currency"] = self.currency
        return data


def fleet_speed(rows: list[dict[str, Any]]) -> float | None:
    """Calls a second the fleet answered (sent calls over the runs' spans), None if none was sent."""
    sent = [r for r in rows if r["kind"] in ("paid", "failed")]
    _, span = busy_and_span(sent)
    return len(sent) / span if span > 0 and sent else None


def format_table(estimate: Estimate) -> str:
    """The table `curate --estimate` prints."""
    money = estimate.total("cost") is not None
    header = ["language", "documents", "measured", "pool share", "calls/doc", "tokens/doc", "calls (95%)", "tokens (95%)"]
    if money:
        header.append(f"cost {estimate.currency} (95%)")
    rows = [header]
    for e in estimate.languages:
        row = [e.language, f"{e.population:,}", f"{e.measured:,}", f"{e.pool_share:.0%}", f"{e.mean.calls:.2f}", f"{e.mean.tokens:,.0f}",
               _interval(e.calls), _interval(e.tokens)]
        if money and e.cost is not None:
            row.append(_interval(e.cost, money=True))
        rows.append(row)
    calls, tokens = estimate.total("calls"), estimate.total("tokens")
    if calls and tokens:
        total = ["total", f"{sum(e.population for e in estimate.languages):,}", f"{sum(e.measured for e in estimate.languages):,}", "", "", "",
                 _interval(calls), _interval(tokens)]
        if money:
            total.append(_interval(estimate.total("cost"), money=True))
        rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    seconds = estimate.seconds(calls.value) if calls else None
    lines.append("")
    lines.append(
        f"time at the measured speed ({estimate.calls_per_s:.2f} calls/s): {_duration(seconds)}" if seconds is not None
        else "time: unknown (no call was sent while measuring: every one came from the cache)"
    )
    target = estimate.for_target()
    if target:
        text = (f"for {sum(e.target for e in estimate.languages):,} curated samples (diversify.target_size per language): "
                f"~{target['documents']:,} documents, {target['calls']:,.0f} calls, {target['tokens']:,.0f} tokens")
        if "cost" in target:
            text += f", {target['cost']:,.2f} {estimate.currency}"
        lines.append(text)
    else:
        lines.append("for the target: unknown (no measured document reached the pool)")
    return "\n".join(lines)


def _interval(p: Projected | None, money: bool = False) -> str:
    if p is None:
        return "–"
    fmt = (lambda v: f"{v:,.2f}") if money else (lambda v: f"{v:,.0f}")
    return f"{fmt(p.value)} ({fmt(p.low)}–{fmt(p.high)})"


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
