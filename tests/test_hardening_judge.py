"""Issue 24, section 6: the judge's answer is the one its reply commits to, every judge reply is
kept in `curation/<lang>/judge_replies.jsonl`, generated text that is a server's error page or
holds control characters never becomes a record, and a folder made before these rules keeps its
labels on resume (unless `--force`).

The parser table is unit-tested; the rest runs the real `xinstruction curate` in a subprocess
against the TGI-protocol test server (tests/tgi_server.py), whose replies the tests script."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from corpora import read_corpus
from fake_llm import reply_for_prompt, section
from xinstruction_dataset.curation.config import GenerateConfig, JudgeConfig
from xinstruction_dataset.curation.generate import instruction_problem, text_problem
from xinstruction_dataset.curation.judge import parse_label

# -- the parser ---------------------------------------------------------------------------------

THREE_LEVEL = [
    # an explicit field wins over every word before it
    ("This pair is not good. Label: bad", "bad"),
    ("The instruction is good, but the response answers another question.\nLabel: needs_refinement", "needs_refinement"),
    ("**Label:** Needs Refinement", "needs_refinement"),
    ("Label: **bad**", "bad"),
    ("### Label:\nbad", "bad"),
    ("Label (good, needs_refinement or bad): good", "good"),
    ("Verdict - GOOD.", "good"),
    ("My answer is bad: the response is unrelated.", "bad"),
    ("Label: good\nOn reflection the response misses the point.\nFinal label: bad", "bad"),
    ('Label: "needs refinement"', "needs_refinement"),
    ("label = [good]", "good"),
    # the last standalone label, never a negated one or one of a list of choices
    (" good", "good"),
    ("Bad.", "bad"),
    ("__good__", "good"),
    ("`needs_refinement`", "needs_refinement"),
    ("NEEDS-REFINEMENT", "needs_refinement"),
    ("The pair is good.", "good"),
    ("This is good, not bad.", "good"),
    ("It is not good; it is bad.", "bad"),
    ("The instruction is vague, so the pair needs some refinement.", "needs_refinement"),
    ("The pair does not need refinement. It is good.", "good"),
    ("Not perfect, but good.", "good"),
    ("The instruction is good but the response is bad.", "bad"),
    ("Answer with one label: good, needs_refinement or bad.\nbad", "bad"),
    (" good\nThe response fits.", "good"),
    ("good.\n\nExplanation: the response answers the instruction well, not bad at all.", "good"),
    ("No refinement needed, good.", "good"),
    ("Bad, bad pair.", "bad"),
    ("Good question! The pair is bad.", "bad"),
    # no commitment: malformed (retried, then `judge:malformed`)
    ("This pair is not good.", None),
    ("It isn't really bad.", None),
    ("Good or bad? Hard to say.", None),
    ("good, needs_refinement or bad", None),
    ("Neither good nor bad.", None),
    ("The pair does not need refinement.", None),
    ("Label: unclear", None),
    ("goodness gracious", None),
    ("502 Bad Gateway", None),
    ("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", None),
    ("", None),
]

FIVE_POINT = [
    ("On a scale of 1 to 5, I would rate this pair 5.", 5),
    ("Score: 4/5", 4),
    ("Score: 4 / 5", 4),
    ("**Score:** 3", 3),
    ("Score: **2** out of 5", 2),
    ("Score (1-5): 4", 4),
    ("Rating: 2 (the response answers only part of it)", 2),
    ("I'd give it 4 out of 5.", 4),
    ("Overall: 3/5", 3),
    ("A score of 1: the response is unrelated.", 1),
    ("Score: four", 4),
    ("The response covers 3 of the 4 points the instruction asks for. Score: 3", 3),
    ("3 of the 4 points are covered, so I give it a 4.", 4),
    ("Not a 5, more like a 3.", 3),
    ("I would rate this pair a 4 on a scale from 1 to 5.", 4),
    ("Out of 5, I'd say 2.", 2),
    ("Score: 3\nOn second thought the instruction is clearer than I said. Final score: 4", 4),
    ("5\n\n1. The instruction is clear.\n2. The response answers it.", 5),
    ("5: a clear, specific instruction...\n4: a good pair with small flaws.\n3: ...\nMy score: 4", 4),
    ("4: a good pair with small flaws.", 4),
    (" 5", 5),
    ("4\n\nThe response covers 2 of the 3 points.", 4),
    ("Score (1 = worst, 5 = best): 2", 2),
    ("5 - a clear, specific instruction and a response that answers it fully.", 5),
    ("I give it 1.", 1),
    # off the scale or uncommitted: malformed
    ("Score: 8/10", None),
    ("Score: 4.5", None),
    ("I rate it 8 out of 10.", None),
    ("4 or 5", None),
    ("I'd rate it between 3 and 4.", None),
    ("10", None),
    ("Scores run from 1 to 5.", None),
    ("On a 5-point scale this is hard to judge.", None),
    ("none", None),
]


@pytest.mark.parametrize("reply, label", THREE_LEVEL)
def test_three_level_reply_is_read_as_what_it_commits_to(reply: str, label: str | None) -> None:
    parsed = parse_label(reply, JudgeConfig())
    assert (parsed[0] if parsed else None) == label


@pytest.mark.parametrize("reply, score", FIVE_POINT)
def test_five_point_reply_is_read_as_what_it_commits_to(reply: str, score: int | None) -> None:
    parsed = parse_label(reply, JudgeConfig(scale="five_point"))
    assert (parsed[1] if parsed else None) == score


def test_the_legacy_parser_is_kept_as_it_was() -> None:
    """v1 is what folders made before versions were recorded keep: the first match."""
    assert parse_label("This pair is not good. Label: bad", JudgeConfig(), "v1") == ("good", None)
    assert parse_label("On a scale of 1 to 5, I would rate this pair 5.", JudgeConfig(scale="five_point"), "v1") == ("bad", 1.0)


# -- the instruction checks ---------------------------------------------------------------------

NGINX_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
DOCUMENT = "Serikali ya Kenya imetangaza mpango mpya wa kusaidia wakulima wadogo katika maeneo kame."


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Describe the new programme\x00 for small farmers in Kenya.", "control_characters"),
        ("Describe the new programme for small farmers\x1b[0m in Kenya.", "control_characters"),
        ("Describe the new programme for small farmers in Kenya.\x7f", "control_characters"),
        ("Describe the new programme for small farmers\x85 in Kenya.", "control_characters"),
        (NGINX_502, "server_error_page"),
        ("<html><head><title>404 Not Found</title></head><body>Write about farms.</body></html>", "server_error_page"),
        ("Error 503 Service Unavailable: the upstream server did not answer in time.", "server_error_page"),
        ("  <!DOCTYPE html><html><body><p>Describe the programme for small farmers.</p></body></html>", "markup"),
        ("<HTML lang=en><body>Describe the programme for small farmers in Kenya.</body>", "markup"),
        ("Describe the new programme for small farmers in Kenya.\tIn detail.", None),
        ("Explain why <b>bold</b> text is used in Kenyan newspapers.", None),
    ],
)
def test_text_no_record_may_hold(text: str, reason: str | None) -> None:
    assert text_problem(text) == reason


def test_control_characters_folded_by_parsing_are_still_caught() -> None:
    """Joining lines turns a vertical tab or a file separator into a space: the raw text shows it."""
    instruction = "Describe the new programme for small farmers in Kenya."
    assert instruction_problem(instruction, DOCUMENT, GenerateConfig(), source="Describe the new\x1cprogramme for small farmers in Kenya.") == "control_characters"
    assert instruction_problem(instruction, DOCUMENT, GenerateConfig(), source=instruction) is None
    assert instruction_problem(NGINX_502.replace("\r\n", " "), DOCUMENT, GenerateConfig(), checks="v1") is None  # the legacy checks


# -- the real CLI against the TGI-protocol server -----------------------------------------------

DOCS = 8


def story(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def write_recipe(root: Path, server_url: str, docs: list[dict], **judge) -> Path:
    """A recipe whose models are the TGI-protocol server and whose embedder is a TEI-protocol
    one (no embedding model to load: each run starts in seconds)."""
    kept = root / "filtered" / "sw" / "kept.jsonl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server_url], "timeout": 5.0, "retries": 2, "backoff": 0.05, "backoff_max": 0.2}
    curation = {
        "models": {"generator": model},
        "generate": {"candidates": 1},
        "refine": {"rounds": 1},
        "judge": judge,
        "diversify": {"target_size": DOCS, "embedding": {"backend": "tei", "url": embedder_url(), "model": "test/embedder"}},
    }
    recipe = {"name": "judge-hardening", "languages": ["sw"], "output_dir": str(root), "curation": curation}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


_TEI = []


def embedder_url() -> str:
    """One TEI-protocol server for the module's runs (its vectors are a function of the text)."""
    if not _TEI:
        from tei_server import TEIServer

        _TEI.append(TEIServer().start())
    return _TEI[0].url


