"""Prices (`curation.cost`) and budgets (`curation.budget`): money from the ledger, and a run that
stops cleanly before it spends more than it was given.

    curation:
      cost:
        currency: USD
        models:                                   # by model id, as the ledger names it
          Qwen/Qwen2.5-72B-Instruct: {prompt_per_1k: 0.0004, completion_per_1k: 0.0012}
          my-org/judge-7b: {gpu_hour: 2.5, gpus: 2}  # time its servers were in use x GPUs
      budget: {max_tokens: 50000000, max_calls: 400000, max_cost: 300}

A budget counts every paid call of the run folder's ledger (every run, every driver that shares
the call cache: fleet-wide), calls sent (paid or failed) for `max_calls`, prompt + completion
tokens of paid calls for `max_tokens`, money for `max_cost` (which needs a price for every
model). The engine asks `Budget.refuses()` before it admits each document: it refuses once what
was spent plus the running mean cost of a document, for each document in flight and the next
one, would cross a limit. Until a document's cost is known (this run's first paid document, or
the folder's earlier runs), documents are admitted while nothing crosses a limit: the fleet is
kept full from the first request, and the first stop may pass a limit by what the documents then
in flight cost. In-flight documents finish; the run writes what is complete and stops
with `BudgetReached` (exit 1). Neither prices nor budgets shape outputs: they are not in the
fingerprint, nor in the config written beside the outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from ..errors import PartialFailure, UsageError
from ..llm.cache import CallCache
from ..llm.calls import CallScheduler
from ..llm.ledger import LedgerEntry, Price, busy_and_span, read_rows
from ..options import ConfigModel

REFRESH_S = 2.0  # how often the other drivers' spending is read again from the shared ledger


class ModelPrice(ConfigModel):
    """The price of one model: per 1k prompt / completion tokens, and/or per GPU-hour."""

    prompt_per_1k: Annotated[float, Field(ge=0)] = 0.0
    completion_per_1k: Annotated[float, Field(ge=0)] = 0.0
    gpu_hour: Annotated[float, Field(ge=0)] = 0.0
    gpus: Annotated[int, Field(ge=1)] | None = None  # GPUs behind the model's servers

    def price(self) -> Price:
        return Price(self.prompt_per_1k, self.completion_per_1k, self.gpu_hour, self.gpus)


class CostConfig(ConfigModel):
    """`curation.cost`: prices per model id; without it, figures are tokens and time only."""

    currency: Annotated[str, Field(min_length=1, max_length=12)] = "USD"
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    def prices(self) -> dict[str, Price]:
        return {model: spec.price() for model, spec in self.models.items()}

    def gpus(self) -> dict[str, int]:
        return {model: spec.gpus for model, spec in self.models.items() if spec.gpus}


class BudgetConfig(ConfigModel):
    """`curation.budget`: limits over every paid call of the run folder (unset: no limit)."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_calls: Annotated[int, Field(ge=1)] | None = None
    max_cost: Annotated[float, Field(gt=0)] | None = None

    @property
    def limits(self) -> dict[str, float]:
        return {name: value for name, value in (("tokens", self.max_tokens), ("calls", self.max_calls), ("cost", self.max_cost)) if value is not None}

    def overridden(self, *, max_tokens: int | None = None, max_calls: int | None = None, max_cost: float | None = None) -> "BudgetConfig":
        """This budget with the command line's limits in place of the recipe's."""
        update = {k: v for k, v in (("max_tokens", max_tokens), ("max_calls", max_calls), ("max_cost", max_cost)) if v is not None}
        return BudgetConfig.model_validate({**self.model_dump(), **update})


