"""`--format messages [--system TEXT]`: `{"messages": [{"role", "content"}, ...]}` (OpenAI's
chat format, TRL's `SFTTrainer` conversational format): an optional system prompt, the user's
instruction with the paper's " Answer in {Language}." suffix, the assistant's response."""

from __future__ import annotations

from typing import Any, Literal

import datasets

from ...registry import PluginSpec
from .base import TRAINING_FORMATS, TrainingFormat, cross_lingual_instruction

_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}


class MessagesFormat(PluginSpec):
    format: Literal["messages"] = "messages"
    system: str | None = None  # put first in every conversation


def to_messages(record: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": cross_lingual_instruction(record["instruction"], record["language"])},
        {"role": "assistant", "content": record["output"]},
    ]
    return {"messages": messages}


@TRAINING_FORMATS.register(MessagesFormat)
class Messages(TrainingFormat):
    name = "messages"
    features = datasets.Features({"messages": datasets.List(_MESSAGE)})
    shape = "messages: [{role, content}] (OpenAI / TRL chat)"

    def __init__(self, spec: MessagesFormat) -> None:
        self.spec = spec

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        return to_messages(record, self.spec.system)
