"""`--format alpaca`: `{"instruction", "input", "output"}`: the English instruction with the
paper's " Answer in {Language}." suffix (the X-Instruction training prompt), an empty `input`,
the response."""

from __future__ import annotations

from typing import Any, Literal

import datasets

from ...registry import PluginSpec
from .base import TRAINING_FORMATS, TrainingFormat, cross_lingual_instruction


class AlpacaFormat(PluginSpec):
    format: Literal["alpaca"] = "alpaca"


def to_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    return {"instruction": cross_lingual_instruction(record["instruction"], record["language"]), "input": "", "output": record["output"]}


@TRAINING_FORMATS.register(AlpacaFormat)
class Alpaca(TrainingFormat):
    name = "alpaca"
    features = datasets.Features({k: datasets.Value("string") for k in ("instruction", "input", "output")})
    shape = "instruction / input / output (Alpaca)"

    def __init__(self, spec: AlpacaFormat) -> None:
        self.spec = spec

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        return to_alpaca(record)
