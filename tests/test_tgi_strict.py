"""The TGI backend against test servers as strict as the real ones (tests/tgi_server.py
`flavour`): sampling values each server refuses, the `model` name vLLM checks, token counts
harsher than the client's estimate (a byte-fallback tokenizer on Thai), the exact `tokenizer:`
count, and the ramp seen from the server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from corpora import read_corpus
from tgi_server import CHAT_TEMPLATE_TOKENS, TGIServer
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallRunner

FAST_RETRY = {"backoff": 0.01, "backoff_max": 0.05}
THAI = "ประเทศไทยมีฝนตกหนักในภาคเหนือ "  # 3 UTF-8 bytes a character


def backend(url, route="generate", **options):
    return build_backend({"backend": "tgi", "model": "test/echo-model", "endpoints": [url], "route": route,
                         **FAST_RETRY, **options})


def run_all(llm, tmp_path, reqs, name="calls"):
    with CallCache(tmp_path / f"{name}.sqlite") as cache:
        return CallRunner(llm, cache, progress=False).run_all(reqs)


def post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- the servers refuse what the real ones refuse --------------------------------------------


@pytest.mark.parametrize("parameters, message", [
    ({"temperature": 0}, "`temperature` must be strictly positive"),
    ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
    ({"top_p": 0.0}, "`top_p` must be > 0.0 and < 1.0"),
    ({"top_k": 0}, "`top_k` must be strictly positive"),
    ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
])
def test_tgi_native_route_refuses_like_the_router(tgi_server, parameters, message):
    status, body = post(tgi_server.url + "/generate", {"inputs": "hello", "parameters": parameters})
    assert (status, body) == (422, {"error": f"Input validation error: {message}", "error_type": "validation"})


def test_tgi_refuses_empty_inputs_and_counts_thai_a_token_a_byte(start_tgi_server):
    server = start_tgi_server(max_input_tokens=200, max_total_tokens=400)
    assert post(server.url + "/generate", {"inputs": ""})[1]["error"] == "Input validation error: `inputs` cannot be empty"
    thai = THAI * 2  # 176 bytes, 174 of them not ASCII: 174 + 1 tokens (2 bytes a token would be 88)
    status, body = post(server.url + "/generate", {"inputs": thai * 2, "parameters": {"max_new_tokens": 5}})
    assert status == 422 and body["error"].endswith("must have less than 200 tokens. Given: 350")
    assert post(server.url + "/generate", {"inputs": thai, "parameters": {"max_new_tokens": 5}})[0] == 200


def test_tgi_chat_route_ignores_top_k_and_takes_temperature_zero_as_greedy(start_tgi_server):
    seen = []
    server = start_tgi_server(reply=lambda prompt, p: seen.append(p) or "ok")
    body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}], "top_k": 0, "temperature": 0}
    assert post(server.url + "/v1/chat/completions", body)[0] == 200
    assert seen[0]["top_k"] is None
    status, reply = post(server.url + "/v1/chat/completions", {**body, "top_p": 1.0})
    assert status == 422 and "`top_p` must be > 0.0 and < 1.0" in reply["error"]


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
def test_vllm_refuses_a_model_it_does_not_serve_and_bad_sampling(start_tgi_server, route):
    server = start_tgi_server(flavour="vllm", model_id="org/served")
    body = {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    status, reply = post(server.url + route, {**body, "model": "org/other"})  # vLLM's error envelope (v0.10.1+)
    assert (status, reply["error"]["message"], reply["error"]["type"]) == (404, "The model `org/other` does not exist.", "NotFoundError")
    assert post(server.url + route, {**body, "model": "org/served"})[0] == 200
    status, reply = post(server.url + route, {**body, "model": "org/served", "top_p": 1.5})
    assert (status, reply["error"]["message"]) == (400, "top_p must be in (0, 1], got 1.5.")
    assert post(server.url + "/generate", {"inputs": "hi"})[0] == 404  # no native route


# --- the client sends only what the servers take ---------------------------------------------

SAMPLING = {
    "greedy": GenerationParams(max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0),
    "sampling": GenerationParams(max_new_tokens=8, temperature=0.7, top_p=1.0, top_k=0, seed=3),
    "nucleus": GenerationParams(max_new_tokens=8, temperature=0.7, top_p=0.9, top_k=40, seed=3),
}
SERVERS = [("tgi", "generate"), ("tgi", "chat"), ("tgi", "completions"), ("vllm", "chat"), ("vllm", "completions"),
           ("llamacpp", "chat"), ("llamacpp", "completions")]


@pytest.mark.parametrize("flavour, route", SERVERS)
@pytest.mark.parametrize("sampling", sorted(SAMPLING))
def test_every_sampling_setting_is_taken_by_every_server(start_tgi_server, tmp_path, flavour, route, sampling):
    server = start_tgi_server(flavour=flavour)
    reqs = [(i, LLMRequest(prompt=f"document {i} says hello", params=SAMPLING[sampling])) for i in range(3)]
    results = run_all(backend(server.url, route), tmp_path, reqs)
    assert {tag: r.error for tag, r in results.items() if not r.ok} == {}
    assert server.refusals == []


def test_a_wrong_served_model_name_is_one_clear_error_not_retried(start_tgi_server, tmp_path):
    server = start_tgi_server(flavour="vllm", model_id="org/served")
    results = run_all(backend(server.url, "chat", served_model="org/other"), tmp_path, [("x", LLMRequest(prompt="hi"))])
    assert not results["x"].ok and "404" in results["x"].error and "does not exist" in results["x"].error
    assert sum(server.attempts.values()) == 0 and server.refusals == ["The model `org/other` does not exist."]


# --- token counts: a harsher server than the estimate, and the exact tokenizer -----------------


def thai_request(tag, chars, max_new_tokens=32):
    return tag, LLMRequest(prompt=f"Write an instruction.\n{(THAI * 200)[:chars]}\n### English Instruction:",
                           params=GenerationParams(max_new_tokens=max_new_tokens))


@pytest.mark.parametrize("flavour, route", [("tgi", "generate"), ("tgi", "chat"), ("vllm", "completions"),
                                            ("llamacpp", "completions")])
def test_a_token_a_byte_server_never_fails_a_call_for_the_estimate(start_tgi_server, tmp_path, flavour, route):
    """Thai at a token a byte (a byte-fallback tokenizer) against the client's 2-bytes-a-token
    estimate: the first refusal recalibrates it, every call succeeds and fits, later calls are
    not refused."""
    server = start_tgi_server(flavour=flavour, max_input_tokens=400, max_total_tokens=500)
    llm = backend(server.url, route, ramp_start=1, max_concurrency=1)
    results = run_all(llm, tmp_path, [thai_request(i, 300 + 40 * i) for i in range(6)])
    assert {tag: r.error for tag, r in results.items() if not r.ok} == {}
    assert len(server.refusals) == 1, server.refusals  # the first long one; then the estimate holds
    assert llm.counter.bytes_per_token < 1.0
    later = run_all(llm, tmp_path, [thai_request(f"later{i}", 1000 + i) for i in range(3)], name="later")
    assert all(r.ok for r in later.values()) and len(server.refusals) == 1


@pytest.mark.parametrize("flavour, route", [("tgi", "generate"), ("tgi", "chat"), ("vllm", "completions")])
def test_the_estimate_never_sends_latin_text_the_server_refuses(start_tgi_server, tmp_path, flavour, route):
    """Swahili (Latin script) near the context at a token per 3 bytes: the default estimate
    (2 bytes a token) fits it without a single refusal; no calibration is needed."""
    server = start_tgi_server(flavour=flavour, max_input_tokens=400, max_total_tokens=500)
    text = " ".join(doc["text"] for doc in read_corpus("sw", 20))
    llm = backend(server.url, route)
    reqs = [(n, LLMRequest(prompt=f"Write an instruction.\n{text[:n]}\n### English Instruction:",
                           params=GenerationParams(max_new_tokens=32))) for n in (700, 900, 1100, 2000, 5000)]
    results = run_all(llm, tmp_path, reqs)
    assert {tag: r.error for tag, r in results.items() if not r.ok} == {}
    assert server.refusals == [] and llm.counter.bytes_per_token == 2.0


def _byte_tokenizer(folder):
    """A real byte-level BPE tokenizer with no merges (a token a byte), saved for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    model = models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[])
    raw = Tokenizer(model)
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=raw)
    fast.save_pretrained(folder)
    return fast


