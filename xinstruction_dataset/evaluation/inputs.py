"""The answer files a judge run reads, checked against the benchmark items it judges.

Every problem names its file and the ids: no answer for an id, an id given twice, an id that is
no integer (X-AlpacaEval's ids are; a string `"3"` matches nothing), a `null` (or non-text)
output, an empty file. By default any of them stops the run (exit 2) before a judge call is made;
with `--missing-as-error` each item it touches is judged by nobody and counted as an `error`,
and the problems are listed in the report. Nothing is dropped silently: PLUG's judge would stop
on a missing id (llm_judge.py line 104, a KeyError) and keep the last of two answers (line 77).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

SHOWN_IDS = 10
MISSING_AS_ERROR = "--missing-as-error"


@dataclass(frozen=True)
class InputProblem:
    file: str
    problem: str  # missing | duplicate | wrong_type | null_output | empty
    ids: tuple[Any, ...]  # the benchmark ids it touches (for wrong_type: the ids as given)
    of: int = 0  # items of the config (for `missing`)
    answered_first: int = 0  # for `missing`: the file answers exactly the first N items (an `eval answer --limit N`)

    def describe(self) -> str:
        shown = ", ".join(repr(i) if not isinstance(i, int) else str(i) for i in self.ids[:SHOWN_IDS])
        if len(self.ids) > SHOWN_IDS:
            shown += f", ... ({len(self.ids)} in all)"
        text = {
            "empty": "is empty (no answer at all)",
            "missing": f"has no answer for {len(self.ids)} of {self.of} ids ({shown})",
            "duplicate": f"answers ids more than once ({shown}): which answer counts is unclear",
            "wrong_type": f"has ids that are not integers ({shown}); X-AlpacaEval ids are integers",
            "null_output": f"has a null or non-text output for ids ({shown})",
        }[self.problem]
        if self.answered_first:
            text += f"; it answers the first {self.answered_first} only: --limit {self.answered_first} judges those"
        return f"{self.file} {text}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "problem": self.problem, "ids": list(self.ids), "message": self.describe()}


@dataclass
class AnswerFile:
    path: str
    outputs: dict[int, str] = field(default_factory=dict)  # id -> output, for the ids without a problem
    problems: list[InputProblem] = field(default_factory=list)

    def problem_of(self, item_id: int) -> InputProblem | None:
        """The problem that keeps this file from answering `item_id`, if any."""
        for problem in self.problems:
            if problem.problem != "wrong_type" and item_id in problem.ids:
                return problem
        return None


def read_answer_file(path: str | Path, ids: list[int]) -> AnswerFile:
    """The answers of one file for the benchmark `ids`, with every problem found; a file that is
    no answer file at all (not JSON, not an array of {id, output}) is an error at once."""
    path = str(path)
    checked = AnswerFile(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        checked.problems.append(InputProblem(path, "empty", tuple(ids), len(ids)))
        return checked
    try:
        answers = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not an answer file ({error}); run `xinstruction eval answer` again to rewrite it") from None
    if not isinstance(answers, list) or not all(isinstance(a, dict) and {"id", "output"} <= set(a) for a in answers):
        raise UserError(f"{path}: an answer file is a JSON array of {{id, output, generator}}")
    if not answers:
        checked.problems.append(InputProblem(path, "empty", tuple(ids), len(ids)))
        return checked
    wrong_type = [a["id"] for a in answers if not isinstance(a["id"], int) or isinstance(a["id"], bool)]
    typed = [a for a in answers if isinstance(a["id"], int) and not isinstance(a["id"], bool)]
    counts = Counter(a["id"] for a in typed)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    null = sorted({a["id"] for a in typed if not isinstance(a["output"], str)} - set(duplicates))
    wanted = set(ids)
    if wrong_type:
        checked.problems.append(InputProblem(path, "wrong_type", tuple(wrong_type)))
    touched = [i for i in duplicates if i in wanted]
    if touched:
        checked.problems.append(InputProblem(path, "duplicate", tuple(touched)))
    touched = [i for i in null if i in wanted]
    if touched:
        checked.problems.append(InputProblem(path, "null_output", tuple(touched)))
    missing = [i for i in ids if i not in counts]
    if missing:
        present = [i for i in ids if i in counts]
        first = len(present) if present and present == ids[: len(present)] else 0
        checked.problems.append(InputProblem(path, "missing", tuple(missing), len(ids), first))
    bad = set(duplicates) | set(null)
    checked.outputs = {a["id"]: a["output"] for a in typed if a["id"] in wanted and a["id"] not in bad}
    return checked


def refuse_problems(files: list[AnswerFile]) -> None:
    """Raise one UserError (exit 2) naming every file and its ids, when any file has a problem."""
    problems = [p for f in files for p in f.problems]
    if problems:
        raise UserError(
            "; ".join(p.describe() for p in problems)
            + f": answer the missing items again (`xinstruction eval answer` writes whole configs), or pass {MISSING_AS_ERROR} to count them as errors"
        )
