"""The interface every training format implements and the registry of format kinds.

`TRAINING_FORMATS` is the plug-in point (registry.py): a kind's file defines its spec (a
`PluginSpec` whose `format` is a one-value Literal, plus the options of that format) and
registers the `TrainingFormat` built from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import datasets

from ...languages import get_language
from ...registry import Registry

# `xinstruction export --format NAME` -> the TrainingFormat of that kind.
TRAINING_FORMATS: Registry = Registry("training format", key="format")


class TrainingFormat(ABC):
    """One shape of training example: its features, and the row of one X-Instruction record."""

    name: str
    features: datasets.Features
    shape: str  # the card's words for the shape, e.g. "instruction / input / output (Alpaca)"

    @abstractmethod
    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        """The training example of one X-Instruction record."""


def cross_lingual_instruction(instruction: str, language: str) -> str:
    """The instruction as the paper trains on it: followed by " Answer in {Language}." (once)."""
    suffix = get_language(language).answer_suffix
    instruction = instruction.rstrip()
    return instruction if instruction.endswith(suffix) else f"{instruction} {suffix}"
