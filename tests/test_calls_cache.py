"""CallCache (durable, SIGKILL-safe, thread-safe) and CallRunner (cache first, continuous stream,
bounded read-ahead, every request accounted for)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from xinstruction_dataset.llm.backends import build_backend
from xinstruction_dataset.llm.backends.base import BackendError, Completion, GenerationParams, LLMBackend, LLMRequest
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallRunner

ROOT = Path(__file__).resolve().parents[1]


class ScriptedBackend(LLMBackend):
    """Answers `upper(prompt)` after `delay(prompt)` seconds; prompts in `fail` raise; counts calls
    and the most calls it had at once."""

    model_id = "test/scripted"

    def __init__(self, *, concurrency=4, delay=lambda prompt: 0.0, fail=(), crash=()):
        self.max_concurrency = concurrency
        self.delay, self.fail, self.crash = delay, set(fail), set(crash)
        self.calls: list[str] = []
        self.done: list[str] = []  # prompts answered, in order
        self.started_before_done: dict[str, int] = {}  # prompt -> how many calls had started when it was answered
        self.active = self.peak = 0

    async def acomplete(self, request: LLMRequest) -> Completion:
        self.calls.append(request.prompt)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay(request.prompt))
        finally:
            self.active -= 1
            self.done.append(request.prompt)
            self.started_before_done[request.prompt] = len(self.calls)
        if request.prompt in self.fail:
            raise BackendError(f"refused {request.prompt}")
        if request.prompt in self.crash:
            raise RuntimeError("bug in a backend")
        return Completion(request.prompt.upper(), completion_tokens=3, finish_reason="eos_token")


def req(prompt: str, seed: int = 0) -> LLMRequest:
    return LLMRequest(prompt=prompt, params=GenerationParams(max_new_tokens=8, seed=seed))


@pytest.fixture
def cache(tmp_path):
    with CallCache(tmp_path / "calls.sqlite") as cache:
        yield cache


# --- CallCache ----------------------------------------------------------------------------


def test_cache_round_trip_and_failures(cache):
    request = req("hello")
    key = request.cache_key("m")
    assert cache.get(key) is None and key not in cache
    cache.record_failure(key, "m", request, "HTTP 503")
    cache.record_failure(key, "m", request, "timed out")
    assert cache.get(key) is None
    (failure,) = cache.failures()
    assert failure["attempts"] == 2 and failure["error"] == "timed out"
    completion = Completion("Hi", prompt_tokens=2, completion_tokens=1, finish_reason="eos_token")
    cache.put(key, "m", request, completion)
    assert cache.get(key) == completion and key in cache and len(cache) == 1
    assert cache.failures() == []


def test_cache_json_values(cache):
    assert cache.get_json("emb:1") is None
    cache.put_json("emb:1", [0.5, 0.25])
    cache.put_many_json({"emb:2": [1.0], "meta": {"k": "ü"}})
    assert cache.get_json("emb:1") == [0.5, 0.25] and cache.get_json("meta") == {"k": "ü"}


def test_cache_is_wal_and_survives_reopen(tmp_path):
    path = tmp_path / "c.sqlite"
    with CallCache(path) as cache:
        cache.put("k", "m", req("x"), Completion("X"))
        assert cache._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with CallCache(path) as again:
        assert again.get("k") == Completion("X")


def test_cache_is_safe_across_threads(cache):
    def writer(t):
        for i in range(50):
            cache.put(f"{t}:{i}", "m", req(f"{t}:{i}"), Completion(str(i)))
            assert cache.get(f"{t}:{i}") == Completion(str(i))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 200


def test_a_stored_result_survives_sigkill(tmp_path):
    """A writer reports each key right after `put` returns; SIGKILL it mid-stream; every key it
    reported is in the cache when reopened."""
    path = tmp_path / "killed.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from xinstruction_dataset.llm.backends.base import Completion, LLMRequest
        from xinstruction_dataset.llm.cache import CallCache
        cache = CallCache({str(path)!r})
        i = 0
        while True:
            cache.put(f"k{{i}}", "m", LLMRequest(prompt=str(i)), Completion("x" * 200))
            print(f"k{{i}}", flush=True)
            i += 1
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    reported = [writer.stdout.readline().strip() for _ in range(300)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with CallCache(path) as cache:
        assert all(cache.get(key) == Completion("x" * 200) for key in reported)


# --- CallRunner ---------------------------------------------------------------------------


def test_every_request_gets_exactly_one_result(cache):
    backend = ScriptedBackend(fail={"b"}, crash={"c"})
    results = CallRunner(backend, cache, progress=False).run_all([(t, req(t)) for t in "abcd"])
    assert results["a"].completion.text == "A" and results["d"].ok
    assert results["b"].error == "refused b"
    assert results["c"].error == "RuntimeError: bug in a backend"
    assert {f["key"] for f in cache.failures()} == {results["b"].key, results["c"].key}


def test_cached_results_are_served_without_a_call(cache):
    backend = ScriptedBackend()
    runner = CallRunner(backend, cache, progress=False)
    first = runner.run_all([(i, req(f"p{i}")) for i in range(10)])
    second = runner.run_all([(i, req(f"p{i}")) for i in range(12)])
    assert len(backend.calls) == 12
    assert sum(r.cached for r in second.values()) == 10
    assert all(second[i].completion == first[i].completion for i in range(10))
    assert runner.stats.cache_hits == 10 and runner.stats.sent == 12 and runner.stats.done == 22


def test_the_same_request_twice_in_a_run_is_called_once(cache):
    backend = ScriptedBackend(delay=lambda p: 0.05)
    results = CallRunner(backend, cache, progress=False).run_all([(t, req("same")) for t in range(5)])
    assert backend.calls == ["same"] and all(r.completion.text == "SAME" for r in results.values())


def test_continuous_stream_not_batches(cache):
    """Every 4th request is slow. A batch-synchronous gather of 4 starts nothing new while the
    first slow request runs (4 started when it ends); a stream refills each slot as it frees, so
    the fast requests behind it, and the next slow ones, start meanwhile (13 by then)."""
    backend = ScriptedBackend(concurrency=4, delay=lambda p: 0.3 if int(p) % 4 == 0 else 0.01)
    results = CallRunner(backend, cache, progress=False).run_all([(i, req(str(i))) for i in range(40)])
    assert len(results) == 40 and backend.peak == 4
    assert backend.started_before_done["0"] > 8, backend.started_before_done["0"]


def test_requests_are_read_lazily_with_bounded_read_ahead(cache):
    backend = ScriptedBackend(concurrency=3)
    read = []

    def produce():
        for i in range(2000):
            read.append(i)
            yield i, req(str(i))

    results = CallRunner(backend, cache, progress=False).run(produce())
    handed = 0
    max_ahead = 0
    for _ in results:
        handed += 1
        max_ahead = max(max_ahead, len(read) - handed)
        time.sleep(0.0002)  # a slow consumer must not make the runner read everything
    assert handed == 2000 and max_ahead <= 2 * 3


def test_stopping_early_cancels_the_rest(cache):
    backend = ScriptedBackend(concurrency=2, delay=lambda p: 0.02)
    runner = CallRunner(backend, cache, progress=False)
    for n, _ in enumerate(runner.run((i, req(str(i))) for i in range(10_000)), 1):
        if n == 5:
            break
    time.sleep(0.1)
    assert len(backend.calls) < 20
    assert not [t for t in threading.enumerate() if t.name.startswith("calls:")]


def test_an_error_in_the_request_iterator_reaches_the_caller(cache):
    def produce():
        yield "ok", req("ok")
        raise OSError("corpus file vanished")

    with pytest.raises(OSError, match="vanished"):
        list(CallRunner(ScriptedBackend(), cache, progress=False).run(produce()))


def test_progress_bar_shows_live_counts(cache, capsys):
    runner = CallRunner(ScriptedBackend(fail={"1"}), cache, desc="judge sw")
    runner.run_all([(i, req(str(i))) for i in range(3)])
    runner.run_all([(i, req(str(i))) for i in range(3)])
    err = capsys.readouterr().err
    assert "judge sw" in err and "in_flight=" in err and "failed=1" in err and "cached=2" in err and "tok_s=" in err
    assert runner.stats.as_dict()["failed"] == 2  # the failure is retried on the second run


def test_a_run_killed_mid_stream_resumes_without_repeating_stored_calls(start_tgi_server, tmp_path):
    """SIGKILL a process in the middle of a CallRunner run against a TGI-protocol server; the rerun
    serves every result the killed run stored from the cache and sends only the rest."""
    server = start_tgi_server(slots=4, latency=0.01)
    path = tmp_path / "calls.sqlite"
    spec = {"backend": "tgi", "model": "test/model", "endpoints": [server.url]}
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend
        from xinstruction_dataset.llm.cache import CallCache
        from xinstruction_dataset.llm.calls import CallRunner
        requests = [(i, LLMRequest(prompt=f"doc {{i}}", params=GenerationParams(max_new_tokens=8))) for i in range(300)]
        runner = CallRunner(build_backend({spec!r}), CallCache({str(path)!r}), progress=False)
        for result in runner.run(requests):
            print(result.key, flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    handed_over = {child.stdout.readline().strip() for _ in range(80)}
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    requests = [(i, LLMRequest(prompt=f"doc {i}", params=GenerationParams(max_new_tokens=8))) for i in range(300)]
    backend = build_backend(spec)
    with CallCache(path) as cache:
        stored = {request.prompt for _, request in requests if request.cache_key(backend.model_id) in cache}
        assert {r.cache_key(backend.model_id) for _, r in requests if r.prompt in stored} >= handed_over
        before = dict(server.attempts)
        results = CallRunner(backend, cache, progress=False).run_all(requests)
    assert all(r.ok for r in results.values())
    assert sum(r.cached for r in results.values()) == len(stored) < 300
    assert all(server.attempts[prompt] == before.get(prompt, 0) for prompt in stored)  # none sent again


def test_slots_go_to_the_lowest_priority_then_first_come_and_a_cancelled_waiter_gives_its_slot_back() -> None:
    from xinstruction_dataset.llm.calls import SlotQueue

    async def scenario() -> list[str]:
        limit = [1]
        slots = SlotQueue(lambda: limit[0])
        order: list[str] = []
        await slots.acquire(5)  # the one slot, taken

        async def wait(name: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(name)

        tasks = {name: asyncio.create_task(wait(name, priority))
                 for name, priority in [("deep-1", 3), ("shallow", 0), ("deep-2", 3), ("middle", 1), ("gone", 0)]}
        await asyncio.sleep(0)
        tasks["gone"].cancel()  # cancelled while waiting: skipped, no slot lost
        await asyncio.sleep(0)
        slots.release()
        await asyncio.sleep(0)
        assert order == ["shallow"]
        limit[0] = 3  # the server reported more slots: handed out at the next release
        slots.release()
        await asyncio.sleep(0)
        assert order == ["shallow", "middle", "deep-1", "deep-2"] and slots.taken == 3
        # handed a slot and cancelled before it ran: the slot comes back
        waiter = asyncio.create_task(slots.acquire(0))
        await asyncio.sleep(0)
        slots.release()  # hands the slot to `waiter`...
        waiter.cancel()  # ...which is cancelled before it resumes
        await asyncio.gather(waiter, return_exceptions=True)
        assert slots.taken == 2
        return order

    asyncio.run(scenario())
