"""The server kinds (vllm, sglang, llamacpp, tgi, openai) against the protocol test server's
flavour of each (tests/tgi_server.py): where each reads its limits, the exact request bodies it
sends, an over-long input the server refuses (the estimate recalibrated from the server's own
count), the chat route; endpoints that follow a published source (llm/endpoints.py) while a run
goes on; the load-time line of `backend: tgi` on an OpenAI route."""

from __future__ import annotations

import asyncio
import copy
import logging
import time

import pytest

from tgi_server import count_tokens
from xinstruction_dataset.errors import UsageError
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, RetryableError, build_backend, model_spec
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallRunner
from xinstruction_dataset.llm.endpoints import PublishedEndpoints, endpoints_document
from xinstruction_dataset.storage import write_json

SERVER_LOGGER = "xinstruction_dataset.llm.backends.server"
TGI_LOGGER = "xinstruction_dataset.llm.backends.tgi"
FAST_RETRY = {"backoff": 0.01, "backoff_max": 0.05}
MODEL = "test/model"
THAI = "ประเทศไทยมีฝนตกหนักในภาคเหนือ "  # 3 UTF-8 bytes a character; the server counts a token a byte
NUCLEUS = GenerationParams(max_new_tokens=8, temperature=0.7, top_p=0.9, top_k=40, seed=3, stop=("\n\n",))

# kind: (limits route it reads, slots, max_input_tokens, max_total_tokens) against a server with
# 5 slots, max_input_tokens 300 and max_total_tokens 400, and a spec capped at 8 a server.
LIMITS = {
    "vllm": ("/v1/models", 8, None, 400),  # vLLM tells no slot count: the recipe's cap
    "sglang": ("/server_info", 5, 300, 399),  # input + new tokens must stay below context_length
    "llamacpp": ("/props", 5, None, 400),
    "tgi": ("/info", 5, 300, 400),
    "openai": ("/v1/models", 8, None, None),  # OpenAI tells neither: the recipe's
}
KINDS = tuple(LIMITS)


def served(kind, urls, **options):
    return build_backend({"backend": kind, "model": MODEL, "endpoints": list(urls), **FAST_RETRY, **options})


def run_all(backend, tmp_path, reqs, name="calls"):
    with CallCache(tmp_path / f"{name}.sqlite") as cache:
        return CallRunner(backend, cache, progress=False).run_all(reqs)


def failures(results):
    return {tag: r.error for tag, r in results.items() if not r.ok}


# --- each kind against its server ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_reads_its_servers_limits(start_tgi_server, tmp_path, caplog, kind):
    server = start_tgi_server(flavour=kind, model_id=MODEL, slots=5, max_input_tokens=300, max_total_tokens=400)
    backend = served(kind, [server.url], max_concurrency=8)
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    results = run_all(backend, tmp_path, [(i, LLMRequest(prompt=f"document {i} says hello", params=NUCLEUS)) for i in range(4)])
    assert failures(results) == {} and server.refusals == []
    source, slots, max_input, max_total = LIMITS[kind]
    (endpoint,) = backend.pool.endpoints
    assert endpoint.limits_source == source and backend.max_concurrency == slots == endpoint.limit
    assert (backend.limits().max_input_tokens, backend.limits().max_total_tokens) == (max_input, max_total)
    assert any(f"limits from {source}" in r.getMessage() for r in caplog.records if r.name == SERVER_LOGGER)


def test_vllm_reads_its_running_and_waiting_gauges(start_tgi_server, tmp_path, caplog):
    server = start_tgi_server(flavour="vllm", model_id=MODEL, slots=2)
    backend = served("vllm", [server.url])
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)
    assert failures(run_all(backend, tmp_path, [("x", LLMRequest(prompt="hi", params=NUCLEUS))])) == {}
    load = {"vllm:num_requests_running": 0.0, "vllm:num_requests_waiting": 0.0}
    assert backend.endpoint_stats()[server.url]["server_load"] == load
    lines = [r.getMessage() for r in caplog.records if "/metrics" in r.getMessage()]
    assert lines == [f"endpoint {server.url}: /metrics: vllm:num_requests_running=0, vllm:num_requests_waiting=0"]


def test_the_gauges_sum_over_engines_and_skip_other_samples():
    from xinstruction_dataset.llm.backends.server_limits import prometheus_gauges

    text = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
            'vllm:num_requests_running{engine="1",model_name="m"} 2.0\nvllm:num_requests_waiting 7\n'
            'vllm:num_requests_running_total{engine="0"} 99\nvllm:num_requests_waiting{engine="0"} x\n')
    assert prometheus_gauges(text, ("vllm:num_requests_running", "vllm:num_requests_waiting")) == {
        "vllm:num_requests_running": 5.0, "vllm:num_requests_waiting": 7.0}


