"""The text side of dedup: normalisation, the exact digest and MinHash signatures.

Text is normalised before hashing (Unicode NFKC, case-folded, punctuation dropped, whitespace
collapsed), so copies that differ in case, spacing or quotes are exact duplicates. Near
duplicates are found on character shingles, not words: Thai has no spaces between words, and
a character window also absorbs small edits (a changed date, a fixed typo). Signatures and the
LSH band layout are datasketch's (`affine32` MinHash, its optimal bands), computed in numpy so a
filter worker imports neither datasketch nor scipy (tested against datasketch).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

import numpy as np

from .options import MinHashOptions

_NOT_WORD = re.compile(r"[\W_]+")
# Turkish dotted/dotless i do not survive case changes: "ıslak".upper().casefold() == "islak",
# and "İ".casefold() == "i" + U+0307. normalise folds both to "i" so a re-cased copy is a copy.


def normalise(text: str) -> str:
    """Text as the duplicate tests see it: NFKC, case-folded (Turkish i folded), words separated
    by one space."""
    # Two str.replace, not str.translate: translate looks every character up in a dict.
    folded = unicodedata.normalize("NFKC", text).casefold().replace("ı", "i").replace("\u0307", "")
    return _NOT_WORD.sub(" ", folded).strip()


def exact_digest(normalised: str) -> bytes:
    """16 bytes that stand for the normalised text in exact-duplicate tests."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=16).digest()


_SHINGLE_BASE = np.uint64(0x100000001B3)  # odd 64-bit multiplier of the rolling shingle hash


def shingle_hashes(normalised: str, shingle_chars: int) -> np.ndarray:
    """32-bit hashes of the character shingles of `normalised`, one per position (a repeated
    shingle repeats its hash: a MinHash takes minimums, so repeats change nothing and
    de-duplicating them cost more than it saved). A polynomial over the code points, summed
    window slice by slice in numpy; deterministic across processes, unlike Python's salted
    `hash()`. Text shorter than a shingle is one shingle; empty text has none."""
    codepoints = np.frombuffer(normalised.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if not len(codepoints):
        return np.zeros(0, dtype=np.uint64)  # nothing but punctuation: no shingle
    width = min(shingle_chars, len(codepoints))
    count = len(codepoints) - width + 1
    mixed = codepoints[:count].copy()
    power = np.uint64(1)
    with np.errstate(over="ignore"):  # wraps mod 2**64 on purpose
        for offset in range(1, width):
            power = power * _SHINGLE_BASE
            mixed += codepoints[offset : offset + count] * power
    return (mixed ^ (mixed >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_EMPTY = np.uint32(0xFFFFFFFF)
_SHINGLES_AT_ONCE = 2048  # columns of the permutation x shingle product at a time (1 MB)


def minhash_signature(hashes: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """datasketch's "affine32" MinHash of 32-bit hashes, for all hashes at once: each hash mixed
    by the MurmurHash3 finalizer, then `min over hashes of (a * h + b) mod 2**32` for each
    permutation (a, b), as a permutation x hash matrix reduced along its rows. The same values as
    `MinHash.update_batch` (tested), without its per-hash Python list. No hash gives datasketch's
    empty signature (all 2**32 - 1)."""
    a, b = permutations
    signature = np.full(len(a), _EMPTY, dtype=np.uint32)
    mixed = hashes.astype(np.uint32)
    s1, m1, s2, m2, s3 = _FMIX32
    mixed ^= mixed >> s1
    mixed *= m1
    mixed ^= mixed >> s2
    mixed *= m2
    mixed ^= mixed >> s3
    for start in range(0, len(mixed), _SHINGLES_AT_ONCE):
        block = np.multiply(a[:, None], mixed[start : start + _SHINGLES_AT_ONCE])  # wraps mod 2**32
        block += b[:, None]
        np.minimum(signature, block.min(axis=1), out=signature)
    return signature


@lru_cache(maxsize=None)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for `threshold`: the layout with
    the least false-positive plus false-negative probability (equal weights).

    datasketch integrates with scipy's `quad`; importing scipy costs every filter worker ~0.4 s,
    so the same integrals are taken here by Gauss-Legendre quadrature, exact for these
    polynomials of degree <= num_perm (tested against datasketch)."""
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 2)
    best, layout = float("inf"), (0, 0)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            collide = lambda s: 1 - (1 - s**rows) ** bands  # noqa: E731 - P(candidate) at similarity s
            false_positive = _integral(collide, 0.0, threshold, nodes, weights)
            false_negative = _integral(lambda s: 1 - collide(s), threshold, 1.0, nodes, weights)
            if false_positive + false_negative < best:
                best, layout = false_positive + false_negative, (bands, rows)
    return layout


def _integral(function, low: float, high: float, nodes: np.ndarray, weights: np.ndarray) -> float:
    half = (high - low) / 2
    return float(half * np.dot(weights, function(half * nodes + (low + high) / 2)))


def affine32_permutations(num_perm: int, seed: int) -> np.ndarray:
    """datasketch's `affine32` MinHash parameters (odd multipliers a, offsets b), drawn from the
    seed exactly as `MinHash(num_perm, seed, scheme="affine32")` draws them (tested), without
    importing datasketch and scipy in every worker."""
    generator = np.random.RandomState(seed)
    multipliers = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    offsets = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.array([multipliers, offsets])


class MinHasher:
    """MinHash signatures of character shingles, with the options' permutations and LSH layout.

    The options model holds every check (threshold in (0, 1], shingle_chars >= 1...): a hasher
    is built from checked options only."""

    def __init__(self, options: MinHashOptions):
        self.options = options
        # Seeded permutations, drawn once: runs and tasks with the same seed sign alike.
        self.permutations = affine32_permutations(options.num_perm, options.seed)
        self.bands, self.rows = lsh_bands(options.threshold, options.num_perm)

    def signature(self, normalised: str) -> np.ndarray:
        """The document's MinHash signature: num_perm uint32 values."""
        return minhash_signature(shingle_hashes(normalised, self.options.shingle_chars), self.permutations)
