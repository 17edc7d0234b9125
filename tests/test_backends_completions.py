"""Route `completions` (OpenAI text completions, `POST /v1/completions`: base models on vLLM,
SGLang and llama.cpp) and the limits a server reports about itself (TGI `/info`, llama.cpp
`/props`, vLLM `/v1/models`, else the recipe's), against the real TGI-protocol test server
(tests/tgi_server.py) over HTTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from test_backends_tgi import assert_all_ok, long_prompt, requests, run_all, tgi
from test_curate_faults import documents, recipe_for, reply
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, model_spec

TGI_LOGGER = "xinstruction_dataset.llm.backends.server"


def completions(urls, **options):
    return tgi(urls, **{"route": "completions", **options})


# --- the route ----------------------------------------------------------------------------


def test_completions_is_a_valid_route():
    assert model_spec({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "route": "completions"}).route == "completions"


def test_completions_route_completes_and_cuts_stop_strings(start_tgi_server, tmp_path):
    server = start_tgi_server(reply=lambda prompt, p: f"An instruction.###\nmore {p.get('seed')}")
    results, stats, failures = run_all(completions([server.url]), tmp_path, requests(12, stop=("###",)))
    assert_all_ok(results, 12)
    assert {r.completion.text for r in results.values()} == {"An instruction."}
    assert {r.completion.finish_reason for r in results.values()} == {"stop"}
    assert stats.sent == 12 and stats.completion_tokens > 0 and not failures
    assert server.status_counts == {200: 12 + 1}  # + one /info
    assert sum(server.successes.values()) == 12  # every call went to /v1/completions
    body = server.completion_bodies[0]
    assert body["model"] == "test/model" and body["prompt"].endswith("says hello")
    assert body["stop"] == ["###"] and body["max_tokens"] == 16 and body["seed"] == 0
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["top_k"] == 50


def test_served_model_greedy_and_no_top_k(start_tgi_server, tmp_path):
    server = start_tgi_server()
    params = GenerationParams(max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, seed=None)
    reqs = [("g", LLMRequest(prompt="greedy please", params=params))]
    results, _, _ = run_all(completions([server.url], served_model="served-name"), tmp_path, reqs)
    assert results["g"].ok
    (body,) = server.completion_bodies
    assert body["model"] == "served-name" and body["temperature"] == 0.0
    assert "top_k" not in body and "seed" not in body and "stop" not in body


def test_seeds_decide_the_text(start_tgi_server, tmp_path):
    server = start_tgi_server()
    prompt = "the same prompt every time"

    def one(seed, name):
        reqs = [(name, LLMRequest(prompt=prompt, params=GenerationParams(max_new_tokens=16, seed=seed)))]
        results, _, _ = run_all(completions([server.url]), tmp_path, reqs, name)
        return results[name].completion.text

    first, again, other = one(7, "a"), one(7, "b"), one(8, "c")
    assert first == again == "time every prompt same the (seed 7)"
    assert other != first and other.endswith("(seed 8)")
    assert [b["seed"] for b in server.completion_bodies] == [7, 7, 8]


def test_max_new_tokens_limits_the_reply(start_tgi_server, tmp_path):
    server = start_tgi_server(reply=lambda prompt, p: " ".join(f"w{i}" for i in range(50)))
    reqs = [("x", LLMRequest(prompt="q", params=GenerationParams(max_new_tokens=5)))]
    results, _, _ = run_all(completions([server.url]), tmp_path, reqs)
    completion = results["x"].completion
    assert completion.text == "w0 w1 w2 w3 w4" and completion.completion_tokens == 5
    assert completion.finish_reason == "length" and server.completion_bodies[0]["max_tokens"] == 5


def test_messages_are_refused_with_the_route_to_use(tgi_server, tmp_path):
    reqs = [("m", LLMRequest(messages=(("user", "hi"),)))]
    results, _, failures = run_all(completions([tgi_server.url]), tmp_path, reqs)
    assert "route `chat`" in results["m"].error and len(failures) == 1
    assert not tgi_server.completion_bodies


# --- faults -------------------------------------------------------------------------------


def test_failure_after_retries_names_the_last_error(start_tgi_server, tmp_path):
    server = start_tgi_server(slots=2)
    server.inject("503", count=3, match="document 1 ")
    results, _, failures = run_all(completions([server.url], retries=2), tmp_path, requests(3))
    assert results[0].ok and results[2].ok
    assert "failed after 3 attempts" in results[1].error and "HTTP 503" in results[1].error
    assert [f["key"] for f in failures] == [results[1].key]


def test_huge_reply_fails_small_and_is_not_retried(start_tgi_server, tmp_path):
    server = start_tgi_server(slots=4, huge_reply_bytes=2_000_000)
    server.inject("huge", count=1, match="document 1 ")
    results, _, failures = run_all(completions([server.url], timeout=3), tmp_path, requests(3, max_new_tokens=128))
    assert results[0].ok and results[2].ok
    error = results[1].error
    assert error.startswith("reply_too_large") and len(error) < 400
    assert server.attempts["document 1 says hello"] == 1  # not retried
    assert [f["key"] for f in failures] == [results[1].key]


def test_token_rules_match_the_other_routes(start_tgi_server, tmp_path, monkeypatch):
    login = "hf_login_token_should_stay_home_42"
    monkeypatch.setenv("HF_TOKEN", login)
    server = start_tgi_server(slots=2)
    results, _, _ = run_all(completions([server.url]), tmp_path, requests(3))
    assert_all_ok(results, 3)
    assert set(server.authorizations) == {None}  # no login token to a third-party host
    monkeypatch.setenv("MY_ENDPOINT_TOKEN", "sk-endpoint-secret-0123456789")
    results, _, _ = run_all(completions([server.url], token_env="MY_ENDPOINT_TOKEN"), tmp_path, requests(3), "token")
    assert_all_ok(results, 3)
    assert server.authorizations["Bearer sk-endpoint-secret-0123456789"] == 3 + 1


# --- context ------------------------------------------------------------------------------


def test_server_422_on_overlong_input_is_not_retried(start_tgi_server, tmp_path):
    """A server that tells no limits: the input goes out, the server's 422 is final."""
    server = start_tgi_server(limits_route="none", max_input_tokens=300, max_total_tokens=400)
    reqs = [("long", LLMRequest(prompt=long_prompt(), params=GenerationParams(max_new_tokens=64)))]
    results, _, failures = run_all(completions([server.url]), tmp_path, reqs)
    assert "HTTP 422" in results["long"].error and "must have less than 300 tokens" in results["long"].error
    assert sum(server.attempts.values()) == 1 and len(failures) == 1


