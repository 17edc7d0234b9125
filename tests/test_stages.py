"""The curation stages on a deterministic fake backend: parsing, every rejection reason, judge
malformed handling, refinement rounds, diversify picks, config round trips, sharded == whole."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from fake_llm import FakeBackend, default_reply, section
from corpora import read_corpus
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallScheduler
from xinstruction_dataset.curation.config import CurationConfig, GenerateConfig, JudgeConfig
from xinstruction_dataset.curation.config import ROLES
from xinstruction_dataset.curation.curate import Models, run_curation
from xinstruction_dataset.curation.engine import Engine, LanguageJob
from xinstruction_dataset.curation.flow import build_stages
from xinstruction_dataset.curation.stage import DONE, Work
from xinstruction_dataset.curation.diversify import allocate, cluster, embed_texts, pick_per_cluster
from xinstruction_dataset.curation.diversify.embed import Embedder
from xinstruction_dataset.curation.generate import copy_overlap, instruction_problem, parse_instruction
from xinstruction_dataset.curation.judge import parse_label
from xinstruction_dataset.curation.pairs import Pair, Reject
from xinstruction_dataset.curation.prompts import load_prompt
from xinstruction_dataset.curation.refine import parse_response
from xinstruction_dataset.documents import Document
from xinstruction_dataset.recipe import Recipe

SW_TEXT = (
    "Serikali ya Kenya imetangaza mpango mpya wa kusaidia wakulima wadogo katika maeneo kame. "
    "Mpango huo utatoa mbegu bora na mbolea kwa bei nafuu kwa wakulima zaidi ya elfu kumi."
)
DESIGN_PROMPT = (
    "Below is a text that describes a candidate output. Write an English instruction that can take the given text as an appropriate answer.\n\n"
    "### Text:\n{text}\n\n### English Instruction:\n"
)


def docs(n: int = 3) -> list[Document]:
    return [Document(id=row["id"], text=row["text"][:600], url=row["url"], source=row["source"]) for row in read_corpus("sw", n)]


@pytest.fixture
def cache(tmp_path: Path):
    with CallCache(tmp_path / "calls.sqlite") as c:
        yield c


@dataclass
class Labelled:
    """What the engine made of some documents: pooled pairs and rejects (by document id)."""

    pool: list[Pair] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)

    def add(self, outcome: Work | Reject) -> None:
        self.counts.update(outcome.events)
        if isinstance(outcome, Reject):
            self.rejects.append(outcome)
        else:
            assert outcome.next == DONE
            self.pool.append(outcome.pairs[0])

    def sorted(self) -> "Labelled":
        self.pool.sort(key=lambda p: p.doc.id)
        self.rejects.sort(key=lambda r: r.doc_id)
        return self


def engine_for(backend: FakeBackend, cache: CallCache, config: CurationConfig) -> Engine:
    scheduler = CallScheduler(backend, cache)
    return Engine(build_stages(config), {role: scheduler for role in ROLES}, progress=False)


def label(documents: list[Document], backend: FakeBackend, cache: CallCache, config: CurationConfig) -> Labelled:
    """Run `documents` through the real engine (every stage, one shared scheduler)."""
    out = Labelled()
    job = LanguageJob("sw", documents, out, finish=lambda: None)
    asyncio.run(engine_for(backend, cache, config).run([job]))
    return out.sorted()


def advance(items: list[Work], backend: FakeBackend, cache: CallCache, config: CurationConfig) -> Labelled:
    """Run work items that start at any stage (e.g. pairs straight to the judge)."""
    out = Labelled()
    engine = engine_for(backend, cache, config)

    async def main() -> None:
        for outcome in await asyncio.gather(*(engine.advance(item, out.calls) for item in items)):
            out.add(outcome)

    asyncio.run(main())
    return out.sorted()


# -- generate: parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" Summarize the news about the floods.", "Summarize the news about the floods."),
        ("Summarize the article.\n\n### Text:\nMore text", "Summarize the article."),
        ("Summarize the article.### Text: more", "Summarize the article."),
        ("\n\nInstruction: Explain how maize is grown.\nIn detail.", "Explain how maize is grown. In detail."),
        ("English Instruction: \"Describe the match.\"", "Describe the match."),
        ("### English Instruction:\n'Describe the match.'\n### Response:", "Describe the match."),
        ("**Instruction:** List the new school rules.", "List the new school rules."),
        ("“Write a poem about rain.”", "Write a poem about rain."),
        ("\"Write a poem about rain, cut off by the token lim", "Write a poem about rain, cut off by the token lim"),
        ("Write about C# and F# in schools.", "Write about C# and F# in schools."),
        ("###", ""),
        ("   \n\n  ", ""),
        ("", ""),
    ],
)
def test_parse_instruction(raw: str, expected: str) -> None:
    assert parse_instruction(raw) == expected


def test_instruction_problems_each_reason() -> None:
    config = GenerateConfig(max_chars=120)
    assert instruction_problem("", SW_TEXT, config) == "empty"
    assert instruction_problem("Summarize.", SW_TEXT, config) == "too_short"
    assert instruction_problem("Explain " + "the new farming programme in detail " * 5, SW_TEXT, config) == "too_long"
    assert instruction_problem("Eleza mpango mpya wa serikali kwa wakulima wadogo.", SW_TEXT, config).startswith("not_english:")
    copied = "Serikali ya Kenya imetangaza mpango mpya wa kusaidia wakulima wadogo"
    assert instruction_problem(copied, SW_TEXT, GenerateConfig(min_english_prob=0.0)) in ("copied_from_text", "not_english:sw")
    assert instruction_problem("Describe the new government programme for small farmers in Kenya.", SW_TEXT, config) is None


def test_copy_overlap() -> None:
    doc = "the quick brown fox jumps over the lazy dog".split()
    assert copy_overlap("the quick brown fox".split(), doc) == 1.0
    assert copy_overlap("a quick brown fox ran".split(), doc) == pytest.approx(3 / 5)
    assert copy_overlap("write a story".split(), doc) == 0.0
    assert copy_overlap(["fox"], doc) == 1.0  # shorter than a 3-gram: whole-phrase match
    config = GenerateConfig(min_english_prob=0.0)
    english_doc = "The government announced a new programme to help small farmers in dry areas with seeds."
    assert instruction_problem("The government announced a new programme to help small farmers.", english_doc, config) == "copied_from_text"


def test_generation_prompt_is_the_papers_verbatim() -> None:
    prompt = load_prompt("generate", "instruction_v1")
    assert prompt.text == DESIGN_PROMPT
    assert prompt.version == "generate:instruction_v1"
    assert prompt.render(text="{not a field}").count("{not a field}") == 1


# -- generate: stage ---------------------------------------------------------------------------


def test_generate_candidates_seeds_and_reasons(cache: CallCache) -> None:
    documents = docs(3)
    bad_doc = documents[1].id

    def reply(request):
        if not request.prompt.rstrip().endswith("### English Instruction:"):
            return default_reply(request)  # the judge: good
        text = section(request.prompt, "Text")
        if text.startswith(documents[1].text[:50]):
            return "Eleza habari hii kwa ufupi na kwa undani zaidi." if request.params.seed == 0 else ""
        if text.startswith(documents[2].text[:50]):
            raise RuntimeError("connection reset")
        return default_reply(request)

    backend = FakeBackend(reply)
    config = CurationConfig.from_dict({"generate": {"candidates": 2}, "refine": {"rounds": 0}})
    out = label(documents, backend, cache, config)
    generate_calls = [r for r in backend.calls if r.prompt.rstrip().endswith("### English Instruction:")]
    assert sorted({r.params.seed for r in generate_calls}) == [0, 1]
    assert out.counts["candidates_usable"] == 2 and [p.doc.id for p in out.pool] == [documents[0].id]
    assert out.pool[0].candidate == 0  # both judged good: the lower candidate number wins
    reasons = {r.doc_id: r.reason for r in out.rejects}
    assert reasons[bad_doc].startswith("generate:not_english:")
    assert [c["reason"] for c in next(r for r in out.rejects if r.doc_id == bad_doc).detail["candidates"]][1] == "empty"
    assert reasons[documents[2].id] == "generate:call_failed"
    assert "connection reset" in next(r for r in out.rejects if r.doc_id == documents[2].id).detail["candidates"][0]["raw"]
    # A second run is served from the cache: no new calls.
    calls = len(backend.calls)
    label(documents, backend, cache, config)
    assert len(backend.calls) == calls + 2  # only the failed calls are tried again


# -- judge -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, label",
    [
        (" good", "good"),
        ("Label: Needs refinement - the instruction is vague", "needs_refinement"),
        ("needs_refinement", "needs_refinement"),
        ("NEEDS-REFINEMENT", "needs_refinement"),
        ("**bad**: unrelated", "bad"),
        ("The pair is good.", "good"),
        ("I cannot decide.", None),
        ("", None),
        ("goodness gracious", None),
    ],
)
def test_parse_three_level(reply: str, label: str | None) -> None:
    parsed = parse_label(reply, JudgeConfig())
    assert (parsed[0] if parsed else None) == label


@pytest.mark.parametrize(
    "reply, expected",
    [(" 5", ("good", 5.0)), ("Score: 4/5", ("good", 4.0)), ("3", ("needs_refinement", 3.0)), ("I give it 1.", ("bad", 1.0)), ("10", None), ("4.5", None), ("none", None)],
)
def test_parse_five_point(reply: str, expected) -> None:
    assert parse_label(reply, JudgeConfig(scale="five_point")) == expected


def judge_items(documents: list[Document]) -> list[Work]:
    return [Work(d, "sw", "judge", pairs=(Pair(d, "Describe the news in this story.", d.text),)) for d in documents]


def test_judge_malformed_is_retried_once_with_a_new_seed_then_rejected(cache: CallCache) -> None:
    documents = docs(3)

    def reply(request):
        response = section(request.prompt, "Response")
        if response == documents[0].text:
            return "good"
        if response == documents[1].text:  # malformed, then fine on the retry
            return "???" if request.params.seed == 0 else "bad"
        return "I would rather not say."  # always malformed

    backend = FakeBackend(reply)
    out = advance(judge_items(documents), backend, cache, CurationConfig())
    assert [(p.doc.id, p.label) for p in out.pool] == [(documents[0].id, "good")]
    rejects = {r.doc_id: r for r in out.rejects}
    assert rejects[documents[1].id].reason == "judge:bad"
    assert rejects[documents[2].id].reason == "judge:malformed"
    assert rejects[documents[2].id].detail["replies"] == ["I would rather not say."] * 2
    assert out.counts["judge_round_0_malformed"] == 3
    assert len(backend.calls) == 5  # 3 first attempts + 2 retries (different keys: seed 1)
    assert out.pool[0].prompts == ("judge:judge_three_level_v1",)


def test_judge_five_point_keeps_score(cache: CallCache) -> None:
    backend = FakeBackend(lambda r: "Score: 3")
    config = CurationConfig.from_dict({"judge": {"scale": "five_point"}, "refine": {"rounds": 0, "keep_exhausted": True}})
    out = advance(judge_items(docs(1)), backend, cache, config)
    assert (out.pool[0].label, out.pool[0].score) == ("needs_refinement", 3.0)
    assert "### Score (1-5):" in backend.calls[0].prompt


# -- refine rounds -----------------------------------------------------------------------------


def config_with(**sections) -> CurationConfig:
    return CurationConfig.from_dict({"generate": {"candidates": 1}, **sections})


def run_labelling(documents, reply, config, cache):
    backend = FakeBackend(reply)
    return label(documents, backend, cache, config), backend


def test_refined_instruction_is_rejudged_and_records_its_round(cache: CallCache) -> None:
    def reply(request):
        if "### Label" in request.prompt:
            refined = section(request.prompt, "Instruction").startswith("Describe the events")
            return "good" if refined else "needs_refinement"
        return default_reply(request)

    out, backend = run_labelling(docs(2), reply, config_with(), cache)
    assert [(p.label, p.round) for p in out.pool] == [("good", 1), ("good", 1)]
    assert out.pool[0].instruction == "Describe the events reported in this news story in detail."
    assert out.pool[0].prompts == ("generate:instruction_v1", "judge:judge_three_level_v1", "refine:refine_instruction_v1")
    assert backend.count("### Improved English Instruction:") == 2
    assert out.counts["refine_round_1"] == 2 and not out.rejects


def test_refinement_stops_after_the_configured_rounds(cache: CallCache) -> None:
    def reply(request):
        return "needs_refinement" if "### Label" in request.prompt else default_reply(request)

    out, backend = run_labelling(docs(1), reply, config_with(refine={"rounds": 2}), cache)
    assert [r.reason for r in out.rejects] == ["refine:rounds_exhausted"]
    assert backend.count("### Improved English Instruction:") == 2  # one per round, fresh seed each
    kept, _ = run_labelling(docs(1), reply, config_with(refine={"rounds": 2, "keep_exhausted": True}), cache)
    assert [(p.label, p.round) for p in kept.pool] == [("needs_refinement", 2)]


def test_response_rewrite_must_stay_in_the_target_language(cache: CallCache) -> None:
    def reply(request):
        if "### Label" in request.prompt:
            return "needs_refinement" if section(request.prompt, "Response").startswith(SW_TEXT[:20]) else "good"
        if "### Improved Response" in request.prompt:
            english = "This news story explains a new programme that helps small farmers in dry regions."
            return english if "english" in section(request.prompt, "Instruction") else "Response: " + default_reply(request)
        return default_reply(request)

    documents = [Document(id="a", text=SW_TEXT), Document(id="b", text=SW_TEXT + " Wakulima wamefurahi.")]
    config = config_with(refine={"target": "response"})

    def generate_reply(request):
        if request.prompt.rstrip().endswith("### English Instruction:"):
            text = section(request.prompt, "Text")
            return "Write this story in english for young farmers please." if text == SW_TEXT else "Describe the new programme for small farmers."
        return reply(request)

    out, _ = run_labelling(documents, generate_reply, config, cache)
    assert [(r.doc_id, r.reason) for r in out.rejects] == [("a", "refine:wrong_language:en")]
    assert out.pool[0].response.startswith("Habari hii") and out.pool[0].round == 1


def test_parse_response() -> None:
    assert parse_response("Improved Response in Swahili: Habari njema.\n\nNa zaidi.\n### Instruction: x") == "Habari njema.\n\nNa zaidi."
    assert parse_response("   ") == ""


def test_bad_label_and_best_candidate(cache: CallCache) -> None:
    def reply(request):
        if "### Label" in request.prompt:
            return "bad"
        return default_reply(request)

    out, _ = run_labelling(docs(1), reply, config_with(generate={"candidates": 2}), cache)
    assert [r.reason for r in out.rejects] == ["judge:bad"]


# -- diversify ---------------------------------------------------------------------------------


class TableEmbedder(Embedder):
    def __init__(self, table: dict[str, list[float]]):
        self.model_id = "table"
        self.table = table
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_pick_best_label_then_nearest() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    distances = np.array([0.1, 0.5, 0.3, 0.2, 0.1])
    quality = np.array([10, 20, 20, 20, 20])  # needs_refinement, good, good | good, good
    assert pick_per_cluster(labels, distances, quality, 2).tolist() == [2, 4]
    assert pick_per_cluster(labels, distances, quality, 4).tolist() == [2, 1, 4, 3]  # runners-up fill


def test_cluster_separates_groups_and_allocation_sums_to_k() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)).astype(np.float32) * 10
    vectors = np.concatenate([c + rng.standard_normal((30, 16)).astype(np.float32) * 0.1 for c in centres])
    labels = cluster(vectors, 3, seed=0).labels
    assert len({labels[i * 30] for i in range(3)}) == 3
    assert all(len(set(labels[i * 30 : (i + 1) * 30])) == 1 for i in range(3))
    assert np.array_equal(labels, cluster(vectors, 3, seed=0).labels)  # seeded
    for k, sizes in [(10, [5, 3, 2]), (7, [100, 1, 1, 1]), (4, [10, 0, 3]), (5, [2, 2, 2, 2, 2, 2])]:
        shares = allocate(k, sizes)
        assert sum(shares) == k and all(0 <= s <= n for s, n in zip(shares, sizes))
    two_level = cluster(rng.standard_normal((3000, 8)).astype(np.float32), 1100, seed=0)
    assert two_level.labels.max() < 1100 and len(np.unique(two_level.labels)) > 1000


def test_embeddings_are_cached_per_model_and_text(cache: CallCache) -> None:
    table = {t: [float(i), 1.0] for i, t in enumerate(["a", "b", "c"])}
    embedder = TableEmbedder(table)
    first = embed_texts(["c", "a", "b", "a"], embedder, cache, batch_size=2, progress=False)
    assert embedder.calls == 2 and first.shape == (4, 2) and first[1].tolist() == [0.0, 1.0]
    again = embed_texts(["a", "b", "c"], embedder, cache, batch_size=2, progress=False)
    assert embedder.calls == 2 and again.tolist() == [first[1].tolist(), first[2].tolist(), first[0].tolist()]


# -- config ------------------------------------------------------------------------------------


def test_config_defaults_round_trip_and_errors() -> None:
    config = CurationConfig.from_dict({})
    assert config.judge.prompt == "judge_three_level_v1" and config.refine.rounds == 2
    assert config.diversify.target_size == 32000 and config.generate.sampling.temperature == 0.7
    assert CurationConfig.from_dict(config.to_dict(redact=False)) == config
    assert CurationConfig.from_dict(yaml.safe_load(config.to_yaml())["curation"]) == config
    with pytest.raises(ValueError, match="unknown key.*candidatez"):
        CurationConfig.from_dict({"generate": {"candidatez": 3}})
    with pytest.raises(ValueError, match="must be int"):
        CurationConfig.from_dict({"generate": {"candidates": "3"}})
    with pytest.raises(ValueError, match="judge.scale"):
        CurationConfig.from_dict({"judge": {"scale": "ten_point"}})
    # A token is never a recipe value (only `token_env`, the variable's name), and the refusal
    # does not echo the value back.
    spec = {"backend": "tgi", "model": "org/m", "endpoints": ["http://127.0.0.1:9"], "token": "hf_secret"}
    with pytest.raises(ValueError, match="unknown key curation.models.generator.token") as refused:
        CurationConfig.from_dict({"models": {"generator": spec}})
    assert "hf_secret" not in str(refused.value)


# -- the whole run: sharded == unsharded -------------------------------------------------------


def write_filtered(folder: Path, documents: list[Document]) -> None:
    (folder / "filtered" / "sw").mkdir(parents=True)
    with open(folder / "filtered" / "sw" / "kept.jsonl", "w") as f:
        for doc in documents:
            f.write(json.dumps(doc.to_dict()) + "\n")


def test_sharded_run_merges_to_the_same_output(tmp_path: Path) -> None:
    documents = docs(8)
    curation = {"generate": {"candidates": 1}, "diversify": {"target_size": 5}}
    outputs = []
    for name, steps in [("whole", [dict()]), ("split", [dict(shard=(0, 2)), dict(shard=(1, 2)), dict(merge=True)])]:
        recipe = Recipe.from_dict({"name": "t", "languages": ["sw"], "output_dir": str(tmp_path / name), "curation": curation})
        write_filtered(tmp_path / name, documents)
        backend = FakeBackend(default_reply)
        for step in steps:
            run_curation(recipe, models=Models.serving_all(backend), progress=False, **step)
        curated = tmp_path / name / "curated" / "sw"
        outputs.append({p.name: p.read_bytes() for p in [*curated.iterdir(), tmp_path / name / "curation" / "sw" / "rejects.jsonl"]})
    assert outputs[0] == outputs[1]
    records = [json.loads(line) for line in outputs[0]["train-00000-of-00001.jsonl"].splitlines()]
    rejects = [json.loads(line) for line in outputs[0]["rejects.jsonl"].splitlines()]
    assert len(records) == 5 and {r["reason"] for r in rejects} == {"diversify:not_selected"}
    assert {r["provenance"]["source_id"] for r in records} | {r["doc_id"] for r in rejects} == {d.id for d in documents}
    assert all(0 <= r["provenance"]["cluster_id"] < 5 for r in records)
    assert records[0]["provenance"]["generator_model"] == "fake/model"


def _tei(url, **options):
    from xinstruction_dataset.curation.embedders import TEIEmbedder, TEIEmbedding
    from xinstruction_dataset.retry import RetryPolicy

    embedder = TEIEmbedder(TEIEmbedding(url=url, **options))
    embedder.retry = RetryPolicy(retries=3, backoff=0.01, backoff_max=0.05)  # the policy, with short waits
    return embedder


@pytest.fixture
def tei_server():
    from tei_server import TEIServer

    server = TEIServer(max_client_batch_size=4).start()
    yield server
    server.stop()


def test_tei_embedder_speaks_the_feature_extraction_protocol(cache: CallCache, monkeypatch, tei_server) -> None:
    """TEI's `POST /` with {"inputs": [...]}, through huggingface_hub's feature_extraction; the
    login token is not sent to a host that is not Hugging Face's; batches are cut to the
    server's max_client_batch_size (TEI answers 413 past it)."""
    from tei_server import vector

    monkeypatch.setenv("HF_TOKEN", "hf_" + "LoginTokenNotForYou" * 2)
    texts = [f"text {i}" for i in range(11)]
    embedder = _tei(tei_server.url, concurrency=2)
    vectors = embed_texts(texts, embedder, cache, batch_size=64, progress=False)
    expected = np.asarray([vector(t, 8) for t in texts], dtype=np.float32)
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert sum(tei_server.batches) == 11 and max(tei_server.batches) <= 4 and 413 not in tei_server.status_counts
    embed_texts(list(reversed(texts)), embedder, cache, batch_size=64, progress=False)
    assert sum(tei_server.batches) == 11  # served from the cache
    assert all(not value for value in tei_server.authorizations)


