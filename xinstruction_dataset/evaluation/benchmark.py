"""The items an evaluation runs on: X-AlpacaEval's configs, or a question file a user brings in
X-Instruction's shape (Vicuna's and WizardLM's test questions), the first `limit` of each.

Every row is `{id, dataset, instruction, question, language}`: `question` is the instruction
without the " Answer in <Language>." that the `cross-<code>` configs add (the same text
elsewhere), for the templates and judges that say the language themselves.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..languages import LANGUAGES, XALPACAEVAL_LANGUAGES
from ..xalpacaeval import CROSS_PREFIX, REVISION, config_names, config_rows, load_source

QUESTION_FIELDS = ("question_id", "text", "category")
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")


def benchmark_rows(
    configs: list[str] | None, *, source_dir: str | Path | None = None, revision: str = REVISION, limit: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """config -> rows in the release's order (every config when `configs` is None); the source is
    read once and checked as `xalpacaeval` does."""
    known = config_names()
    unknown = [c for c in configs or () if c not in known]
    if unknown:
        raise UsageError(f"unknown X-AlpacaEval config(s) {', '.join(unknown)}; configs are: {', '.join(known)}")
    _check_limit(limit)
    source = load_source(source_dir, revision)
    rows = {}
    for config in configs or known:
        # A cross config is the English release plus one sentence: its question is the English item.
        bare = [item.instruction for item in source["en"]] if config.startswith(CROSS_PREFIX) else None
        rows[config] = [
            {**row, "question": bare[index] if bare else row["instruction"]} for index, row in enumerate(config_rows(config, source))
        ][:limit]
    return rows


def question_rows(path: str | Path, languages: list[str], *, set_name: str | None = None, limit: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """`<set name>-<language>` -> rows of a question file in X-Instruction's shape (JSON lines of
    `{question_id, text, category}`, as Vicuna's `question.jsonl`), once per answer language.

    The text is the question as asked (English in X-Instruction's evaluation); `language` is the
    language the answer should be in. The set name defaults to the file's stem."""
    path = Path(path)
    name = set_name or path.stem
    if not _SET_NAME.match(name):
        raise UsageError(f"--set-name {name!r}: letters, digits, `_` and `.` only (it names the answer files <set>-<language>.json)")
    if not languages:
        raise UsageError(f"--questions {path}: say which languages to answer in with --languages, e.g. --languages sw ta")
    known = {**{code: lang.name for code, lang in LANGUAGES.items()}, **XALPACAEVAL_LANGUAGES}
    unknown = [code for code in languages if code not in known]
    if unknown:
        raise UsageError(f"--languages: unknown language code(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    _check_limit(limit)
    questions = read_questions(path)[:limit]
    configs = {f"{name}-{code}": code for code in dict.fromkeys(languages)}
    taken = [config for config in configs if config in config_names()]
    if taken:
        raise UsageError(f"--set-name {name!r} makes {', '.join(taken)}, an X-AlpacaEval config name: choose another set name")
    return {
        config: [{"id": q["question_id"], "dataset": q["category"], "category": q["category"], "instruction": q["text"], "question": q["text"], "language": code} for q in questions]
        for config, code in configs.items()
    }


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """The questions of a file in X-Instruction's shape, checked: one error naming the file, the
    line and the fix."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"--questions {path}: no such file") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"--questions {path}: not UTF-8 ({error})") from None
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"--questions {path}, line {number}: not JSON ({error}); the file is JSON lines of {{question_id, text, category}}") from None
        questions.append(_question(item, path, number))
    if not questions:
        raise UsageError(f"--questions {path}: no questions; the file is JSON lines of {{question_id, text, category}}")
    duplicates = sorted(i for i, n in Counter(q["question_id"] for q in questions).items() if n > 1)
    if duplicates:
        raise UsageError(f"--questions {path}: duplicate question_id(s) {', '.join(map(str, duplicates[:10]))}")
    return questions


def _question(item: Any, path: Path, number: int) -> dict[str, Any]:
    where = f"--questions {path}, line {number}"
    if not isinstance(item, dict) or "question_id" not in item or "text" not in item:
        keys = ", ".join(item) if isinstance(item, dict) else type(item).__name__
        raise UsageError(
            f"{where}: {{{keys}}} is not X-Instruction's question shape {{question_id, text, category}} "
            "(WizardLM's test set: idx -> question_id, Instruction -> text, Skill -> category)"
        )
    question_id, text, category = item["question_id"], item["text"], item.get("category", "")
    if not isinstance(question_id, int) or isinstance(question_id, bool):
        raise UsageError(f"{where}: question_id {question_id!r} is not an integer")
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{where}: question {question_id} has no text")
    if not isinstance(category, str):
        raise UsageError(f"{where}: question {question_id} has category {category!r}, not a string")
    return {"question_id": question_id, "text": text, "category": category}


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