# --- limits the server reports ------------------------------------------------------------


@pytest.mark.parametrize(
    "limits_route, source, slots, max_input, max_total",
    [
        ("info", "/info", 5, 300, 400),  # TGI: everything
        ("props", "/props", 5, None, 400),  # llama.cpp: slots and n_ctx per slot
        ("models", "/v1/models", 8, None, 400),  # vLLM: max_model_len; slots: the recipe's
        ("none", "the recipe", 8, None, None),
    ],
)
@pytest.mark.parametrize("route", ["completions", "chat"])
def test_limits_come_from_the_server(start_tgi_server, tmp_path, caplog, limits_route, source, slots, max_input, max_total, route):
    server = start_tgi_server(limits_route=limits_route, slots=5, max_input_tokens=300, max_total_tokens=400)
    backend = completions([server.url], max_concurrency=8, route=route)
    caplog.set_level(logging.INFO, logger=TGI_LOGGER)
    results, _, _ = run_all(backend, tmp_path, requests(4))
    assert_all_ok(results, 4)
    endpoint = backend.pool.endpoints[0]
    assert endpoint.limits_source == source
    assert backend.max_concurrency == slots
    context = backend.limits()  # what the backend answers for itself: the one server's limits
    assert (context.max_input_tokens, context.max_total_tokens) == (max_input, max_total)
    records = [r for r in caplog.records if r.name == TGI_LOGGER and server.url in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]
    lines = [r.getMessage() for r in records]
    if limits_route == "none":
        assert "no /info, /props or /v1/models; limits from the recipe (max_concurrency=8" in lines[0]
    else:
        assert f"limits from {source}: " in lines[0] and f"max_total_tokens={max_total}" in lines[0]
        assert f"{slots} slots" in lines[0]


def test_recipe_limits_override_the_server_and_n_ctx_fits_the_input(start_tgi_server, tmp_path):
    server = start_tgi_server(limits_route="props", slots=2, max_input_tokens=300, max_total_tokens=400)
    backend = completions([server.url], max_concurrency=1)
    reqs = [("long", LLMRequest(prompt=long_prompt(), params=GenerationParams(max_new_tokens=64)))]
    results, _, _ = run_all(backend, tmp_path, reqs)
    assert results["long"].ok and 422 not in server.status_counts  # fitted to n_ctx 400
    assert backend.max_concurrency == 1  # the recipe's cap under /props' 2 slots
    capped = completions([server.url], max_total_tokens=300)
    assert capped.limits().max_total_tokens == 300  # before the server was asked: the recipe's
    run_all(capped, tmp_path, reqs, "capped")
    assert capped.limits().max_total_tokens == 300  # after: still the recipe's, under n_ctx 400


# --- curation end to end ------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_curation_on_the_completions_route(tmp_path: Path, start_tgi_server) -> None:
    server = start_tgi_server(reply=reply, slots=4, latency=0.01, max_input_tokens=2048, max_total_tokens=4096,
                              limits_route="models")
    server.inject("429", 4)
    server.inject("malformed", 2)
    docs = documents()
    recipe = recipe_for(tmp_path, server.url, docs)
    models = recipe.curation.models
    models.generator = models.generator.model_copy(update={"route": "completions"})
    [report] = run_curation(recipe, progress=False)
    curated = [json.loads(line) for f in sorted((tmp_path / "curated" / "sw").glob("*.jsonl")) for line in f.read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "curation" / "sw" / "rejects.jsonl").read_text().splitlines()]
    curated_ids = {r["provenance"]["source_id"] for r in curated}
    rejected_ids = {r["doc_id"] for r in rejects}
    assert curated_ids | rejected_ids == {d["id"] for d in docs} and not curated_ids & rejected_ids
    assert all(r["reason"] for r in rejects) and len(curated) == report.curated > 0
    # Every call went to /v1/completions; /v1/models gives no slot count, so past the server's 4
    # slots it answers 429 (overloaded), retried like the injected faults.
    assert len(server.completion_bodies) == sum(server.attempts.values()) >= len(server.successes) > 0
    assert set(server.status_counts) <= {200, 404, 429}  # 404: /info and /props (a vLLM has neither)
    assert not server.repeated_after_success()