COMPLETIONS_KEYS = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop"}
CHAT_KEYS = {"model", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "stream"}


@pytest.mark.parametrize("route", ["completions", "chat"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_sends_only_the_sampling_parameters_its_server_takes(start_tgi_server, tmp_path, caplog, kind, route):
    """The exact JSON keys each server received: top_k in the body for every server but OpenAI's
    own, which refuses it (the openai flavour answers 400 to any field OpenAI does not have)."""
    server = start_tgi_server(flavour=kind, model_id=MODEL)
    caplog.set_level(logging.WARNING)
    backend = served(kind, [server.url], route=route)
    results = run_all(backend, tmp_path, [("x", LLMRequest(prompt="a document says hello", params=NUCLEUS))])
    assert failures(results) == {} and server.refusals == []
    (body,) = server.completion_bodies if route == "completions" else server.chat_bodies
    top_k = set() if kind == "openai" else {"top_k"}
    assert set(body) == (COMPLETIONS_KEYS if route == "completions" else CHAT_KEYS) | top_k
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        MODEL, 8, 0.7, 0.9, 3, ["\n\n"])
    assert body.get("top_k", 40) == 40
    not_honoured = [r.getMessage() for r in caplog.records if "top_k is not honoured" in r.getMessage()]
    assert len(not_honoured) == (1 if kind == "openai" else 0)


def test_openai_refuses_top_k_so_the_openai_kind_never_sends_it(start_tgi_server, tmp_path):
    """The strict server is strict: a client that sent top_k there would fail (vllm kind against it)."""
    server = start_tgi_server(flavour="openai", model_id=MODEL)
    results = run_all(served("vllm", [server.url], retries=0), tmp_path, [("x", LLMRequest(prompt="hi", params=NUCLEUS))])
    assert "Unrecognized request argument supplied: top_k" in results["x"].error
    assert server.refusals == ["Unrecognized request argument supplied: top_k"]


@pytest.mark.parametrize("kind", ["vllm", "sglang", "llamacpp", "tgi"])
def test_greedy_decoding_is_taken_by_every_server(start_tgi_server, tmp_path, kind):
    server = start_tgi_server(flavour=kind, model_id=MODEL)
    greedy = GenerationParams(max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0)
    results = run_all(served(kind, [server.url]), tmp_path, [("x", LLMRequest(prompt="hi there", params=greedy))])
    assert failures(results) == {} and server.refusals == []


def thai_request(tag, chars, max_new_tokens=32):
    return tag, LLMRequest(prompt=f"Write an instruction.\n{(THAI * 200)[:chars]}\n### English Instruction:",
                           params=GenerationParams(max_new_tokens=max_new_tokens))


@pytest.mark.parametrize("kind", KINDS)
def test_an_overlong_input_recalibrates_on_the_servers_own_count(start_tgi_server, tmp_path, kind):
    """Thai at a token a byte against the client's 2-bytes-a-token estimate: each server refuses
    the first long input with its own error, whose count the client reads (remote.py
    SERVER_TOKEN_COUNTS): recalibrated, every call succeeds and fits."""
    server = start_tgi_server(flavour=kind, model_id=MODEL, max_input_tokens=400, max_total_tokens=500)
    recipe_limits = {"max_total_tokens": 500} if kind == "openai" else {}  # OpenAI's /v1/models tells none
    llm = served(kind, [server.url], ramp_start=1, max_concurrency=1, **recipe_limits)
    results = run_all(llm, tmp_path, [thai_request(i, 300 + 40 * i) for i in range(6)])
    assert failures(results) == {}
    assert len(server.refusals) == 1, server.refusals
    assert llm.counter.bytes_per_token < 1.0


def test_calls_refused_side_by_side_are_all_refitted(start_tgi_server, tmp_path):
    """Two long inputs refused at once: the Thai one recalibrates the estimate first; the other,
    mostly English, implies no lower estimate than that one's, and is refitted on it rather than
    failed (the race the PLUG evaluation ran into once aiohttp sent both at the same moment)."""
    def count(text: str) -> int:
        if "LATE" in text:  # the mostly-English input's refusal comes after the Thai one's
            time.sleep(0.5)
        return count_tokens(text)

    server = start_tgi_server(flavour="tgi", model_id=MODEL, count=count, max_input_tokens=400, max_total_tokens=500)
    llm = served("tgi", [server.url], ramp_start=2, max_concurrency=2)
    mixed = LLMRequest(prompt="LATE " + "an English sentence here. " * 19 + THAI[:10] * 10, params=GenerationParams(max_new_tokens=32))
    results = run_all(llm, tmp_path, [thai_request("thai", 300), ("mixed", mixed)])
    assert failures(results) == {}
    assert len(server.refusals) == 2, server.refusals


def test_user_info_in_an_endpoint_url_is_basic_auth_unless_a_token_is_set(start_tgi_server, tmp_path, monkeypatch):
    """`http://user:password@host` is sent as Basic auth (as httpx did), never in the URL; with a
    token the token's header is the one sent (aiohttp refuses to combine the two)."""
    import base64

    server = start_tgi_server(flavour="vllm", model_id=MODEL)
    with_user = server.url.replace("http://", "http://svc:pa%40ss@")
    results = run_all(served("vllm", [with_user]), tmp_path, [("a", LLMRequest(prompt="hello", params=NUCLEUS))], name="basic")
    assert failures(results) == {}
    basic = "Basic " + base64.b64encode(b"svc:pa@ss").decode()
    assert set(server.authorizations) == {basic}
    monkeypatch.setenv("XI_KINDS_TEST_TOKEN", "tok-123")
    server.authorizations.clear()
    results = run_all(served("vllm", [with_user], token_env="XI_KINDS_TEST_TOKEN"), tmp_path,
                      [("b", LLMRequest(prompt="hello again", params=NUCLEUS))], name="token")
    assert failures(results) == {}
    assert set(server.authorizations) == {"Bearer tok-123"}


class _ForwardingProxy:
    """A plain HTTP forward proxy on 127.0.0.1: notes every absolute URL it is asked for."""

    def __init__(self) -> None:
        import http.server
        import threading
        import urllib.request

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def _forward(self):
                seen.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection", "connection")}
                request = urllib.request.Request(self.path, data=body, headers=headers, method=self.command)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(request, timeout=10) as reply:
                    payload, status = reply.read(), reply.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_environments_proxy_is_used_and_no_proxy_bypasses_it(start_tgi_server, tmp_path, monkeypatch):
    server = start_tgi_server(flavour="vllm", model_id=MODEL)
    proxy = _ForwardingProxy()
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "")
        results = run_all(served("vllm", [server.url]), tmp_path, [("a", LLMRequest(prompt="hello", params=NUCLEUS))], name="proxied")
        assert failures(results) == {}
        assert f"{server.url}/v1/completions" in proxy.seen and f"{server.url}/v1/models" in proxy.seen
        proxy.seen.clear()
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        results = run_all(served("vllm", [server.url]), tmp_path, [("b", LLMRequest(prompt="bypass", params=NUCLEUS))], name="direct")
        assert failures(results) == {} and proxy.seen == []
    finally:
        proxy.close()


