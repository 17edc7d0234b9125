"""Duplicate removal: `exact_dedup`, `near_dedup` (MinHash LSH) and `dedup` (both, exact first).

In a filter run (`xinstruction filter`/`build`) these blocks do not run document by document:
the pipeline runs them last, over the whole language across every task and machine, clusters
duplicates (connected components) and keeps the smallest id of each cluster (see
filtering/duplicates.py). Called on a stream by hand (`block(doc)`), a block links each document
to every earlier one, kept or not, so chains (A~B, B~C) are one cluster there too; a stream
cannot see later documents, so there the earliest of a cluster is kept.

Text is normalised before hashing (Unicode NFKC, case-folded, punctuation dropped, whitespace
collapsed), so copies that differ in case, spacing or quotes are exact duplicates. Near
duplicates are found on character shingles, not words: Thai has no spaces between words, and
a character window also absorbs small edits (a changed date, a fixed typo).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ...documents import Document
from ...errors import UsageError
from ...options import ConfigModel
from .base import BaseFilter, FilterResult, register

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


class ExactIndex:
    """Digest of the normalised text -> id of the first document with it (16 bytes a key)."""

    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}

    def check_and_add(self, doc: Document, normalised: str) -> str | None:
        """The id of an earlier identical document, or None after recording this one."""
        digest = exact_digest(normalised)
        earlier = self._first.get(digest)
        if earlier is None:
            self._first[digest] = doc.id
        return earlier


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


class MinHashIndex:
    """MinHash signatures of character shingles in an LSH index (datasketch's band layout and
    permutations; bands bucketed by their exact values).

    LSH returns candidates whose estimated Jaccard similarity is *likely* above the threshold;
    with `verify` each candidate's signature is compared and only a real match counts, at the
    cost of keeping every signature (4 bytes x num_perm per document)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_chars: int = 5, seed: int = 1, verify: bool = True):
        if not 0.0 < threshold <= 1.0:
            raise UsageError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        if shingle_chars < 1:
            raise UsageError(f"shingle_chars must be >= 1, got {shingle_chars}")
        self.threshold, self.num_perm, self.shingle_chars, self.seed = threshold, num_perm, shingle_chars, seed
        self.verify = verify
        # Seeded permutations, drawn once: runs and shards with the same seed sign alike.
        self._permutations = affine32_permutations(num_perm, seed)
        bands, rows = lsh_bands(threshold, num_perm)
        self._bands = [slice(band * rows, (band + 1) * rows) for band in range(bands)]
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
        self._ids: list[str] = []  # LSH key (insertion number) -> id of its cluster's first document
        self._signatures: list[np.ndarray] = []

    def signature(self, normalised: str) -> np.ndarray:
        """The document's MinHash signature: num_perm uint32 values."""
        return minhash_signature(shingle_hashes(normalised, self.shingle_chars), self._permutations)

    def check_and_add(self, doc: Document, normalised: str) -> str | None:
        signature = self.signature(normalised)
        keys = [signature[band].tobytes() for band in self._bands]
        candidates = {key for bucket, band_key in zip(self._buckets, keys) for key in bucket.get(band_key, ())}
        # Sorted, so the answer is reproducible. Every document is indexed, duplicates too, and
        # names its cluster's first document: A~B, B~C is one cluster.
        matches = [key for key in sorted(candidates) if not self.verify or self._similarity(signature, key) >= self.threshold]
        key = len(self._ids)
        for bucket, band_key in zip(self._buckets, keys):
            bucket.setdefault(band_key, []).append(key)
        self._ids.append(self._ids[matches[0]] if matches else doc.id)
        if self.verify:
            self._signatures.append(signature)
        return self._ids[key] if matches else None

    def _similarity(self, signature: np.ndarray, key: int) -> float:
        return float(np.mean(signature == self._signatures[key]))

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "num_perm": self.num_perm, "shingle_chars": self.shingle_chars, "seed": self.seed, "verify": self.verify}


class ExactDedupOptions(ConfigModel):
    """`{type: exact_dedup}`: no options."""

    type: Literal["exact_dedup"] = "exact_dedup"


class MinHashOptions(ConfigModel):
    """The options of MinHashIndex, shared by `near_dedup` and `dedup`."""

    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    num_perm: Annotated[int, Field(ge=2, le=4096)] = 128
    shingle_chars: Annotated[int, Field(ge=1)] = 5
    seed: Annotated[int, Field(ge=0)] = 1
    verify: bool = True


class NearDedupOptions(MinHashOptions):
    """`{type: near_dedup, ...}`: NearDedupFilter's options, checked when the recipe loads."""

    type: Literal["near_dedup"] = "near_dedup"


class DedupOptions(MinHashOptions):
    """`{type: dedup, ...}`: DedupFilter's options (`near`, then those of `near_dedup`)."""

    type: Literal["dedup"] = "dedup"
    near: bool = True


@register("exact_dedup")
class ExactDedupFilter(BaseFilter):
    """Reject a document whose normalised text was seen before: `exact_duplicate_of:<id>`."""

    def __init__(self) -> None:
        super().__init__()
        self.index = ExactIndex()

    def filter(self, doc: Document) -> FilterResult:
        earlier = self.index.check_and_add(doc, normalise(doc.text))
        return (False, f"exact_duplicate_of:{earlier}") if earlier else True


@register("near_dedup")
class NearDedupFilter(BaseFilter):
    """Reject a document too similar to one kept before: `near_duplicate_of:<id>`.

    Options:
        threshold: 0.8, Jaccard similarity of the shingle sets (estimated by MinHash).
        num_perm: 128 permutations (precision of the estimate; LSH bands chosen by datasketch).
        shingle_chars: 5 characters per shingle (works with or without spaces between words).
        seed: 1, the MinHash permutation seed: fixed, so runs and shards hash alike.
        verify: True, confirm LSH candidates on their signatures (see MinHashIndex).
    Metadata: none (a signature is too large to carry).
    """

    def __init__(self, **options: Any):
        super().__init__()
        self.index = MinHashIndex(**options)

    def filter(self, doc: Document) -> FilterResult:
        earlier = self.index.check_and_add(doc, normalise(doc.text))
        return (False, f"near_duplicate_of:{earlier}") if earlier else True

    def config(self) -> dict[str, Any]:
        return self.index.config()


@register("dedup")
class DedupFilter(BaseFilter):
    """Exact then near duplicates in one block: the cheap hash answers most repeats (and names
    them `exact_duplicate_of`); MinHash runs only on texts not seen verbatim.

    Options: `near` (True; False keeps only the exact test) and the options of `near_dedup`.
    """

    def __init__(self, near: bool = True, **near_options: Any):
        super().__init__()
        self.exact = ExactIndex()
        self.near = MinHashIndex(**near_options) if near else None

    def filter(self, doc: Document) -> FilterResult:
        normalised = normalise(doc.text)
        earlier = self.exact.check_and_add(doc, normalised)
        if earlier:
            return False, f"exact_duplicate_of:{earlier}"
        earlier = self.near.check_and_add(doc, normalised) if self.near else None
        return (False, f"near_duplicate_of:{earlier}") if earlier else True

    def config(self) -> dict[str, Any]:
        return {"near": self.near is not None, **(self.near.config() if self.near else {})}
