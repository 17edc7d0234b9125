"""Why a generated instruction is unusable: empty, control characters, a server's error page or
other markup, too short/long, not English, copied from the document. Shared by generate and by
refine (a rewritten instruction passes the same checks).

Checks versions (a run folder records the one its outputs were made with, curation/versions.py):
`v1` (a folder that records none) has no check of control characters and markup; `v2` adds them.
A backend or proxy can answer 200 with its error page as the text (an nginx 502 body inside valid
JSON), and such text, or text with NUL and escape codes, must never become a record.
"""

from __future__ import annotations

import re

from .config import GenerateConfig
from ...filtering.langid import is_language

_WORD = re.compile(r"\w+", re.UNICODE)
_NGRAM = 3

LEGACY = "v1"  # the checks of a folder that records no version
CURRENT = "v2"  # the checks a new folder records

# C0 but tab, newline and carriage return; DEL; C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MARKUP_START = re.compile(r"\s*<(?:!doctype|html)(?![\w-])", re.IGNORECASE)
_ERROR_PAGE = re.compile(
    r"<title>[^<]*?(?<!\d)[45]\d\d(?!\d)[^<]*</title>|\bbad\s+gateway\b|\bservice\s+(?:temporarily\s+)?unavailable\b",
    re.IGNORECASE,
)


def looks_like_error_page(text: str) -> str | None:
    """`server_error_page` (a `<title>` with a 4xx/5xx status, "Bad Gateway", "Service
    Unavailable"), `markup` (text that starts as an HTML document), or None."""
    if _ERROR_PAGE.search(text):
        return "server_error_page"
    if _MARKUP_START.match(text):
        return "markup"
    return None


def text_problem(text: str) -> str | None:
    """`control_characters`, `server_error_page` or `markup` for text no record may hold, else None."""
    if _CONTROL.search(text):
        return "control_characters"
    return looks_like_error_page(text)


def instruction_problem(instruction: str, document: str, config: GenerateConfig, *, source: str | None = None, checks: str = CURRENT) -> str | None:
    """The reject reason for `instruction`, or None when it is usable. `source` is the raw text it
    was parsed from (parsing folds some control characters into spaces; they are checked there)."""
    if not instruction:
        return "empty"
    if checks != LEGACY:
        problem = text_problem(instruction)
        if problem is None and source and _CONTROL.search(source):
            problem = "control_characters"
        if problem is not None:
            return problem
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
