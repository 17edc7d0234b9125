"""The ledger of LLM calls (llm/ledger.py), against real curate runs on the TGI-protocol server:
per-stage counts equal to the engine's counters, tokens equal to what the server reported, each
call paid once across resumes, budgets that stop cleanly and resume to the same output, an
estimate within 15% of the measured run, a cache made before the ledger that opens and resumes,
and a cost table that does not depend on the prompts' text."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ledger_runs import MODEL, outputs, recipe_for, start_server, write_documents, write_recipe
from xinstruction_dataset import cli
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.fingerprint import fingerprint
from xinstruction_dataset.llm.cache import SCHEMA_VERSION, CallCache
from xinstruction_dataset.llm.ledger import BEFORE_LEDGER, host_port, read_rows, stage_counters
from xinstruction_dataset.recipe import Recipe
from xinstruction_dataset.report.cost import asked_calls, run_cost

FIXTURES = Path(__file__).parent / "fixtures"
LANGUAGES = ["sw", "fi"]


def ledger(root: Path) -> list[dict]:
    return read_rows(root / "cache" / "calls.sqlite")


def stored_completions(root: Path) -> list[dict]:
    connection = sqlite3.connect(root / "cache" / "calls.sqlite")
    try:
        return [json.loads(row[0]) for row in connection.execute("SELECT completion FROM calls")]
    finally:
        connection.close()


def summaries(root: Path, languages: list[str]) -> list[dict]:
    return [json.loads((root / "curation" / lang / "summary.json").read_text()) for lang in languages]


@pytest.fixture(scope="module")
def server():
    running = start_server()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, server) -> tuple[Path, list]:
    """One uninterrupted curate of two languages (the reference of the other tests)."""
    root = tmp_path_factory.mktemp("full")
    write_documents(root, {"sw": 12, "fi": 12})
    server.reported.clear()
    reports = run_curation(recipe_for(root, server.url, LANGUAGES), progress=False)
    return root, reports, list(server.reported)


def test_ledger_counts_equal_the_engine_counters_and_tokens_equal_the_server_s(full_run, server) -> None:
    root, reports, reported = full_run
    rows = ledger(root)
    by_language = {r.language: r for r in reports}
    for language in LANGUAGES:
        mine = [row for row in rows if row["language"] == language]
        assert stage_counters(mine) == dict(by_language[language].calls)
    # Independently of the ledger: the calls the stages asked for, from the deterministic summaries.
    config = yaml.safe_load((root / "curation" / "config.yaml").read_text())["curation"]
    asked = asked_calls(config, summaries(root, LANGUAGES))
    counted = Counter()
    for report in reports:
        for key, n in report.calls.items():
            if key.endswith("_called") or key.endswith("_cached"):
                counted[key.rsplit("_", 1)[0]] += n
    assert dict(counted) == {stage: n for stage, n in asked.items() if n}
    # Every paid call's tokens are what the server reported for it, and nothing else was paid.
    paid = [row for row in rows if row["kind"] == "paid"]
    assert sorted((row["prompt_tokens"], row["completion_tokens"]) for row in paid) == sorted(reported)
    assert {row["tokens"] for row in paid} == {"reported"}
    assert len(paid) == len(stored_completions(root))
    assert {row["endpoint"] for row in rows} == {host_port(server.url)}
    assert all(row["service_s"] >= 0 and row["queued_s"] >= 0 and row["ended_at"] >= row["started_at"] for row in rows)
    # What each call was for: generate candidates 0 and 1 of round 0; refine calls of round 1.
    assert {(r["round"], r["candidate"]) for r in paid if r["stage"] == "generate"} == {(0, 0), (0, 1)}
    assert {r["round"] for r in paid if r["stage"] == "refine"} == {1}
    assert {r["role"] for r in paid} == {"generator", "judge", "refiner"}


def test_ledger_files_hold_the_figures_and_the_outputs_do_not(full_run) -> None:
    root, reports, _ = full_run
    run_file = json.loads((root / "run" / "ledger.json").read_text())
    rows = ledger(root)
    assert run_file["total"]["paid"] == sum(r["kind"] == "paid" for r in rows)
    assert sum(s["paid"] for s in run_file["stages"]) == run_file["total"]["paid"]
    assert run_file["currency"] is None and "cost" not in run_file["total"]  # no prices: tokens and time only
    [endpoint] = run_file["endpoints"]
    assert endpoint["model"] == MODEL and endpoint["requests_per_s"] > 0 and endpoint["tokens_per_s"] > 0
    assert run_file["curated"] == sum(r.curated for r in reports)
    for language in LANGUAGES:
        per_language = json.loads((root / "curation" / language / "ledger.json").read_text())
        assert per_language["total"]["paid"] == sum(r["kind"] == "paid" and r["language"] == language for r in rows)
        curated = next(r.curated for r in reports if r.language == language)
        assert per_language["per_curated_sample"]["tokens"] == pytest.approx(per_language["total"]["tokens"] / curated, rel=1e-6)
    summary = (root / "curation" / "sw" / "summary.json").read_text()
    assert "ledger" not in summary and "budget" not in summary and "prompt_tokens" not in summary


def test_a_resumed_run_counts_each_call_once_as_paid(full_run, server, tmp_path: Path) -> None:
    root, _, _ = full_run
    folder = tmp_path / "again"
    shutil.copytree(root, folder)
    before = outputs(folder, LANGUAGES)
    server.reported.clear()
    reports = run_curation(recipe_for(folder, server.url, LANGUAGES), progress=False)
    assert server.reported == []  # nothing sent: every call from the cache
    rows = ledger(folder)
    runs = Counter(row["run"] for row in rows)
    assert len(runs) == 2
    assert sum(row["kind"] == "paid" for row in rows) == len(stored_completions(folder))
    second = [row for row in rows if row["run"] != rows[0]["run"]]
    assert {row["kind"] for row in second} == {"cached"}
    assert sum(n for r in reports for k, n in r.calls.items() if k.endswith("_called")) == 0
    assert outputs(folder, LANGUAGES) == before
    run_file = json.loads((folder / "run" / "ledger.json").read_text())
    assert [r["paid"] for r in run_file["runs"]] == [len(stored_completions(folder)), 0]
    assert run_file["total"]["paid"] == len(stored_completions(folder))


def test_a_budget_stop_resumes_to_the_uninterrupted_output(full_run, server, tmp_path: Path, capsys) -> None:
    root, _, _ = full_run
    total_calls = sum(r["kind"] in ("paid", "failed") for r in ledger(root))
    write_documents(tmp_path / "run", {"sw": 12, "fi": 12})
    sw_calls = sum(r["kind"] in ("paid", "failed") and r["language"] == "sw" for r in ledger(root))
    # Two slots: a few documents in flight, so the stop comes soon after the line (sw is whole).
    recipe = write_recipe(tmp_path, server.url, LANGUAGES, slots=2, budget={"max_calls": sw_calls + (total_calls - sw_calls) // 3})
    run = tmp_path / "run"

    assert cli.main(["curate", str(recipe), "--no-progress"]) == 1
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]  # not the embedder's bar
    assert len(error) == 1 and error[0].startswith("error: budget reached: curation.budget.max_calls is")
    assert "--max-calls" in error[0] and error[0].endswith("it resumes from the cache") and ": fi;" in error[0]
    assert (run / "curated" / "sw").is_dir() and not (run / "curated" / "fi").exists()  # not labelled whole: neither diversified nor exported
    assert not (run / "curation" / "fi" / "work" / "meta-00000-of-00001.json").exists()
    paid_first = sum(r["kind"] == "paid" for r in ledger(run))
    assert paid_first < total_calls

    # The same budget again: it stops at once, paying nothing.
    assert cli.main(["curate", str(recipe), "--no-progress"]) == 1
    assert "budget reached" in capsys.readouterr().err
    assert sum(r["kind"] == "paid" for r in ledger(run)) == paid_first

    # A higher budget (on the command line) goes on from the cache to the uninterrupted output.
    assert cli.main(["curate", str(recipe), "--no-progress", "--max-calls", str(10 * total_calls)]) == 0
    assert outputs(run, LANGUAGES) == outputs(root, LANGUAGES)
    rows = ledger(run)
    assert sum(r["kind"] == "paid" for r in rows) == len(stored_completions(run)) == len(stored_completions(root))
    fingerprint_file = json.loads((run / "run" / "fingerprint.json").read_text())
    assert not any(key.startswith("curation.budget") or key.startswith("curation.cost") for key in fingerprint_file["fingerprint"])


def test_a_token_budget_with_prices_and_the_price_figures(server, tmp_path: Path, capsys) -> None:
    write_documents(tmp_path / "run", {"sw": 10})
    cost = {"currency": "EUR", "models": {MODEL: {"prompt_per_1k": 0.5, "completion_per_1k": 2.0}}}
    recipe = write_recipe(tmp_path, server.url, ["sw"], slots=2, cost=cost, budget={"max_cost": 4.0})
    assert cli.main(["curate", str(recipe), "--no-progress"]) == 1
    assert "curation.budget.max_cost is 4.00" in capsys.readouterr().err
    run_file = json.loads((tmp_path / "run" / "run" / "ledger.json").read_text())
    total = run_file["total"]
    assert run_file["currency"] == "EUR"
    assert total["cost"] == pytest.approx(total["prompt_tokens"] / 1000 * 0.5 + total["completion_tokens"] / 1000 * 2.0, rel=1e-6)
    # In-flight documents (at most 2 per slot) finish past the line, but not by more than they cost.
    per_document = Counter()
    for row in ledger(tmp_path / "run"):
        per_document[row["doc_id"]] += row["prompt_tokens"] / 1000 * 0.5 + row["completion_tokens"] / 1000 * 2.0
    assert len(per_document) < 10 and total["cost"] <= 4.0 + 4 * max(per_document.values())
    refused = write_recipe(tmp_path, server.url, ["sw"], name="unpriced.yaml", budget={"max_cost": 1.0})
    assert cli.main(["curate", str(refused), "--no-progress"]) == 2
    assert "needs a price for every model; none for test/curation-model" in capsys.readouterr().err


def test_the_estimate_of_10_documents_is_within_15_percent_of_the_run(server, tmp_path: Path, capsys) -> None:
    write_documents(tmp_path / "run", {"sw": 100}, chars=400)
    recipe = write_recipe(tmp_path, server.url, ["sw"], cost={"models": {MODEL: {"prompt_per_1k": 0.01, "completion_per_1k": 0.03}}})
    run = tmp_path / "run"
    assert cli.main(["curate", str(recipe), "--no-progress", "--estimate", "10"]) == 0
    printed = capsys.readouterr().out
    assert "calls (95%)" in printed and "time at the measured speed" in printed and "curated samples" in printed
    assert (run / "run" / "fingerprint.json").is_file() and not (run / "curated").exists()
    estimate = json.loads((run / "run" / "estimate.json").read_text())
    measured_docs = {r["doc_id"] for r in ledger(run)}
    assert len(measured_docs) == 10
    assert cli.main(["curate", str(recipe), "--no-progress"]) == 0
    rows = ledger(run)
    paid = [r for r in rows if r["kind"] == "paid"]
    calls, tokens = len(paid), sum(r["prompt_tokens"] + r["completion_tokens"] for r in paid)
    assert estimate["calls"]["value"] == pytest.approx(calls, rel=0.15)
    assert estimate["tokens"]["value"] == pytest.approx(tokens, rel=0.15)
    money = sum(r["prompt_tokens"] / 1000 * 0.01 + r["completion_tokens"] / 1000 * 0.03 for r in paid)
    assert estimate["cost"]["value"] == pytest.approx(money, rel=0.15)
    assert estimate["calls"]["low"] <= estimate["calls"]["value"] <= estimate["calls"]["high"]
    # The estimate's documents were not paid twice.
    assert calls == len(stored_completions(run))


def test_a_cache_made_before_the_ledger_opens_and_resumes(server, tmp_path: Path) -> None:
    """fixtures/cache_before_ledger.sqlite: made by the toolkit at 28cb09a (no ledger) curating
    the first 6 of these 10 documents (see fixtures/README.md)."""
    fresh = tmp_path / "fresh"
    write_documents(fresh, {"sw": 10})
    run_curation(recipe_for(fresh, server.url, ["sw"], route="generate"), progress=False)

    old = tmp_path / "old"
    write_documents(old, {"sw": 10})
    (old / "cache").mkdir()
    shutil.copyfile(FIXTURES / "cache_before_ledger.sqlite", old / "cache" / "calls.sqlite")
    connection = sqlite3.connect(old / "cache" / "calls.sqlite")
    before = {row[0]: row for row in connection.execute("SELECT * FROM calls")}
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 0
    assert not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger'").fetchone()
    connection.close()
    assert before, "the fixture holds the old run's calls"

    server.reported.clear()
    run_curation(recipe_for(old, server.url, ["sw"], route="generate"), progress=False)
    rows = ledger(old)
    backfilled = [r for r in rows if r["run"] == BEFORE_LEDGER]
    assert len(backfilled) == len(before) and {r["kind"] for r in backfilled} == {"paid"}
    new_paid = [r for r in rows if r["run"] != BEFORE_LEDGER and r["kind"] == "paid"]
    assert len(new_paid) == len(server.reported) > 0  # only the calls the old cache did not hold were sent
    assert {r["tokens"] for r in new_paid} == {"estimated"}  # TGI's native route reports no prompt tokens
    assert len(new_paid) + len(before) == len(stored_completions(old)) == len(stored_completions(fresh))
    connection = sqlite3.connect(old / "cache" / "calls.sqlite")
    assert {row[0]: row for row in connection.execute("SELECT * FROM calls") if row[0] in before} == before  # rows untouched
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    connection.close()
    assert outputs(old, ["sw"]) == outputs(fresh, ["sw"])
    # The calls paid before the ledger take their stage from the resumed run's rows of the same key.
    config = yaml.safe_load((old / "curation" / "config.yaml").read_text())["curation"]
    cost = run_cost(old / "cache" / "calls.sqlite", config, summaries(old, ["sw"]), 1)
    assert cost.unclassed.paid == 0 and sum(s.paid for s in cost.stages.values()) == len(stored_completions(old))


def test_the_cost_table_does_not_depend_on_the_prompts_text(full_run) -> None:
    root, _, _ = full_run
    config = yaml.safe_load((root / "curation" / "config.yaml").read_text())["curation"]
    sums = summaries(root, LANGUAGES)
    cost = run_cost(root / "cache" / "calls.sqlite", config, sums, sum(s["curated"] for s in sums))
    by_stage = Counter(r["stage"] for r in ledger(root) if r["kind"] == "paid")
    assert {stage: c.paid for stage, c in cost.stages.items()} == {s: by_stage[s] for s in ("generate", "judge", "refine")}
    assert cost.unclassed.paid == 0
    # The prompts renamed (templates this toolkit has not got) and the judge's swapped for another.
    renamed = {**config, "generate": {**config["generate"], "prompt": "instruction_renamed_v9"},
               "judge": {**config["judge"], "prompt": "judge_three_level_v1"}, "refine": {**config["refine"], "prompt": "edited"}}
    again = run_cost(root / "cache" / "calls.sqlite", renamed, sums, sum(s["curated"] for s in sums))
    assert {stage: c.paid for stage, c in again.stages.items()} == {stage: c.paid for stage, c in cost.stages.items()}
    assert again.unclassed.paid == 0
    assert cost.projection()["calls"] > 0 and cost.projection()["tokens"] > 0


def test_budget_and_prices_stay_out_of_the_fingerprint_and_the_written_config(tmp_path: Path) -> None:
    plain = recipe_for(tmp_path, "http://127.0.0.1:9", ["sw"])
    spending = recipe_for(tmp_path, "http://127.0.0.1:9", ["sw"], budget={"max_tokens": 10, "max_calls": 3, "max_cost": 1.5},
                          cost={"models": {MODEL: {"gpu_hour": 2.0, "gpus": 4}}})
    assert fingerprint(plain) == fingerprint(spending)
    assert spending.curation.to_yaml() == plain.curation.to_yaml()
    with pytest.raises(ValueError, match="curation.budget.max_calls"):
        Recipe.from_dict({"name": "x", "curation": {"budget": {"max_calls": 0}}})
    with pytest.raises(ValueError, match="curation.cost"):
        Recipe.from_dict({"name": "x", "curation": {"cost": {"models": {MODEL: {"per_token": 1}}}}})


def test_an_endpoint_is_named_by_host_and_port_only() -> None:
    assert host_port("https://user:s3cret@gpu-7.example.org:8443/v1/route?token=hf_abc") == "gpu-7.example.org:8443"
    assert host_port("http://10.0.0.5/") == "10.0.0.5"


def test_a_new_cache_is_at_the_current_schema_and_lists_its_run(tmp_path: Path) -> None:
    with CallCache(tmp_path / "c.sqlite", command="curate") as cache:
        cache.flush()
        run = cache.run_id
    connection = sqlite3.connect(tmp_path / "c.sqlite")
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("SELECT run, command FROM runs").fetchall() == [(run, "curate")]
    connection.close()
