"""Every path under an evaluation folder, in one place:

    <root>/answers/<model name>/<config>.json                       one answer file per model and config
    <root>/judgments/<protocol>/<name 1>-vs-<name 2>/judgments.jsonl  one line per item, both orders
    <root>/judgments/<protocol>/<name 1>-vs-<name 2>/report.json      win/tie/loss/error counts
    <root>/judgments/<protocol>/<name 1>-vs-<name 2>/win_rates.png    the chart
    <root>/judgments/<protocol>/<name 1>-vs-<name 2>/export/<format>/<config>/  in a paper's format

`<protocol>` is the protocol's name, followed by the variant of a run other than the default
(`-strict`, `-noretry`, `-sum`: `plug-strict`, `xinstruction-strict-sum`), so one variant never
overwrites another's verdicts.
    <root>/cache/calls.sqlite                                        every answer and verdict call
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A model name as one folder name (`org/model` -> `org--model`)."""
    cleaned = _UNSAFE.sub("-", name.replace("/", "--")).strip(".-")
    if not cleaned:
        raise UsageError(f"model name {name!r} has no letter or digit to name its folder: pass --name")
    return cleaned


@dataclass(frozen=True)
class EvalLayout:
    root: Path

    @property
    def cache(self) -> Path:
        return self.root / "cache" / "calls.sqlite"

    def answers(self, name: str) -> Path:
        return self.root / "answers" / safe_name(name)

    def answer_file(self, name: str, config: str) -> Path:
        return self.answers(name) / f"{config}.json"

    def judgments(self, protocol: str, first: str, second: str, variant: str = "") -> Path:
        return self.root / "judgments" / f"{protocol}{variant}" / f"{safe_name(first)}-vs-{safe_name(second)}"


def judgment_variant(*, strict: bool, retry: bool, aggregation: str) -> str:
    """The folder suffix of a judge run's variant; "" for the default (ours, retry, per-order)."""
    parts = ["strict"] if strict else [] if retry else ["noretry"]
    if aggregation != "per-order":
        parts.append(aggregation)
    return "".join(f"-{part}" for part in parts)
