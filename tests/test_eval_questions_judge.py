"""`eval judge --questions`: the answers to a question file in X-Instruction's shape (Vicuna's,
WizardLM's) are judged as X-AlpacaEval's configs are, and exported with the file's categories,
so the X-Instruction paper's table (its questions against ChatGPT's answers) runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VICUNA = [
    {"question_id": 1, "text": "How can I improve my time management skills?", "category": "generic"},
    {"question_id": 2, "text": "What are the most effective ways to deal with stress?", "category": "generic"},
    {"question_id": 3, "text": "Write a Python function that reverses a string.", "category": "coding"},
]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", "eval", *args], capture_output=True, text=True, cwd=ROOT, timeout=180)


def spec(server, model: str, route: str = "generate") -> str:
    return json.dumps({"backend": "tgi", "model": model, "endpoints": [server.url], "route": route})


def test_answers_to_a_question_file_are_judged_and_exported_with_their_categories(start_tgi_server, tmp_path):
    questions = tmp_path / "question.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in VICUNA), encoding="utf-8")
    common = ["--questions", str(questions), "--languages", "sw", "--set-name", "vicuna", "--output-dir", str(tmp_path), "--no-progress"]
    for name, text in (("tuned", "Jibu refu na zuri."), ("chatgpt", "Jibu.")):
        server = start_tgi_server(reply=lambda prompt, parameters, text=text: text)
        done = cli("answer", "--model", spec(server, f"me/{name}"), "--name", name, *common)
        assert done.returncode == 0, done.stderr
    seen: list[str] = []
    judge = start_tgi_server(reply=lambda prompt, parameters: seen.append(prompt) or "<score1>8</score1><score2>3</score2>")
    done = cli("judge", "tuned", "chatgpt", "--judge", spec(judge, "test/judge", "chat"), "--protocol", "xinstruction",
               "--export", "xinstruction", *common)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "judgments" / "xinstruction" / "tuned-vs-chatgpt" / "report.json").read_text(encoding="utf-8"))
    assert report["configs"] == ["vicuna-sw"]
    assert len(seen) == 2 * len(VICUNA)  # both orders of every question
    assert all(any(q["text"] in prompt for prompt in seen) for q in VICUNA)
    exported = sorted((tmp_path / "judgments" / "xinstruction" / "tuned-vs-chatgpt" / "export").rglob("*.jsonl"))
    assert exported, done.stdout
    rows = [json.loads(line) for path in exported for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert {(row["question_id"], row["category"]) for row in rows} == {(1, "generic"), (2, "generic"), (3, "coding")}


def test_languages_without_a_question_file_are_refused_for_the_judge(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "answers" / name).mkdir(parents=True)
    done = cli("judge", "a", "b", "--languages", "sw", "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 2 and "--languages goes with --questions" in done.stderr, done.stderr
