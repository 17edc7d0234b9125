"""The TGI backend against a real TGI-protocol server on 127.0.0.1 (tests/tgi_server.py), driven
by the unmodified huggingface_hub client: routes, limits, load spread, faults, context, secrets."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from pydantic import ValidationError

from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend, model_spec
from xinstruction_dataset.llm.backends.text import TRUNCATION_MARK
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallRunner

FAST_RETRY = {"backoff": 0.01, "backoff_max": 0.05}


def tgi(urls, **options):
    return build_backend({"backend": "tgi", "model": "test/model", "endpoints": list(urls), **FAST_RETRY, **options})


def requests(n, *, prefix="document", max_new_tokens=16, stop=()):
    params = GenerationParams(max_new_tokens=max_new_tokens, stop=stop)
    return [(i, LLMRequest(prompt=f"{prefix} {i} says hello", params=params)) for i in range(n)]


def run_all(backend, tmp_path, reqs, name="calls"):
    with CallCache(tmp_path / f"{name}.sqlite") as cache:
        runner = CallRunner(backend, cache, progress=False)
        return runner.run_all(reqs), runner.stats, cache.failures()


def assert_all_ok(results, n):
    assert len(results) == n
    failed = {tag: r.error for tag, r in results.items() if not r.ok}
    assert not failed


# --- recipe entries -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "max_concurency": 4}, "max_concurency"),
        ({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "timeout": "fast"}, "timeout"),
        ({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "route": "embeddings"}, "route"),
        ({"backend": "tgi", "model": "m", "endpoints": ["h:1"]}, "not http"),
        ({"backend": "tgi", "model": "m"}, "endpoints"),
        ({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "context_policy": "drop"}, "context_policy"),
        ({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "token_env": "NO_SUCH_VAR_X"}, "NO_SUCH_VAR_X"),
        ({"backend": "vllm"}, "backend"),
        ({"backend": "local", "dtype": "float8"}, "dtype"),
    ],
)
def test_bad_spec_names_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        model_spec(spec)


def test_spec_types_are_coerced():
    config = model_spec({"backend": "tgi", "model": "m", "endpoints": "http://h:1/", "timeout": 30, "max_concurrency": 8})
    assert config.backend == "tgi"
    assert config.endpoints == ["http://h:1"] and config.timeout == 30.0 and isinstance(config.timeout, float)


# --- routes -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["generate", "chat"])
def test_routes_complete_and_strip_stop_strings(start_tgi_server, tmp_path, route):
    server = start_tgi_server(reply=lambda prompt, p: f"An instruction.###\nmore {p.get('seed')}")
    results, stats, _ = run_all(tgi([server.url], route=route), tmp_path, requests(12, stop=("###",)))
    assert_all_ok(results, 12)
    assert {r.completion.text for r in results.values()} == {"An instruction."}
    assert stats.sent == 12 and stats.completion_tokens > 0
    assert server.status_counts == {200: 12 + 1}  # + one /info


def test_chat_route_on_a_server_without_native_route_or_info(start_tgi_server, tmp_path):
    """llama.cpp: chat only, no `/`; vLLM: no /info. The configured cap is the limit then."""
    server = start_tgi_server(native_route=False, has_info=False, slots=8, max_concurrent_requests=8)
    backend = tgi([server.url], route="chat", max_concurrency=3)
    messages = ((("system", "Be brief."), ("user", "Say hi")),)
    reqs = [(i, LLMRequest(messages=messages[0], params=GenerationParams(max_new_tokens=8, seed=i))) for i in range(9)]
    results, _, _ = run_all(backend, tmp_path, reqs)
    assert_all_ok(results, 9)
    assert backend.max_concurrency == 3 and server.peak_active <= 3
    assert results[4].completion.text == "hi Say brief. Be (seed 4)"


def test_generate_route_rejects_messages(tgi_server, tmp_path):
    reqs = [("m", LLMRequest(messages=(("user", "hi"),)))]
    results, stats, failures = run_all(tgi([tgi_server.url]), tmp_path, reqs)
    assert "route `chat`" in results["m"].error and len(failures) == 1


# --- limits and load spread ---------------------------------------------------------------


def test_slots_follow_info_capped_by_config(start_tgi_server, tmp_path):
    wide = start_tgi_server(slots=6, latency=0.02)
    results, _, _ = run_all(tgi([wide.url], max_concurrency=64), tmp_path, requests(60), "wide")
    assert_all_ok(results, 60)
    assert wide.peak_active == 6 and 429 not in wide.status_counts  # filled /info's 6, never more
    capped = start_tgi_server(slots=6, latency=0.02)
    results, _, _ = run_all(tgi([capped.url], max_concurrency=2), tmp_path, requests(20), "capped")
    assert_all_ok(results, 20)
    assert capped.peak_active == 2


def test_load_spreads_over_endpoints(start_tgi_server, tmp_path):
    servers = [start_tgi_server(slots=4, latency=0.02) for _ in range(2)]
    backend = tgi([s.url for s in servers])
    results, _, _ = run_all(backend, tmp_path, requests(80))
    assert_all_ok(results, 80)
    served = [sum(s.successes.values()) for s in servers]
    assert sum(served) == 80 and min(served) >= 25, served
    assert all(s.peak_active == 4 for s in servers)
    assert backend.max_concurrency == 8


# --- faults -------------------------------------------------------------------------------


# Routes that take raw prompts: the fault and context tests hold for each of them.
PROMPT_ROUTES = ["generate", "completions"]


@pytest.mark.parametrize("route", PROMPT_ROUTES)
@pytest.mark.parametrize("fault", ["429", "503", "malformed", "drop"])
def test_faults_are_retried_and_no_call_repeats(start_tgi_server, tmp_path, fault, route):
    server = start_tgi_server(slots=4, latency=0.01)
    server.inject(fault, count=10)
    results, stats, failures = run_all(tgi([server.url], retries=8, route=route), tmp_path, requests(30))
    assert_all_ok(results, 30)
    assert not failures and not server.repeated_after_success()
    assert sum(server.attempts.values()) == 30 + 10


@pytest.mark.parametrize("route", PROMPT_ROUTES)
@pytest.mark.timeout(60)  # a hang guard, not a speed check
def test_hang_past_the_timeout_is_retried(start_tgi_server, tmp_path, route):
    server = start_tgi_server(slots=8)
    server.inject("hang", count=2)
    results, _, _ = run_all(tgi([server.url], timeout=0.5, route=route), tmp_path, requests(6))
    assert_all_ok(results, 6)
    assert sum(server.attempts.values()) == 6 + 2  # the two hung attempts were given up and sent again
    assert not server.repeated_after_success()


def test_failure_after_retries_is_reported_then_retried_on_resume(start_tgi_server, tmp_path):
    server = start_tgi_server(slots=2)
    server.inject("503", count=3, match="document 1 ")
    backend = tgi([server.url], retries=2)
    with CallCache(tmp_path / "calls.sqlite") as cache:
        results = CallRunner(backend, cache, progress=False).run_all(requests(3))
        assert results[0].ok and results[2].ok
        assert "failed after 3 attempts" in results[1].error and "HTTP 503" in results[1].error
        assert [f["key"] for f in cache.failures()] == [results[1].key]
        assert cache.get(results[1].key) is None  # a failure is never served as a result
        again = CallRunner(backend, cache, progress=False).run_all(requests(3))
        assert again[1].ok and not again[1].cached and again[0].cached
        assert cache.failures() == []
    assert not server.repeated_after_success()


def test_server_killed_and_restarted_mid_run(start_tgi_server, tmp_path):
    server = start_tgi_server(slots=8, latency=0.02)
    backend = tgi([server.url], retries=10, backoff=0.05, backoff_max=0.5)
    n = 300

    def kill_and_restart():
        while sum(server.successes.values()) < 60:
            time.sleep(0.005)
        server.restart(downtime=0.5)

    chaos = threading.Thread(target=kill_and_restart)
    chaos.start()
    results, stats, failures = run_all(backend, tmp_path, requests(n))
    chaos.join()
    assert_all_ok(results, n)
    assert not failures and not server.repeated_after_success()
    assert sum(server.successes.values()) == n


def test_one_dead_endpoint_of_two(start_tgi_server, tmp_path):
    alive, dead = start_tgi_server(slots=4, latency=0.01), start_tgi_server(slots=4)
    dead.kill()
    results, _, _ = run_all(tgi([alive.url, dead.url], retries=6), tmp_path, requests(60))
    assert_all_ok(results, 60)
    assert sum(alive.successes.values()) == 60


# --- context ------------------------------------------------------------------------------


def long_prompt():
    return "HEADER: write an instruction.\n" + "word " * 2000 + "\n### English Instruction:"


@pytest.mark.parametrize("route", PROMPT_ROUTES)
def test_overlong_input_is_truncated_middle_out(start_tgi_server, tmp_path, route):
    server = start_tgi_server(max_input_tokens=300, max_total_tokens=400)
    reqs = [("long", LLMRequest(prompt=long_prompt(), params=GenerationParams(max_new_tokens=64)))]
    results, _, _ = run_all(tgi([server.url], route=route), tmp_path, reqs)
    assert results["long"].ok
    (sent,) = server.attempts
    assert sent.startswith("HEADER:") and sent.endswith("### English Instruction:") and TRUNCATION_MARK in sent
    assert 422 not in server.status_counts


@pytest.mark.parametrize("route", PROMPT_ROUTES)
def test_overlong_input_is_rejected_with_a_reason_and_never_sent(start_tgi_server, tmp_path, route):
    server = start_tgi_server(max_input_tokens=300, max_total_tokens=400)
    reqs = [("long", LLMRequest(prompt=long_prompt(), params=GenerationParams(max_new_tokens=64))), ("short", LLMRequest(prompt="hi"))]
    results, _, failures = run_all(tgi([server.url], context_policy="reject", route=route), tmp_path, reqs)
    assert results["short"].ok
    assert "exceeds the model's input budget" in results["long"].error and "context_policy=reject" in results["long"].error
    assert list(server.attempts) == ["hi"] and len(failures) == 1


def test_max_new_tokens_is_lowered_to_fit_the_total(start_tgi_server, tmp_path):
    server = start_tgi_server(max_input_tokens=100, max_total_tokens=120)
    reqs = [("x", LLMRequest(prompt="a " * 100, params=GenerationParams(max_new_tokens=500)))]
    results, _, _ = run_all(tgi([server.url]), tmp_path, reqs)
    assert results["x"].ok and 422 not in server.status_counts


# --- credentials --------------------------------------------------------------------------


def test_token_from_env_is_sent_and_never_logged(tgi_server, tmp_path, monkeypatch, caplog):
    secret = "hf_test_secret_value_123"
    monkeypatch.setenv("MY_ENDPOINT_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    backend = tgi([tgi_server.url], token_env="MY_ENDPOINT_TOKEN")
    results, _, _ = run_all(backend, tmp_path, requests(3))
    assert_all_ok(results, 3)
    assert tgi_server.authorizations[f"Bearer {secret}"] == 3 + 1
    assert secret not in repr(backend) and secret not in repr(backend.config) and secret not in caplog.text
    assert secret not in (tmp_path / "calls.sqlite").read_bytes().decode("latin-1")


def test_ramp_opens_one_slot_per_success_and_halves_on_failure():
    from xinstruction_dataset.llm.backends.server import Endpoint
    from xinstruction_dataset.llm.backends.tgi import TGIConfig

    endpoint = Endpoint("http://h:1", cap=64, token=None, timeout=1.0, ramp_start=4)
    assert endpoint.capacity == 1  # until /info answered
    endpoint.info = {"max_concurrent_requests": 10}
    assert endpoint.capacity == 4
    assert [endpoint.record_success() for _ in range(8)] == [1, 1, 1, 1, 1, 1, 0, 0]
    assert endpoint.capacity == 10
    endpoint.record_failure(TGIConfig(model="m", endpoints=["http://h:1"], backoff=0.0))
    assert endpoint.capacity == 5 and endpoint.cooling(time.monotonic() - 1)


def test_a_password_in_the_endpoint_url_is_never_logged(tgi_server, tmp_path, caplog):
    password = "pw-in-the-url-0123"
    url = tgi_server.url.replace("http://", f"http://curator:{password}@")
    caplog.set_level(logging.DEBUG)
    backend = tgi([url])
    results, _, _ = run_all(backend, tmp_path, requests(2))
    assert_all_ok(results, 2)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("xinstruction_dataset"))
    assert "limits from /info" in ours and "http://***@127.0.0.1" in ours  # the line is there, scrubbed
    assert password not in ours and password not in repr(backend)


# --- the plug-in point --------------------------------------------------------------------


def test_every_backend_kind_is_registered_built_and_a_recipe_model_entry():
    """A new backend is one file in llm/backends/ (its spec and its backend registered in
    BACKENDS) and its import in the package's __init__: forgetting the import, the registration
    or the implementation fails here, as does a recipe model entry that does not offer it."""
    import xinstruction_dataset.llm.backends as backends
    from plugin_checks import kinds_of_annotation, point_problems
    from xinstruction_dataset.curation.config import ModelsConfig

    fields = ModelsConfig.model_fields
    offered = set.intersection(*(kinds_of_annotation(backends.BACKENDS, fields[role].annotation) for role in ("generator", "judge", "refiner")))
    assert point_problems(backends.BACKENDS, backends, offered) == []
    assert {"local", "tgi"} <= set(backends.BACKENDS.kinds())  # a new backend needs no change here


def test_a_backend_answers_its_own_capabilities_and_gets_the_spec_it_was_checked_as():
    spec = model_spec({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "route": "chat", "max_total_tokens": 300})
    backend = build_backend(spec)
    assert backend.config is spec  # checked once, at load; the frozen spec travels as is
    assert backend.supports_chat and not backend.supports_no_repeat_ngram_size
    assert (backend.limits().max_input_tokens, backend.limits().max_total_tokens) == (None, 300)  # no server asked yet
    assert not build_backend(spec.model_copy(update={"route": "generate"})).supports_chat
    with pytest.raises(ValidationError, match="frozen"):
        spec.route = "generate"
