"""The dedup kinds as language steps: `exact_dedup`, `near_dedup` and `dedup` (exact, then near).

Each recipe entry becomes a `DedupStep` with one config (`DedupConfig`): which block names exact
duplicates, which names near ones, and the MinHash options of the latter. The chain's dedup
entries are one step (one clustering over the language: an exact link and a near link of one
document put all three in one cluster), so two entries with different near-duplicate options are
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...documents import Document
from ...errors import UsageError
from .clusters import find_duplicates
from .options import DedupOptions, ExactDedupOptions, MinHashOptions, NearDedupOptions
from .signatures import SignatureWriter, load_digests, load_signatures
from .steps import LANGUAGE_STEPS, InMemoryTasks, LanguageStep, LanguageTasks, Removal


@dataclass(frozen=True)
class DedupConfig:
    """What the chain's dedup entries ask for, as one config."""

    exact_block: str | None = None
    near_block: str | None = None
    near: MinHashOptions | None = None

    def merged(self, other: "DedupConfig") -> "DedupConfig":
        if self.near_block and other.near_block and self.near != other.near:
            raise UsageError("a filter chain may have one near-duplicate block (dedup or near_dedup); merge their options")
        if other.near_block:  # the later entry names the near duplicates, as before steps were typed
            return DedupConfig(self.exact_block or other.exact_block, other.near_block, other.near)
        return DedupConfig(self.exact_block or other.exact_block, self.near_block, self.near)


class DedupStep(LanguageStep):
    family = "dedup"
    key_field = "dedup"
    transient_files = ("signatures.npy",)

    def __init__(self, config: DedupConfig):
        self.config = config

    def merged(self, other: LanguageStep) -> "DedupStep":
        assert isinstance(other, DedupStep)
        return DedupStep(self.config.merged(other.config))

    @property
    def name(self) -> str:
        """The block that counts this step's removals in the summary."""
        return self.config.near_block or self.config.exact_block or "dedup"

    def signer(self) -> SignatureWriter:
        return SignatureWriter(self.config.near if self.config.near_block else None)

    def decide(self, tasks: LanguageTasks, excluded: np.ndarray) -> list[Removal]:
        digests = [load_digests(folder) for folder in tasks.folders]
        signatures = [load_signatures(folder) for folder in tasks.folders] if self.config.near_block else []
        return find_duplicates(
            tasks, digests, signatures,
            exact_block=self.config.exact_block, near_block=self.config.near_block, near=self.config.near, excluded=excluded,
        )

    def decide_documents(self, docs: list[Document]) -> list[Removal]:
        """The same decision over documents in memory, as if one task had kept them all (for a
        stream checked by hand: the smallest id of each cluster is kept, wherever it is)."""
        signer = self.signer()
        for doc in docs:
            signer.add(doc)
        digests, signatures = signer.arrays()
        tasks = InMemoryTasks([doc.id for doc in docs])
        return find_duplicates(
            tasks, [digests], [signatures] if self.config.near_block else [],
            exact_block=self.config.exact_block, near_block=self.config.near_block, near=self.config.near,
            excluded=np.zeros(len(docs), dtype=bool),
        )

    def task_key(self) -> dict[str, Any]:
        """As tasks described their dedup before steps were typed (so finished tasks stay finished):
        the near options sorted by name."""
        near = sorted(self.config.near.model_dump().items()) if self.config.near_block and self.config.near else []
        return {"exact_block": self.config.exact_block, "near_block": self.config.near_block, "near": near}

    def describe(self) -> str:
        parts = ["exact"] if self.config.exact_block else []
        if self.config.near_block and self.config.near:
            parts.append(f"MinHash near duplicates (Jaccard >= {self.config.near.threshold}, {self.config.near.num_perm} permutations)")
        return " + ".join(parts) + "; clusters keep their smallest id"

    def stats(self, documents_in: int, removals: list[Removal]) -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {"in": documents_in, "kept": documents_in - len(removals)}
        for removal in removals:
            key = f"rejected:{removal.reason}"
            counts[key] = counts.get(key, 0) + 1
        return self.name, counts


@LANGUAGE_STEPS.register(ExactDedupOptions)
def exact_dedup(options: ExactDedupOptions) -> DedupStep:
    return DedupStep(DedupConfig(exact_block=options.type))


@LANGUAGE_STEPS.register(NearDedupOptions)
def near_dedup(options: NearDedupOptions) -> DedupStep:
    return DedupStep(DedupConfig(near_block=options.type, near=options.minhash()))


@LANGUAGE_STEPS.register(DedupOptions)
def dedup(options: DedupOptions) -> DedupStep:
    near = options.minhash() if options.near else None
    return DedupStep(DedupConfig(exact_block=options.type, near_block=options.type if options.near else None, near=near))
