"""The card's "How this dataset was made" (hub/making.py): per config, per stage and in total, the
LLM calls the curation paid and their prompt and completion tokens, from the run folder's ledger,
with money from token prices. Real curate runs against the TGI-protocol server, exported with the
real command line; a curate SIGKILLed mid-run and resumed, and a rerun answered from the cache,
give the card of an uninterrupted run byte for byte."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from hub_folders import write_xinstruction_config, xinstruction_records
from ledger_runs import MODEL, CountingServer, write_documents, write_recipe
from test_build_kill import cached_calls, finish, kill_at
from tgi_server import curation_reply
from xinstruction_dataset.cli import main
from xinstruction_dataset.curation.curate import run_curation
from xinstruction_dataset.features import XINSTRUCTION_FEATURES
from xinstruction_dataset.hub.cards import read_hand_written, render_card
from xinstruction_dataset.hub.check import check_card
from xinstruction_dataset.hub.export import export_dataset
from xinstruction_dataset.hub.making import METADATA_KEY, LedgerFigures, StageCalls, TokenPrice
from xinstruction_dataset.llm.ledger import read_rows
from xinstruction_dataset.recipe import Recipe

LANGUAGES = ["sw", "fi"]
DOCS = 6
PRICES = {"currency": "EUR", "models": {MODEL: {"prompt_per_1k": 0.5, "completion_per_1k": 2.0}}}
SECTION = "## How this dataset was made"
ROW = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<calls>[\d,*]+) \| (?P<prompt>[\d,*]+) \| (?P<completion>[\d,*]+) \|(?: (?P<money>[^|]+) \|)?$", re.M)
KILLS = 2
SEED = 20250612


@pytest.fixture(scope="module")
def server():
    running = CountingServer(
        reply=curation_reply(needs_refinement=0.3, bad=0.2), slots=4, latency=0.02, max_input_tokens=2048, max_total_tokens=4096,
    ).start()
    try:
        yield running
    finally:
        running.kill()


def curated_folder(root: Path, server_url: str, cost: dict | None = None, documents: bool = True) -> Path:
    """`root/recipe.yaml` over `root/run` (with its filtered documents), curated in this process."""
    recipe = write_recipe(root, server_url, LANGUAGES, **({"cost": cost} if cost else {}))
    if documents:
        write_documents(root / "run", dict.fromkeys(LANGUAGES, DOCS))
    run_curation(Recipe.from_yaml(recipe), progress=False)
    return recipe


def export(recipe: Path, folder: Path, *more: str) -> str:
    """`xinstruction export` of both languages from the recipe's curated shards; the card's text."""
    arguments = ["export", str(folder), *[a for language in LANGUAGES for a in ("--language", language)], "--no-progress"]
    assert main([*arguments, *(more or ("--recipe", str(recipe)))]) == 0
    return (folder / "README.md").read_text(encoding="utf-8")


def section(card: str) -> str:
    start = card.index(SECTION)
    return card[start:card.index("\n## ", start + 1) + 1]


def without_section(card: str) -> str:
    """The card less its section and the files' sizes in bytes (the figures sit in the files'
    metadata, so a file with them is larger): what must not depend on the ledger."""
    return re.sub(r"(num_bytes|download_size|dataset_size): \d+", r"\1: N", card.replace(section(card), "") if SECTION in card else card)


def table(card: str, first: str) -> dict[str, tuple]:
    """The rows of the section's table whose header starts `| first |`: name -> (calls, prompt,
    completion tokens, money or None)."""
    text = section(card)
    block = text[text.index(f"| {first} |"):].split("\n\n", 1)[0]
    rows = {}
    for match in ROW.finditer(block):
        numbers = [int(match.group(name).strip("*").replace(",", "")) for name in ("calls", "prompt", "completion")]
        money = match.group("money")
        rows[match.group("name").strip("`*")] = (*numbers, money.strip("* ") if money else None)
    return rows


def paid_in_ledger(run: Path) -> tuple[dict, dict]:
    """(per language, per stage) [paid calls, prompt tokens, completion tokens] of the ledger's
    paid rows, read from the call cache here, not by the card code."""
    by_language: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_stage: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in read_rows(run / "cache" / "calls.sqlite"):
        if row["kind"] == "paid":
            for sums in (by_language[row["language"]], by_stage[row["stage"]]):
                sums[0] += 1
                sums[1] += row["prompt_tokens"]
                sums[2] += row["completion_tokens"]
    return dict(by_language), dict(by_stage)


def euros(prompt: int, completion: int) -> str:
    return f"{prompt / 1000 * 0.5 + completion / 1000 * 2.0:,.2f}"


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, server) -> tuple[Path, Path, str]:
    """One curate of two languages with token prices, exported: (root, recipe, card)."""
    root = tmp_path_factory.mktemp("priced")
    recipe = curated_folder(root, server.url, PRICES)
    return root, recipe, export(recipe, root / "x-instruction")


def test_the_card_gives_each_config_s_and_each_stage_s_paid_calls_tokens_and_money(priced, server) -> None:
    root, _, card = priced
    by_language, by_stage = paid_in_ledger(root / "run")
    assert set(by_language) == set(LANGUAGES) and {"generate", "judge", "refine"} <= set(by_stage)
    configs = table(card, "Config")
    for language in LANGUAGES:
        calls, prompt, completion = by_language[language]
        assert configs[language] == (calls, prompt, completion, euros(prompt, completion))
    total = [sum(column) for column in zip(*by_language.values())]
    assert configs["total"] == (*total, euros(total[1], total[2]))
    assert {name: row[:3] for name, row in table(card, "Stage").items()} == {stage: tuple(sums) for stage, sums in by_stage.items()}
    assert "| Cost (EUR) |" in card and f"`{MODEL}`: 0.5 / 2 EUR per 1k prompt / completion tokens" in card
    # Tokens as the server reported them (the completions route reports both counts).
    assert "Tokens are as the servers reported them.\n" in card
    # Calls, tokens and money only: no times, no endpoint.
    host = server.url.split("//", 1)[1]
    assert host not in card and server.url.rsplit(":", 1)[1] not in section(card)
    assert not re.search(r"\d s\b|seconds|tokens/s|per second", section(card))
    assert check_card(root / "x-instruction") == []


def test_the_section_comes_from_the_folder_alone_and_hand_written_text_survives(priced, tmp_path: Path) -> None:
    """`card update` of a copy of the export, far from the run folder and its call cache, renders
    the same section (the figures travel in the Parquet files' metadata), and keeps hand edits."""
    root, _, card = priced
    copy = tmp_path / "x-instruction"
    shutil.copytree(root / "x-instruction", copy)
    assert render_card(copy) == card
    edited = card.replace("<!-- hand-written:usage end -->", "Ask on the forum.\n<!-- hand-written:usage end -->")
    (copy / "README.md").write_text(edited, encoding="utf-8")
    assert main(["card", "update", str(copy)]) == 0
    assert (copy / "README.md").read_text(encoding="utf-8") == edited
    assert read_hand_written(edited)["usage"].endswith("Ask on the forum.\n")
    metadata = pq.read_schema(next((copy / "data" / "sw").glob("*.parquet"))).metadata
    assert LedgerFigures.from_metadata(metadata).stages  # what the card was rendered from


@pytest.mark.parametrize(
    "cost, money_column, says",
    [
        (None, False, []),  # no prices: calls and tokens only
        ({"models": {MODEL: {"gpu_hour": 2.5, "gpus": 2}}}, False, ["Priced per GPU-hour: `test/curation-model`"]),
        ({"models": {MODEL: {"prompt_per_1k": 0.5, "completion_per_1k": 2.0, "gpu_hour": 2.5}}}, True, ["Priced per GPU-hour: `test/curation-model`"]),
    ],
    ids=["no-prices", "gpu-hour-only", "tokens-and-gpu-hour"],
)
def test_a_rerun_with_other_prices_changes_the_money_only(priced, server, tmp_path: Path, cost, money_column, says) -> None:
    """Rerun from the cache with other prices (prices are not in the fingerprint): the calls and
    tokens are those of the first run; money is from token prices only, never from GPU-hours."""
    root, _, card = priced
    shutil.copytree(root / "run", tmp_path / "run")
    server.reported.clear()
    recipe = curated_folder(tmp_path, server.url, cost, documents=False)
    assert server.reported == []  # every call answered from the cache
    again = export(recipe, tmp_path / "x-instruction")
    for first in ("Config", "Stage"):
        assert {k: v[:3] for k, v in table(again, first).items()} == {k: v[:3] for k, v in table(card, first).items()}
    assert ("| Cost (USD) |" in again) is money_column and "EUR" not in again
    if money_column:  # the token price of the recipe's default currency, the GPU-hour left out
        assert table(again, "Config")["total"][3] == table(card, "Config")["total"][3]
    else:
        assert all(row[3] is None for row in table(again, "Config").values()) and "Cost from token prices" not in again
    for sentence in says:
        assert sentence in again
    assert ("GPU-hour" in again) is bool(says)
    assert without_section(again) == without_section(card)


def test_shards_made_elsewhere_give_the_card_without_the_section(priced, tmp_path: Path) -> None:
    """Curated shards copied out of their run folder have no ledger beside them: the card has no
    such section, and is otherwise the same card."""
    root, _, card = priced
    shards = tmp_path / "shards"
    shutil.copytree(root / "run" / "curated", shards)
    plain = export(Path(), tmp_path / "x-instruction", "--data-dir", str(shards))
    assert SECTION not in plain and "LLM calls" not in plain
    assert without_section(plain) == without_section(card)
    for file in (tmp_path / "x-instruction" / "data").rglob("*.parquet"):
        assert METADATA_KEY not in (pq.read_schema(file).metadata or {})
    # The run's per-language folder as --data-dir finds the ledger too.
    one = tmp_path / "one"
    assert main(["export", str(one), "--language", "sw", "--data-dir", str(root / "run" / "curated" / "sw"), "--no-progress"]) == 0
    assert table((one / "README.md").read_text(encoding="utf-8"), "Config")["sw"] == table(card, "Config")["sw"]


def test_a_damaged_ledger_file_stops_the_export_with_one_line(priced, tmp_path: Path, capsys) -> None:
    root, _, _ = priced
    shutil.copytree(root / "run", tmp_path / "run")
    (tmp_path / "run" / "curation" / "sw" / "ledger.json").write_text('{"format": 1}', encoding="utf-8")
    code = main(["export", str(tmp_path / "out"), "--language", "sw", "--data-dir", str(tmp_path / "run" / "curated"), "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ledger.json is not a ledger file curate wrote" in err[0] and "xinstruction curate" in err[0]


def figures_metadata(stages: list[StageCalls], prices: dict[str, TokenPrice], currency: str | None) -> dict[bytes, bytes]:
    return LedgerFigures(tuple(stages), prices, currency).to_metadata()


def write_config(folder: Path, language: str, metadata: dict[bytes, bytes] | None) -> None:
    records = [r.to_dict() for r in xinstruction_records(language, 4)]
    export_dataset(datasets.Dataset.from_list(records, features=XINSTRUCTION_FEATURES), folder, language, "train", progress=False, schema_metadata=metadata)


def test_configs_without_figures_unpriced_models_and_mixed_currencies(tmp_path: Path) -> None:
    """A folder whose configs came from different places: a config without figures says `not
    recorded`, a model without a token price is named, two currencies give no money at all."""
    folder = tmp_path / "x-instruction"
    generate = StageCalls("generate", "gen/model", 10, 1000, 200)
    judge = StageCalls("judge", "judge/model", 5, 3000, 5, not_reported=5)
    write_config(folder, "sw", figures_metadata([generate, judge], {"gen/model": TokenPrice(1.0, 3.0)}, "USD"))
    write_xinstruction_config(folder, "fi", 4)  # exported without figures
    card = render_card(folder)
    configs = table(card, "Config")
    assert configs["sw"] == (15, 4000, 205, "1.60") and configs["total"] == (15, 4000, 205, "1.60")
    assert "| `fi` | not recorded | | | |" in card
    assert "No token price for `judge/model`: its calls are not in the cost." in card
    assert "except for 5 calls whose tokens were counted with the model's tokenizer or estimated" in card
    assert table(card, "Stage") == {"generate": (10, 1000, 200, "1.60"), "judge": (5, 3000, 5, "–")}
    assert check_card(folder) == []

    write_config(folder, "fi", figures_metadata([StageCalls("generate", "gen/model", 1, 10, 10)], {"gen/model": TokenPrice(1.0, 1.0)}, "EUR"))
    mixed = render_card(folder)
    assert "Cost (" not in mixed and "priced in different currencies (EUR, USD), so the card gives no cost" in mixed
    assert table(mixed, "Config")["total"] == (16, 4010, 215, None)


def test_a_folder_without_figures_has_no_section(tmp_path: Path) -> None:
    folder = tmp_path / "x-instruction"
    write_xinstruction_config(folder, "sw", 4)
    card = render_card(folder)
    assert SECTION not in card and "LLM calls" not in card and "## Method" in card


# --- kill and resume ----------------------------------------------------------------------------

def curate(recipe: Path, log: Path) -> subprocess.Popen:
    """The real `xinstruction curate` in its own process group (kill_at kills the group)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "xinstruction_dataset.cli", "curate", str(recipe), "--no-progress"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )


@pytest.mark.timeout(600)
def test_a_killed_and_resumed_curate_and_a_cached_rerun_give_the_same_card(server, tmp_path: Path) -> None:
    for name in ("A", "B"):  # the same documents and recipe in two folders
        (tmp_path / name).mkdir()
        write_documents(tmp_path / name / "run", dict.fromkeys(LANGUAGES, DOCS))
    clean = write_recipe(tmp_path / "A", server.url, LANGUAGES, cost=PRICES)
    finish(curate(clean, tmp_path / "A.log"), tmp_path / "A.log")
    total = cached_calls(tmp_path / "A" / "run")
    reference = export(clean, tmp_path / "A" / "x-instruction")
    assert SECTION in reference and "| Cost (EUR) |" in reference

    killed = write_recipe(tmp_path / "B", server.url, LANGUAGES, cost=PRICES)
    rng = random.Random(SEED)
    kills = []
    for n, point in enumerate(sorted(rng.randint(1, total - 1) for _ in range(KILLS))):
        before = cached_calls(tmp_path / "B" / "run")
        log = tmp_path / f"B{n}.log"
        outcome, after = kill_at(curate(killed, log), log, tmp_path / "B" / "run", max(point, before + 1))
        kills.append((before, outcome, after))
    assert any(outcome == "killed" and before < after < total for before, outcome, after in kills), f"seed {SEED}: no kill landed mid-run: {kills}"
    finish(curate(killed, tmp_path / "B.log"), tmp_path / "B.log")
    runs = {row["run"] for row in read_rows(tmp_path / "B" / "run" / "cache" / "calls.sqlite")}
    assert len(runs) >= 2  # the resumed run and at least one killed one wrote the ledger
    resumed = export(killed, tmp_path / "B" / "x-instruction")
    assert resumed == reference, f"seed {SEED}, kills {kills}"

    # The uninterrupted folder once more: every call from the cache, the same card.
    finish(curate(clean, tmp_path / "A2.log"), tmp_path / "A2.log")
    ledger = json.loads((tmp_path / "A" / "run" / "run" / "ledger.json").read_text(encoding="utf-8"))
    assert len(ledger["runs"]) == 2 and ledger["runs"][1]["paid"] == 0
    assert export(clean, tmp_path / "A" / "x-instruction") == reference