@pytest.mark.parametrize("fault", ["503", "429"])
def test_tei_faults_are_retried_and_the_run_goes_on(cache: CallCache, tei_server, fault) -> None:
    tei_server.inject(fault, count=2)
    vectors = embed_texts([f"t{i}" for i in range(6)], _tei(tei_server.url, concurrency=1), cache, batch_size=64, progress=False)
    assert vectors.shape == (6, 8) and tei_server.status_counts[int(fault)] == 2


def test_tei_faults_past_the_retries_are_one_clear_line(cache: CallCache, tei_server) -> None:
    from xinstruction_dataset.errors import EnvironmentFault

    tei_server.inject("503", count=100)
    with pytest.raises(EnvironmentFault, match=r"TEI endpoint .*failed after 4 attempts.*503.*run the same command again"):
        embed_texts(["a", "b"], _tei(tei_server.url), cache, batch_size=8, progress=False)


def test_the_tei_server_refuses_a_batch_over_its_limit(tei_server) -> None:
    import urllib.error
    import urllib.request

    body = json.dumps({"inputs": [str(i) for i in range(5)]}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(tei_server.url + "/embed", body, {"Content-Type": "application/json"}))
    assert refused.value.code == 413
    assert json.loads(refused.value.read()) == {"error": "batch size 5 > maximum allowed batch size 4", "error_type": "Validation"}


