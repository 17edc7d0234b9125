"""`eval judge --strict` (each paper's script, exactly), our options named as ours (the sampled
retry, the two X-Instruction aggregations), the report as PLUG prints it (Δ, rates rounded once,
sets within a language), the papers' export formats, and checked answer files.

The expected tables below were computed by hand from the papers' released scripts:

- PLUG @ 307a35f (github.com/ytyz1307zzh/PLUG), src/evaluate/x-alpacaeval/llm_judge/:
  fastchat/llm_judge/common.py lines 301-309 read a reply: "[[A]]" in it -> A, else "[[B]]" -> B,
  else "[[C]]" -> tie, else "error" (no retry: the only loop, lines 480-495, repeats failed API
  calls, not unreadable replies); lines 352-355 map A/B to model_1/model_2 per order (g1 shows
  model 1 first); calculate_pair_judge_score.py lines 71-95 combine the two orders' winner set,
  lines 20-36 count each outcome over all items (errors included) and print `count / total:.1%`.
- X-Instruction @ 98abc93 (github.com/ZNLP/X-Instruction), utils/gpt4_eval.py lines 86-112
  (`extract_score`): the first `<scoreN>(.*?)</scoreN>`, `int(float(text))`, -1 when missing:
  `85` stays 85, `7.9` is 7, `8/10` raises ValueError (the script stops there); lines 339-347
  write score_1/score_2 per order and nothing combines them (the aggregations are ours).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from eval_models import ITEM, ScriptedJudge
from hub_folders import SUBSETS, write_xalpacaeval_sources
from xinstruction_dataset.cli import main
from xinstruction_dataset.evaluation.aggregate import combine, combine_sum, tally
from xinstruction_dataset.evaluation.inputs import AnswerFile, read_answer_file
from xinstruction_dataset.evaluation.judge import pair_items
from xinstruction_dataset.evaluation.prompts import load_eval_prompt
from xinstruction_dataset.evaluation.protocols import (
    PROTOCOLS, SCRIPT_WOULD_CRASH, read_scores_strict, read_xinstruction_verdict, read_xinstruction_verdict_strict,
)
from xinstruction_dataset.evaluation.report import build_report, export_judgments, format_table

ITEMS = 8
PLUG_SYSTEM = load_eval_prompt("judge_plug_pair_v2").section("system").text
XI_SYSTEM = load_eval_prompt("judge_xinstruction_v1").section("system").text


def spec(server, *, route: str = "chat") -> str:
    return json.dumps({"backend": "tgi", "model": "test/judge", "endpoints": [server.url], "route": route,
                       "timeout": 5.0, "retries": 1, "backoff": 0.01})


def write_answers(folder: Path, config: str, tag: str, ids=range(ITEMS), **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    answers = [{"id": i, "output": f"{tag} answers item {i}", "generator": tag} for i in ids]
    path = folder / f"{config}.json"
    path.write_text(changes.get("text", json.dumps(answers)), encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path):
    """Sources, and the answers of M1 and M2 (8 items) for cross-sw and ko."""
    source = write_xalpacaeval_sources(tmp_path / "source")
    out = tmp_path / "eval"
    for tag in ("M1", "M2"):
        for config in ("cross-sw", "ko"):
            write_answers(out / "answers" / tag, config, tag)
    return source, out


def judge(setup, server, *extra: str, route: str = "chat") -> int:
    source, out = setup
    return main(["eval", "judge", "M1", "M2", "--judge", spec(server, route=route), "--limit", str(ITEMS),
                 "--source-dir", str(source), "--output-dir", str(out), "--no-progress", *extra])


def read_run(setup, folder: str) -> tuple[list[dict], dict]:
    path = setup[1] / "judgments" / folder / "M1-vs-M2"
    judgments = [json.loads(line) for line in (path / "judgments.jsonl").read_text().splitlines()]
    return judgments, json.loads((path / "report.json").read_text())


def counts(report_part: dict) -> tuple[int, ...]:
    return tuple(report_part[k] for k in ("items", "win", "slight_win", "tie", "loss", "slight_loss", "error", "delta"))


# --- PLUG, strict ------------------------------------------------------------------------------


def test_plug_strict_one_call_per_order_their_settings_chat_messages_bare_question(setup, start_tgi_server, capsys):
    """PLUG @ 307a35f, src/evaluate/x-alpacaeval/llm_judge/: one call per order (fastchat/llm_judge/
    common.py lines 345-350: `run_judge_pair` twice, no retry), each with `temperature=0, top_p=0,
    max_tokens=1024` (lines 287-290; `max_tokens_by_model`, lines 56-63), as two messages, system
    then user (lines 281-286, fastchat/conversation.py lines 229-240), the question being the
    file's `instruction` (llm_judge.py line 60); replies read by lines 301-309, mapped per order by
    lines 352-355, combined by calculate_pair_judge_score.py lines 71-95 and printed by its lines
    20-36 (`count / total:.1%`, line 30; Diff (abs), line 35)."""
    # eval_models.ScriptedJudge, per item: 0 M1 both orders, 1 M1 first else tie, 2 the first shown,
    # 3 tie, 4 never a verdict, 5 M2, 6 a verdict only when sampled, 7 M1.
    # By hand from PLUG's scripts (module docstring): g1/g2 winners per item
    #   0 (model_1, model_1) -> model_1 ("win"); 1 (model_1, tie) -> slight_model_1;
    #   2 (model_1, model_2) -> tie; 3 (tie, tie) -> tie; 4 (error, error) -> error;
    #   5 (model_2, model_2) -> model_2; 6 greedy only, no [[X]] -> (error, error) -> error; 7 -> model_1.
    # Per config of 8: wins 2 + slight 1 = 3, ties 2, losses 1, errors 2; PLUG prints 3/8 = 37.5%,
    # 2/8 = 25.0%, 1/8 = 12.5%, 2/8 = 25.0%; Diff (abs) 2 (25.0%).
    model = ScriptedJudge()
    seen: list[tuple[str, dict]] = []
    server = start_tgi_server(reply=lambda p, q: seen.append((p, q)) or model(p, q), flavour="llamacpp", max_total_tokens=8192)
    assert judge(setup, server, "--strict", "--configs", "cross-sw", "ko") == 0
    judgments, report = read_run(setup, "plug-strict")
    assert [j["outcome"] for j in judgments[:ITEMS]] == ["win", "slight_win", "tie", "tie", "error", "loss", "error", "win"]
    assert counts(report["languages"]["sw"]) == counts(report["languages"]["ko"]) == (8, 3, 1, 2, 1, 0, 2, 2)
    assert counts(report["overall"]) == (16, 6, 2, 4, 2, 0, 4, 4)
    assert (report["strict"], report["retry"], report["aggregation"], report["max_new_tokens"]) == (True, False, "per-order", 1024)
    assert "PLUG's rule" in report["aggregation_rule"]
    # One call per order, none sampled: PLUG's temperature 0 and top_p 0, no seed.
    assert len(seen) == 2 * ITEMS * 2
    assert {(q["temperature"], q["top_p"], q["seed"], q["max_new_tokens"]) for _, q in seen} == {(0, 0, None, 1024)}
    # The messages: system then user, contents as PLUG's (the server joins them with a newline).
    prompt = next(p for p, _ in seen if "instruction #0]" in p and "[fake en" in p)
    assert prompt.startswith(PLUG_SYSTEM + "\n[User Question]\n[fake en instruction #0] Describe item 0.\n\n[The Start of Assistant A's Answer]")
    assert all("Answer in" not in p for p, _ in seen)  # the bare question: the judge never sees "Answer in Swahili."
    table = capsys.readouterr().out
    sw = next(line for line in table.splitlines() if line.startswith("sw Swahili"))
    assert sw.split()[2:] == ["8", "3", "2", "1", "2", "+2", "37.5%", "25.0%", "12.5%", "25.0%", "+25.0%"]
    assert "mode strict" in table


def test_ours_retry_is_an_option_and_the_report_names_its_verdicts(setup, start_tgi_server, capsys):
    """Ours: the sampled retry. PLUG has none (its only loop, common.py lines 480-495, repeats failed
    API calls, not unreadable replies), so with --no-retry item 6 is an error, as common.py line
    309 makes it, and the counts are the strict ones."""
    model = ScriptedJudge()
    server = start_tgi_server(reply=model, max_total_tokens=8192)
    assert judge(setup, server, "--configs", "cross-sw") == 0
    judgments, report = read_run(setup, "plug")
    item_6 = judgments[6]
    assert item_6["outcome"] == "win" and item_6["retried"] is True
    assert [o["verdict_from"] for o in item_6["orders"]] == ["sampled_retry", "sampled_retry"]
    assert all(o["verdict_from"] == "greedy" for j in judgments if j["id"] not in (4, 6) for o in j["orders"])
    assert report["retried"] == {"verdicts": 2, "items": 1, "ids": {"cross-sw": [6]}}
    assert "2 verdicts in 1 items came from it" in capsys.readouterr().out
    # Our judge question is the instruction answered, "Answer in Swahili." included (as before).
    assert judgments[0]["question"].endswith("Describe item 0. Answer in Swahili.")

    # --no-retry: one greedy call per order; item 6 is an error, as in PLUG.
    calls = len(model.parameters)
    assert judge(setup, server, "--configs", "cross-sw", "--no-retry") == 0
    assert len(model.parameters) == calls  # every greedy verdict is in the call cache already
    judgments, report = read_run(setup, "plug-noretry")
    assert judgments[6]["outcome"] == "error" and report["retry"] is False and report["retried"]["verdicts"] == 0
    assert counts(report["overall"]) == (8, 3, 1, 2, 1, 0, 2, 2)


def test_strict_needs_a_chat_route_and_refuses_our_options(setup, start_tgi_server, capsys):
    """What strict mode cannot honour is refused, never run differently: both scripts send chat
    messages (PLUG common.py lines 281-290; X-Instruction gpt4_eval.py lines 288-291), neither
    retries, PLUG's verdicts have no scores to sum (calculate_pair_judge_score.py lines 69-95 read
    only g1/g2_winner), its prompt is pair-v2 (llm_judge.py line 153) and it sends 1024 tokens to
    every judge (common.py lines 56-63, 287)."""
    server = start_tgi_server(reply=ScriptedJudge(), max_total_tokens=8192)
    assert judge(setup, server, "--strict", route="generate") == 2
    err = capsys.readouterr().err
    assert "--strict sends the judge system and user chat messages" in err and err.count("\n") == 1
    assert judge(setup, server, "--strict", "--retry") == 2
    assert "drop --retry" in capsys.readouterr().err
    assert judge(setup, server, "--aggregation", "sum") == 2
    assert "protocol plug gives verdicts" in capsys.readouterr().err
    assert judge(setup, server, "--strict", "--prompt", "judge_xinstruction_v1") == 2
    assert "--strict judges with the paper's prompt (judge_plug_pair_v2): drop --prompt judge_xinstruction_v1" in capsys.readouterr().err
    assert judge(setup, server, "--strict", "--max-new-tokens", "512") == 2
    assert "sends 1024 tokens, as PLUG's script does for every judge: drop --max-new-tokens 512" in capsys.readouterr().err
    assert server.successes == {}  # refused before any call
    assert not (setup[1] / "judgments").exists()


def test_strict_requests_are_the_scripts_two_messages():
    """The request strict mode sends, per protocol: two messages, system then user, the user text
    formatted as the script formats it (PLUG: common.py lines 271-277 `prompt_template.format(
    question=..., answer_a=..., answer_b=...)`; X-Instruction: gpt4_eval.py lines 281-286
    `_EVAL_PROMPT.format(lang=..., instruction=..., output1=..., output2=...)`), the question bare
    (gpt4_eval.py line 283, llm_judge.py line 60), the settings of common.py line 289 and
    gpt4_eval.py lines 154-171; and PLUG's reading: "[[A]]" is looked for first, so a reply naming
    both is A, and one with no mark is an error (common.py lines 301-309)."""
    row = {"id": 3, "dataset": "koala", "instruction": "Name a river. Answer in Swahili.", "language": "sw"}
    files = AnswerFile("M1/cross-sw.json", outputs={3: "Nile {a}"}), AnswerFile("M2/cross-sw.json", outputs={3: "Congo"})
    item = pair_items([row], *files, "cross-sw", strict=True)[0]
    assert item["judge_question"] == "Name a river."
    for name, values in (("plug", {"question": "Name a river.", "answer_a": "Nile {a}", "answer_b": "Congo"}),
                         ("xinstruction", {"language": "Swahili", "instruction": "Name a river.", "output1": "Nile {a}", "output2": "Congo"})):
        protocol = PROTOCOLS[name]
        prompt = load_eval_prompt(protocol.prompt)
        request = prompt.request(protocol.values(item, item["output_1"], item["output_2"]), protocol.params(0, strict=True), chat=True)
        assert [role for role, _ in request.messages] == ["system", "user"]
        assert request.messages[0][1] == prompt.section("system").text
        assert request.messages[1][1] == prompt.section("user").text.format(**values)
        params = request.params
        assert (params.temperature, params.top_p, params.seed, params.max_new_tokens) == (
            0.0, {"plug": 0.0, "xinstruction": 1.0}[name], None, {"plug": 1024, "xinstruction": 256}[name])
    read = PROTOCOLS["plug"].read_strict
    assert read("B is fine, but [[B]] loses to [[A]]")[0] == "A" and read("[[B]]")[0] == "B" and read("[[C]]")[0] == "tie"
    assert read("[A] is better")[0] is None and read("")[0] is None


# --- X-Instruction: parse rules, strict and ours; both aggregations --------------------------------

# item -> (reply with M1's answer shown first, reply with M2's first, reply to a sampled retry)
XI_REPLIES = {
    0: ("<score1>8</score1><score2>5</score2>", "<score1>4</score1><score2>9</score2>", None),
    1: ("<score1>6</score1><score2>5</score2>", "<score1>9</score1><score2>1</score2>", None),
    2: ("<score1>85</score1><score2>7</score2>", "<score1>7</score1><score2>8</score2>", "<score1>6</score1><score2>7</score2>"),
    3: ("<score1>8/10</score1><score2>7/10</score2>", "<score1>5</score1><score2>9</score2>", "<score1>8/10</score1><score2>7/10</score2>"),
    4: ("Scores: 8 and 7.", "<score1>5</score1><score2>9</score2>", "Still no tags."),
    5: ("<score1>7</score1><score2>7</score2>", "<score1>7.9</score1><score2>7</score2>", None),
    6: ("<score1>3</score1><score2>9</score2>", "<score1>9</score1><score2>2</score2>", None),
    7: ("<score1>8</score1><score2>6</score2>", "<score1>5</score1><score2>5</score2>", None),
}
# By hand, per item, strict (extract_score as released): model terms per order, then
#   per-order (ours: higher score wins each order, PLUG's combination) and sum (ours):
#   0: 8>5 model_1 | M2 4, M1 9 model_1 -> win       | M1 8+9=17, M2 5+4=9    -> win
#   1: 6>5 model_1 | M2 9, M1 1 model_2 -> tie       | M1 6+1=7,  M2 5+9=14   -> loss (the reading flips it)
#   2: 85 kept, 85>7 model_1 | M2 7, M1 8 model_1 -> win | M1 85+8=93, M2 7+7=14 -> win
#   3: float('8/10') raises: their script stops -> error, both readings
#   4: no tags: -1, -1 (their "no score") -> error, both readings
#   5: 7=7 tie | int(7.9)=7 = 7 tie -> tie           | 14 = 14 -> tie
#   6: 3<9 model_2 | M2 9, M1 2 model_2 -> loss      | M1 5, M2 18 -> loss
#   7: 8>6 model_1 | 5=5 tie -> slight win           | M1 13, M2 11 -> win
STRICT_PER_ORDER = ["win", "tie", "win", "error", "error", "tie", "loss", "slight_win"]
STRICT_SUM = ["win", "loss", "win", "error", "error", "tie", "loss", "win"]
# Ours: 85 is out of range and 8/10 no number: both missing, so those orders are retried, sampled;
#   2's retry reads 6<7 model_2, with the other order's model_1 -> tie; 3 and 4 stay errors.
OURS_PER_ORDER = ["win", "tie", "tie", "error", "error", "tie", "loss", "slight_win"]


def xinstruction_judge(calls: list):
    def reply(prompt: str, parameters: dict) -> str:
        item = int(ITEM.search(prompt).group(1))
        m1_first = prompt.split("<answer1>\n", 1)[1].startswith("M1")
        calls.append((item, m1_first, parameters))
        first, second, sampled = XI_REPLIES[item]
        if parameters.get("temperature") not in (0, 0.0, None):
            return sampled
        return first if m1_first else second
    return reply


def test_xinstruction_strict_keeps_out_of_range_scores_and_errors_where_the_script_crashes(setup, start_tgi_server, capsys):
    """X-Instruction @ 98abc93, utils/gpt4_eval.py: `extract_score` (lines 86-112) as released: 85 kept,
    `8/10` raises in `float()` (line 100), a missing tag -1 (lines 101-103); `temperature 0, top_p
    1.0, max_tokens 256` (lines 154-171), no seed; system then user messages (lines 279-291) with
    the question's `text` (line 283) and the language by name (line 282). Per-order and sum are
    ours: the script writes `score_1`/`score_2` per order (lines 339-347) and combines nothing.
    The expected outcomes are computed by hand in the comment under XI_REPLIES."""
    calls: list = []
    server = start_tgi_server(reply=xinstruction_judge(calls), flavour="llamacpp", max_total_tokens=8192)
    assert judge(setup, server, "--protocol", "xinstruction", "--strict", "--configs", "cross-sw") == 0
    judgments, report = read_run(setup, "xinstruction-strict")
    assert [j["outcome"] for j in judgments] == STRICT_PER_ORDER
    assert judgments[2]["orders"][0]["read"] == {"score1": 85, "score2": 7}
    assert judgments[3]["orders"][0]["error"].startswith("script_would_crash: <score1>8/10</score1>: ValueError")
    assert judgments[4]["orders"][0]["read"] == {"score1": -1, "score2": -1} and judgments[4]["orders"][0]["error"] == "unreadable_verdict"
    assert counts(report["overall"]) == (8, 3, 1, 2, 1, 0, 2, 2) and report["max_new_tokens"] == 256
    assert len(calls) == 2 * ITEMS and {(p["temperature"], p["top_p"], p["seed"], p["max_new_tokens"]) for *_, p in calls} == {(0, None, None, 256)}
    prompt_seen = server.successes  # the joined messages: X-Instruction's system prompt, then its user prompt
    assert all(p.startswith(XI_SYSTEM + "\nGiven the question and the answer in Swahili language.") for p in prompt_seen)
    assert all("<question>\n[fake en instruction #" in p and "Answer in Swahili" not in p for p in prompt_seen)
    assert "ours (X-Instruction's release has no aggregation)" in capsys.readouterr().out

    # The other reading, from the same verdicts (no call): at the judge, and by `eval report`.
    assert judge(setup, server, "--protocol", "xinstruction", "--strict", "--configs", "cross-sw", "--aggregation", "sum") == 0
    assert len(calls) == 2 * ITEMS
    judgments, report = read_run(setup, "xinstruction-strict-sum")
    assert [j["outcome"] for j in judgments] == STRICT_SUM
    assert counts(report["overall"]) == (8, 3, 0, 1, 2, 0, 2, 1)
    assert "summed over both orders" in report["aggregation_rule"]
    folder = setup[1] / "judgments" / "xinstruction-strict" / "M1-vs-M2"
    capsys.readouterr()
    assert main(["eval", "report", str(folder), "--aggregation", "sum"]) == 0
    all_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("all "))
    assert all_row.split()[1:7] == ["8", "3", "1", "2", "2", "+1"]


def test_xinstruction_ours_reads_out_of_range_as_missing_and_retries(setup, start_tgi_server):
    """Ours (default): a score outside 0-10 or no number is missing (where gpt4_eval.py line 100 keeps
    85 and crashes on 8/10), and an order without two scores gets the sampled retry; with
    --no-retry it stays an error (gpt4_eval.py calls once per item, lines 308-315)."""
    calls: list = []
    server = start_tgi_server(reply=xinstruction_judge(calls), max_total_tokens=8192)
    assert judge(setup, server, "--protocol", "xinstruction", "--configs", "cross-sw") == 0
    judgments, report = read_run(setup, "xinstruction")
    assert [j["outcome"] for j in judgments] == OURS_PER_ORDER
    assert judgments[2]["orders"][0]["verdict_from"] == "sampled_retry" and judgments[2]["orders"][0]["replies"][0].startswith("<score1>85")
    sampled = sorted((item, first) for item, first, p in calls if p.get("temperature"))
    assert sampled == [(2, True), (3, True), (4, True)]
    assert report["retried"] == {"verdicts": 1, "items": 1, "ids": {"cross-sw": [2]}}

    # Ours with --no-retry, by hand: 2's first order (85) and 3's (8/10) are missing scores, so
    # errors; the rest as strict: win, tie, error, error, error, tie, loss, slight win.
    assert judge(setup, server, "--protocol", "xinstruction", "--configs", "cross-sw", "--no-retry") == 0
    judgments, report = read_run(setup, "xinstruction-noretry")
    assert [j["outcome"] for j in judgments] == ["win", "tie", "error", "error", "error", "tie", "loss", "slight_win"]
    assert counts(report["overall"]) == (8, 2, 1, 2, 1, 0, 3, 1) and report["retried"]["verdicts"] == 0
    assert len(calls) == 2 * ITEMS + 3  # every greedy reply came from the call cache


def test_score_reading_rules():
    """gpt4_eval.py lines 96-97: `re.search('<score1>(.*?)</score1>', review)` (no DOTALL: a score
    across a newline is not found, -1), lines 100 and 106: `int(float(text))` (surrounding spaces
    allowed, 9.6 truncated to 9, a negative kept; nan raises ValueError, inf OverflowError);
    common.py line 289: PLUG's top_p 0 in strict mode only."""
    assert read_xinstruction_verdict_strict("<score1>85</score1><score2>7</score2>") == ("A", {"score1": 85, "score2": 7})
    assert read_xinstruction_verdict("<score1>85</score1><score2>7</score2>") == (None, {"score1": -1, "score2": 7})
    verdict, read = read_xinstruction_verdict_strict("<score1>7</score1><score2>nan</score2>")
    assert verdict is None and read["error"].startswith("script_would_crash: <score2>nan</score2>: ValueError")
    assert read_xinstruction_verdict_strict("<score1>inf</score1>")[1]["error"].startswith("script_would_crash: <score1>inf</score1>: OverflowError")
    assert read_xinstruction_verdict_strict("<score1>\n8</score1><score2>3</score2>") == (None, {"score1": -1, "score2": 3})  # (.*?) stops at newlines
    assert read_xinstruction_verdict_strict("<score1> 9.6 </score1><score2>-2</score2>") == ("A", {"score1": 9, "score2": -2})
    assert PROTOCOLS["plug"].params(0, strict=True).top_p == 0.0 and PROTOCOLS["plug"].params(0).top_p == 1.0
    assert PROTOCOLS["plug"].params(0).seed == 0 and PROTOCOLS["xinstruction"].params(0, strict=True).seed is None


