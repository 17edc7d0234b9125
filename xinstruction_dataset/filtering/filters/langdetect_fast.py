"""langdetect's Detector without its per-character Python loops: same answers, several times faster.

langdetect walks the text one character at a time in Python (cleaning, normalising, n-gram
extraction: three method calls per character) and updates its 55 language probabilities in
index loops. `QuickDetector` keeps every decision langdetect makes and only changes how it is
computed:

* spaces are collapsed and Latin letters counted and removed with regex passes over runs;
* characters are normalised through a `str.translate` table filled on first sight of each
  character by langdetect's own `NGram.normalize`;
* n-grams are extracted word by word. langdetect's n-gram window starts afresh after every space,
  so a word's n-grams depend on the word alone (and on whether a space follows it): they are
  computed once, by the very loop langdetect runs, and cached across documents;
* the probability updates are list comprehensions doing the same float operations in the same
  order.

So the n-gram list, the random draws from it and the probabilities are langdetect's, bit for bit
(tests/test_filters.py compares them with `langdetect.detector.Detector` on every shared
corpus and noise record).
"""

from __future__ import annotations

import re
from functools import lru_cache, partial

import numpy as np
from langdetect.detector import Detector
from langdetect.lang_detect_exception import ErrorCode, LangDetectException
from langdetect.utils.ngram import NGram

_SPACE_RUNS = re.compile(" {2,}")
_LATIN_RUNS = re.compile("[A-z]+")  # langdetect's test: 'A' <= ch <= 'z' (so also [\]^_`)
# langdetect means ch >= U+0300 outside the Latin Extended Additional block, but compares the
# block's number with its name, so every ch >= U+0300 counts; so here too.
_NON_LATIN_RUNS = re.compile("[\u0300-\U0010ffff]+")
_WORD_CACHE = 1 << 16  # distinct words whose n-grams are kept (Zipf: a few thousand do most work)
_ROW_CACHE = 1 << 14  # n-grams whose 55 probabilities are kept as an array (~9 MB at most)


class _NormalisedChars(dict):
    """`str.translate` table: code point -> `NGram.normalize(char)`, computed on first sight."""

    def __missing__(self, codepoint: int) -> str:
        normalised = self[codepoint] = NGram.normalize(chr(codepoint))
        return normalised


_NORMALISED = _NormalisedChars()


def word_ngrams(word: str, followed_by_space: bool, vocabulary: dict) -> tuple[str, ...]:
    """The n-grams langdetect's `_extract_ngrams` emits for one normalised word (no space inside),
    starting from its fresh window `' '`: `NGram.add_char` and the extraction loop, inlined."""
    grams, capital, found = " ", False, []
    for ch in word + " " if followed_by_space else word:
        last = grams[-1]
        if last == " ":
            grams, capital = " ", False
            if ch == " ":
                continue
        elif len(grams) >= NGram.N_GRAM:
            grams = grams[1:]
        grams += ch
        if ch.isupper():
            if last.isupper():
                capital = True  # inside an all-capitals word: langdetect skips its n-grams
        else:
            capital = False
        if capital:
            continue
        for n in range(1, NGram.N_GRAM + 1):
            if len(grams) < n:
                break
            gram = grams[-n:]
            if gram != " " and gram in vocabulary:
                found.append(gram)
    return tuple(found)


class QuickProfiles:
    """What every QuickDetector of one langdetect factory shares: the factory, the n-grams of
    each word seen (bounded cache) and each drawn n-gram's language probabilities as an array."""

    def __init__(self, factory):
        self.factory = factory
        vocabulary = factory.word_lang_prob_map
        self.word_ngrams = lru_cache(maxsize=_WORD_CACHE)(partial(word_ngrams, vocabulary=vocabulary))
        self.row = lru_cache(maxsize=_ROW_CACHE)(lambda gram: np.array(vocabulary[gram], dtype=np.float64))

    def detector(self) -> "QuickDetector":
        return QuickDetector(self)


class QuickDetector(Detector):
    """A `langdetect.detector.Detector` with the slow loops replaced (see the module docstring)."""

    def __init__(self, profiles: QuickProfiles):
        super().__init__(profiles.factory)
        self._profiles = profiles

    def append(self, text: str) -> None:
        text = self.URL_RE.sub(" ", text)
        text = self.MAIL_RE.sub(" ", text)
        text = NGram.normalize_vi(text)
        # langdetect keeps a character unless it and the one before are both spaces.
        self.text += _SPACE_RUNS.sub(" ", text[: self.max_text_length])

    def cleaning_text(self) -> None:
        latin = sum(map(len, _LATIN_RUNS.findall(self.text)))
        non_latin = sum(map(len, _NON_LATIN_RUNS.findall(self.text)))
        if latin * 2 < non_latin:
            self.text = _LATIN_RUNS.sub("", self.text)

    def _extract_ngrams(self) -> list[str]:
        words = self.text.translate(_NORMALISED).split(" ")
        found: list[str] = []
        last = len(words) - 1
        for i, word in enumerate(words):
            if word:
                found += self._profiles.word_ngrams(word, i < last)
        return found

    def _detect_block(self) -> None:
        """langdetect's trials: the same random draws and, per language, the same products."""
        self.cleaning_text()
        ngrams = self._extract_ngrams()
        if not ngrams:
            raise LangDetectException(ErrorCode.CantDetectError, "No features in text.")
        langprob = [0.0] * len(self.langlist)
        self.random.seed(self.seed)
        for _ in range(self.n_trial):
            prob = np.array(self._init_probability(), dtype=np.float64)
            alpha = self.alpha + self.random.gauss(0.0, 1.0) * self.ALPHA_WIDTH
            # langdetect updates once, then checks convergence every 5th update: draw in those
            # steps (nothing else draws in between, so the random sequence is the same).
            step = 0
            while True:
                draws = [self.random.choice(ngrams) for _ in range(1 if step == 0 else 5)]
                prob, top = self._update_and_normalise(prob, draws, alpha)
                if top > self.CONV_THRESHOLD or step >= self.ITERATION_LIMIT:
                    break
                step += 5
            langprob = [total + p for total, p in zip(langprob, (prob / self.n_trial).tolist())]
        self.langprob = langprob

    def _update_and_normalise(self, prob: np.ndarray, grams: list[str], alpha: float) -> tuple[np.ndarray, float]:
        """langdetect's `prob[i] *= weight + word_prob[i]` for each gram in turn (a cumulative
        product keeps that order), then `prob[i] / sum(prob)` with Python's left-to-right sum."""
        weight = alpha / self.BASE_FREQ
        factors = np.empty((len(grams) + 1, len(prob)))
        factors[0] = prob
        for factor, gram in zip(factors[1:], grams):
            np.add(self._profiles.row(gram), weight, out=factor)
        prob = np.multiply.accumulate(factors, axis=0)[-1]
        prob = prob / sum(prob.tolist())
        return prob, max(0.0, float(prob.max()))
