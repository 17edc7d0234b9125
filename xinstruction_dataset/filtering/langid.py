"""Language identification for generated text: English instructions, target-language rewrites.

The same deterministic, thread-safe langdetect detector the `language` filter uses (a private
seeded factory: same text, same answer). langdetect rather than fasttext because its
probabilities are clear-cut (> 0.9999 on clean text; short English instructions such as
"Summarize the article." get p > 0.99), so a threshold means something; see bench_filters.py.
"""

from __future__ import annotations

from .filters.langid import get_detector


def load_detector() -> None:
    """Load the detector now (its profiles take ~1 s), not at the first `detect_language`."""
    get_detector("langdetect")


def detect_language(text: str) -> tuple[str, float]:
    """The most likely language code of `text` and its probability; (`unknown`, 0.0) for text
    with no letters to go on (digits, punctuation)."""
    return get_detector("langdetect").detect(text)


def is_language(text: str, code: str, min_prob: float) -> tuple[bool, str]:
    """Whether `text` is in language `code` with probability >= `min_prob`; also the detected code."""
    found, prob = detect_language(text)
    return found == code and prob >= min_prob, found
