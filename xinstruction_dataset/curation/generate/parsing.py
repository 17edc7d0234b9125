"""Turn a model's raw continuation into one clean instruction line.

Base models run on past the answer (a new `### Text:` section, a blank line, another example)
and instruct models decorate it ("Instruction:", quotes, markdown bold). Keep the first block:
cut at the next `###` header or blank line, drop leading labels, unwrap quotes, join lines.
"""

from __future__ import annotations

import re

_BLOCK_END = re.compile(r"\n[ \t]*\n|#{3,}")
_LABEL = re.compile(
    r"^\s*(?:[#*>\-]+\s*)?\**\s*(?:(?:improved|rewritten|new|english|the)\s+)*(?:instruction|prompt|question|task)\s*\**\s*[:：\-–]\s*\**\s*",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`", "„": "“", "*": "*"}


def parse_instruction(raw: str) -> str:
    """The instruction in `raw`, or "" when there is none."""
    text = " ".join(instruction_block(raw).split())
    return _unquote(_strip_labels(text))


def instruction_block(raw: str) -> str:
    """The part of `raw` the instruction is read from, as the model wrote it (the checks look
    there for control characters that joining its lines would fold into spaces)."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").lstrip()
    text = _strip_labels(text)
    return _BLOCK_END.split(text, maxsplit=1)[0]


def _strip_labels(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = _LABEL.sub("", text, count=1).lstrip()
    return text


def _unquote(text: str) -> str:
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    if text[:1] in _QUOTES and text.count(text[0]) == 1 and _QUOTES[text[0]] not in text[1:]:
        text = text[1:].strip()  # an opening quote whose closing one was cut off
    return text
