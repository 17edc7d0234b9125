"""Read a rewritten response out of a model's reply: the text up to the next `###` header, without
a leading "Response:" label. (Rewritten instructions use generate's `parse_instruction`.)"""

from __future__ import annotations

import re

_HEADER = re.compile(r"#{3,}")
_LABEL = re.compile(r"^\s*(?:[#*>]+\s*)?\**\s*(?:(?:improved|rewritten|new)\s+)?response(?:\s+in\s+\w+)?\s*\**\s*[:：]\s*\**\s*", re.IGNORECASE)


def parse_response(raw: str) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _LABEL.sub("", text.lstrip(), count=1)
    return _HEADER.split(text, maxsplit=1)[0].strip()