@pytest.mark.parametrize("kind", ["vllm", "sglang", "llamacpp", "openai", "tgi"])
def test_the_chat_route_of_each_kind(start_tgi_server, tmp_path, kind):
    server = start_tgi_server(flavour=kind, model_id=MODEL)
    backend = served(kind, [server.url], route="chat")
    assert backend.supports_chat
    reqs = [("m", LLMRequest(messages=(("system", "Be brief."), ("user", "Say hello")), params=NUCLEUS))]
    results = run_all(backend, tmp_path, reqs)
    assert failures(results) == {}
    (body,) = server.chat_bodies
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize("kind", ["vllm", "sglang", "llamacpp", "openai"])
def test_the_openai_kinds_default_to_completions_and_have_no_native_route(kind):
    assert build_backend({"backend": kind, "model": MODEL, "endpoints": ["http://127.0.0.1:9"]}).route.name == "completions"
    with pytest.raises(UsageError, match="route"):
        model_spec({"backend": kind, "model": MODEL, "endpoints": ["http://127.0.0.1:9"], "route": "generate"})
    assert build_backend({"backend": "tgi", "model": MODEL, "endpoints": ["http://127.0.0.1:9"]}).route.name == "generate"


# --- endpoints: the recipe's, or served ones -------------------------------------------------