# X-Instruction's `extract_score`, verbatim: github.com/ZNLP/X-Instruction @ 98abc93, utils/gpt4_eval.py
# lines 86-112 (MIT License, Copyright (c) 2024 ZNLP): the reference strict mode is checked against.
THEIR_EXTRACT_SCORE = r'''
def extract_score(review: str) -> float:
    """
    Extracts the score from the review.

    Args:
        review: The review to extract the score from.

    Returns:
        The score.
    """
    match_1 = re.search('<score1>(.*?)</score1>', review)
    match_2 = re.search('<score2>(.*?)</score2>', review)

    if match_1:
        score_1 = int(float(match_1.group(1)))
    else:
        # raise ValueError("No score1 found in review.")
        score_1 = -1

    if match_2:
        score_2 = int(float(match_2.group(1)))
    else:
        # raise ValueError("No score2 found in review.")
        score_2 = -1


    return score_1, score_2
'''


def test_strict_scores_are_their_extract_score_on_every_reply():
    """read_scores_strict against X-Instruction's own `extract_score` (gpt4_eval.py lines 86-112,
    kept verbatim above): the same two integers wherever it returns, an error wherever it raises."""
    namespace: dict = {"re": re}
    exec(THEIR_EXTRACT_SCORE, namespace)
    theirs = namespace["extract_score"]
    replies = [
        "<score1>8</score1><score2>5</score2>", "<score1>85</score1><score2>7</score2>", "<score1>7.9</score1><score2> 3 </score2>",
        "<score1>8/10</score1><score2>7</score2>", "<score1>8</score1><score2>7/10</score2>", "<score1></score1><score2>1</score2>",
        "<score1>-2</score1><score2>1e1</score2>", "<score1>nan</score1>", "<score1>inf</score1><score2>2</score2>",
        "<score1>\n8</score1><score2>3</score2>", "no tags at all", "<score2>4</score2> then <score1>6</score1>",
        "<score1>5</score1><score1>9</score1><score2>5</score2>", "<score1>1_0</score1><score2>\uff18</score2>",
        "<score1><score1>4</score1></score1><score2>0</score2>", "<score1>9.99</score1><score2>-0.5</score2>",
    ]
    for reply in replies:
        try:
            expected = theirs(reply)
        except (ValueError, OverflowError) as error:
            ours = read_scores_strict(reply)
            assert isinstance(ours, str) and ours.startswith(f"{SCRIPT_WOULD_CRASH}: <score"), reply
            assert ours.endswith(f": {type(error).__name__}: {error}"), (reply, ours)
            continue
        assert read_scores_strict(reply) == expected, reply


