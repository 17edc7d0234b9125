"""Hostile filter input, through the real `xinstruction filter` CLI: symlinks out of a glob's
folder, a FIFO among the files, lone surrogates in valid JSON, colliding document ids, and
secrets in anything written to a quarantine or reject file."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from corpora import read_corpus
from xinstruction_dataset.filtering.pipeline import plan_tasks
from xinstruction_dataset.fingerprint import fingerprint
from xinstruction_dataset.recipe import Recipe
from filtered_output import kept_rows, language_files, reject_rows

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_" + "Zq7" * 12  # looks like a Hub token: the scrubber's pattern
SECRET = "s3cr3t-value-from-the-environment"  # no pattern: only the environment says it is secret


def run_filter(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`xinstruction filter ... --no-progress` in a subprocess (the FIFO test relies on its timeout)."""
    command = [sys.executable, "-m", "xinstruction_dataset.cli", "filter", *args, "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def write_recipe(tmp_path: Path, sources: list[dict], filters: list[dict] | None = None, **more) -> Path:
    data = {"name": "hostile", "sources": sources, "filters": filters or [], "output_dir": str(tmp_path / "run"), **more}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def outputs(run: Path, language: str = "sw") -> dict[str, list[dict]]:
    folder = run / "filtered" / language
    return {"kept": kept_rows(folder), "rejects": reject_rows(folder), "quarantine": lines(folder / "quarantine.jsonl")}


def every_written_byte(folder: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --- symlinks and the scrubber ---------------------------------------------------------------


def _linked_folder(tmp_path: Path) -> tuple[Path, Path]:
    """data/a.jsonl (real Swahili), data/b.jsonl -> ../secret/token (a token file elsewhere),
    data/c.jsonl -> data/inner/c.jsonl (a link that stays inside the folder)."""
    secret = tmp_path / "secret"
    secret.mkdir()
    token_file = secret / "token"
    token_file.write_text(f"{TOKEN}\n{SECRET}\n", encoding="utf-8")
    data = tmp_path / "data"
    (data / "inner").mkdir(parents=True)
    rows = read_corpus("sw", limit=8)
    write_jsonl(data / "a.jsonl", rows[:4])
    write_jsonl(data / "inner" / "c.jsonl", rows[4:])
    (data / "b.jsonl").symlink_to(token_file)
    (data / "c.jsonl").symlink_to(data / "inner" / "c.jsonl")
    return data, token_file


def test_a_symlink_out_of_the_glob_base_is_quarantined_not_read(tmp_path):
    data, _ = _linked_folder(tmp_path)
    recipe = write_recipe(tmp_path, [{"path": str(data / "*.jsonl"), "language": "sw"}])
    result = run_filter(str(recipe), env={"MY_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert len(out["kept"]) == 8  # a.jsonl and the inner link c.jsonl are read
    (refused,) = out["quarantine"]
    assert refused["file"] == str(data / "b.jsonl") and refused["reason"] == "symlink_outside_source"
    assert "follow_symlinks: true" in refused["detail"] and refused["raw"] == ""
    written = every_written_byte(tmp_path / "run") + result.stdout + result.stderr
    assert TOKEN not in written and SECRET not in written
    assert "symlink_outside_source" in result.stdout


def test_a_symlinked_folder_inside_the_glob_does_not_widen_it(tmp_path):
    """`data/*/x.jsonl` where data/lang is a link to a folder elsewhere: its files are refused."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_jsonl(elsewhere / "x.jsonl", read_corpus("sw", limit=3))
    (tmp_path / "data" / "real").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "real" / "x.jsonl", read_corpus("sw", limit=2))
    (tmp_path / "data" / "linked").symlink_to(elsewhere, target_is_directory=True)
    recipe = write_recipe(tmp_path, [{"path": str(tmp_path / "data" / "*" / "x.jsonl"), "language": "sw"}])
    result = run_filter(str(recipe))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert len(out["kept"]) == 2
    assert [(q["file"], q["reason"]) for q in out["quarantine"]] == [(str(tmp_path / "data" / "linked" / "x.jsonl"), "symlink_outside_source")]


def test_follow_symlinks_reads_the_link_and_the_quarantine_is_scrubbed(tmp_path):
    data, _ = _linked_folder(tmp_path)
    recipe = write_recipe(tmp_path, [{"path": str(data / "*.jsonl"), "language": "sw", "follow_symlinks": True}])
    result = run_filter(str(recipe), env={"MY_API_KEY": SECRET})
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert len(out["kept"]) == 8
    quarantined = [q for q in out["quarantine"] if q["file"] == str(data / "b.jsonl")]
    assert [q["line"] for q in quarantined] == [1, 2]  # the token file's two lines: invalid JSON
    assert quarantined[0]["raw"].startswith("hf_***") and quarantined[1]["raw"].startswith("***")
    written = every_written_byte(tmp_path / "run") + result.stdout + result.stderr
    assert TOKEN not in written and SECRET not in written


def test_reject_reasons_are_scrubbed_the_rejected_document_is_not(tmp_path):
    """A dedup reason names the kept document's id; an id may be token-shaped."""
    text = read_corpus("sw", limit=1)[0]["text"]
    write_jsonl(tmp_path / "a.jsonl", [{"id": TOKEN, "text": text}, {"id": "later", "text": text}])
    recipe = write_recipe(tmp_path, [{"path": str(tmp_path / "a.jsonl"), "language": "sw"}], [{"type": "exact_dedup"}])
    result = run_filter(str(recipe))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [d["id"] for d in out["kept"]] == [TOKEN]  # documents are written as read
    (reject,) = out["rejects"]
    assert reject["id"] == "later" and reject["reason"] == "exact_dedup:exact_duplicate_of:hf_***"
    assert reject["text"] == text


def test_follow_symlinks_left_at_its_default_changes_no_fingerprint_or_task(tmp_path):
    for path in sorted((REPO / "builder").glob("*.yaml")):
        recipe = Recipe.from_yaml(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert not any("follow_symlinks" in key for key in fingerprint(recipe)), path
        if not data.get("sources"):
            continue
        spelled = copy.deepcopy(data)
        for source in spelled["sources"]:
            source["follow_symlinks"] = False
        assert fingerprint(Recipe.from_dict(spelled, base_dir=path.parent)) == fingerprint(recipe), path
    write_jsonl(tmp_path / "a.jsonl", read_corpus("sw", limit=2))
    base = {"name": "t", "sources": [{"path": str(tmp_path / "a.jsonl"), "language": "sw"}], "output_dir": str(tmp_path / "run")}
    (task,) = plan_tasks(Recipe.from_dict(base), "sw", tmp_path / "run")
    assert "follow_symlinks" not in task.source  # a task finished before the field existed keeps its key
    following = copy.deepcopy(base)
    following["sources"][0]["follow_symlinks"] = True
    assert fingerprint(Recipe.from_dict(following))["sources[0].follow_symlinks"] is True
    # A folder filtered with the default refuses to resume with links followed, naming the key.
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(base), encoding="utf-8")
    assert run_filter(str(recipe)).returncode == 0
    recipe.write_text(yaml.safe_dump(following), encoding="utf-8")
    refused = run_filter(str(recipe))
    assert refused.returncode == 2 and "sources[0].follow_symlinks: (absent) → true" in refused.stderr


# --- non-regular files ---------------------------------------------------------------------


def test_a_fifo_matched_by_the_glob_is_quarantined_not_waited_on(tmp_path):
    rows = read_corpus("sw", limit=6)
    write_jsonl(tmp_path / "a.jsonl", rows[:3])
    os.mkfifo(tmp_path / "b.jsonl")  # nobody ever writes to it: opening it to read blocks forever
    write_jsonl(tmp_path / "c.jsonl", rows[3:])
    recipe = write_recipe(tmp_path, [{"path": str(tmp_path / "*.jsonl"), "language": "sw"}])
    try:
        result = run_filter(str(recipe), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("`xinstruction filter` blocked on a FIFO matched by the source glob")
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [d["id"] for d in out["kept"]] == [r["id"] for r in rows]
    (fifo,) = out["quarantine"]
    assert (fifo["file"], fifo["reason"]) == (str(tmp_path / "b.jsonl"), "unreadable_file:not_a_regular_file")
    assert "FIFO" in fifo["detail"]


# --- lone surrogates -------------------------------------------------------------------------


def test_a_lone_surrogate_quarantines_its_line_and_the_run_goes_on(tmp_path):
    rows = read_corpus("sw", limit=4) + read_corpus("noise", limit=2)
    good = [json.dumps(r, ensure_ascii=False) for r in rows]

    def escaped(row: dict, escape: str) -> str:
        """The row as JSON with `@` replaced by a raw `\\uXXXX` escape (valid JSON)."""
        return json.dumps(row, ensure_ascii=False).replace("@", escape)

    bad_text = escaped({"id": "s1", "text": "habari @ " + rows[0]["text"]}, "\\ud800")
    bad_id = escaped({"id": "s2@x", "text": rows[1]["text"]}, "\\udc00")
    bad_url = escaped({"id": "s3", "text": rows[2]["text"], "url": "https://x/@"}, "\\udfff")
    pair = escaped({"id": "emoji", "text": rows[3]["text"] + " @"}, "\\ud83d\\ude00")
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join([good[0], bad_text, good[1], bad_id, bad_url, pair] + good[2:]) + "\n", encoding="utf-8")
    recipe = write_recipe(tmp_path, [{"path": str(source), "language": "sw"}])
    result = run_filter(str(recipe))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [(q["line"], q["reason"]) for q in out["quarantine"]] == [(2, "invalid_unicode"), (4, "invalid_unicode"), (5, "invalid_unicode")]
    assert all(q["file"] == str(source) for q in out["quarantine"])
    assert "'text'" in out["quarantine"][0]["detail"] and "'id'" in out["quarantine"][1]["detail"] and "'url'" in out["quarantine"][2]["detail"]
    assert "\\ud800" in out["quarantine"][0]["raw"]  # the line as read
    kept = {d["id"]: d for d in out["kept"]}
    assert set(kept) == {r["id"] for r in rows} | {"emoji"}  # an escaped pair is a real character
    assert kept["emoji"]["text"].endswith("\U0001F600")
    assert "invalid_unicode" in result.stdout


def test_lone_surrogates_in_parquet_and_hub_rows_are_quarantined(tmp_path):
    rows = read_corpus("sw", limit=3)
    # Arrow keeps a string column's bytes as written: surrogate code points encoded as bytes
    # (CESU-8, as some writers do) are not UTF-8 and cannot become a Python str.
    texts = [r["text"].encode() for r in rows[:2]] + ["kwa heri ".encode() + b"\xed\xa0\x80"] + [rows[2]["text"].encode()]
    column = pa.array(texts, type=pa.binary()).view(pa.string())
    pq.write_table(pa.table({"id": ["p0", "p1", "p2", "p3"], "text": column}), tmp_path / "part.parquet")
    hub = tmp_path / "hubrepo" / "sw"
    hub.mkdir(parents=True)
    (hub / "train.jsonl").write_text(
        json.dumps({"id": "h0", "text": rows[0]["text"]}) + "\n" + '{"id": "h1", "text": "habari \\ud800 yako"}\n', encoding="utf-8"
    )
    recipe = write_recipe(tmp_path, [
        {"path": str(tmp_path / "part.parquet"), "language": "sw"},
        {"path": f"hf:{tmp_path / 'hubrepo'}", "language": "sw"},
    ])
    result = run_filter(str(recipe), env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [d["id"] for d in out["kept"]] == ["p0", "p1", "p3"]
    parquet, hub_file = out["quarantine"]
    assert (parquet["file"], parquet["line"], parquet["reason"]) == (str(tmp_path / "part.parquet"), 3, "invalid_unicode")
    assert "'text'" in parquet["detail"] and json.loads(parquet["raw"])["text"] == "kwa heri \\xed\\xa0\\x80"
    # datasets' JSON reader refuses the whole file: the stream ends there, named, and the run goes on
    assert hub_file["file"] == f"hf:{tmp_path / 'hubrepo'}" and hub_file["reason"].startswith("unreadable_file:")
    assert "surrogate" in hub_file["reason"]


def test_an_undecodable_file_name_is_shown_escaped(tmp_path):
    """A file name that is not UTF-8 reaches Python as lone surrogates: the run writes it escaped."""
    folder = os.fsencode(tmp_path)
    rows = read_corpus("sw", limit=2)
    with open(folder + b"/caf\xe9.jsonl", "wb") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode() + b"{broken\n")
    recipe = write_recipe(tmp_path, [{"path": str(tmp_path / "*.jsonl"), "language": "sw"}])
    result = run_filter(str(recipe))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [d["id"] for d in out["kept"]] == [r["id"] for r in rows]
    assert out["kept"][0]["metadata"]["origin"] == f"{tmp_path}/caf\\xe9.jsonl:1"
    assert out["quarantine"][0]["file"] == f"{tmp_path}/caf\\xe9.jsonl"


# --- colliding document ids ------------------------------------------------------------------


def _colliding_sources(tmp_path: Path) -> tuple[list[dict], Path]:
    """Two sources; `dup` in a.jsonl (line 2) and b.jsonl (line 1); the number 7 in a.jsonl
    (line 3) and the string "7" in the second source (line 2), all distinct texts."""
    rows = read_corpus("sw", limit=8)
    write_jsonl(tmp_path / "a.jsonl", [
        {"id": "a0", "text": rows[0]["text"]}, {"id": "dup", "text": rows[1]["text"]}, {"id": 7, "text": rows[2]["text"]},
    ])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "dup", "text": rows[3]["text"]}, {"id": "b1", "text": rows[4]["text"]}])
    other = tmp_path / "other"
    other.mkdir()
    write_jsonl(other / "x.jsonl", [{"id": "x0", "text": rows[5]["text"]}, {"id": "7", "text": rows[6]["text"]}, {"id": "dup", "text": rows[7]["text"]}])
    sources = [{"path": str(tmp_path / "*.jsonl"), "language": "sw"}, {"path": str(other / "x.jsonl"), "language": "sw", "name": "web:crawl"}]
    return sources, other / "x.jsonl"


def test_repeated_ids_keep_the_first_by_source_order_and_name_it(tmp_path):
    sources, other = _colliding_sources(tmp_path)
    generator = {"backend": "tgi", "model": "test/model", "endpoints": ["http://127.0.0.1:9"]}  # a dry run calls nothing
    recipe = write_recipe(tmp_path, sources, curation={"models": {"generator": generator}})
    result = run_filter(str(recipe))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [d["id"] for d in out["kept"]] == ["a0", "dup", "7", "b1", "x0"]
    assert out["kept"][1]["metadata"]["origin"] == f"{tmp_path / 'a.jsonl'}:2"
    repeated = [(r["id"], r["metadata"]["origin"], r["reason"], r["first_file"], r["first_line"]) for r in out["rejects"]]
    assert repeated == [
        ("dup", f"{tmp_path / 'b.jsonl'}:1", "duplicate_id", str(tmp_path / "a.jsonl"), 2),
        ("7", f"{other}:2", "duplicate_id", str(tmp_path / "a.jsonl"), 3),
        ("dup", f"{other}:3", "duplicate_id", str(tmp_path / "a.jsonl"), 2),
    ]
    summary = json.loads((tmp_path / "run" / "filtered" / "sw" / "summary.json").read_text())
    assert summary["kept"] == 5 and summary["rejected"] == {"duplicate_id": 3}
    # curate gets one document per id: its own `input:duplicate_id` check has nothing left to drop
    plan = subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", "curate", str(recipe), "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert "documents: 5" in plan.stdout and "duplicate ids" not in plan.stdout


def test_repeated_ids_take_no_part_in_dedup(tmp_path):
    """b.jsonl's `dup` repeats a.jsonl's id with the text of x.jsonl's `y`: dedup must keep `y`
    (not reject it as a duplicate of a document that is itself dropped for its id)."""
    rows = read_corpus("sw", limit=3)
    write_jsonl(tmp_path / "a.jsonl", [{"id": "dup", "text": rows[0]["text"]}, {"id": "z", "text": rows[2]["text"]}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "dup", "text": rows[1]["text"]}, {"id": "z2", "text": rows[2]["text"]}])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "y", "text": rows[1]["text"]}])
    recipe = write_recipe(tmp_path, [{"path": str(tmp_path / "*.jsonl"), "language": "sw"}], [{"type": "dedup"}])
    result = run_filter(str(recipe))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "run")
    assert [d["id"] for d in out["kept"]] == ["dup", "z", "y"]
    assert [(r["id"], r["reason"]) for r in out["rejects"]] == [("dup", "duplicate_id"), ("z2", "dedup:exact_duplicate_of:z")]
    summary = json.loads((tmp_path / "run" / "filtered" / "sw" / "summary.json").read_text())
    assert summary["block_stats"]["dedup"]["in"] == 4 and summary["block_stats"]["dedup"]["kept"] == 3


