"""The evaluation's prompt files: the papers' wording, their sections, and the requests built."""

from __future__ import annotations

import pytest

from xinstruction_dataset.evaluation.prompts import load_eval_prompt, parse_prompt_file
from xinstruction_dataset.evaluation.protocols import PROTOCOLS
from xinstruction_dataset.llm.backends.base import GenerationParams

PLUG_SENTENCE = (
    "Pay special attention to whether the assistant's response contains any unnatural language use, sentences that are "
    "not fluent, or grammatical problems, especially when answering in languages other than English."
)


def test_plug_pair_v2_is_mt_bench_plus_the_language_sentence():
    prompt = load_eval_prompt("judge_plug_pair_v2")
    system = prompt.section("system").text
    assert system.startswith("Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants")
    assert PLUG_SENTENCE in system
    assert system.endswith('"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.')
    assert prompt.section("user").fields == {"question", "answer_a", "answer_b"}
    assert "judge_prompts_focus_language.jsonl" in prompt.header and prompt.version == "eval:judge_plug_pair_v2"


def test_xinstruction_judge_is_the_papers_prompt_2():
    prompt = load_eval_prompt("judge_xinstruction_v1")
    assert prompt.section("system").text == (
        "We would like to request your feedback on the performance of AI assistant in response to the instruction and the given input displayed following."
    )
    user = prompt.section("user")
    assert user.text.startswith("Given the question and the answer in {language} language.")
    assert user.text.endswith("and do not output the justification and any other information.\n\n")
    assert user.fields == {"language", "instruction", "output1", "output2"}
    assert "utils/gpt4_eval.py" in prompt.header


def test_requests_are_messages_on_chat_routes_and_one_prompt_elsewhere():
    prompt = load_eval_prompt(PROTOCOLS["plug"].prompt)
    values = {"question": "Q {not a field}", "answer_a": "a", "answer_b": "b"}
    chat = prompt.request(values, GenerationParams(), chat=True)
    assert [role for role, _ in chat.messages] == ["system", "user"] and "Q {not a field}" in chat.messages[1][1]
    plain = prompt.request(values, GenerationParams(), chat=False)
    assert plain.prompt == f"{chat.messages[0][1]}\n\n{chat.messages[1][1]}"


def test_a_template_file_and_bad_names(tmp_path):
    path = tmp_path / "mine_v1.txt"
    path.write_text("# my template\n=== prompt ===\nQ: {instruction}\nA:\n", encoding="utf-8")
    prompt = load_eval_prompt(str(path))
    assert prompt.version == "eval:mine_v1" and prompt.section("prompt").render(instruction="x") == "Q: x\nA:"
    with pytest.raises(ValueError, match=r"no evaluation prompt 'nope'.*packaged: answer_plug_tulu_pivot_v1, .*answer_x_instruction_v1, .*judge_plug_pair_v2"):
        load_eval_prompt("nope")
    with pytest.raises(ValueError, match="has no section"):
        parse_prompt_file("empty", "# only a header\n")
