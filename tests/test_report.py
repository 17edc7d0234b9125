"""`xinstruction report`: a small run built by the real `xinstruction build` against the
TGI-protocol test server (two languages, filter rejects, judge rounds, refinement, diversify),
then its report read back: the funnel against the summaries, every curated and rejected pair in
the sample data, the cost per stage against the call cache. The page in a real browser, and the
review loop, are in test_review.py."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from corpora import read_corpus
from tgi_server import GENERATE_MARK, JUDGE_SCORE_MARK, REFINE_INSTRUCTION_MARK, TGIServer, curation_reply
from xinstruction_dataset import cli
from xinstruction_dataset.report import write_report
from xinstruction_dataset.llm.ledger import read_rows
from xinstruction_dataset.report.cost import paper_projection, run_cost
from xinstruction_dataset.report.data_files import read_data_file
from xinstruction_dataset.report.funnel import group_reason
from filtered_output import kept_rows

LANGUAGES = ["sw", "th"]
DOCS = 14  # documents per language from the shared corpora (texts cut to 500 characters)


def write_recipe(root: Path, server_url: str) -> Path:
    """A build recipe whose sources hold, per language, real documents, English noise (dropped by
    the language filter) and a copy of the first document under another id (dropped by dedup)."""
    root.mkdir(parents=True, exist_ok=True)
    sources = []
    noise = read_corpus("noise", 3)
    for language in LANGUAGES:
        rows = [{**row, "text": row["text"][:500]} for row in read_corpus(language, DOCS)]
        rows += [{**row, "id": f"{language}-{row['id']}", "text": row["text"][:500]} for row in noise]
        rows.append({**rows[0], "id": rows[0]["id"] + "-copy"})
        path = root / "sources" / f"{language}.jsonl"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        sources.append({"path": str(path), "language": language})
    model = {"backend": "tgi", "model": "test/curation-model", "endpoints": [server_url], "timeout": 10.0, "retries": 3, "backoff": 0.05}
    recipe = {
        "name": "report-test",
        "languages": LANGUAGES,
        "sources": sources,
        "filters": [{"type": "length", "min_chars": 50, "max_chars": 20000}, {"type": "language"}, {"type": "dedup"}],
        "output_dir": str(root / "run"),
        "curation": {
            "models": {"generator": model},
            "generate": {"candidates": 2},
            "judge": {"scale": "five_point"},
            "refine": {"rounds": 2},
            "diversify": {"target_size": 4},
        },
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def build_run(root: Path, server: TGIServer) -> Path:
    """Build the run with the real command line (which writes the report at its end)."""
    assert cli.main(["build", str(write_recipe(root, server.url)), "--no-progress"]) == 0
    return root / "run"


def start_server() -> TGIServer:
    return TGIServer(reply=curation_reply(needs_refinement=0.3, bad=0.2), slots=4, max_input_tokens=2048, max_total_tokens=4096).start()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    server = start_server()
    try:
        yield build_run(tmp_path_factory.mktemp("report"), server)
    finally:
        server.kill()


def summary(run: Path, step: str, language: str) -> dict:
    return json.loads((run / step / language / "summary.json").read_text(encoding="utf-8"))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class FunnelCells(HTMLParser):
    """The funnel table's numbers: {(language, key): text} of every `td[data-language][data-key]`."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self._open: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "td" and "data-language" in found and "data-key" in found:
            self._open = (found["data-language"], found["data-key"])
            self.cells[self._open] = ""

    def handle_data(self, data: str) -> None:
        if self._open:
            self.cells[self._open] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None


def expected_funnel(run: Path, language: str) -> dict[str, int]:
    """The numbers the funnel must show, read straight from the summaries."""
    filtered, curated = summary(run, "filtered", language), summary(run, "curation", language)
    expected = {"filter.documents_in": filtered["documents_in"], "filter.kept": filtered["kept"], "curation.curated": curated["curated"]}
    expected |= {f"curation.counts.{key}": n for key, n in curated["counts"].items() if key != "candidates_usable" and not key.startswith("pool_kept")}
    for block in {reason.split(":")[0] for reason in filtered["rejected"]}:
        expected[f"filter.rejected.{block}"] = sum(n for reason, n in filtered["rejected"].items() if reason.startswith(block + ":"))
    return expected


def test_build_writes_the_report_and_its_funnel_is_the_summaries(run_dir: Path) -> None:
    parser = FunnelCells()
    parser.feed((run_dir / "report" / "index.html").read_text(encoding="utf-8"))
    for language in LANGUAGES:
        expected = expected_funnel(run_dir, language)
        assert {"filter.rejected.language", "filter.rejected.dedup", "curation.counts.refine_round_1"} <= set(expected), expected
        shown = {key: int(text.replace(",", "")) for (lang, key), text in parser.cells.items() if lang == language and key in expected}
        assert shown == expected