def test_sum_reading_by_hand():
    """`sum` is ours (gpt4_eval.py lines 339-347 write one file per order and nothing reads both):
    6-5 for M1 with M1 shown first, 9-1 for M2 with M2 first is a tie per order (PLUG's rule,
    calculate_pair_judge_score.py lines 74-75) and a loss summed (7 against 14)."""
    def order(first: bool, s1: int, s2: int, verdict: str) -> dict:
        return {"model_1_shown_first": first, "verdict": verdict, "read": {"score1": s1, "score2": s2}}

    flip = [order(True, 6, 5, "model_1"), order(False, 9, 1, "model_2")]
    assert combine(flip[0]["verdict"], flip[1]["verdict"]) == "tie" and combine_sum(flip) == "loss"
    assert combine_sum([order(True, 5, 5, "tie"), order(False, 5, 5, "tie")]) == "tie"
    assert combine_sum([order(True, 5, 5, "tie"), {"model_1_shown_first": False, "verdict": "error", "read": {}}]) == "error"


# --- reporting -----------------------------------------------------------------------------------


def test_rates_are_printed_once_from_counts_as_plug_prints_them():
    """calculate_pair_judge_score.py line 30 prints `f"{count / total:.1%}"` from the counts; the
    total win count of line 32 includes the slight wins (lines 32-35)."""
    # PLUG prints f"{count / total:.1%}" (calculate_pair_judge_score.py line 30). By hand: the
    # percentage to one decimal is count * 1000 / 805 tenths, rounded to the nearest (805 = 5*7*23
    # never gives a half), written with one decimal.
    def by_hand(count: int, items: int = 805) -> str:
        tenths = Fraction(count * 1000, items)
        rounded = int(tenths + Fraction(1, 2))
        return f"{rounded // 10}.{rounded % 10}%"

    twice = 0
    for k in range(806):
        c = tally(["win"] * k + ["loss"] * (805 - k))
        line = format_table({"languages": {}, "overall": c}).splitlines()[2]
        fields = line.split()
        assert fields[7] == by_hand(k) and fields[9] == by_hand(805 - k), (k, line)
        twice += f"{100 * round(k / 805, 4):.1f}%" != by_hand(k)
    assert twice == 33  # the cases that rounding a stored rate first printed a tenth off


