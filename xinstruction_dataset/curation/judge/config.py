"""The recipe's `curation.judge:` block (checked when the recipe is loaded, see config.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...errors import UsageError
from ...options import ConfigModel
from ..stage import Sampling, StageKind

JUDGE_SCALES = ("three_level", "five_point")
Score = Annotated[int, Field(ge=1, le=5)]


class JudgeConfig(ConfigModel):
    """Labels each (instruction, response) pair: good / needs_refinement / bad.

    `three_level`: the judge answers the label directly. `five_point`: the judge answers a 1-5
    score, mapped to a label with `good_min_score` / `refine_min_score` (the score is kept)."""

    stage: StageKind[Literal["judge"]] = "judge"
    scale: Literal[JUDGE_SCALES] = "three_level"
    prompt: str = ""  # default: judge_<scale>_v1
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=48, temperature=0.3))
    good_min_score: Score = 4
    refine_min_score: Score = 3

    @model_validator(mode="after")
    def _resolve(self) -> "JudgeConfig":
        if self.refine_min_score > self.good_min_score:
            raise UsageError(f"refine_min_score ({self.refine_min_score}) must be <= good_min_score ({self.good_min_score})")
        self.prompt = self.prompt or f"judge_{self.scale}_v1"
        return self
