"""No poisoned cache, no endless request (issue 24, sections 3 and 4).

A server reply is checked before the call cache stores it: a TEI reply with a NaN, fewer vectors
than texts, ragged rows, strings or the wrong width, and an LLM reply whose text the cache cannot
encode (a lone surrogate), are failed (retried) calls, never cache rows that every rerun serves.
Driven through `xinstruction curate` (a subprocess) against the test servers: the first run meets
the faulty server, the rerun against the fixed server must succeed. And every TEI request has a
whole-request deadline: a reply trickled a byte at a time ends at `timeout`, for `/embed` and
`GET /info` alike."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from corpora import read_corpus
from fake_llm import reply_for_prompt, section
from tei_server import TEIServer, vector
from tgi_server import GENERATE_MARK
from xinstruction_dataset.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_PARTIAL

DOCS = 6


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "xinstruction_dataset.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)


def documents() -> list[dict]:
    rows = read_corpus("sw", DOCS)
    return [{"id": r["id"], "text": r["text"][:500], "url": r["url"], "source": r["source"], "metadata": {"lang": "sw"}} for r in rows]


def write_recipe(root: Path, llm_url: str, tei_url: str, docs: list[dict]) -> Path:
    kept = root / "run" / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True)
    kept.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [llm_url], "timeout": 2.0,
             "retries": 1, "backoff": 0.01, "backoff_max": 0.02}
    embedding = {"backend": "tei", "model": "test/embedder", "url": tei_url, "timeout": 2.0, "batch_size": 4, "concurrency": 1,
                 "retries": 1, "backoff": 0.01, "backoff_max": 0.02}
    curation = {"models": {"generator": model}, "generate": {"candidates": 1}, "refine": {"rounds": 0},
                "diversify": {"target_size": 3, "embedding": embedding}}
    recipe = {"name": "cache-hardening", "languages": ["sw"], "output_dir": str(root / "run"), "curation": curation}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def raw_vector(value: dict) -> np.ndarray:
    """A stored vector as its bytes say, unchecked."""
    return np.frombuffer(base64.b64decode(value["b64"]), dtype="<f4")


def stored_embeddings(root: Path) -> list[np.ndarray]:
    with sqlite3.connect(root / "run" / "cache" / "calls.sqlite") as db:
        rows = db.execute("SELECT value FROM blobs WHERE key LIKE 'embed:%'").fetchall()
    return [raw_vector(json.loads(value)) for (value,) in rows]


def curated(root: Path) -> list[dict]:
    files = sorted((root / "run" / "curated" / "sw").glob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tei():
    server = TEIServer(max_client_batch_size=4).start()
    yield server
    server.stop()


@pytest.mark.timeout(240)
def test_a_bad_tei_reply_is_never_cached_and_the_rerun_against_the_fixed_server_succeeds(tmp_path, start_tgi_server, tei) -> None:
    """A NaN, then a vector short (the other kinds: test_bad_replies_are_retried_like_a_503)."""
    llm = start_tgi_server(reply=lambda prompt, params: reply_for_prompt(prompt))
    recipe = write_recipe(tmp_path, llm.url, tei.url, documents())
    for fault in ("nan", "short"):
        tei.inject(fault, 1000)  # every embedding request of this run
        first = run_cli("curate", str(recipe), "--no-progress")
        assert first.returncode == EXIT_ENVIRONMENT, first.stderr
        errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"TEI endpoint {tei.url}" in errors[0] and "failed after 2 attempts" in errors[0], first.stderr
        assert "run the same command again" in errors[0] and "Traceback" not in first.stderr
        assert stored_embeddings(tmp_path) == []  # checked before stored: nothing of the bad replies
        tei.clear()

    again = run_cli("curate", str(recipe), "--no-progress")
    assert again.returncode == EXIT_OK, again.stderr
    assert len(curated(tmp_path)) == 3
    vectors = stored_embeddings(tmp_path)
    assert len(vectors) == DOCS and all(len(v) == tei.dim and np.isfinite(v).all() for v in vectors)


def poisoned_reply(poisoned: str, state: dict):
    """The curation model, except that while `state["on"]`, the generator's reply for the
    document whose text starts with `poisoned` carries a lone surrogate (JSON's "\\ud800")."""

    def reply(prompt: str, parameters: dict) -> str:
        if state["on"] and prompt.rstrip().endswith(GENERATE_MARK) and section(prompt, "Text").startswith(poisoned):
            return " Write a short report \ud800 about farming."
        return reply_for_prompt(prompt)

    return reply


@pytest.mark.timeout(240)
def test_an_llm_reply_the_cache_cannot_store_is_a_failed_call_and_the_rerun_succeeds(tmp_path, start_tgi_server, tei) -> None:
    docs = documents()
    poisoned = docs[2]
    state = {"on": True}
    llm = start_tgi_server(reply=poisoned_reply(poisoned["text"][:200], state))
    recipe = write_recipe(tmp_path, llm.url, tei.url, docs)

    first = run_cli("curate", str(recipe), "--no-progress")
    assert first.returncode == EXIT_PARTIAL, first.stderr  # one call failed: the run finished
    assert "Traceback" not in first.stderr and "calls failed" in first.stderr
    rejects = [json.loads(line) for line in (tmp_path / "run" / "curation" / "sw" / "rejects.jsonl").read_text().splitlines()]
    [failed] = [r for r in rejects if r["doc_id"] == poisoned["id"]]
    assert failed["reason"] == "generate:call_failed"
    assert "lone surrogate U+D800" in json.dumps(failed["detail"])
    assert all(r["provenance"]["source_id"] != poisoned["id"] for r in curated(tmp_path))

    state["on"] = False  # the server is fixed
    again = run_cli("curate", str(recipe), "--no-progress")
    assert again.returncode == EXIT_OK, again.stderr
    rejects = [json.loads(line) for line in (tmp_path / "run" / "curation" / "sw" / "rejects.jsonl").read_text().splitlines()]
    assert not any(r["reason"].endswith("call_failed") for r in rejects)


def test_an_unstorable_reply_from_any_backend_is_a_failed_call_not_a_cache_row(tmp_path) -> None:
    """The scheduler's own check, for backends that do not check (the TGI routes retry it)."""
    from fake_llm import FakeBackend
    from xinstruction_dataset.llm.backends.base import LLMRequest
    from xinstruction_dataset.llm.cache import CallCache
    from xinstruction_dataset.llm.calls import CallRunner

    requests = [(i, LLMRequest(prompt=f"document {i}")) for i in range(3)]
    broken = FakeBackend(lambda r: "half a pair \udc80" if r.prompt == "document 1" else "fine")
    with CallCache(tmp_path / "calls.sqlite") as cache:
        results = CallRunner(broken, cache, progress=False).run_all(requests)
        assert [results[i].ok for i in range(3)] == [True, False, True]
        assert results[1].error == "unstorable reply: the text is not valid Unicode: a lone surrogate U+DC80 at character 12"
        assert len(cache) == 2 and [f["error"] for f in cache.failures()] == [results[1].error]
        fixed = FakeBackend(lambda r: "fine")
        again = CallRunner(fixed, cache, progress=False).run_all(requests)
        assert all(r.ok for r in again.values()) and len(fixed.calls) == 1 and cache.failures() == []


# --- the embedder, in process ------------------------------------------------------------------


def _embedder(url: str, **options):
    from xinstruction_dataset.curation.embedders import TEIEmbedder, TEIEmbedding

    defaults = {"model": "test/embedder", "retries": 1, "backoff": 0.01, "backoff_max": 0.02, "timeout": 1.0}
    return TEIEmbedder(TEIEmbedding(url=url, **{**defaults, **options}))


@pytest.fixture
def cache(tmp_path):
    from xinstruction_dataset.llm.cache import CallCache

    with CallCache(tmp_path / "calls.sqlite") as c:
        yield c


def test_a_reply_of_another_width_than_the_stored_vectors_is_not_stored(cache, tei) -> None:
    from xinstruction_dataset.curation.diversify import embed_texts, embedding_key
    from xinstruction_dataset.errors import EnvironmentFault

    texts = [f"text {i}" for i in range(8)]
    embed_texts(texts[:4], _embedder(tei.url), cache, batch_size=4, progress=False)  # 8 values each, stored
    tei.inject("narrow", 1000)  # the server now answers 7 values a vector
    with pytest.raises(EnvironmentFault, match=r"vectors of 7 values, not 8"):
        embed_texts(texts, _embedder(tei.url), cache, batch_size=4, progress=False)
    assert all(cache.get_json(embedding_key("test/embedder", t)) is None for t in texts[4:])
    tei.clear()
    vectors = embed_texts(texts, _embedder(tei.url), cache, batch_size=4, progress=False)
    assert vectors.shape == (8, 8) and np.isfinite(vectors).all()


def test_bad_replies_are_retried_like_a_503(cache, tei) -> None:
    from xinstruction_dataset.curation.diversify import embed_texts

    for kind in ("nan", "short", "wide", "text"):
        tei.inject(kind, 1)
    texts = [f"t{i}" for i in range(3)]
    vectors = embed_texts(texts, _embedder(tei.url, retries=4, concurrency=1), cache, batch_size=8, progress=False)
    expected = np.asarray([vector(t, tei.dim) for t in texts], dtype=np.float32)
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert len(tei.batches) == 5  # four bad replies, then the good one


def test_a_vector_an_older_version_stored_unchecked_is_embedded_again(cache, tei) -> None:
    """A run folder poisoned before this fix heals on its next run: a stored NaN (or empty)
    vector is not served, the text is embedded again and its row replaced."""
    from xinstruction_dataset.curation.diversify import embed_texts, embedding_key
    from xinstruction_dataset.curation.diversify.embed import encode_vector

    texts = ["a", "b", "c"]
    poisoned = np.full(tei.dim, np.nan, dtype=np.float32)
    cache.put_many_json({embedding_key("test/embedder", "a"): encode_vector(poisoned),
                         embedding_key("test/embedder", "b"): encode_vector(np.zeros(0, dtype=np.float32)),
                         embedding_key("test/embedder", "c"): encode_vector(np.asarray(vector("c", tei.dim)))})
    vectors = embed_texts(texts, _embedder(tei.url), cache, batch_size=8, progress=False)
    assert vectors.shape == (3, tei.dim) and np.isfinite(vectors).all() and sum(tei.batches) == 3
    assert all(np.isfinite(raw_vector(cache.get_json(embedding_key("test/embedder", t)))).all() for t in texts)


# --- whole-request deadlines -------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/embed", "/info"])
def test_a_trickled_reply_ends_at_the_timeout(cache, path) -> None:
    """The reply is sent a byte every 0.05 s (~8 s for /embed's, ~15 s for /info's): the
    client's own timeout (between two bytes) would wait it out; the deadline is 1 s a request."""
    from xinstruction_dataset.curation.diversify import embed_texts
    from xinstruction_dataset.errors import EnvironmentFault

    server = TEIServer(trickle_s=0.05).start()
    try:
        server.inject("trickle", 1000, path=path)
        embedder = _embedder(server.url, timeout=1.0, retries=1)
        started = time.monotonic()
        if path == "/embed":
            with pytest.raises(EnvironmentFault, match=rf"TEI endpoint {server.url}.*failed after 2 attempts.*timed out"):
                embed_texts(["a", "b", "c", "d"], embedder, cache, batch_size=8, progress=False)
        else:  # a server whose /info does not answer in time: batches as configured, the run goes on
            vectors = embed_texts(["a", "b", "c", "d"], embedder, cache, batch_size=8, progress=False)
            assert vectors.shape == (4, server.dim) and embedder.max_client_batch_size == 0
        elapsed = time.monotonic() - started
        assert elapsed < 4.0, f"took {elapsed:.1f} s with a 1 s deadline"
    finally:
        server.stop()
