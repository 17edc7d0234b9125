"""langdetect's Detector without its per-character Python loops: same answers, several times faster.

langdetect walks the text one character at a time in Python (cleaning, normalising, n-gram
extraction: three method calls per character) and updates its 55 language probabilities in
index loops. `QuickDetector` keeps every decision langdetect makes and only changes how it is
computed:

* spaces are collapsed and Latin letters counted and removed with regex passes over runs;
* characters are normalised through a `str.translate` table filled on first sight of each
  character by langdetect's own `NGram.normalize`;
* n-grams are found for the whole text at once, as numbers (`NGramIndex`): each profile
  character gets a small id, a 2- or 3-gram is the number its ids spell, and one sorted lookup
  per text finds which candidates are in the profiles. Which candidates langdetect reads is an
  array rule: its window restarts after each space and holds 3 characters at most, and it skips
  a position where this character and the one before are both capitals. So the cost no longer
  depends on having seen the words before (a per-word cache did: new words cost 5 µs each);
* the probability updates multiply rows of one probability matrix in the same order.

So the n-gram list, the random draws from it and the probabilities are langdetect's, bit for bit
(tests/test_filters.py compares them with `langdetect.detector.Detector` on every shared
corpus and noise record and on random texts).
"""

from __future__ import annotations

import re

import numpy as np
from langdetect.detector import Detector
from langdetect.lang_detect_exception import ErrorCode, LangDetectException
from langdetect.utils.ngram import NGram

_SPACE_RUNS = re.compile(" {2,}")
_LATIN_RUNS = re.compile("[A-z]+")  # langdetect's test: 'A' <= ch <= 'z' (so also [\]^_`)
# langdetect means ch >= U+0300 outside the Latin Extended Additional block, but compares the
# block's number with its name, so every ch >= U+0300 counts; so here too.
_NON_LATIN_RUNS = re.compile("[\u0300-\U0010ffff]+")
_CODE_POINTS = 0x110000
_SPACE = ord(" ")
_ABSENT = -1


class _NormalisedChars(dict):
    """`str.translate` table: code point -> `NGram.normalize(char)`, computed on first sight."""

    def __missing__(self, codepoint: int) -> str:
        normalised = self[codepoint] = NGram.normalize(chr(codepoint))
        return normalised