def test_endpoints_or_serve_exactly_one(tmp_path):
    with pytest.raises(UsageError, match="give `endpoints:`.*or `serve:`"):
        model_spec({"backend": "vllm", "model": MODEL})
    with pytest.raises(UsageError, match="both given"):
        model_spec({"backend": "vllm", "model": MODEL, "endpoints": ["http://h:1"], "serve": {"model": "/m"}})
    with pytest.raises(UsageError, match="replica"):
        model_spec({"backend": "vllm", "model": MODEL, "serve": {"model": "/m", "replica": 2}})
    spec = model_spec({"backend": "sglang", "model": MODEL, "serve": {"model": "/m", "replicas": 2}})
    with pytest.raises(UsageError, match="has `serve:` and no `endpoints:`"):
        build_backend(spec)
    backend = build_backend(spec, PublishedEndpoints(tmp_path / "m.endpoints.json"))
    assert backend.pool.endpoints == [] and backend.max_concurrency == 0
    with pytest.raises(UsageError, match="takes no endpoints"):
        build_backend({"backend": "local"}, PublishedEndpoints(tmp_path / "m.endpoints.json"))


def publish(path, *servers):
    write_json(path, endpoints_document([(server.url, replica) for replica, server in enumerate(servers)]))


def attempts(server):
    return sum(server.attempts.values())


async def complete_all(backend, n, during=None, *, prefix="doc"):
    requests = [LLMRequest(prompt=f"{prefix} {i} says hello", params=GenerationParams(max_new_tokens=4)) for i in range(n)]
    tasks = [asyncio.create_task(backend.acomplete(request)) for request in requests]
    if during is not None:
        await during()
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await backend.aclose()


def published_backend(path, **options):
    spec = model_spec({"backend": "vllm", "model": MODEL, "serve": {"model": "/models/m"}, **FAST_RETRY, **options})
    return build_backend(spec, PublishedEndpoints(path))


def assert_completed(outcomes, n):
    assert len(outcomes) == n and [o for o in outcomes if isinstance(o, BaseException)] == []


def test_an_endpoint_that_appears_mid_run_gets_requests(start_tgi_server, tmp_path, caplog):
    first, second = (start_tgi_server(flavour="vllm", model_id=MODEL, slots=2, latency=0.05) for _ in range(2))
    path = tmp_path / "m.endpoints.json"
    publish(path, first)
    backend = published_backend(path, max_concurrency=2)
    caplog.set_level(logging.INFO, logger=SERVER_LOGGER)

    async def add_second():
        await asyncio.sleep(0.3)
        assert attempts(second) == 0
        publish(path, first, second)

    assert_completed(asyncio.run(complete_all(backend, 40, add_second)), 40)
    assert attempts(second) > 0 and attempts(first) > 0
    assert attempts(first) + attempts(second) == 40  # no failure, no retry
    assert backend.pool.known[second.url].limits_source == "/v1/models"  # probed like any other
    assert any(f"endpoint {second.url} now serves {MODEL}" == r.getMessage() for r in caplog.records)


def test_an_endpoint_that_disappears_gets_no_new_request(start_tgi_server, tmp_path):
    first, second = (start_tgi_server(flavour="vllm", model_id=MODEL, slots=2, latency=0.05) for _ in range(2))
    path = tmp_path / "m.endpoints.json"
    publish(path, first, second)
    backend = published_backend(path, max_concurrency=2)
    seen: dict[str, int] = {}

    async def drop_second():
        await asyncio.sleep(0.3)
        publish(path, first)
        await asyncio.sleep(0.5)  # the source is read again (POLL_S) and those in flight finish
        seen["second"] = attempts(second)

    assert_completed(asyncio.run(complete_all(backend, 60, drop_second)), 60)
    assert seen["second"] > 0 and attempts(second) == seen["second"]
    assert attempts(first) + attempts(second) == 60
    assert not backend.pool.known[second.url].serving
    assert backend.endpoint_stats()[second.url]["limit"] == 0 and backend.endpoint_stats()[first.url]["limit"] == 2


def test_requests_in_flight_on_a_vanished_server_are_retried_elsewhere(start_tgi_server, tmp_path):
    first, second = (start_tgi_server(flavour="vllm", model_id=MODEL, slots=2, latency=0.1) for _ in range(2))
    path = tmp_path / "m.endpoints.json"
    publish(path, first, second)
    backend = published_backend(path, max_concurrency=2)

    async def kill_second():
        await asyncio.sleep(0.35)
        publish(path, first)
        second.kill()  # its requests in progress are cut: failed, then retried on the first

    outcomes = asyncio.run(complete_all(backend, 30, kill_second))
    assert_completed(outcomes, 30)
    assert sum(second.successes.values()) + sum(first.successes.values()) == 30