class BudgetReached(PartialFailure):
    """The run stopped at its budget (exit 1): what is complete was written; a rerun with a
    higher budget resumes from the cache. `reports`: the languages' reports of the stopped run."""

    def __init__(self, message: str, reports: list[Any] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []


@dataclass
class Spend:
    calls: float = 0.0
    tokens: float = 0.0
    cost: float = 0.0

    def get(self, name: str) -> float:
        return float(getattr(self, name))


FLAGS = {"tokens": "--max-tokens", "calls": "--max-calls", "cost": "--max-cost"}
KEYS = {"tokens": "max_tokens", "calls": "max_calls", "cost": "max_cost"}


class Budget:
    """The budget of one run (see the module docstring): `refuses(in_flight)` before each
    document, `document_done(entries)` after each, `message()` once it refused."""

    def __init__(
        self, config: BudgetConfig, prices: dict[str, Price], cache: CallCache, schedulers: list[CallScheduler], currency: str = "",
    ) -> None:
        self.config, self.prices, self.cache, self.schedulers, self.currency = config, prices, cache, schedulers, currency
        self.limits = config.limits
        if "cost" in self.limits:
            unpriced = sorted({s.backend.model_id for s in schedulers} - set(prices))
            if unpriced:
                raise UsageError(
                    f"curation.budget.max_cost needs a price for every model; none for {', '.join(unpriced)}: "
                    "add them under curation.cost.models, or budget tokens or calls instead"
                )
        self.paid_documents = 0  # documents of this run that made at least one paid call
        self.run_spend = Spend()
        self._others = self._read_others()
        self._others_read = time.monotonic()
        self._historic_mean = self._mean_of_others()
        self.reached: str | None = None
        # An earlier run stopped at this budget or a higher one: nothing has changed, stop at once.
        for stop in cache.budget_stops():
            for name, limit in self.limits.items():
                if name in stop and limit <= stop[name] and self.reached is None:
                    self.reached = name

    # --- what was spent -----------------------------------------------------------------------

    def _read_others(self) -> Spend:
        """What every other run in the ledger spent, and the other drivers of this one (their
        files: the drivers of a run share its id, each writing a file of its own)."""
        rows = read_rows(self.cache.path, "run != ? AND kind IN ('paid', 'failed')", (self.cache.run_id,))
        rows += read_rows(self.cache.other_files(), "kind IN ('paid', 'failed')")
        spend = Spend(calls=len(rows), tokens=sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows if r["kind"] == "paid"))
        spend.cost = self._token_cost(rows) + self._time_cost_of_rows(rows)
        self._other_documents = len({r["doc_id"] for r in rows if r["kind"] == "paid" and r["doc_id"]})
        return spend

    def _token_cost(self, rows: list[dict[str, Any]]) -> float:
        total = 0.0
        for row in rows:
            price = self.prices.get(row["model"])
            if price is not None and row["kind"] == "paid":
                total += price.of_tokens(row["prompt_tokens"], row["completion_tokens"])
        return total

    def _time_cost_of_rows(self, rows: list[dict[str, Any]]) -> float:
        total = 0.0
        for model, price in self.prices.items():
            if price.gpu_hour:
                total += price.of_time(busy_and_span([r for r in rows if r["model"] == model])[1])
        return total

    def _mean_of_others(self) -> Spend | None:
        others = self._others
        if not self._other_documents:
            return None
        return Spend(others.calls / self._other_documents, others.tokens / self._other_documents, others.cost / self._other_documents)

    def spent(self) -> Spend:
        """Every run's spend so far, this one's as it goes (the others' read every `REFRESH_S`)."""
        if time.monotonic() - self._others_read > REFRESH_S:
            self._others, self._others_read = self._read_others(), time.monotonic()
        others, mine = self._others, self._mine()
        return Spend(others.calls + mine.calls, others.tokens + mine.tokens, others.cost + mine.cost)

    def _mine(self) -> Spend:
        """This run's spend, from its schedulers' running totals (GPU-hour prices: the time since
        the scheduler started, the servers being held for the run)."""
        spend = Spend()
        for scheduler in self.schedulers:
            totals = scheduler.totals
            spend.calls += totals.paid + totals.failed
            spend.tokens += totals.tokens
            price = self.prices.get(scheduler.backend.model_id)
            if price is not None:
                prompt, completion = totals.by_model.get(scheduler.backend.model_id, (0, 0))
                spend.cost += price.of_tokens(prompt, completion)
                if price.gpu_hour and totals.paid:
                    spend.cost += price.of_time(time.monotonic() - totals.started)
        return spend

    def mean_per_document(self) -> Spend:
        """What a document costs: this run's mean over its documents that paid, else the mean of
        the folder's earlier runs, else nothing known yet (zero)."""
        if self.paid_documents:
            mine = self._mine()
            return Spend(mine.calls / self.paid_documents, mine.tokens / self.paid_documents, mine.cost / self.paid_documents)
        return self._historic_mean or Spend()

    # --- the engine's questions -----------------------------------------------------------------

    def document_done(self, entries: list[LedgerEntry]) -> None:
        if any(entry.kind in ("paid", "failed") for entry in entries):
            self.paid_documents += 1

    def refuses(self, in_flight: int) -> str | None:
        """The limit that admitting one more document (after the `in_flight` ones) would cross,
        or None. Once refused, always refused: the run is stopping."""
        if self.reached is not None or not self.limits:
            return self.reached
        spent, mean = self.spent(), self.mean_per_document()
        for name, limit in self.limits.items():
            if spent.get(name) >= limit or spent.get(name) + mean.get(name) * (in_flight + 1) > limit:
                self.reached = name
                self.cache.record_budget_stop(self.limits)
                return name
        return None

    def message(self, unfinished: list[str]) -> str:
        """The one line the run stops with: which budget, what was spent, how to go on."""
        name = self.reached or ""
        self._others_read = 0.0  # read the other runs again: the figure is the folder's, now
        spent = self.spent()
        limit = self.limits[name]
        unit = self.currency if name == "cost" else name
        shown = (lambda v: f"{v:,.2f}") if name == "cost" else (lambda v: f"{int(v):,}")
        left = f"; not labelled (so not diversified or exported): {', '.join(unfinished)}" if unfinished else ""
        return (
            f"budget reached: curation.budget.{KEYS[name]} is {shown(limit)}, {shown(spent.get(name))} {unit} spent over every run "
            f"of this folder{left}; raise curation.budget.{KEYS[name]} (or pass {FLAGS[name]}) and run the same command again: "
            "it resumes from the cache"
        )