def test_language_by_set_rows_and_delta():
    """PLUG scores one language per results file and breaks it down by the data file's `dataset`
    (calculate_pair_judge_score.py lines 99-104, printed by lines 115-116), so our set rows sit
    within each language; Δ is line 35's difference (there printed as its absolute value)."""
    judgments = (
        [{"language": "sw", "dataset": "koala", "outcome": o} for o in ("win", "slight_win", "loss")]
        + [{"language": "sw", "dataset": "oasst", "outcome": o} for o in ("tie", "error")]
        + [{"language": "ko", "dataset": "koala", "outcome": o} for o in ("loss", "slight_loss", "win")]
    )
    report = build_report(judgments, {"model_1": "M1", "model_2": "M2", "protocol": "plug"})
    assert counts(report["language_datasets"]["sw"]["koala"]) == (3, 2, 1, 0, 1, 0, 0, 1)
    assert counts(report["language_datasets"]["sw"]["oasst"]) == (2, 0, 0, 1, 0, 0, 1, 0)
    assert counts(report["languages"]["ko"]) == (3, 1, 0, 0, 2, 1, 0, -1)
    assert counts(report["datasets"]["koala"]) == (6, 3, 1, 0, 3, 1, 0, 0)  # pooled over languages, as before
    lines = format_table(report).splitlines()
    names = [line[:24].rstrip() for line in lines[2:7]]
    assert names == ["ko Korean", "  ko set koala", "sw Swahili", "  sw set koala", "  sw set oasst"]
    assert lines[2].split()[2:] == ["3", "1", "0", "2", "0", "-1", "33.3%", "0.0%", "66.7%", "0.0%", "-33.3%"]


