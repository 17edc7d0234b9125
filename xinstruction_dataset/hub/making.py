"""What making a config cost, for the card's "How this dataset was made": LLM calls paid, prompt
and completion tokens, and money from token prices, per stage.

The figures come from `curation/<lang>/ledger.json`, which `curate` writes from the call ledger
(llm/ledger.py) of the run folder, and keep only its parts that a kill, a resume or a rerun
answered from the cache leaves unchanged: paid calls (each call is paid once, whatever runs asked
for it) and their tokens, per stage and model, with the token prices and currency `curate`
recorded. Times, endpoints, runs and cache hits are left out: they change from one run to the
next. Export puts the figures into the Parquet schema metadata of the config's files (as it does
a hand review's counts), so `card update` and `publish` render the same section from the folder
alone, without the run folder or its call cache.

Money is given for token prices only. A GPU-hour price charges the time the servers were held,
which a kill and resume changes: the card names such models as priced per GPU-hour and gives no
money for them (the run's report does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import CorruptFile
from ..layout import RunLayout

METADATA_KEY = b"x-instruction.ledger"  # Parquet schema metadata: `LedgerFigures.to_metadata()`
UNKNOWN_STAGE = "unknown"  # calls paid by a toolkit without a ledger, never asked for again


@dataclass(frozen=True, order=True)
class StageCalls:
    """The paid calls of one stage to one model, and their tokens (`not_reported`: how many of
    those calls' tokens were counted with a tokenizer or estimated, not reported by the server)."""

    stage: str
    model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    not_reported: int = 0


@dataclass(frozen=True)
class TokenPrice:
    """A model's price as `curate` recorded it: per 1k prompt / completion tokens, per GPU-hour."""

    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0
    gpu_hour: float = 0.0

    @property
    def by_tokens(self) -> bool:
        return bool(self.prompt_per_1k or self.completion_per_1k)

    def of(self, calls: StageCalls) -> float:
        return calls.prompt_tokens / 1000 * self.prompt_per_1k + calls.completion_tokens / 1000 * self.completion_per_1k


@dataclass(frozen=True)
class LedgerFigures:
    """The card's figures of one config (see the module docstring)."""

    stages: tuple[StageCalls, ...]
    prices: dict[str, TokenPrice]  # of the models in `stages` that have a price
    currency: str | None  # None: no prices were set

    def money(self, calls: StageCalls) -> float | None:
        """Money of `calls` from its model's token prices; None when the model has none."""
        price = self.prices.get(calls.model)
        return price.of(calls) if price is not None and price.by_tokens else None

    def to_metadata(self) -> dict[bytes, bytes]:
        data = {
            "currency": self.currency,
            "prices": {model: vars(price) for model, price in sorted(self.prices.items())},
            "stages": [vars(calls) for calls in sorted(self.stages)],
        }
        return {METADATA_KEY: json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")}

    @classmethod
    def from_metadata(cls, metadata: dict[bytes, bytes] | None) -> "LedgerFigures | None":
        raw = (metadata or {}).get(METADATA_KEY)
        if raw is None:
            return None
        data = json.loads(raw)
        return cls(
            tuple(StageCalls(**calls) for calls in data["stages"]),
            {model: TokenPrice(**price) for model, price in data["prices"].items()},
            data["currency"],
        )

    @classmethod
    def from_ledger(cls, data: dict[str, Any]) -> "LedgerFigures":
        """The figures of a `curation/<lang>/ledger.json` (llm/ledger.py `summarise`): its
        per stage x language x endpoint rows summed over endpoints (a resumed run may reach a
        server at another port, or another replica: the call is still paid once)."""
        sums: dict[tuple[str, str], list[int]] = {}
        for row in data["stages"]:
            if not row["paid"]:
                continue
            found = sums.setdefault((row["stage"] or UNKNOWN_STAGE, row["model"]), [0, 0, 0, 0])
            for index, name in enumerate(("paid", "prompt_tokens", "completion_tokens", "not_reported")):
                found[index] += int(row[name])
        models = {model for _, model in sums}
        prices = {
            model: TokenPrice(float(p["prompt_per_1k"]), float(p["completion_per_1k"]), float(p["gpu_hour"]))
            for model, p in (data.get("prices") or {}).items() if model in models
        }
        return cls(
            tuple(StageCalls(stage, model, *counts) for (stage, model), counts in sorted(sums.items())),
            prices,
            data.get("currency") if prices else None,
        )


def run_ledger_figures(data_dir: str | Path, language: str) -> LedgerFigures | None:
    """The figures of `language` when `data_dir` is the curated folder of a run folder
    (`<output_dir>/curated`, or its `<lang>/` folder) whose curate wrote a ledger; None for
    shards made elsewhere or a folder curated before the ledger."""
    data_dir = Path(data_dir).resolve()
    for root in (data_dir.parent, data_dir.parent.parent):
        layout = RunLayout(root)
        if data_dir in (layout.curated_root, layout.curated(language)):
            path = layout.ledger(language)
            if not path.is_file():
                return None
            try:
                return LedgerFigures.from_ledger(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as error:
                raise CorruptFile(
                    f"{path} is not a ledger file curate wrote ({error}): run `xinstruction curate` with the "
                    "folder's recipe again (every call is answered from the cache) to rewrite it"
                ) from error
    return None


# --- the card's tables ------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One row of the card's tables: a config or a stage, or the total."""

    name: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    money: float | None  # None: no money column, or none of the row's models has a token price


@dataclass(frozen=True)
class MakingSection:
    """What the card's "How this dataset was made" shows (None from `making_section` when no
    config of the folder carries figures: the card then has no such section)."""

    configs: list[Row | str]  # a config without figures: its name only ("not recorded")
    stages: list[Row]
    total: Row
    currency: str | None  # None: no money column
    prices: list[str]  # "`model`: 0.5 / 2.0 per 1k prompt / completion tokens"
    by_gpu_hour: list[str]  # models priced per GPU-hour (no money given for them)
    unpriced: list[str]  # models without a token price while others have one
    mixed_currencies: list[str]  # the currencies, when configs were priced in several
    not_reported: int  # paid calls whose tokens were counted or estimated


def making_section(figures: dict[str, LedgerFigures | None]) -> MakingSection | None:
    """The section of a folder's configs (`figures`: config name -> its figures, in card order)."""
    known = {name: found for name, found in figures.items() if found is not None}
    if not known:
        return None
    currencies = sorted({found.currency for found in known.values() if found.currency and any(p.by_tokens for p in found.prices.values())})
    currency = currencies[0] if len(currencies) == 1 else None
    by_stage: dict[str, list[tuple[LedgerFigures, StageCalls]]] = {}
    for found in known.values():
        for calls in found.stages:
            by_stage.setdefault(calls.stage, []).append((found, calls))
    stage_order = sorted(by_stage, key=lambda stage: (stage == UNKNOWN_STAGE, stage))
    everything = [(found, calls) for found in known.values() for calls in found.stages]
    return MakingSection(
        configs=[_row(name, [(found, calls) for calls in found.stages], currency) if found else name for name, found in figures.items()],
        stages=[_row(stage, by_stage[stage], currency) for stage in stage_order],
        total=_row("total", everything, currency),
        currency=currency,
        prices=sorted({
            f"`{model}`: {price.prompt_per_1k:g} / {price.completion_per_1k:g} {currency} per 1k prompt / completion tokens"
            for found in known.values() for model, price in found.prices.items() if price.by_tokens and currency
        }),
        by_gpu_hour=sorted({f"`{model}`" for found in known.values() for model, price in found.prices.items() if price.gpu_hour}),
        unpriced=sorted({f"`{calls.model}`" for found, calls in everything if currency and found.money(calls) is None}),
        mixed_currencies=currencies if len(currencies) > 1 else [],
        not_reported=sum(calls.not_reported for _, calls in everything),
    )


def _row(name: str, entries: Iterable[tuple[LedgerFigures, StageCalls]], currency: str | None) -> Row:
    entries = list(entries)
    priced = [money for money in (found.money(calls) for found, calls in entries) if money is not None]
    return Row(
        name,
        sum(calls.calls for _, calls in entries),
        sum(calls.prompt_tokens for _, calls in entries),
        sum(calls.completion_tokens for _, calls in entries),
        sum(priced) if currency and priced else None,
    )


def format_money(value: float | None) -> str:
    """Two decimals; a sum too small to show that way says so rather than showing 0.00; `–`
    for a row none of whose models has a token price."""
    if value is None:
        return "–"
    return "< 0.01" if 0 < value < 0.005 else f"{value:,.2f}"
