"""The TGI-protocol test server's benchmark modes: the curation model's judge mix, log-normal
service times, and the request log behind `GET /stats`."""

from __future__ import annotations

import json
import statistics
import urllib.request
from pathlib import Path

import pytest

from tgi_server import TGIServer, curation_reply, judge_label
from xinstruction_dataset.curation.config import GenerateConfig
from xinstruction_dataset.curation.generate.checks import instruction_problem

PROMPTS = Path(__file__).resolve().parents[1] / "xinstruction_dataset" / "curation"


def _template(stage: str, name: str) -> str:
    return (PROMPTS / stage / "prompts" / f"{name}.txt").read_text(encoding="utf-8")


def _judge_prompts(name: str, n: int) -> list[str]:
    template = _template("judge", name)
    return [template.format(language="Swahili", instruction=f"Describe event number {i}.",
                            response=f"Habari ya tukio namba {i} ilitokea jana mjini.") for i in range(n)]


@pytest.mark.parametrize("template", ["judge_three_level_v1", "judge_three_level_fewshot_v1"])
def test_judge_labels_have_the_configured_shares(template):
    reply = curation_reply(needs_refinement=0.3, bad=0.2)
    labels = [reply(prompt, {}).split()[0] for prompt in _judge_prompts(template, 400)]
    assert set(labels) <= {"good", "needs_refinement", "bad"}
    assert abs(labels.count("needs_refinement") / 400 - 0.3) < 0.07
    assert abs(labels.count("bad") / 400 - 0.2) < 0.07
    again = [reply(prompt, {}).split()[0] for prompt in _judge_prompts(template, 400)]
    assert again == labels  # deterministic per prompt


def test_five_point_judge_gets_scores_with_the_same_mix():
    reply = curation_reply(needs_refinement=0.3, bad=0.2)
    prompts = _judge_prompts("judge_five_point_v1", 300)
    scores = [reply(p, {}).strip() for p in prompts]
    assert scores == [{"good": "5", "needs_refinement": "3", "bad": "1"}[judge_label(p, 0.3, 0.2)] for p in prompts]


def test_generated_and_refined_instructions_pass_the_generator_checks():
    reply = curation_reply()
    document = "Mvua kubwa iliyonyesha jana usiku imesababisha mafuriko katika mitaa kadhaa ya jiji."
    generated = reply(_template("generate", "instruction_v1").format(text=document), {})
    instruction = generated.split("\n\n###", 1)[0].strip()
    assert instruction_problem(instruction, document, GenerateConfig()) is None
    refine = _template("refine", "refine_instruction_v1").format(language="Swahili", instruction=instruction, response=document)
    assert instruction_problem(reply(refine, {}).strip(), document, GenerateConfig()) is None
    response = _template("refine", "refine_response_v1").format(language="Swahili", instruction=instruction, response=document)
    assert reply(response, {}).strip() == document


def test_bad_shares_are_refused():
    with pytest.raises(ValueError):
        curation_reply(needs_refinement=0.8, bad=0.3)


def test_lognormal_service_times_have_the_set_mean_and_spread():
    server = TGIServer(latency=0.2, service_time="lognormal", sigma=0.5, seed=1)
    draws = [server.service_time() for _ in range(20000)]
    assert abs(statistics.fmean(draws) - 0.2) < 0.005
    # sd of a log-normal with mean m and shape s: m * sqrt(exp(s^2) - 1) = 0.2 * 0.533
    assert abs(statistics.stdev(draws) - 0.2 * 0.5329) < 0.01
    assert TGIServer(latency=0.2).service_time() == 0.2


def test_stats_log_every_answered_request(start_tgi_server):
    server = start_tgi_server(slots=2, latency=0.01)
    for i in range(5):
        request = urllib.request.Request(f"{server.url}/generate", data=json.dumps({"inputs": f"hello {i}"}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()
    with urllib.request.urlopen(f"{server.url}/stats", timeout=5) as answer:
        stats = json.load(answer)
    assert stats["count"] == 5 and len(stats["requests"]) == 5
    assert all(arrival <= start < end for arrival, start, end in stats["requests"])
    assert stats["busy"] == pytest.approx(0.05, abs=1e-6)
    assert 0 < stats["utilisation"] <= 1
