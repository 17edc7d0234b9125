"""Stage 1, generate: `candidates` English instructions per document, parsed and checked.

The paper's prompt (prompts/instruction_v1.txt) asks for the instruction the document answers.
Candidate c of a document is sampled with seed `seed + c`, so candidates differ and each has its
own cache key. A document whose candidates all fail is rejected with the first one's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...llm.backends.base import LLMRequest
from ...documents import Document
from ..config import GenerateConfig
from ..pairs import Pair, Reject
from ..prompts import load_prompt
from .checks import instruction_problem
from .parsing import parse_instruction

STOP = ("###", "\n\n")


@dataclass
class GenerateOutcome:
    candidates: dict[str, list[Pair]] = field(default_factory=dict)  # doc id -> usable candidates
    rejects: list[Reject] = field(default_factory=list)


def generate_requests(docs: list[Document], config: GenerateConfig, seed: int) -> list[tuple[tuple[str, int], LLMRequest]]:
    template = load_prompt("generate", config.prompt)
    return [
        ((doc.id, c), LLMRequest(prompt=template.render(text=doc.text), params=config.sampling.params(seed + c, STOP)))
        for doc in docs
        for c in range(config.candidates)
    ]


def generate(docs: list[Document], runner, config: GenerateConfig, language: str, seed: int) -> GenerateOutcome:
    """Run the generation calls through `runner` (a CallRunner) and sort out usable candidates."""
    version = load_prompt("generate", config.prompt).version
    results = {r.tag: r for r in runner.run(generate_requests(docs, config, seed))}
    outcome = GenerateOutcome()
    for doc in docs:
        tried = [_candidate(doc, c, results[(doc.id, c)], config, version) for c in range(config.candidates)]
        usable = [pair for pair, problem, _ in tried if problem is None]
        if usable:
            outcome.candidates[doc.id] = usable
        else:
            details = [{"instruction": pair.instruction, "reason": problem, "raw": raw} for pair, problem, raw in tried]
            outcome.rejects.append(Reject.of(doc, language, f"generate:{tried[0][1]}", candidates=details))
    return outcome


def _candidate(doc: Document, c: int, result, config: GenerateConfig, version: str) -> tuple[Pair, str | None, str]:
    """(pair, reject reason or None, the raw reply or the call's error)."""
    if result.completion is None:
        return Pair(doc, "", doc.text, candidate=c), "call_failed", str(result.error)
    raw = result.completion.text
    instruction = parse_instruction(raw)
    pair = Pair(doc, instruction, doc.text, candidate=c, prompts=(version,))
    return pair, instruction_problem(instruction, doc.text, config), raw