def test_repeated_ids_give_the_same_files_on_rerun_resume_and_any_worker_count(tmp_path):
    sources, _ = _colliding_sources(tmp_path)
    recipe = write_recipe(tmp_path, sources, [{"type": "exact_dedup"}])
    folder = tmp_path / "run" / "filtered" / "sw"

    def files() -> dict[str, bytes]:
        return language_files(folder)

    assert run_filter(str(recipe), "--workers", "1").returncode == 0
    first = files()
    assert b"duplicate_id" in first["rejects"] and b"duplicate_id" in first["removals.jsonl"]
    assert run_filter(str(recipe), "--workers", "2").returncode == 0  # finished tasks, merged again
    assert files() == first
    # A task killed before its marker runs again, beside finished ones: the same files.
    (folder / "tasks" / "task-00001" / "done.json").unlink()
    assert run_filter(str(recipe), "--workers", "2").returncode == 0
    assert files() == first


def test_repeated_ids_without_dedup_in_an_old_task_folder(tmp_path):
    """Tasks finished before tasks wrote ids.json (no dedup block): ids come from kept.jsonl."""
    sources, _ = _colliding_sources(tmp_path)
    recipe = write_recipe(tmp_path, sources)
    folder = tmp_path / "run" / "filtered" / "sw"
    assert run_filter(str(recipe)).returncode == 0
    first = language_files(folder)
    for ids in folder.glob("tasks/*/ids.json"):
        ids.unlink()
    assert run_filter(str(recipe)).returncode == 0
    assert language_files(folder) == first and first["rejects"].count(b"duplicate_id") == 3


def test_repeated_ids_within_one_shard(tmp_path):
    """`--shard I/N` runs are reduced per shard: a repeat in the same shard is caught there."""
    rows = read_corpus("sw", limit=4)
    # Records 0 and 2 land in shard 0 of 2, records 1 and 3 in shard 1.
    write_jsonl(tmp_path / "a.jsonl", [{"id": "dup", "text": rows[0]["text"]}, {"id": "b", "text": rows[1]["text"]},
                                       {"id": "dup", "text": rows[2]["text"]}, {"id": "d", "text": rows[3]["text"]}])
    recipe = write_recipe(tmp_path, [{"path": str(tmp_path / "a.jsonl"), "language": "sw"}])
    assert run_filter(str(recipe), "--shard", "0/2").returncode == 0
    shard = tmp_path / "run" / "filtered" / "sw" / "shard-00000-of-00002"
    out = {"kept": kept_rows(shard), "rejects": reject_rows(shard)}
    assert [d["id"] for d in out["kept"]] == ["dup"]
    assert [(r["id"], r["first_file"], r["first_line"]) for r in out["rejects"]] == [("dup", str(tmp_path / "a.jsonl"), 1)]