_NORMALISED = _NormalisedChars()


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class NGramIndex:
    """langdetect's n-gram profiles as arrays: gram ids, a probability matrix (one row per gram,
    one column per language, the profile's own floats) and lookups from character ids. About
    40 MB per process beside langdetect's own profiles (the matrix: 87,598 grams x 55 float64);
    built once, in 0.2 s."""

    def __init__(self, word_lang_prob_map: dict[str, list[float]]):
        self.grams = list(word_lang_prob_map)
        self.probabilities = np.array([word_lang_prob_map[gram] for gram in self.grams], dtype=np.float64)
        alphabet = sorted(set("".join(self.grams)))
        self.base = len(alphabet) + 1  # character id 0: in no gram
        self.char_ids = np.zeros(_CODE_POINTS, dtype=np.uint16 if self.base <= 1 << 16 else np.uint32)
        self.char_ids[[ord(ch) for ch in alphabet]] = np.arange(1, self.base)
        self.unigram_ids = np.full(self.base, _ABSENT, dtype=np.int64)
        keys: dict[int, tuple[list[int], list[int]]] = {2: ([], []), 3: ([], [])}
        for gram_id, gram in enumerate(self.grams):
            if len(gram) == 1:
                self.unigram_ids[self.char_ids[ord(gram)]] = gram_id
            else:
                keys[len(gram)][0].append(self._key([int(self.char_ids[ord(ch)]) for ch in gram]))
                keys[len(gram)][1].append(gram_id)
        self.sorted_keys, self.sorted_ids = {}, {}
        for n, (numbers, ids) in keys.items():
            order = np.argsort(np.array(numbers, dtype=np.uint64), kind="stable")
            self.sorted_keys[n] = np.array(numbers, dtype=np.uint64)[order]
            self.sorted_ids[n] = np.array(ids, dtype=np.int64)[order]

    def _key(self, ids: list[int]) -> int:
        key = 0
        for char_id in ids:
            key = key * self.base + char_id
        return key

    def lookup(self, n: int, keys: np.ndarray) -> np.ndarray:
        """Gram id of each n-gram key, or _ABSENT; one sorted search over the distinct keys."""
        table = self.sorted_keys[n]
        if not len(table):
            return np.full(len(keys), _ABSENT, dtype=np.int64)
        distinct, where = np.unique(keys, return_inverse=True)
        found = np.minimum(np.searchsorted(table, distinct), len(table) - 1)
        ids = np.where(table[found] == distinct, self.sorted_ids[n][found], _ABSENT)
        return ids[where]

    def ngram_ids(self, text: str) -> np.ndarray:
        """Ids of the n-grams langdetect's `_extract_ngrams` emits for normalised `text`, in its
        order: by position, then 1-, 2-, 3-gram. Its window starts as `' '`, restarts after a
        space and holds at most 3 characters; a position whose character and the one before are
        both capitals emits nothing (inside an all-capitals word), nor does a second space."""
        points = code_points(" " + text)  # the window's initial space
        if len(points) < 2:
            return np.zeros(0, dtype=np.int64)
        chars = self.char_ids[points].astype(np.uint64)
        space = points == _SPACE
        capitals = [ord(ch) for ch in set(text) if ch.isupper()]
        capital = np.isin(points, capitals) if capitals else np.zeros(len(points), dtype=bool)
        # Window length at each position i >= 1: from the last space before i, 3 at most.
        last_space = np.maximum.accumulate(np.where(space, np.arange(len(points)), 0))
        window = np.minimum(np.arange(1, len(points)) - last_space[:-1] + 1, 3)
        found = np.full((len(points) - 1, 3), _ABSENT, dtype=np.int64)
        found[:, 0] = np.where(space[1:], _ABSENT, self.unigram_ids[chars[1:]])
        found[:, 1] = np.where(window >= 2, self.lookup(2, chars[:-1] * self.base + chars[1:]), _ABSENT)
        if len(points) > 2:
            trigrams = self.lookup(3, (chars[:-2] * self.base + chars[1:-1]) * self.base + chars[2:])
            found[1:, 2] = np.where(window[1:] >= 3, trigrams, _ABSENT)
        found[(space[1:] & space[:-1]) | (capital[1:] & capital[:-1])] = _ABSENT
        found = found.ravel()
        return found[found != _ABSENT]


class QuickProfiles:
    """What every QuickDetector of one langdetect factory shares: the factory and its n-gram
    profiles as arrays."""

    def __init__(self, factory):
        self.factory = factory
        self.index = NGramIndex(factory.word_lang_prob_map)

    def detector(self) -> "QuickDetector":
        return QuickDetector(self)


class QuickDetector(Detector):
    """A `langdetect.detector.Detector` with the slow loops replaced (see the module docstring)."""

    def __init__(self, profiles: QuickProfiles):
        super().__init__(profiles.factory)
        self._index = profiles.index

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

    def _ngram_ids(self) -> np.ndarray:
        return self._index.ngram_ids(self.text.translate(_NORMALISED))

    def _extract_ngrams(self) -> list[str]:
        """langdetect's n-gram list, as strings (the detector itself works on their ids)."""
        return [self._index.grams[gram_id] for gram_id in self._ngram_ids().tolist()]

    def _detect_block(self) -> None:
        """langdetect's trials: the same random draws and, per language, the same products."""
        self.cleaning_text()
        ngrams = self._ngram_ids().tolist()  # random.choice reads only its length and one item
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

    def _update_and_normalise(self, prob: np.ndarray, gram_ids: list[int], alpha: float) -> tuple[np.ndarray, float]:
        """langdetect's `prob[i] *= weight + word_prob[i]` for each gram in turn (a cumulative
        product keeps that order), then `prob[i] / sum(prob)` with Python's left-to-right sum."""
        weight = alpha / self.BASE_FREQ
        factors = np.empty((len(gram_ids) + 1, len(prob)))
        factors[0] = prob
        np.add(self._index.probabilities[gram_ids], weight, out=factors[1:])
        prob = np.multiply.accumulate(factors, axis=0)[-1]
        prob = prob / sum(prob.tolist())
        return prob, max(0.0, float(prob.max()))
