"""The recipe's `curation.refine:` block (checked when the recipe is loaded, see config.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...options import ConfigModel
from ..stage import Sampling, StageKind

REFINE_TARGETS = ("instruction", "response")


class RefineConfig(ConfigModel):
    """Pairs labelled needs_refinement are rewritten and judged again, up to `rounds` times.

    `target: instruction` rewrites the English instruction to fit the (human-written) response;
    `target: response` rewrites the response in the target language, keeping its facts. Pairs
    still needing refinement after the last round are rejected, or kept ranked below `good`
    pairs when `keep_exhausted` is true (the route is flow.py's; the knobs are here, where a
    reader of the recipe looks for them)."""

    stage: StageKind[Literal["refine"]] = "refine"
    rounds: Annotated[int, Field(ge=0, le=10)] = 2
    target: Literal[REFINE_TARGETS] = "instruction"
    prompt: str = ""  # default: refine_<target>_v1
    sampling: Sampling | None = None  # default: 128 new tokens (instruction) / 1024 (response)
    keep_exhausted: bool = False
    min_language_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # a rewritten response below this for the target language: rejected

    @model_validator(mode="after")
    def _resolve(self) -> "RefineConfig":
        self.prompt = self.prompt or f"refine_{self.target}_v1"
        if self.sampling is None:
            self.sampling = Sampling(max_new_tokens=128 if self.target == "instruction" else 1024)
        return self