def test_exports_in_the_papers_formats(setup, start_tgi_server, capsys):
    """PLUG's pair result (common.py lines 359-372) read by calculate_pair_judge_score.py (lines 59-70:
    question_id, model_1, model_2, g1_winner, g2_winner; lines 99-100: the data file's dataset and
    category, "default" as llm_judge.py lines 57-59 set it); X-Instruction's per-order file
    (gpt4_eval.py line 236 names it `gpt4.eval.<answer1>.<answer2>.aug-min-output.jsonl`, lines
    339-347 write its lines)."""
    calls: list = []
    server = start_tgi_server(reply=xinstruction_judge(calls), flavour="llamacpp", max_total_tokens=8192)
    assert judge(setup, server, "--protocol", "xinstruction", "--strict", "--configs", "cross-sw", "--export", "plug", "--export", "xinstruction") == 0
    folder = setup[1] / "judgments" / "xinstruction-strict" / "M1-vs-M2" / "export"
    results = [json.loads(line) for line in (folder / "plug" / "cross-sw" / "results.jsonl").read_text().splitlines()]
    data = json.loads((folder / "plug" / "cross-sw" / "data.json").read_text())
    # What calculate_pair_judge_score.py reads: question_id, model_1/2, g1/g2_winner; from -data: id, dataset, category.
    assert [(r["question_id"], r["model_1"], r["model_2"]) for r in results] == [(i, "M1", "M2") for i in range(ITEMS)]
    assert [combine(r["g1_winner"], r["g2_winner"]) for r in results] == STRICT_PER_ORDER
    assert (results[1]["g1_winner"], results[1]["g2_winner"]) == ("model_1", "model_2")
    assert [(d["id"], d["dataset"], d["category"]) for d in data] == [(i, SUBSETS[i % len(SUBSETS)], "default") for i in range(ITEMS)]
    assert data[0]["instruction"] == "[fake en instruction #0] Describe item 0."
    first = [json.loads(line) for line in (folder / "xinstruction" / "cross-sw" / "gpt4.eval.M1.M2.aug-min-output.jsonl").read_text().splitlines()]
    second = [json.loads(line) for line in (folder / "xinstruction" / "cross-sw" / "gpt4.eval.M2.M1.aug-min-output.jsonl").read_text().splitlines()]
    assert [(r["score_1"], r["score_2"]) for r in first] == [(8, 5), (6, 5), (85, 7), (-1, -1), (-1, -1), (7, 7), (3, 9), (8, 6)]
    assert [(r["score_1"], r["score_2"]) for r in second] == [(4, 9), (9, 1), (7, 8), (5, 9), (5, 9), (7, 7), (9, 2), (5, 5)]
    assert first[0]["answer1"] == "M1 answers item 0" and second[0]["answer1"] == "M2 answers item 0"
    assert first[3]["gpt4_eval"] == XI_REPLIES[3][0] and set(first[0]) == {"question_id", "category", "score_1", "score_2", "gpt4_eval", "answer1", "answer2"}
    # `eval report --export` writes the same files again; X-Instruction's format needs scores.
    capsys.readouterr()
    assert main(["eval", "report", str(folder.parent), "--export", "plug"]) == 0
    assert "results.jsonl" in capsys.readouterr().out
    with pytest.raises(ValueError, match="export them as plug"):
        export_judgments([{"config": "ko", "id": 0, "dataset": "x", "orders": []}], {"protocol": "plug"}, folder, ["xinstruction"])


