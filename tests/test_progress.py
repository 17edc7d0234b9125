"""Live progress of curation (curation/progress.py): a real `run_curation` against two
TGI-protocol test servers (the generator on one, the judge and refiner on the other) with faults
injected, read back from the lines it writes to a log; the terminal view of a scheduler in the
middle of its calls; and the interval setting's check."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest

from test_curate_faults import documents, reply
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.curation.progress import INTERVAL_ENV, LiveProgress, endpoint_name, read_figures
from xinstruction_dataset.errors import UserError
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallScheduler
from xinstruction_dataset.llm.ledger import Price
from xinstruction_dataset.recipe import Recipe

RETRIES = 9
# Secrets that must never reach the progress output: one in the endpoint URL's user info (not
# token-shaped, so only leaving the user info out keeps it away), one sent as the header token
# from a variable whose name does not say "token".
URL_SECRET = "s3cr3t-in-the-url-7781"
HEADER_SECRET = "opaque-header-value-5512"
TOKEN_VARIABLE = "XI_PROGRESS_TEST_AUTH"

DOCUMENTS_LINE = re.compile(r"^curate: documents done=(\d+) remaining=(\d+) total=(\d+) .* eta=\S+ rate=")
ENDPOINT_LINE = re.compile(
    r"^curate: endpoint (?P<name>.+?): in_flight=(?P<in_flight>\d+)/(?P<limit>\d+) \(\d+%\) peak=(?P<peak>\d+) "
    r"window=(?P<window>\d+)/(?P<slots>\d+) sent=(?P<sent>\d+) cached=(?P<cached>\d+) failed=(?P<failed>\d+) "
    r"retries=(?P<retries>\d+) tok/s=(?P<tokens_per_s>\d+\.\d)$"
)


def model(url: str, slots: int) -> dict:
    return {"backend": "tgi", "model": "test/echo-model", "endpoints": [url], "token_env": TOKEN_VARIABLE,
            "max_concurrency": slots, "timeout": 2.0, "retries": RETRIES, "backoff": 0.02, "backoff_max": 0.1}


def with_user_info(url: str) -> str:
    return url.replace("http://", f"http://svc:{URL_SECRET}@")


def endpoint_lines(text: str, name_part: str) -> list[dict[str, int]]:
    found = [m for m in map(ENDPOINT_LINE.match, text.splitlines()) if m and name_part in m["name"]]
    return [{k: int(v) for k, v in m.groupdict().items() if k not in ("name", "tokens_per_s")} for m in found]


def failed_attempts(server) -> int:
    """Generation requests the server took without answering one success (faults, hangs...)."""
    return sum(server.attempts.values()) - sum(server.successes.values())


@pytest.mark.timeout(300)
def test_live_progress_reports_what_the_run_did(tmp_path: Path, start_tgi_server, capsys, monkeypatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0.05")
    monkeypatch.setenv(TOKEN_VARIABLE, HEADER_SECRET)
    generator = start_tgi_server(reply=reply, slots=4, latency=0.02, max_input_tokens=2048, max_total_tokens=4096)
    judge = start_tgi_server(reply=reply, slots=3, latency=0.02, max_input_tokens=2048, max_total_tokens=4096)
    docs = documents()
    poisoned = docs[5]
    generator.inject("503", 1000, match=poisoned["text"][:80])  # its call fails: RETRIES + 1 attempts
    generator_faults = {"429": 3, "503": 3, "malformed": 2, "drop": 2, "hang": 1}
    judge_faults = {"echo_headers": 2, "503": 2}  # a 500 whose body echoes the Authorization header
    for kind, count in generator_faults.items():
        generator.inject(kind, count)
    for kind, count in judge_faults.items():
        judge.inject(kind, count)
    kept = tmp_path / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True)
    # A repeated id is rejected without a call: it still counts as done, or the run never reaches its total.
    lines = docs + [docs[0]]
    kept.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines), encoding="utf-8")
    curation = {
        "models": {"generator": model(with_user_info(generator.url), 4), "judge": model(with_user_info(judge.url), 3)},
        "generate": {"candidates": 1}, "diversify": {"target_size": 8},
    }
    recipe = Recipe.from_dict({"name": "progress", "languages": ["sw"], "output_dir": str(tmp_path), "curation": curation})

    [report] = run_curation(recipe, progress=True)

    captured = capsys.readouterr()
    output = captured.err + captured.out
    assert URL_SECRET not in output and HEADER_SECRET not in output

    documents_lines = [tuple(map(int, m.groups())) for m in map(DOCUMENTS_LINE.match, output.splitlines()) if m]
    assert len(documents_lines) >= 2  # written while the run went, not only at its end
    assert all(done + remaining == total == len(lines) for done, remaining, total in documents_lines)
    assert documents_lines[-1] == (len(lines), 0, len(lines))

    served = {"generator": generator, "judge+refiner": judge}
    calls = report.calls
    sent = {"generator": calls["generate_called"], "judge+refiner": calls["judge_called"] + calls["refine_called"]}
    failed = {"generator": calls["generate_failed"], "judge+refiner": calls["judge_failed"] + calls["refine_failed"]}
    for roles, server in served.items():
        lines = endpoint_lines(output, f"{roles} test/echo-model @ 127.0.0.1:{server.port}")
        assert len(lines) >= 2, roles
        for line in lines:
            assert line["in_flight"] <= line["limit"] == server.slots
            # Until the server was asked its limits, the client keeps to one slot of it.
            assert line["peak"] <= line["limit"] and line["window"] <= line["slots"] <= server.slots
        final = lines[-1]
        assert final["in_flight"] == 0 and final["cached"] == 0 and final["slots"] == server.slots
        assert final["sent"] == sent[roles] and final["failed"] == failed[roles]
        # Every attempt the server did not answer with a success is a retry or a call's last failure.
        assert final["retries"] + final["failed"] == failed_attempts(server)
    assert endpoint_lines(output, "generator")[-1]["failed"] == 1  # the poisoned document's one call
    assert endpoint_lines(output, "generator")[-1]["retries"] == sum(generator_faults.values()) + RETRIES
    assert endpoint_lines(output, "judge+refiner")[-1]["retries"] == sum(judge_faults.values())


@pytest.mark.timeout(120)
def test_terminal_view_shows_calls_in_flight_against_the_limit(tmp_path: Path, start_tgi_server, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, HEADER_SECRET)
    server = start_tgi_server(slots=4, latency=1.0)
    backend = build_backend(model(with_user_info(server.url), 4))
    requests = [LLMRequest(prompt=f"question {i}", params=GenerationParams(max_new_tokens=4)) for i in range(8)]
    screen = io.StringIO()

    async def run() -> tuple[str, list[str]]:
        with CallCache(tmp_path / "calls.sqlite") as cache:
            scheduler = CallScheduler(backend, cache)
            live = LiveProgress({endpoint_name(["generator"], scheduler): scheduler}, 8, file=screen, lines=False,
                                prices={"test/echo-model": Price(prompt_per_1k=1.0, completion_per_1k=3.0)}, currency="USD")
            calls = [asyncio.create_task(scheduler.complete(r)) for r in requests]
            while server.peak_active < 4:  # the limits were read and the first 4 are being answered
                await asyncio.sleep(0.01)
            live.show()
            during = read_figures(scheduler).format()
            for call in asyncio.as_completed(calls):
                assert (await call).ok
                live.document_done()
            live.close()
            await scheduler.aclose()
            return during, live.report()

    during, final = asyncio.run(run())
    assert during.startswith("in_flight=4/4 (100%) peak=4 window=4/4 sent=4 ")
    assert f"generator test/echo-model @ 127.0.0.1:{server.port}: {during}" in screen.getvalue()
    assert final[0].startswith("curate: documents done=8 remaining=0 total=8 (100%)")
    assert ": in_flight=0/4 (0%) peak=4 window=4/4 sent=8 cached=0 failed=0 retries=0 tok/s=" in final[1]
    # With prices: the money so far per endpoint, and on the documents line the projected total.
    money = re.search(r" cost=([\d.,]+) USD$", final[1])
    assert money and float(money[1]) > 0
    assert re.search(r" cost=[\d.,]+ USD projected=[\d.,]+ USD$", final[0])
    assert URL_SECRET not in screen.getvalue() + "".join(final) and HEADER_SECRET not in screen.getvalue()


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf"])
def test_a_bad_interval_is_named_with_its_fix(monkeypatch, value: str) -> None:
    monkeypatch.setenv(INTERVAL_ENV, value)
    with pytest.raises(UserError, match=rf"{INTERVAL_ENV}='{value}' is not a number of seconds above 0: set it to e.g. 30"):
        LiveProgress({}, 10, file=io.StringIO(), lines=True)
