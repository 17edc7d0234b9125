"""Small text measures shared by the filter blocks."""

from __future__ import annotations

import math
import re

_BLANK_LINES = re.compile(r"\n\s*\n")


def nonblank_lines(text: str) -> list[str]:
    """The lines of `text`, stripped, without the empty ones."""
    return [line for line in (raw.strip() for raw in text.split("\n")) if line]


def paragraphs(text: str) -> list[str]:
    """Blocks separated by blank lines, stripped, without the empty ones."""
    return [block for block in (raw.strip() for raw in _BLANK_LINES.split(text)) if block]


def floor2(value: float) -> str:
    """`value` with two decimals, rounded *down*: a reason such as `low_confidence:0.89` never
    shows a number that reads as passing a 0.9 threshold (0.899 would round up to 0.90)."""
    return f"{math.floor(value * 100) / 100:.2f}"


def ceil2(value: float) -> str:
    """`value` with two decimals, rounded *up*: `markup_ratio:0.06` for 0.051 against a 0.05 limit."""
    return f"{math.ceil(value * 100) / 100:.2f}"
