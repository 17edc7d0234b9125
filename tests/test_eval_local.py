"""`eval answer` and `eval judge` on the embedded model (the CLI's defaults), offline: the README's
small evaluation with one item and few tokens. A 270M base model makes a poor judge, so the test
checks the mechanics: both models' answers written, every item judged in both orders, each
verdict read or recorded as an error with its replies, the report and chart written."""

from __future__ import annotations

import json

from corpora import CORPORA_DIR
from xinstruction_dataset.cli import main

SHAPE = CORPORA_DIR.parent / "xalpacaeval-shape"


def test_answer_and_judge_on_the_embedded_model(tmp_path):
    out = tmp_path / "eval"
    common = ["--configs", "cross-sw", "--limit", "1", "--source-dir", str(SHAPE), "--output-dir", str(out), "--no-progress"]
    assert main(["eval", "answer", "--name", "sampled", "--max-new-tokens", "4", *common]) == 0
    assert main(["eval", "answer", "--name", "greedy", "--temperature", "0", "--max-new-tokens", "4", *common]) == 0
    greedy = json.loads((out / "answers" / "greedy" / "cross-sw.json").read_text())
    assert [(a["id"], a["generator"]) for a in greedy] == [(1, "greedy")] and greedy[0]["output"]
    assert main(["eval", "judge", "sampled", "greedy", "--max-new-tokens", "8", *common]) == 0
    folder = out / "judgments" / "plug" / "sampled-vs-greedy"
    (judgment,) = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines()]
    for order in judgment["orders"]:
        assert order["verdict"] in ("model_1", "model_2", "tie", "error") and 1 <= len(order["replies"]) <= 2
        assert (order["verdict"] == "error") == ("error" in order)
    report = json.loads((folder / "report.json").read_text())
    assert report["overall"]["items"] == 1 and report["judge"].startswith("gemma3-270m")
    assert (folder / "win_rates.png").stat().st_size > 0
