"""A throwaway plug-in stage with a role of its own, for test_stage_plugins.py: it rewrites the
instruction of every pair the judge found good, with the `polisher` model (falling back to the
judge's). It is one file: its config, its stage class, one decorator, its place in the flow.

Imported only in a fresh interpreter, before the recipe: the stage registry closes when the
curation config is built, and this module's registration must come first."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import Field

from xinstruction_dataset.curation.flow import Drop, Go
from xinstruction_dataset.curation.stage import DONE, STAGES, Sampling, Stage, StageKind
from xinstruction_dataset.options import ConfigModel

POLISH_MARK = "### Polished instruction:"


class PolishConfig(ConfigModel):
    stage: StageKind[Literal["polish"]] = "polish"
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=64, temperature=0.0))
    max_chars: Annotated[int, Field(ge=1)] = 300


@STAGES.register(PolishConfig)
class Polish(Stage):
    role = "polisher"
    role_fallback = "judge"
    outcomes = ("polished", "unchanged")
    routes = {
        ("judge", "good"): Go("polish"),  # spliced in between the judge and done
        ("polish", "polished"): Go(DONE),
        ("polish", "unchanged"): Drop("polish:unchanged"),
    }

    def requests(self, item):
        (pair,) = item.pairs
        return [self.request(f"### Instruction:\n{pair.instruction}\n\n{POLISH_MARK}\n", self.config.sampling.params(self.seed))]

    def read(self, item, results):
        (pair,), (result,) = item.pairs, results
        if result.completion is None:
            return item.reject("polish:call_failed", error=str(result.error))
        polished = result.completion.text.strip()[: self.config.max_chars]
        if polished == pair.instruction:
            return item.labelled("unchanged", item.pairs)
        return item.labelled("polished", (replace(pair, instruction=polished, prompts=(*pair.prompts, "polish:inline")),), "polished")
