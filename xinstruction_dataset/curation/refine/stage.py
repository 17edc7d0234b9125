"""Stage 3, refine: rewrite pairs labelled needs_refinement (the curate loop re-judges them).

`target: instruction` rewrites the English instruction to fit the response; the rewrite must
pass generate's checks. `target: response` rewrites the response in the target language,
faithful to its facts; a rewrite that is not in the target language is rejected. Round r
samples with seed `seed + r`, so a pair that comes back for another round gets a fresh rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...llm.backends.base import LLMRequest
from ...languages import get_language
from ..config import GenerateConfig, RefineConfig
from ..generate import instruction_problem, parse_instruction
from ...filtering.langid import is_language
from ..pairs import Pair
from ..prompts import load_prompt
from .parsing import parse_response

STOPS = {"instruction": ("###", "\n\n"), "response": ("###",)}


@dataclass
class RefineOutcome:
    rewritten: list[Pair] = field(default_factory=list)  # unjudged, input order
    failed: dict[tuple[str, int], tuple[str, dict[str, Any]]] = field(default_factory=dict)


def refine_request(pair: Pair, config: RefineConfig, language: str, seed: int) -> LLMRequest:
    prompt = load_prompt("refine", config.prompt).render(
        language=get_language(language).name, instruction=pair.instruction, response=pair.response
    )
    return LLMRequest(prompt=prompt, params=config.sampling.params(seed + pair.round + 1, STOPS[config.target]))


def refine(pairs: list[Pair], runner, config: RefineConfig, checks: GenerateConfig, language: str, seed: int) -> RefineOutcome:
    version = load_prompt("refine", config.prompt).version
    results = {r.tag: r for r in runner.run((pair.tag, refine_request(pair, config, language, seed)) for pair in pairs)}
    outcome = RefineOutcome()
    for pair in pairs:
        result = results[pair.tag]
        if result.completion is None:
            outcome.failed[pair.tag] = ("refine:call_failed", {"error": str(result.error)})
            continue
        rewritten, problem = _rewrite(pair, result.completion.text, config, checks, language, version)
        if problem is None:
            outcome.rewritten.append(rewritten)
        else:
            outcome.failed[pair.tag] = (f"refine:{problem}", {"raw": result.completion.text, "round": pair.round + 1})
    return outcome


def _rewrite(pair: Pair, raw: str, config: RefineConfig, checks: GenerateConfig, language: str, version: str) -> tuple[Pair, str | None]:
    if config.target == "instruction":
        instruction = parse_instruction(raw)
        return pair.rewritten(instruction, pair.response, version), instruction_problem(instruction, pair.response, checks)
    response = parse_response(raw)
    rewritten = pair.rewritten(pair.instruction, response, version)
    if not response:
        return rewritten, "empty"
    same, found = is_language(response, language, config.min_language_prob)
    return rewritten, None if same else f"wrong_language:{found}"
