"""`xinstruction eval answer` and `eval judge` end to end against TGI-protocol servers: two models
under test and a scripted judge whose verdict depends on the order it is shown the answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_models import EXPECTED_OUTCOMES, ScriptedJudge, answerer
from hub_folders import SUBSETS, write_xalpacaeval_sources
from xinstruction_dataset.cli import main
from xinstruction_dataset.evaluation.aggregate import combine, tally
from xinstruction_dataset.evaluation.report import build_report, save_chart, win_rate_chart
from xinstruction_dataset.evaluation.protocols import read_plug_verdict, read_scores, read_xinstruction_verdict

LIMIT = 8
CONFIGS = ["cross-sw", "ko"]


def spec(server, model: str, **extra) -> str:
    return json.dumps({"backend": "tgi", "model": model, "endpoints": [server.url], "timeout": 5.0, "retries": 2, "backoff": 0.01, **extra})


@pytest.fixture
def evaluation(tmp_path: Path, start_tgi_server):
    """Answers of M1 and M2 for two configs (8 items each), in tmp_path/eval."""
    source = write_xalpacaeval_sources(tmp_path / "source")
    out = tmp_path / "eval"
    for tag in ("M1", "M2"):
        server = start_tgi_server(reply=answerer(tag), max_total_tokens=8192)
        code = main(["eval", "answer", "--model", spec(server, f"test/{tag}"), "--name", tag, "--configs", *CONFIGS,
                     "--limit", str(LIMIT), "--source-dir", str(source), "--output-dir", str(out), "--no-progress"])
        assert code == 0
    return source, out


def judge(evaluation, server, protocol: str, *extra: str) -> int:
    source, out = evaluation
    return main(["eval", "judge", "M1", "M2", "--judge", spec(server, "test/judge"), "--protocol", protocol, "--limit", str(LIMIT),
                 "--source-dir", str(source), "--output-dir", str(out), "--no-progress", *extra])


def test_answers_use_the_paper_template_and_sampling(tmp_path, start_tgi_server):
    source = write_xalpacaeval_sources(tmp_path / "source")
    seen: list[tuple[str, dict]] = []
    server = start_tgi_server(reply=lambda prompt, params: seen.append((prompt, params)) or "  Jibu. \n", max_total_tokens=8192)
    out = tmp_path / "eval"
    assert main(["eval", "answer", "--model", spec(server, "org/tuned"), "--configs", "cross-sw", "en", "--limit", "3",
                 "--source-dir", str(source), "--output-dir", str(out), "--no-progress"]) == 0
    answers = json.loads((out / "answers" / "org--tuned" / "cross-sw.json").read_text())
    assert answers == [{"id": i, "output": "Jibu.", "generator": "org/tuned"} for i in range(3)]
    assert [a["id"] for a in json.loads((out / "answers" / "org--tuned" / "en.json").read_text())] == [0, 1, 2]
    prompts = sorted(prompt for prompt, _ in seen)
    assert len(prompts) == 6
    swahili = [p for p in prompts if "Swahili" in p][0]
    assert swahili == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n[fake en instruction #0] Describe item 0. Answer in Swahili. \n\n### Response:"
    )
    assert all(p.count("Answer in") <= 1 for p in prompts)
    english = [p for p in prompts if "Answer in" not in p]
    assert len(english) == 3  # `en` is used as given: no suffix added
    params = seen[0][1]
    assert (params["temperature"], params["top_p"], params["top_k"], params["max_new_tokens"], params["do_sample"]) == (0.7, 0.9, 50, 2048, True)
    # A rerun is served from the call cache: the server sees nothing new.
    assert main(["eval", "answer", "--model", spec(server, "org/tuned"), "--configs", "cross-sw", "en", "--limit", "3",
                 "--source-dir", str(source), "--output-dir", str(out), "--no-progress", "--temperature", "0.7"]) == 0
    assert len(seen) == 6


@pytest.mark.parametrize("protocol", ["plug", "xinstruction"])
def test_every_aggregation_row_both_protocols(evaluation, start_tgi_server, protocol, capsys):
    model = ScriptedJudge()
    server = start_tgi_server(reply=model, max_total_tokens=8192)
    assert judge(evaluation, server, protocol) == 0
    folder = evaluation[1] / "judgments" / protocol / "M1-vs-M2"
    judgments = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == LIMIT * len(CONFIGS)
    for j in judgments:
        assert j["outcome"] == EXPECTED_OUTCOMES.get(j["id"], "win"), j
        assert [o["model_1_shown_first"] for o in j["orders"]] == [True, False]
    # Item 4 is recorded as an error with both replies of each order, never dropped.
    error = next(j for j in judgments if j["id"] == 4)
    assert [len(o["replies"]) for o in error["orders"]] == [2, 2] and {o["error"] for o in error["orders"]} == {"unreadable_verdict"}
    # Retried once, sampled, only the unreadable ones: items 4 and 6, both orders, in each config.
    sampled = {key: n for key, n in model.calls.items() if not key[2]}
    assert sampled == {(item, first, False): len(CONFIGS) for item in (4, 6) for first in (True, False)}
    greedy = [p for p in model.parameters if p.get("do_sample") is False]
    assert len(greedy) == 2 * LIMIT * len(CONFIGS) and all(p.get("temperature") is None for p in greedy)
    retry = [p for p in model.parameters if p.get("do_sample")]
    assert {(p["temperature"], p["seed"]) for p in retry} == {(0.7, 1)}

    report = json.loads((folder / "report.json").read_text())
    per_config = {"items": 8, "win": 4, "slight_win": 1, "tie": 2, "loss": 1, "slight_loss": 0, "error": 1, "delta": 3,
                  "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.125, "error_rate": 0.125, "delta_rate": 0.375}
    assert report["languages"] == {"ko": per_config, "sw": per_config}
    assert report["overall"] == {**per_config, **{k: 2 * per_config[k] for k in ("items", "win", "slight_win", "tie", "loss", "slight_loss", "error", "delta")}}
    assert (report["model_1"], report["model_2"], report["judge"], report["protocol"]) == ("M1", "M2", "test/judge", protocol)
    assert report["prompt_version"] == {"plug": "eval:judge_plug_pair_v2", "xinstruction": "eval:judge_xinstruction_v1"}[protocol]
    expected_sets: dict[str, list[str]] = {}
    for j in judgments:
        expected_sets.setdefault(SUBSETS[j["id"] % len(SUBSETS)], []).append(EXPECTED_OUTCOMES.get(j["id"], "win"))
    assert report["datasets"] == {name: tally(outcomes) for name, outcomes in sorted(expected_sets.items())}
    assert sum(d["items"] for d in report["datasets"].values()) == 16
    table = capsys.readouterr().out
    assert "sw Swahili" in table and "ko Korean" in table and "set helpful_base" in table
    assert [line.split()[1:6] for line in table.splitlines() if line.startswith("all ")] == [["16", "8", "4", "2", "2"]]
    assert (folder / "win_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_chart_draws_the_report(tmp_path):
    report = build_report(
        [{"language": "sw", "dataset": "koala", "outcome": o} for o in ("win", "win", "slight_win", "tie")]
        + [{"language": "ko", "dataset": "oasst", "outcome": o} for o in ("loss", "error")],
        {"model_1": "M1", "model_2": "M2", "protocol": "plug"},
    )
    figure = win_rate_chart(report)
    bars = figure.axes[0].patches
    # languages sorted (ko, sw); stacked win, tie, loss, error
    heights = [round(b.get_height(), 1) for b in bars]
    assert heights == [0.0, 75.0, 0.0, 25.0, 50.0, 0.0, 50.0, 0.0]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["ko", "sw"]
    save_chart(report, tmp_path / "chart.svg")
    assert "<svg" in (tmp_path / "chart.svg").read_text()


@pytest.mark.parametrize(
    "one, other, outcome",
    [
        ("model_1", "model_1", "win"),
        ("model_1", "tie", "slight_win"),
        ("tie", "model_1", "slight_win"),
        ("model_1", "model_2", "tie"),
        ("tie", "tie", "tie"),
        ("model_2", "tie", "slight_loss"),
        ("model_2", "model_2", "loss"),
        ("error", "model_1", "error"),
        ("tie", "error", "error"),
        ("error", "error", "error"),
    ],
)
def test_plug_aggregation_rows(one, other, outcome):
    assert combine(one, other) == outcome


def test_verdict_reading():
    assert read_plug_verdict("... [[B]] but also [[A]]")[0] == "A"  # fastchat checks [[A]] first
    assert read_plug_verdict("so [[B]]")[0] == "B" and read_plug_verdict("[[C]]")[0] == "tie"
    assert read_plug_verdict("[A] is better")[0] is None and read_plug_verdict("")[0] is None
    assert read_scores("<score1>7</score1> <score2>7.6</score2>") == (7, 7)
    assert read_scores("<score1>9</score1>") == (9, -1)  # missing: -1, as the paper
    assert read_scores("<score1>eight</score1><score2>11</score2>") == (-1, -1)
    assert read_xinstruction_verdict("<score1>3</score1><score2>9</score2>")[0] == "B"
    assert read_xinstruction_verdict("<score1>9</score1>")[0] is None


def test_malformed_verdicts_are_errors_with_their_replies(evaluation, start_tgi_server):
    server = start_tgi_server(reply=lambda prompt, params: "I prefer the first one.", max_total_tokens=8192)
    assert judge(evaluation, server, "plug", "--configs", "ko", "--limit", "2") == 0
    folder = evaluation[1] / "judgments" / "plug" / "M1-vs-M2"
    judgments = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines()]
    assert [j["outcome"] for j in judgments] == ["error", "error"]
    assert all(o["replies"] == ["I prefer the first one."] * 2 and o["error"] == "unreadable_verdict" for j in judgments for o in j["orders"])
    report = json.loads((folder / "report.json").read_text())
    assert report["overall"]["error_rate"] == 1.0 and report["overall"]["items"] == 2


def test_failing_judge_calls_are_a_partial_failure_and_a_rerun_completes(evaluation, start_tgi_server, capsys):
    model = ScriptedJudge()
    server = start_tgi_server(reply=model, max_total_tokens=8192)
    # Both orders of item 3 fail every attempt (1 + 2 retries) of this run.
    server.inject("503", count=6, match="instruction #3]")
    assert judge(evaluation, server, "plug", "--configs", "ko") == 1
    assert "2 judge calls failed" in capsys.readouterr().err
    folder = evaluation[1] / "judgments" / "plug" / "M1-vs-M2"
    failed = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines() if '"id": 3,' in line]
    assert failed[0]["outcome"] == "error" and all(o["error"].startswith("call_failed") for o in failed[0]["orders"])
    assert judge(evaluation, server, "plug", "--configs", "ko") == 0
    report = json.loads((evaluation[1] / "judgments" / "plug" / "M1-vs-M2" / "report.json").read_text())
    assert report["overall"]["error"] == 1  # item 4 only: item 3 is a tie now


def test_bad_model_spec_and_missing_answers_are_one_line(evaluation, capsys):
    source, out = evaluation
    assert main(["eval", "judge", "M1", "M3", "--output-dir", str(out), "--source-dir", str(source)]) == 2
    assert "no answers for 'M3'" in capsys.readouterr().err
    assert main(["eval", "judge", "M1", "M2", "--judge", "{backend: tgi, model: m, endpoint: x}", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown key" in err and "endpoint" in err and err.count("\n") == 1


def test_report_command_reprints_and_redraws(evaluation, start_tgi_server, capsys):
    server = start_tgi_server(reply=ScriptedJudge(), max_total_tokens=8192)
    assert judge(evaluation, server, "xinstruction", "--configs", "ko") == 0
    first = capsys.readouterr().out
    folder = evaluation[1] / "judgments" / "xinstruction" / "M1-vs-M2"
    assert main(["eval", "report", str(folder), "--chart", "rates.svg"]) == 0
    again = capsys.readouterr().out
    assert first.startswith(again) and "ko Korean" in again and any(line.startswith("all ") for line in again.splitlines())
    assert "<svg" in (folder / "rates.svg").read_text()


def test_failed_answers_leave_the_config_unwritten_and_a_rerun_finishes(tmp_path, start_tgi_server, capsys):
    source = write_xalpacaeval_sources(tmp_path / "source")
    server = start_tgi_server(reply=answerer("M1"), max_total_tokens=8192)
    server.inject("503", count=6, match="instruction #2]")  # every attempt (1 + 2 retries) of item 2, in both configs
    args = ["eval", "answer", "--model", spec(server, "test/M1"), "--name", "M1", "--configs", "ko", "cross-id", "--limit", "3",
            "--source-dir", str(source), "--output-dir", str(tmp_path / "eval"), "--no-progress"]
    assert main(args) == 1
    assert "answers failed in ko, cross-id" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "answers" / "M1").exists() or not list((tmp_path / "eval" / "answers" / "M1").iterdir())
    assert main(args) == 0
    assert [a["output"] for a in json.loads((tmp_path / "eval" / "answers" / "M1" / "ko.json").read_text())] == [f"M1 answers item {i}" for i in range(3)]