# --- checked inputs ------------------------------------------------------------------------------

BAD_INPUTS = {
    "missing": ({"ids": [0, 1]}, "M1/ko.json has no answer for 3 of 5 ids (2, 3, 4); it answers the first 2 only: --limit 2 judges those"),
    "missing in the middle": ({"ids": [0, 2, 4]}, "M1/ko.json has no answer for 2 of 5 ids (1, 3):"),
    "duplicate": ({"ids": [0, 1, 1, 2, 3, 4]}, "M1/ko.json answers ids more than once (1)"),
    "string ids": ({"text": json.dumps([{"id": str(i), "output": "x"} for i in range(5)])},
                   "M1/ko.json has ids that are not integers ('0', '1', '2', '3', '4')"),
    "empty file": ({"text": ""}, "M1/ko.json is empty"),
    "empty array": ({"text": "[]"}, "M1/ko.json is empty"),
    "null output": ({"text": json.dumps([{"id": i, "output": None if i == 3 else "x"} for i in range(5)])},
                    "M1/ko.json has a null or non-text output for ids (3)"),
}


def bad_input_command(tmp_path: Path, case: str) -> list[str]:
    source = write_xalpacaeval_sources(tmp_path / "source")
    changes, _ = BAD_INPUTS[case]
    write_answers(tmp_path / "M1", "ko", "M1", changes.get("ids", range(5)), **({"text": changes["text"]} if "text" in changes else {}))
    write_answers(tmp_path / "M2", "ko", "M2", range(5))
    return ["eval", "judge", str(tmp_path / "M1"), str(tmp_path / "M2"), "--judge", "{backend: tgi, model: j, endpoints: ['http://127.0.0.1:9']}",
            "--configs", "ko", "--limit", "5", "--source-dir", str(source), "--output-dir", str(tmp_path / "eval"), "--no-progress"]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_answer_file_is_one_line_naming_file_and_ids(tmp_path, case, capsys):
    """Each bad input stops the run (exit 2) with one line naming the file and the ids. PLUG's judge
    would keep the last of two answers of an id (llm_judge.py line 77), stop with a KeyError on a
    missing one or a string id (line 104), and judge a null output as the text "None" (line 76,
    then `str.format`, common.py lines 272-277)."""
    assert main(bad_input_command(tmp_path, case)) == 2
    err = capsys.readouterr().err
    assert BAD_INPUTS[case][1] in err and err.count("\n") == 1 and "--missing-as-error" in err
    assert not (tmp_path / "eval" / "judgments").exists()


