"""Read a label (or a 1-5 score) out of a judge's free-text reply. Never raises: a reply with
no recognisable answer is `None` (malformed), and the stage retries or rejects it."""

from __future__ import annotations

import re

from ..config import JudgeConfig

_LABEL_WORDS = re.compile(r"needs?[\s_\-]*refine(?:ment)?|\bgood\b|\bbad\b", re.IGNORECASE)
_SCORE = re.compile(r"(?<![\d.])([1-5])(?:\s*/\s*5)?(?![\d]|\.\d)")


def parse_label(reply: str, config: JudgeConfig) -> tuple[str, float | None] | None:
    """(label, score) from `reply`, or None when it holds no answer on the configured scale."""
    if config.scale == "five_point":
        return _parse_score(reply, config)
    match = _LABEL_WORDS.search(reply or "")
    if match is None:
        return None
    word = match.group(0).lower()
    return ("good" if word == "good" else "bad" if word == "bad" else "needs_refinement"), None


def _parse_score(reply: str, config: JudgeConfig) -> tuple[str, float] | None:
    match = _SCORE.search(reply or "")
    if match is None:
        return None
    score = int(match.group(1))
    if score >= config.good_min_score:
        return "good", float(score)
    return ("needs_refinement" if score >= config.refine_min_score else "bad"), float(score)
