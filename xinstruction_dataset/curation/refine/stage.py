"""Stage 3, refine: rewrite a pair labelled needs_refinement; its outcome `rewritten` goes back to
the judge (flow.py). Its calls are served by the `refiner` model; left out of the recipe, the
refiner is the judge's model.

`target: instruction` rewrites the English instruction to fit the response; the rewrite must
pass generate's checks. `target: response` rewrites the response in the target language,
faithful to its facts; a rewrite that is not in the target language, or holds control
characters or a server's error page (generate/checks.py), is rejected. Round r
samples with seed `seed + r`, so a pair that comes back for another round gets a fresh rewrite.
"""

from __future__ import annotations

from ...filtering.langid import is_language, load_detector
from ...languages import get_language
from ...llm.backends.base import LLMRequest
from ...llm.calls import CallResult
from ..generate import GenerateConfig, instruction_block, instruction_problem, parse_instruction, text_problem
from ..generate.checks import LEGACY
from ..pairs import Pair, Reject
from ..prompts import load_prompt
from ..stage import STAGES, Stage, StageContext, Work
from .config import RefineConfig
from .parsing import parse_response

STOPS = {"instruction": ("###", "\n\n"), "response": ("###",)}


@STAGES.register(RefineConfig)
class Refine(Stage):
    role = "refiner"
    role_fallback = "judge"
    outcomes = ("rewritten",)
    config: RefineConfig

    def __init__(self, config: RefineConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.checks: GenerateConfig = context.curation.generate  # a rewritten instruction passes generate's checks
        self.checks_version = context.versions.instruction_checks  # the run folder's (versions.py)
        self.template = load_prompt("refine", config.prompt)

    def prepare(self) -> None:
        load_detector()  # a rewrite is checked for its language

    def requests(self, item: Work) -> list[LLMRequest]:
        (pair,) = item.pairs
        prompt = self.template.render(language=get_language(item.language).name, instruction=pair.instruction, response=pair.response)
        return [self.request(prompt, self.config.sampling.params(self.seed + pair.round + 1, STOPS[self.config.target]))]

    def describe(self) -> str:
        return f"{self.template.version}, target={self.config.target}, up to {self.config.rounds} round(s)"

    def read(self, item: Work, results: list[CallResult]) -> Work | Reject:
        (pair,), (result,) = item.pairs, results
        if result.completion is None:
            return item.reject("refine:call_failed", error=str(result.error))
        rewritten, problem = self._rewrite(pair, result.completion.text, item.language)
        if problem is not None:
            return item.reject(f"refine:{problem}", raw=result.completion.text, round=pair.round + 1)
        return item.labelled("rewritten", (rewritten,))

    def _rewrite(self, pair: Pair, raw: str, language: str) -> tuple[Pair, str | None]:
        version = self.template.version
        if self.config.target == "instruction":
            instruction = parse_instruction(raw)
            problem = instruction_problem(instruction, pair.response, self.checks, source=instruction_block(raw), checks=self.checks_version)
            return pair.rewritten(instruction, pair.response, version), problem
        response = parse_response(raw)
        rewritten = pair.rewritten(pair.instruction, response, version)
        if not response:
            return rewritten, "empty"
        if self.checks_version != LEGACY and (problem := text_problem(response)) is not None:
            return rewritten, problem
        same, found = is_language(response, language, self.config.min_language_prob)
        return rewritten, None if same else f"wrong_language:{found}"