def test_the_tokenizer_path_counts_exactly_and_fills_the_context(start_tgi_server, tmp_path):
    tokenizer = _byte_tokenizer(tmp_path / "tok")
    count = lambda text: len(tokenizer(text)["input_ids"])  # noqa: E731 - the server's own tokenizer
    server = start_tgi_server(count=count, max_input_tokens=400, max_total_tokens=500)
    llm = backend(server.url, tokenizer=str(tmp_path / "tok"))
    assert llm.counter.exact
    results = run_all(llm, tmp_path, [thai_request("long", 2000)])
    assert results["long"].ok and server.refusals == []
    (sent,) = server.attempts
    assert 400 - 8 <= count(sent) <= 400  # filled to the budget by the exact count, not an estimate


def test_chat_template_tokens_are_within_the_clients_allowance():
    from xinstruction_dataset.llm.backends.text import CHAT_MESSAGE_OVERHEAD

    assert CHAT_TEMPLATE_TOKENS <= CHAT_MESSAGE_OVERHEAD


# --- the ramp, seen from the server -----------------------------------------------------------


@pytest.mark.parametrize("ramp_start", [3, 8])
def test_a_cold_server_gets_the_ramp_not_a_burst(start_tgi_server, tmp_path, ramp_start):
    """Each request arrives with at most ramp_start + (requests answered before it) in progress,
    and the ramp opens past ramp_start: neither a burst nor a window stuck at its start."""
    server = start_tgi_server(slots=2, latency=0.02, max_concurrent_requests=64)
    reqs = [(i, LLMRequest(prompt=f"document {i} says hello", params=GenerationParams(max_new_tokens=8))) for i in range(40)]
    results = run_all(backend(server.url, ramp_start=ramp_start), tmp_path, reqs)
    assert all(r.ok for r in results.values())
    assert all(active <= ramp_start + answered for active, answered in server.arrivals), server.arrivals
    assert server.peak_active > ramp_start


def test_the_server_arrival_log_catches_a_burst(start_tgi_server):
    """The check above fails on a client that sends everything at once."""
    import concurrent.futures

    server = start_tgi_server(slots=2, latency=0.05, max_concurrent_requests=64)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: post(server.url + "/generate", {"inputs": f"burst {i}"}), range(20)))
    assert not all(active <= 3 + answered for active, answered in server.arrivals)


def test_server_options_are_checked():
    with pytest.raises(ValueError, match="flavour"):
        TGIServer(flavour="sglang-ish")
