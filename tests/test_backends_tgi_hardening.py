"""Hardening of the TGI backend, against the real TGI-protocol server (tests/tgi_server.py) and
the unmodified huggingface_hub client: a hung /info, oversized replies, secrets in error text,
and the login token kept to Hugging Face's own hosts."""

from __future__ import annotations

import logging

import pytest

from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend, model_spec
from xinstruction_dataset.llm.backends.server import is_hf_host, scrub_secrets
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallRunner

FAST_RETRY = {"backoff": 0.01, "backoff_max": 0.05}


def tgi(urls, **options):
    return build_backend({"backend": "tgi", "model": "test/model", "endpoints": list(urls), **FAST_RETRY, **options})


def requests(n, *, prefix="document", max_new_tokens=16):
    params = GenerationParams(max_new_tokens=max_new_tokens)
    return [(i, LLMRequest(prompt=f"{prefix} {i} says hello", params=params)) for i in range(n)]


def run_all(backend, tmp_path, reqs, name="calls"):
    with CallCache(tmp_path / f"{name}.sqlite") as cache:
        runner = CallRunner(backend, cache, progress=False)
        return runner.run_all(reqs), runner.stats, cache.failures()


# --- a hung /info -------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["generate", "chat"])
@pytest.mark.timeout(60)  # a hang guard, not a speed check
def test_hung_info_times_out_and_falls_back_to_the_configured_cap(start_tgi_server, tmp_path, caplog, route):
    server = start_tgi_server(slots=4, info_hang=True)
    backend = tgi([server.url], timeout=1, max_concurrency=3, route=route)
    caplog.set_level(logging.WARNING)
    results, _, failures = run_all(backend, tmp_path, requests(10))
    assert all(r.ok for r in results.values()) and not failures
    assert backend.max_concurrency == 3  # no /info: the configured cap
    warnings = [r for r in caplog.records if "/info" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and server.url in warnings[0].getMessage()


def test_dead_endpoint_probe_is_still_a_retryable_failure(start_tgi_server, tmp_path):
    alive, dead = start_tgi_server(slots=4), start_tgi_server(slots=4)
    dead.kill()
    backend = tgi([alive.url, dead.url], timeout=1, retries=6)
    results, _, _ = run_all(backend, tmp_path, requests(20))
    assert all(r.ok for r in results.values())
    dead_endpoint = backend.pool.endpoints[1]
    assert dead_endpoint.info is None  # never answered: asked again when it comes back


# --- reply size ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["generate", "chat"])
def test_huge_reply_fails_small_and_is_not_retried(start_tgi_server, tmp_path, route):
    server = start_tgi_server(slots=4, huge_reply_bytes=2_000_000)
    server.inject("huge", count=1, match="document 1 ")
    results, _, failures = run_all(tgi([server.url], route=route, timeout=3), tmp_path, requests(3, max_new_tokens=128))
    assert results[0].ok and results[2].ok
    error = results[1].error
    # refused by its Content-Length (the body is the 2,000,000-byte text as JSON), before reading it
    assert error.startswith("reply_too_large: a reply body of 2000") and "bytes > 120832" in error
    assert len(error) < 400
    assert server.attempts["document 1 says hello"] == 1  # not retried
    assert [f["key"] for f in failures] == [results[1].key] and len(failures[0]["error"]) < 400
    assert (tmp_path / "calls.sqlite").stat().st_size < 200_000


def test_reply_cap_scales_with_max_new_tokens(start_tgi_server, tmp_path):
    text = "word " * 300  # 1500 bytes, 300 server tokens
    server = start_tgi_server(reply=lambda prompt, p: text)
    backend = tgi([server.url], max_reply_bytes_per_token=8)
    reqs = [("small", LLMRequest(prompt="a", params=GenerationParams(max_new_tokens=400)))]
    results, _, _ = run_all(backend, tmp_path, reqs)
    assert results["small"].ok  # 1500 bytes <= 8 x 400 + 1024
    server.huge_reply_bytes = 8 * 16 + 1024 + 1
    server.inject("huge")
    reqs = [("big", LLMRequest(prompt="b", params=GenerationParams(max_new_tokens=16)))]
    results, _, _ = run_all(backend, tmp_path, reqs, "again")
    assert results["big"].error.startswith("reply_too_large")


@pytest.mark.parametrize("value", [0, 4, 10**6, "lots"])
def test_reply_cap_option_is_validated(value):
    with pytest.raises(ValueError, match="max_reply_bytes_per_token"):
        model_spec({"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "max_reply_bytes_per_token": value})


# --- secrets ------------------------------------------------------------------------------


def test_echoed_headers_leave_no_token_in_errors(start_tgi_server, tmp_path, monkeypatch):
    secret = "sk-endpoint-secret-0123456789"
    monkeypatch.setenv("MY_ENDPOINT_TOKEN", secret)
    server = start_tgi_server(slots=2)
    server.inject("echo_headers", count=10, match="document 1 ")
    backend = tgi([server.url], token_env="MY_ENDPOINT_TOKEN", retries=1, timeout=2)
    results, _, failures = run_all(backend, tmp_path, requests(2))
    assert results[0].ok
    error = results[1].error
    assert "HTTP 500" in error and "request headers" in error  # the echo did reach the error text
    assert secret not in error and "'authorization': '***'" in error
    assert secret not in str(failures)
    assert secret not in (tmp_path / "calls.sqlite").read_bytes().decode("latin-1")
    assert server.authorizations[f"Bearer {secret}"] >= 2  # it was sent


def test_scrub_secrets_patterns():
    text = '{"Authorization": "Bearer abc.def", "x": "hf_AbCdEf123456", "k": "mysecretvalue"}'
    scrubbed = scrub_secrets(text, ("mysecretvalue",))
    assert "abc.def" not in scrubbed and "hf_AbCdEf123456" not in scrubbed and "mysecretvalue" not in scrubbed
    assert scrub_secrets("Input validation error: 12 tokens") == "Input validation error: 12 tokens"


def test_login_token_is_not_sent_to_a_third_party_endpoint(start_tgi_server, tmp_path, monkeypatch):
    login = "hf_login_token_should_stay_home_42"
    monkeypatch.setenv("HF_TOKEN", login)
    server = start_tgi_server(slots=2)
    results, _, _ = run_all(tgi([server.url]), tmp_path, requests(3))
    assert all(r.ok for r in results.values())
    sent = set(server.authorizations)
    # /info goes out with no Authorization header; generations with an empty one (huggingface_hub
    # adds the login token to a request given none, so the header is blanked).
    assert sent <= {None, ""} and sum(server.authorizations.values()) == 3 + 1, server.authorizations


def test_login_token_still_goes_to_hugging_face_hosts():
    from xinstruction_dataset.llm.backends.server import Endpoint

    assert is_hf_host("https://abc.us-east-1.aws.endpoints.huggingface.cloud")
    assert is_hf_host("https://router.huggingface.co/v1") and is_hf_host("https://me-app.hf.space")
    assert not is_hf_host("https://huggingface.co.evil.com") and not is_hf_host("http://127.0.0.1:8080")
    assert not is_hf_host("https://nothuggingface.co")
    hf = Endpoint("https://x.endpoints.huggingface.cloud", cap=4, token=None, timeout=1.0, ramp_start=1)
    other = Endpoint("http://gpu1:8080", cap=4, token=None, timeout=1.0, ramp_start=1)
    explicit = Endpoint("http://gpu1:8080", cap=4, token="tok123456", timeout=1.0, ramp_start=1)
    assert "authorization" not in {k.lower() for k in other.auth_headers()}
    assert explicit.auth_headers()["authorization"] == "Bearer tok123456"
    # the HF host gets huggingface_hub's implicit token (if any is configured)
    assert {k.lower() for k in hf.auth_headers()} >= {"user-agent"}


def test_the_cli_log_filter_scrubs_any_library_record():
    import io

    from xinstruction_dataset.redact import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("some.http.library")
    log.addHandler(handler)
    try:
        log.warning("HTTP Request: %s %s", "GET", "http://curator:pw-0123456789@10.0.0.5:8080/info")
    finally:
        log.removeHandler(handler)
    assert "pw-0123456789" not in stream.getvalue() and "http://***@10.0.0.5:8080/info" in stream.getvalue()
