"""Why a generated instruction is unusable: empty, too short/long, not English, copied from the
document. Shared by generate and by refine (a rewritten instruction passes the same checks)."""

from __future__ import annotations

import re

from ..config import GenerateConfig
from ...filtering.langid import is_language

_WORD = re.compile(r"\w+", re.UNICODE)
_NGRAM = 3


def instruction_problem(instruction: str, document: str, config: GenerateConfig) -> str | None:
    """The reject reason for `instruction`, or None when it is usable."""
    if not instruction:
        return "empty"
    words = _WORD.findall(instruction.lower())
    if len(words) < config.min_words:
        return "too_short"
    if len(instruction) > config.max_chars:
        return "too_long"
    english, found = is_language(instruction, "en", config.min_english_prob)
    if not english:
        return f"not_english:{found}"
    if copy_overlap(words, _WORD.findall(document.lower())) > config.max_copy_overlap:
        return "copied_from_text"
    return None


def copy_overlap(words: list[str], document_words: list[str]) -> float:
    """The share of `words` covered by word 3-grams that also occur in the document (for
    instructions shorter than 3 words: 1.0 when the whole instruction occurs in it)."""
    if not words:
        return 0.0
    if len(words) < _NGRAM:
        return 1.0 if _contains(document_words, words) else 0.0
    seen = {tuple(document_words[i : i + _NGRAM]) for i in range(len(document_words) - _NGRAM + 1)}
    covered = [False] * len(words)
    for i in range(len(words) - _NGRAM + 1):
        if tuple(words[i : i + _NGRAM]) in seen:
            covered[i : i + _NGRAM] = [True] * _NGRAM
    return sum(covered) / len(words)


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))
