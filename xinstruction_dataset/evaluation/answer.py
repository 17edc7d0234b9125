"""`eval answer`: the model under test answers X-AlpacaEval configs through `llm/` (its backend,
the call cache), so a killed run resumes and a rerun repeats no finished call.

Each instruction is put in the answer template (default: X-Instruction's inference prompt,
`prompts/answer_x_instruction_v1.txt`) and sampled with the paper's settings unless told
otherwise. A config's answers are written, as `[{id, output, generator}, ...]` in the release's
order, only when every item has one: a config with failed calls is left unwritten and the next
run retries just those calls.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..llm.backends.base import GenerationParams
from ..llm.calls import CallRunner
from ..storage import write_text
from .layout import EvalLayout
from .prompts import PromptFile

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "answer_x_instruction_v1"


@dataclass
class AnswerSummary:
    written: dict[str, str] = field(default_factory=dict)  # config -> answer file
    failed: dict[str, list[str]] = field(default_factory=dict)  # config -> errors of its failed calls


def answer_configs(
    rows_by_config: dict[str, list[dict[str, Any]]],
    runner: CallRunner,
    template: PromptFile,
    params: GenerationParams,
    layout: EvalLayout,
    generator: str,
) -> AnswerSummary:
    """Answer every row of every config in one stream of calls; write each complete config."""
    requests = [
        ((config, index), template.request({"instruction": row["instruction"]}, params, chat=False))
        for config, rows in rows_by_config.items()
        for index, row in enumerate(rows)
    ]
    outputs: dict[str, dict[int, str]] = {config: {} for config in rows_by_config}
    summary = AnswerSummary()
    for result in runner.run(requests):
        config, index = result.tag
        if result.completion is None:
            summary.failed.setdefault(config, []).append(str(result.error))
        else:
            outputs[config][index] = result.completion.text.strip()
    # Calls finish in any order: list the failed configs in the order they were asked for.
    summary.failed = {config: summary.failed[config] for config in rows_by_config if config in summary.failed}
    for config, rows in rows_by_config.items():
        if config in summary.failed:
            logger.warning("%s: %d of %d answers failed; not written (a rerun retries them)", config, len(summary.failed[config]), len(rows))
            continue
        answers = [{"id": row["id"], "output": outputs[config][i], "generator": generator} for i, row in enumerate(rows)]
        path = layout.answer_file(generator, config)
        write_text(path, json.dumps(answers, ensure_ascii=False, indent=1) + "\n")
        summary.written[config] = str(path)
    return summary


def read_answers(path: str) -> dict[int, dict[str, Any]]:
    """id -> answer of one answer file; a file of another shape is one clear error."""
    try:
        with open(path, encoding="utf-8") as f:
            answers = json.load(f)
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not an answer file ({error}); run `xinstruction eval answer` again to rewrite it") from None
    if not isinstance(answers, list) or not all(isinstance(a, dict) and {"id", "output"} <= set(a) for a in answers):
        raise UsageError(f"{path}: an answer file is a JSON array of {{id, output, generator}}")
    return {answer["id"]: answer for answer in answers}
