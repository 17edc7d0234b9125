"""Stage 1, generate: `candidates` English instructions per document, parsed and checked.

The paper's prompt (prompts/instruction_v1.txt) asks for the instruction the document answers.
Candidate c of a document is sampled with seed `seed + c`, so candidates differ and each has its
own cache key. The usable candidates are its outcome `candidates` (flow.py sends them to the
judge); a document whose candidates all fail is rejected with the first one's reason. Its calls
are served by the `generator` model, which has no fallback: left out of the recipe, it is the
embedded local model.
"""

from __future__ import annotations

from ...filtering.langid import load_detector
from ...llm.backends.base import LLMRequest
from ...llm.calls import CallResult
from ..pairs import Pair, Reject
from ..prompts import load_prompt
from ..stage import STAGES, Stage, StageContext, Work
from .checks import instruction_problem
from .config import GenerateConfig
from .parsing import instruction_block, parse_instruction

STOP = ("###", "\n\n")


@STAGES.register(GenerateConfig)
class Generate(Stage):
    role = "generator"
    outcomes = ("candidates",)
    config: GenerateConfig

    def __init__(self, config: GenerateConfig, context: StageContext) -> None:
        super().__init__(config, context)
        self.checks = context.versions.instruction_checks  # the run folder's (versions.py)
        self.template = load_prompt("generate", config.prompt)

    def prepare(self) -> None:
        load_detector()  # the checks ask whether an instruction is English

    def requests(self, item: Work) -> list[LLMRequest]:
        prompt = self.template.render(text=item.doc.text)
        return [self.request(prompt, self.config.sampling.params(self.seed + c, STOP)) for c in range(self.config.candidates)]

    def describe(self) -> str:
        g = self.config
        return (
            f"{self.template.version}, {g.candidates} candidate(s)/doc, "
            f"max_new_tokens={g.sampling.max_new_tokens}, T={g.sampling.temperature}, seed={self.seed}"
        )

    def read(self, item: Work, results: list[CallResult]) -> Work | Reject:
        tried = [self._candidate(item, c, result) for c, result in enumerate(results)]
        usable = tuple(pair for pair, problem, _ in tried if problem is None)
        if usable:
            return item.labelled("candidates", usable, *["candidates_usable"] * len(usable))
        details = [{"instruction": pair.instruction, "reason": problem, "raw": raw} for pair, problem, raw in tried]
        return item.reject(f"generate:{tried[0][1]}", candidates=details)

    def _candidate(self, item: Work, c: int, result: CallResult) -> tuple[Pair, str | None, str]:
        """(pair, reject reason or None, the raw reply or the call's error)."""
        doc = item.doc
        if result.completion is None:
            return Pair(doc, "", doc.text, candidate=c), "call_failed", str(result.error)
        raw = result.completion.text
        instruction = parse_instruction(raw)
        pair = Pair(doc, instruction, doc.text, candidate=c, prompts=(self.template.version,))
        return pair, instruction_problem(instruction, doc.text, self.config, source=instruction_block(raw), checks=self.checks), raw
