"""`eval answer`: the model under test answers X-AlpacaEval configs (or a question file) through
`llm/` (its backend, the call cache), so a killed run resumes and a rerun repeats no finished call.

Each item is put in the answer template (`answer_templates.py`; default: X-Instruction's inference
prompt, `prompts/answer_x_instruction_v1.txt`, sampled as the paper; `--protocol plug|xinstruction`
picks that paper's template, decoding and post-processing). With `samples` N each item is
sampled N times (seeds seed..seed+N-1) and the shortest answer is judged; a template with an
extraction cuts the target-language answer out of a bilingual reply (PLUG's pivot model). A
config's answers are written, as `[{id, output, generator, ...}]` in the release's order, only
when every item has all its samples: a config with failed calls is left unwritten and the next
run retries just those calls.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..llm.backends.base import GenerationParams
from ..llm.calls import CallRunner
from ..storage import write_text
from .answer_templates import AnswerTemplate, extract, select
from .layout import EvalLayout

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "answer_x_instruction_v1"
# `--protocol`'s template: PLUG's format every model of its tables answers in (the pivot model adds
# the extraction: answer_plug_tulu_pivot_v1), X-Instruction's evaluated setting.
PROTOCOL_TEMPLATES = {"plug": "answer_plug_tulu_v1", "xinstruction": "answer_xinstruction_aug_v1"}


@dataclass
class AnswerSummary:
    written: dict[str, str] = field(default_factory=dict)  # config -> answer file
    failed: dict[str, list[str]] = field(default_factory=dict)  # config -> errors of its failed calls
    extraction: dict[str, Counter] = field(default_factory=dict)  # config -> extraction codes, where extracted


@dataclass(frozen=True)
class AnswerPlan:
    """How every item is asked: template, decoding, samples, system texts and layout."""

    template: AnswerTemplate
    params: GenerationParams
    samples: int = 1
    select: str = "shortest"
    strip_output: bool = True
    systems: dict[str, str] = field(default_factory=dict)  # language -> system text ("*": every language)
    chat: bool = False

    def system(self, language: str) -> str:
        return self.systems.get(language, self.systems.get("*", ""))


def check_plan(plan: AnswerPlan, rows_by_config: dict[str, list[dict[str, Any]]]) -> None:
    """Refuse, before any call, what the plan cannot do for these rows (one line each)."""
    extraction = plan.template.settings.extract
    if extraction:
        lacking = sorted({row["language"] for rows in rows_by_config.values() for row in rows} - set(extraction.markers))
        if lacking:
            raise UsageError(
                f"template {plan.template.version} cuts answers out at its markers for {', '.join(extraction.markers)}; "
                f"no marker for {', '.join(lacking)}: answer those with a template without extraction (e.g. answer_plug_tulu_v1)"
            )
    if plan.samples > 1 and plan.params.temperature == 0:
        raise UsageError(f"{plan.samples} samples of a greedy decoding are one answer {plan.samples} times: sample (--temperature > 0) or use --samples 1")


def answer_configs(
    rows_by_config: dict[str, list[dict[str, Any]]], runner: CallRunner, plan: AnswerPlan, layout: EvalLayout, generator: str
) -> AnswerSummary:
    """Answer every row of every config in one stream of calls; write each complete config."""
    check_plan(plan, rows_by_config)
    sample_params = plan.template.sample_params(plan.params, plan.samples)
    requests = [
        ((config, index, k), plan.template.request(row, params, system=plan.system(row["language"]), chat=plan.chat))
        for config, rows in rows_by_config.items()
        for index, row in enumerate(rows)
        for k, params in enumerate(sample_params)
    ]
    outputs: dict[str, dict[tuple[int, int], str]] = {config: {} for config in rows_by_config}
    summary = AnswerSummary()
    for result in runner.run(requests):
        config, index, k = result.tag
        if result.completion is None:
            summary.failed.setdefault(config, []).append(str(result.error))
        else:
            text = result.completion.text
            outputs[config][index, k] = text.strip() if plan.strip_output else text
    # Calls finish in any order: list the failed configs in the order they were asked for.
    summary.failed = {config: summary.failed[config] for config in rows_by_config if config in summary.failed}
    for config, rows in rows_by_config.items():
        if config in summary.failed:
            logger.warning("%s: %d of %d answer calls failed; not written (a rerun retries them)", config, len(summary.failed[config]), len(rows) * plan.samples)
            continue
        answers = [_answer(row, [outputs[config][i, k] for k in range(plan.samples)], plan, generator) for i, row in enumerate(rows)]
        if plan.template.settings.extract:
            summary.extraction[config] = Counter(a["extraction"] for a in answers)
        path = layout.answer_file(generator, config)
        write_text(path, json.dumps(answers, ensure_ascii=False, indent=1) + "\n")
        summary.written[config] = str(path)
    return summary


def _answer(row: dict[str, Any], outputs: list[str], plan: AnswerPlan, generator: str) -> dict[str, Any]:
    """One item's answer record: the judged output first, then how it was arrived at."""
    chosen = select(outputs, plan.select) if len(outputs) > 1 else 0
    answer: dict[str, Any] = {"id": row["id"], "output": outputs[chosen], "generator": generator}
    if len(outputs) > 1:
        answer["outputs"], answer["selected"] = outputs, chosen
    extraction = plan.template.settings.extract
    if extraction:
        answer["raw_output"] = answer["output"]
        answer["output"], answer["extraction"] = extract(answer["output"], row["language"], extraction)
    return answer

