"""The recipe entries of dedup (`filters:` entries, checked when the recipe loads): one options
model per kind, each check written once, here.

    {type: exact_dedup}                          exact copies (after normalisation)
    {type: near_dedup, threshold: 0.8, ...}      MinHash LSH near duplicates
    {type: dedup, near: true, threshold: ...}    both: exact first (it names the copies), then near
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ...options import ConfigModel


class ExactDedupOptions(ConfigModel):
    """`{type: exact_dedup}`: no options."""

    type: Literal["exact_dedup"] = "exact_dedup"


class MinHashOptions(ConfigModel):
    """MinHash LSH over character shingles, shared by `near_dedup` and `dedup`.

    threshold: Jaccard similarity of the shingle sets (estimated by MinHash) at or above which
        two documents are near duplicates.
    num_perm: permutations (precision of the estimate; LSH bands chosen as datasketch does).
    shingle_chars: characters per shingle (works with or without spaces between words).
    seed: the permutation seed: fixed, so runs and tasks hash alike.
    verify: confirm LSH candidates on their signatures (only a real match counts), at the cost
        of storing every signature (4 bytes x num_perm per document).
    """

    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    num_perm: Annotated[int, Field(ge=2, le=4096)] = 128
    shingle_chars: Annotated[int, Field(ge=1)] = 5
    seed: Annotated[int, Field(ge=0)] = 1
    verify: bool = True

    def minhash(self) -> "MinHashOptions":
        """These options alone (without a kind's own fields such as `type` and `near`)."""
        return MinHashOptions(**{name: getattr(self, name) for name in MinHashOptions.model_fields})


class NearDedupOptions(MinHashOptions):
    """`{type: near_dedup, ...}`: near duplicates only."""

    type: Literal["near_dedup"] = "near_dedup"


class DedupOptions(MinHashOptions):
    """`{type: dedup, ...}`: exact duplicates, then (`near`, default true) near ones."""

    type: Literal["dedup"] = "dedup"
    near: bool = True