@pytest.fixture(scope="module", autouse=True)
def _stop_embedder():
    yield
    while _TEI:
        _TEI.pop().stop()


def documents(n: int = DOCS) -> list[dict]:
    return [{"id": r["id"], "text": r["text"][:400], "url": r["url"], "source": r["source"]} for r in read_corpus("sw", n)]


def curate(recipe: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xinstruction_dataset.cli", "curate", str(recipe), "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_curate(recipe: Path, *extra: str) -> str:
    process = curate(recipe, *extra)
    out, _ = process.communicate(timeout=240)
    text = out.decode(errors="replace")
    assert process.returncode in (0, 1), text[-3000:]  # 1: the run is complete, some documents curated nothing
    return text


def records(root: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((root / "curated" / "sw").glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]


def rejects(root: Path) -> dict[str, dict]:
    lines = (root / "curation" / "sw" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["doc_id"]: r for r in map(json.loads, lines)}


def judge_replies(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "curation" / "sw" / "judge_replies.jsonl").read_text(encoding="utf-8").splitlines()]


def outputs(root: Path) -> dict[str, bytes]:
    files = sorted((root / "curated" / "sw").glob("*.jsonl"))
    files += [root / "curation" / "sw" / name for name in ("summary.json", "rejects.jsonl", "judge_replies.jsonl")]
    return {f.name: f.read_bytes() for f in files}


class Judge:
    """The test model: instructions from fake_llm; the judge's reply for a document picked by the
    story number its instruction names (`verdicts`: story -> reply; others say `default`)."""

    def __init__(self, verdicts: dict[str, str], default: str = "Label: good") -> None:
        self.verdicts, self.default = verdicts, default

    def __call__(self, prompt: str, parameters: dict) -> str:
        if "### Label" in prompt or "### Score" in prompt:
            instruction = section(prompt, "Instruction")
            return next((reply for key, reply in self.verdicts.items() if key in instruction), self.default)
        return reply_for_prompt(prompt)


@pytest.mark.timeout(300)
def test_a_not_good_then_label_bad_reply_rejects_the_pair_and_every_reply_is_kept(tmp_path: Path, start_tgi_server) -> None:
    docs = documents()
    bad, refine, scored = (story(d["text"]) for d in docs[:3])
    model = Judge({
        bad: "This pair is not good. Label: bad",
        refine: "The instruction is good.\n**Label:** needs refinement",
        scored: "I thought it was bad at first, but no.\nLabel: good",
    })
    server = start_tgi_server(reply=model, slots=4, latency=0.0, max_input_tokens=2048, max_total_tokens=4096)
    recipe = write_recipe(tmp_path, server.url, docs)
    run_curate(recipe)

    rejected = rejects(tmp_path)
    assert rejected[docs[0]["id"]]["reason"] == "judge:bad"
    curated = {r["provenance"]["source_id"]: r for r in records(tmp_path)}
    assert docs[0]["id"] not in curated
    # needs refinement: rewritten (the rewrite names no story, so it is judged good) and curated in round 1
    assert curated[docs[1]["id"]]["provenance"]["refinement_round"] == 1
    assert curated[docs[2]["id"]]["provenance"]["label"] == "good"

    # Every judged pair's reply is in the side file, in document-id order; records stay as they were.
    rows = judge_replies(tmp_path)
    assert [row["doc_id"] for row in rows] == sorted(d["id"] for d in docs)
    by_doc = {row["doc_id"]: row["judgements"] for row in rows}
    assert [(j["round"], j["label"], j["reply"]) for j in by_doc[docs[0]["id"]]] == [(0, "bad", "This pair is not good. Label: bad")]
    assert [(j["round"], j["label"]) for j in by_doc[docs[1]["id"]]] == [(0, "needs_refinement"), (1, "good")]
    assert by_doc[docs[1]["id"]][1]["instruction"].startswith("Describe the events")
    assert all("reply" not in json.dumps(r["provenance"]) for r in curated.values())
    summary = json.loads((tmp_path / "curation" / "sw" / "summary.json").read_text())
    assert summary["versions"] == {"judge_parser": "v2", "instruction_checks": "v2"}
    assert json.loads((tmp_path / "curation" / "versions.json").read_text()) == summary["versions"]


@pytest.mark.timeout(300)
def test_five_point_score_after_a_scale_phrase(tmp_path: Path, start_tgi_server) -> None:
    docs = documents(4)
    low = story(docs[0]["text"])
    model = Judge({low: "On a scale of 1 to 5, I would rate this pair 1."}, default="On a scale of 1 to 5, I would rate this pair 5.")
    server = start_tgi_server(reply=model, slots=4, latency=0.0, max_input_tokens=2048, max_total_tokens=4096)
    run_curate(write_recipe(tmp_path, server.url, docs, scale="five_point"))
    curated = {r["provenance"]["source_id"]: r["provenance"] for r in records(tmp_path)}
    assert {curated[d["id"]]["score"] for d in docs[1:]} == {5.0}
    assert rejects(tmp_path)[docs[0]["id"]]["reason"] == "judge:bad"


def error_page_generator(poisoned: dict[str, str]):
    """Instructions from fake_llm, but the documents named in `poisoned` (text start -> reply)
    get the given reply, a 200 with valid JSON as a misbehaving proxy sends it."""

    def reply(prompt: str, parameters: dict) -> str:
        if prompt.rstrip().endswith("### English Instruction:"):
            text = section(prompt, "Text")
            for start, raw in poisoned.items():
                if text.startswith(start):
                    return raw
        if "### Label" in prompt:
            return "good"
        return reply_for_prompt(prompt)

    return reply


@pytest.mark.timeout(300)
def test_error_page_and_control_character_instructions_are_rejected_with_their_reasons(tmp_path: Path, start_tgi_server) -> None:
    docs = documents()
    poisoned = {
        docs[0]["text"][:40]: NGINX_502,
        docs[1]["text"][:40]: " Write a short news report about the farming programme\x00 described here.",
        docs[2]["text"][:40]: " <!DOCTYPE html><html><body>Write a short news report about the rainfall in Kenya.</body></html>",
        docs[3]["text"][:40]: " Write a short news report about the elections\x1b[31m in the capital city.",
    }
    server = start_tgi_server(reply=error_page_generator(poisoned), slots=4, latency=0.0, max_input_tokens=2048, max_total_tokens=4096)
    run_curate(write_recipe(tmp_path, server.url, docs))
    rejected = rejects(tmp_path)
    assert rejected[docs[0]["id"]]["reason"] == "generate:server_error_page"
    assert rejected[docs[1]["id"]]["reason"] == "generate:control_characters"
    assert rejected[docs[2]["id"]]["reason"] == "generate:markup"
    assert rejected[docs[3]["id"]]["reason"] == "generate:control_characters"
    exported = [r["instruction"] for r in records(tmp_path)]
    assert exported and not any("<" in i or "\x00" in i or "\x1b" in i for i in exported)


@pytest.mark.timeout(400)
def test_judge_replies_are_identical_after_a_kill_and_resume(tmp_path: Path, start_tgi_server) -> None:
    docs = documents(16)
    verdicts = {story(d["text"]): v for d, v in zip(docs, ["Label: bad", "needs_refinement", "???", "Score: none"] * 4)}
    calls: list[str] = []
    judge = Judge(verdicts)

    def model(prompt: str, parameters: dict) -> str:
        calls.append(prompt)
        return judge(prompt, parameters)

    server = start_tgi_server(reply=model, slots=2, latency=0.03, max_input_tokens=2048, max_total_tokens=4096)
    clean = write_recipe(tmp_path / "clean", server.url, docs)
    run_curate(clean)
    total = len(calls)

    killed = write_recipe(tmp_path / "killed", server.url, docs)
    calls.clear()
    process = curate(killed)
    deadline = time.monotonic() + 120
    while process.poll() is None and len(calls) < total // 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_curate(killed)
    assert outputs(tmp_path / "killed") == outputs(tmp_path / "clean")
    rows = judge_replies(tmp_path / "killed")
    assert [row["doc_id"] for row in rows] == sorted(d["id"] for d in docs)
    malformed = [j for row in rows for j in row["judgements"] if j["label"] is None]
    assert {j["attempt"] for j in malformed} == {0, 1}  # a malformed reply and its retry, both kept


@pytest.mark.timeout(400)
def test_a_folder_made_before_keeps_its_labels_on_resume_unless_forced(tmp_path: Path, start_tgi_server) -> None:
    """A folder curated by a toolkit that recorded no versions is simulated by removing the
    record (the rest of what it wrote is the same); its labels must not change on resume."""
    docs = documents()
    first = story(docs[0]["text"])
    model = Judge({first: "This pair is not good. Label: bad"})
    server = start_tgi_server(reply=model, slots=4, latency=0.0, max_input_tokens=2048, max_total_tokens=4096)
    recipe = write_recipe(tmp_path, server.url, docs)
    run_curate(recipe)
    fingerprint_before = (tmp_path / "run" / "fingerprint.json").read_bytes()

    # Made before: no versions file, no versions in the meta and summary files, labels of v1.
    (tmp_path / "curation" / "versions.json").unlink()
    for meta in (tmp_path / "curation" / "sw" / "work").glob("meta-*.json"):
        data = json.loads(meta.read_text())
        del data["versions"]
        meta.write_text(json.dumps(data))
    out = run_curate(recipe)
    assert "keeps judge parser v1, instruction checks v1" in out and "--force" in out
    assert json.loads((tmp_path / "curation" / "versions.json").read_text()) == {"judge_parser": "v1", "instruction_checks": "v1"}
    summary = json.loads((tmp_path / "curation" / "sw" / "summary.json").read_text())
    assert "versions" not in summary  # absent means v1: the bytes of a legacy folder stay as they were
    curated = {r["provenance"]["source_id"]: r["provenance"] for r in records(tmp_path)}
    assert curated[docs[0]["id"]]["label"] == "good"  # the legacy parser's reading, kept
    legacy = outputs(tmp_path)
    run_curate(recipe)
    assert outputs(tmp_path) == legacy  # and it stays so, run after run
    assert (tmp_path / "run" / "fingerprint.json").read_bytes() == fingerprint_before

    out = run_curate(recipe, "--force")
    assert "relabelling with judge parser v2" in out
    assert rejects(tmp_path)[docs[0]["id"]]["reason"] == "judge:bad"
    assert json.loads((tmp_path / "curation" / "versions.json").read_text()) == {"judge_parser": "v2", "instruction_checks": "v2"}



# -- the versions record ------------------------------------------------------------------------


def test_versions_are_recorded_once_and_checked(tmp_path: Path) -> None:
    from xinstruction_dataset.curation.versions import CURRENT, LEGACY, folder_versions
    from xinstruction_dataset.layout import RunLayout

    layout = RunLayout(tmp_path / "new")
    assert folder_versions(layout, force=False, write=False) == CURRENT and not layout.versions_file.exists()  # a dry run
    assert folder_versions(layout, force=False) == CURRENT
    assert json.loads(layout.versions_file.read_text()) == {"judge_parser": "v2", "instruction_checks": "v2"}

    old = RunLayout(tmp_path / "old")
    (old.root / "curation").mkdir(parents=True)
    (old.root / "curation" / "config.yaml").write_text("curation: {}\n")
    assert folder_versions(old, force=False) == LEGACY
    assert folder_versions(old, force=False) == LEGACY  # recorded: the same on every resume
    assert folder_versions(old, force=True) == CURRENT
    assert folder_versions(old, force=False) == CURRENT

    old.versions_file.write_text('{"judge_parser": "v9"}')
    with pytest.raises(ValueError, match=r"versions.json: judge_parser 'v9' is not one this toolkit knows \(v1, v2\)"):
        folder_versions(old, force=False)
    old.versions_file.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable .*pass --force"):
        folder_versions(old, force=False)
    assert folder_versions(old, force=True) == CURRENT


def test_shards_labelled_with_other_rules_are_not_merged(tmp_path: Path) -> None:
    from xinstruction_dataset.curation.merge import _same_versions

    new, legacy = {"versions": {"judge_parser": "v2", "instruction_checks": "v2"}}, {}
    assert _same_versions([new, new], "sw").judge_parser == "v2"
    assert _same_versions([legacy, legacy], "sw").judge_parser == "v1"  # absent: the legacy rules
    with pytest.raises(ValueError, match=r"sw: shard 1 was labelled with judge parser v1, instruction checks v1, shard 0 with judge parser v2"):
        _same_versions([new, legacy], "sw")