def test_no_endpoint_at_first_then_one_appears(start_tgi_server, tmp_path):
    server = start_tgi_server(flavour="vllm", model_id=MODEL)
    path = tmp_path / "m.endpoints.json"  # not written yet: the servers are starting
    backend = published_backend(path, timeout=10.0)
    started = time.monotonic()

    async def start_serving():
        await asyncio.sleep(0.6)
        assert attempts(server) == 0
        publish(path, server)

    assert_completed(asyncio.run(complete_all(backend, 5, start_serving)), 5)
    assert time.monotonic() - started >= 0.6 and attempts(server) == 5


def test_no_endpoint_ever_fails_each_attempt_after_the_timeout_and_then_the_call(tmp_path):
    backend = published_backend(tmp_path / "never.endpoints.json", timeout=0.4, retries=1)
    started = time.monotonic()
    (outcome,) = asyncio.run(complete_all(backend, 1))
    took = time.monotonic() - started
    assert isinstance(outcome, RetryableError) and f"no endpoint serving {MODEL}" in str(outcome)
    assert 0.8 <= took < 5.0  # two attempts of 0.4 s each (and a short backoff), never forever


def test_an_endpoint_that_comes_back_is_probed_again(start_tgi_server, tmp_path):
    server = start_tgi_server(flavour="llamacpp", model_id=MODEL, max_concurrent_requests=3)
    path = tmp_path / "m.endpoints.json"
    publish(path, server)
    backend = build_backend(model_spec({"backend": "llamacpp", "model": MODEL, "serve": {"model": "/m.gguf"}, **FAST_RETRY}),
                            PublishedEndpoints(path))
    assert_completed(asyncio.run(complete_all(backend, 3)), 3)
    endpoint = backend.pool.known[server.url]
    assert endpoint.limit == 3
    write_json(path, endpoints_document([]))
    time.sleep(0.3)
    backend.pool.sync()
    assert backend.pool.endpoints == [] and not endpoint.serving
    server.max_concurrent_requests = 2  # restarted with other settings
    publish(path, server)
    time.sleep(0.3)
    backend.pool.sync()
    assert endpoint.serving and endpoint.info is None and endpoint.limit == 1  # one request until asked again
    assert_completed(asyncio.run(complete_all(backend, 3, prefix="again")), 3)
    assert endpoint.limit == 2


# --- backend: tgi on an OpenAI route: one line at load ---------------------------------------


@pytest.mark.parametrize("route", ["completions", "chat"])
def test_tgi_on_an_openai_route_says_which_kind_to_name_once_at_load(caplog, route):
    caplog.set_level(logging.WARNING, logger=TGI_LOGGER)
    spec = model_spec({"backend": "tgi", "model": "org/once", "endpoints": ["http://h:1"], "route": route})
    lines = [r.getMessage() for r in caplog.records if r.name == TGI_LOGGER]
    assert len(lines) == 1 and f"`backend: tgi, route: {route}`" in lines[0]
    assert "`backend: vllm | sglang | llamacpp | openai`" in lines[0] and "archived" in lines[0]
    assert spec.route == route and spec.prompt_format == ("chat" if route == "chat" else "raw")


def test_tgi_on_its_own_route_says_nothing(caplog):
    caplog.set_level(logging.WARNING, logger=TGI_LOGGER)
    model_spec({"backend": "tgi", "model": "org/quiet", "endpoints": ["http://h:1"]})
    assert [r for r in caplog.records if r.name == TGI_LOGGER] == []


def test_a_recipe_with_tgi_completions_loads_with_one_line_per_entry(caplog, tmp_path):
    from xinstruction_dataset.recipe import Recipe

    entry = {"backend": "tgi", "model": "org/judge", "endpoints": ["http://h:1"], "route": "completions"}
    data = {"name": "t", "languages": ["sw"], "sources": [{"path": "docs.jsonl", "language": "sw"}],
            "output_dir": "out", "curation": {"models": {"judge": copy.deepcopy(entry)}}}
    caplog.set_level(logging.WARNING, logger=TGI_LOGGER)
    recipe = Recipe.from_dict(data, base_dir=tmp_path)
    assert recipe.curation.models.spec("judge").backend == "tgi"
    assert len([r for r in caplog.records if r.name == TGI_LOGGER]) == 1


def test_sglang_before_the_rename_is_read_at_get_server_info(start_tgi_server, tmp_path):
    """An SGLang without `/server_info` (404) still tells its limits at `/get_server_info`."""
    server = start_tgi_server(flavour="sglang", model_id=MODEL, slots=3)
    server.server_info_paths = ("/get_server_info",)
    backend = served("sglang", [server.url])
    assert failures(run_all(backend, tmp_path, [("x", LLMRequest(prompt="hi", params=NUCLEUS))])) == {}
    assert backend.pool.endpoints[0].limits_source == "/get_server_info" and backend.max_concurrency == 3
