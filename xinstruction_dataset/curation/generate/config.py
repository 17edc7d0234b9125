"""The recipe's `curation.generate:` block (checked when the recipe is loaded, see config.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ...options import ConfigModel
from ..stage import Sampling, StageKind

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class GenerateConfig(ConfigModel):
    """Instruction back-generation: `candidates` English instructions per document."""

    stage: StageKind[Literal["generate"]] = "generate"
    prompt: Annotated[str, Field(min_length=1)] = "instruction_v1"  # template file in curation/generate/prompts/
    candidates: Annotated[int, Field(ge=1, le=64)] = 2  # sampled with seeds seed, seed+1, ...; the best-judged one is kept
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=128))
    min_words: Annotated[int, Field(ge=0)] = 3  # fewer words: rejected `too_short`
    max_chars: Annotated[int, Field(ge=1)] = 600  # paper's instructions are ~100±85 chars; longer: rejected `too_long`
    max_copy_overlap: Probability = 0.6  # share of words inside 3-grams copied from the document
    min_english_prob: Probability = 0.5  # language-ID probability of English below this: `not_english`