@pytest.mark.timeout(60)  # a hang guard, not a speed check
def test_a_hung_tei_endpoint_is_a_clear_error_within_its_timeout(cache: CallCache) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from xinstruction_dataset.curation.embedders import TEIEmbedder, TEIEmbedding
    from xinstruction_dataset.errors import EnvironmentFault
    from xinstruction_dataset.retry import RetryPolicy

    release = threading.Event()

    class Hung(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            release.wait(30)  # never answers within the client's deadline

        def log_message(self, *args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hung)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        embedder = TEIEmbedder(TEIEmbedding(url=url, timeout=1.0))
        embedder.retry = RetryPolicy(retries=1, backoff=0.01, backoff_max=0.05)
        with pytest.raises(EnvironmentFault, match=f"TEI endpoint {url}.*timed out.*run the same command again"):
            embed_texts(["a", "b"], embedder, cache, batch_size=8, progress=False)
    finally:
        release.set()
        server.shutdown()


def test_every_stage_is_prepared_before_the_first_call(cache: CallCache) -> None:
    """What a stage loads for `read` (langdetect's profiles, ~1 s) is loaded before any call is
    sent: loaded inside the first `read`, on the event loop, it idled every slot meanwhile."""
    from xinstruction_dataset.filtering.filters import langid as detectors

    events: list[str] = []
    backend = FakeBackend(lambda request: (events.append("call"), default_reply(request))[1])
    config = CurationConfig.from_dict({"refine": {"rounds": 1}})
    stages = build_stages(config)
    for name, stage in stages.items():
        def prepare(stage=stage, name=name) -> None:
            type(stage).prepare(stage)
            events.append(f"prepared {name}")
        stage.prepare = prepare
    scheduler = CallScheduler(backend, cache)
    job = LanguageJob("sw", docs(2), Labelled(), finish=lambda: None)
    asyncio.run(Engine(stages, {role: scheduler for role in ROLES}, progress=False).run([job]))
    prepared = events[: len(stages)]
    assert sorted(prepared) == sorted(f"prepared {name}" for name in stages) and "call" in events
    assert ("langdetect", None) in detectors._detectors  # generate's and refine's checks detect languages