def test_sample_data_holds_every_curated_and_rejected_pair(run_dir: Path) -> None:
    report = run_dir / "report"
    index = read_data_file(report, "index")
    pages = [read_data_file(report, f"p/{n:05d}") for n in range(-(-index["count"] // index["page_rows"]))]
    texts = [read_data_file(report, f"t/{n:05d}") for n in range(len(pages))]
    previews, full = [row for page in pages for row in page], [row for page in texts for row in page]
    column = lambda name, i: index["columns"][name]["values"][index["columns"][name]["rows"][i]]  # noqa: E731
    curated = {lang: jsonl(next((run_dir / "curated" / lang).glob("*.jsonl"))) for lang in LANGUAGES}
    rejects = {lang: jsonl(run_dir / "curation" / lang / "rejects.jsonl") for lang in LANGUAGES}
    assert index["count"] == len(previews) == sum(len(v) for v in curated.values()) + sum(len(v) for v in rejects.values())

    kept = {doc["id"]: doc for lang in LANGUAGES for doc in kept_rows(run_dir / "filtered" / lang)}
    seen_reasons = Counter()
    for i, (preview, text) in enumerate(zip(previews, full)):
        language, kind = column("language", i), column("kind", i)
        if kind == "curated":
            record = next(r for r in curated[language] if r["id"] == preview["id"])
            assert (text["ins"], text["out"], text["details"]) == (record["instruction"], record["output"], record["provenance"])
            assert column("label", i) == record["provenance"]["label"] and column("round", i) == record["provenance"]["refinement_round"]
        else:
            reject = next(r for r in rejects[language] if r["doc_id"] == preview["id"])
            assert preview["reason"] == reject["reason"] and column("reason", i) == group_reason(reject["reason"])
            if reject["reason"] == "judge:bad":  # the response is the document's text, read back from the filter's output
                assert text["out"] == kept[reject["doc_id"]]["text"] and text["ins"] == reject["detail"]["instruction"]
                assert column("label", i) == "bad"
            seen_reasons[reject["reason"]] += 1
        assert preview["ins"] == text["ins"][:300] and preview["out"] == text["out"][:300]
    assert {"judge:bad", "diversify:not_selected"} <= set(seen_reasons)


def test_cost_classes_every_cached_call_by_its_stage(run_dir: Path) -> None:
    config = yaml.safe_load((run_dir / "curation" / "config.yaml").read_text())["curation"]
    summaries = [summary(run_dir, "curation", lang) for lang in LANGUAGES]
    cost = run_cost(run_dir / "cache" / "calls.sqlite", config, summaries, sum(s["curated"] for s in summaries))
    connection = sqlite3.connect(run_dir / "cache" / "calls.sqlite")
    prompts = [json.loads(row[0])["prompt"] for row in connection.execute("SELECT request FROM calls")]
    connection.close()
    by_mark = Counter(
        "generate" if p.rstrip().endswith(GENERATE_MARK) else "refine" if REFINE_INSTRUCTION_MARK in p else "judge" if JUDGE_SCORE_MARK in p else "other"
        for p in prompts
    )
    assert {stage: c.paid for stage, c in cost.stages.items()} == {s: by_mark[s] for s in ("generate", "judge", "refine")}
    assert cost.unclassed.paid == by_mark["other"] == 0
    documents = sum(s["counts"]["documents"] for s in summaries)
    assert cost.stages["generate"].asked == 2 * documents  # two candidates per document
    assert cost.stages["judge"].asked == sum(n for s in summaries for k, n in s["counts"].items() if k.startswith("judge_round_"))
    assert cost.total.tokens > 0 and cost.busy_s >= 0
    projection = cost.projection()
    # The estimate's numbers (curation/estimate.py) over every document in the ledger.
    assert projection["calls"] == paper_projection(read_rows(run_dir / "cache" / "calls.sqlite"), summaries, {})["calls"] > 0


def test_report_command_writes_a_fresh_folder_and_refuses_a_folder_that_is_no_run(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    assert cli.main(["report", str(run_dir), "-o", str(out), "--no-progress"]) == 0
    (out / "stale.txt").write_text("from an older report")
    assert cli.main(["report", str(run_dir), "-o", str(out), "--no-progress"]) == 0
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging or retired folder left
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no filter or curation summary" in capsys.readouterr().err


def test_the_report_is_written_whole_or_not_at_all(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    write_report(run_dir, out, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (run_dir / "curation" / "sw" / "rejects.jsonl").rename(run_dir / "rejects.bak")
    (run_dir / "curation" / "sw" / "rejects.jsonl").mkdir()  # unreadable as a file: the report fails
    try:
        with pytest.raises(OSError):
            write_report(run_dir, out, progress=False)
    finally:
        (run_dir / "curation" / "sw" / "rejects.jsonl").rmdir()
        (run_dir / "rejects.bak").rename(run_dir / "curation" / "sw" / "rejects.jsonl")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