def test_a_bad_answer_file_through_the_real_entry_point(tmp_path):
    """The same through `python -m xinstruction_dataset.cli`: exit 2, one line on stderr."""
    command = [sys.executable, "-m", "xinstruction_dataset.cli", *bad_input_command(tmp_path, "string ids")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert BAD_INPUTS["string ids"][1] in done.stderr and "has no answer for 5 of 5 ids" in done.stderr


def test_missing_as_error_counts_them_and_judges_the_rest(tmp_path, start_tgi_server, capsys):
    """--missing-as-error: each item a problem touches is an error in both orders, counted over all
    items as PLUG counts errors (calculate_pair_judge_score.py lines 27 and 30), never judged."""
    source = write_xalpacaeval_sources(tmp_path / "source")
    write_answers(tmp_path / "M1", "ko", "M1", [0, 1, 1, 2])
    (tmp_path / "M2").mkdir()
    (tmp_path / "M2" / "ko.json").write_text(json.dumps([{"id": i, "output": None if i == 0 else f"M2 answers item {i}"} for i in range(5)]))
    model = ScriptedJudge()
    server = start_tgi_server(reply=model, max_total_tokens=8192)
    assert main(["eval", "judge", str(tmp_path / "M1"), str(tmp_path / "M2"), "--judge", spec(server, route="generate"),
                 "--configs", "ko", "--limit", "5", "--source-dir", str(source), "--output-dir", str(tmp_path / "eval"),
                 "--no-progress", "--missing-as-error"]) == 0
    judgments = [json.loads(line) for line in (tmp_path / "eval" / "judgments" / "plug" / "M1-vs-M2" / "judgments.jsonl").read_text().splitlines()]
    # 0: M2's output is null; 1: M1 answers it twice; 3, 4: M1 has no answer. Only item 2 is judged (a tie).
    assert [j["outcome"] for j in judgments] == ["error", "error", "tie", "error", "error"]
    assert judgments[0]["orders"][0]["error"].endswith("M2/ko.json: null_output") and judgments[1]["orders"][0]["replies"] == []
    assert sorted({item for item, *_ in model.calls}) == [2]
    report = json.loads((tmp_path / "eval" / "judgments" / "plug" / "M1-vs-M2" / "report.json").read_text())
    assert [(p["problem"], p["ids"]) for p in report["input_errors"]] == [("duplicate", [1]), ("missing", [3, 4]), ("null_output", [0])]
    assert report["overall"]["error"] == 4 and report["overall"]["items"] == 5
    assert "counted as errors (--missing-as-error):" in capsys.readouterr().out


def test_reading_an_answer_file(tmp_path):
    """Ids beyond the items judged are no problem (PLUG's judge looks up only its questions' ids,
    llm_judge.py lines 99-105)."""
    path = write_answers(tmp_path, "ko", "M1", [0, 2, 2, 5])
    checked = read_answer_file(path, [0, 1, 2, 3])
    assert checked.outputs == {0: "M1 answers item 0"}  # 5 is beyond the items asked for: fine
    assert [(p.problem, p.ids) for p in checked.problems] == [("duplicate", (2,)), ("missing", (1, 3))]
    items = pair_items([{"id": i, "dataset": "d", "instruction": "q", "language": "ko"} for i in (0, 1)], checked, checked, "ko")
    assert "input_error" not in items[0] and items[1]["input_error"].endswith("ko.json: missing; bad_input: " + str(path) + ": missing")
