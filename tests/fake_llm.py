"""A deterministic in-process LLM backend for stage tests: replies come from a Python function
of the request, and every call is logged (so tests can count calls per prompt or seed)."""

from __future__ import annotations

import hashlib
from typing import Callable

from xinstruction_dataset.llm.backends.base import BackendError, Completion, LLMBackend, LLMRequest

# One set of prompt marks and topics for both fakes (tgi_server.py is stdlib-only, so it owns them).
from tgi_server import GENERATE_MARK, REFINE_INSTRUCTION_MARK, REFINE_RESPONSE_MARK, TOPICS  # noqa: E402
from tgi_server import JUDGE_LABEL_MARK as JUDGE_MARK  # noqa: E402
from tgi_server import JUDGE_SCORE_MARK as SCORE_MARK  # noqa: E402


class FakeBackend(LLMBackend):
    def __init__(self, respond: Callable[[LLMRequest], str], model_id: str = "fake/model", max_concurrency: int = 4):
        self.respond = respond
        self.model_id = model_id
        self.max_concurrency = max_concurrency
        self.calls: list[LLMRequest] = []

    async def acomplete(self, request: LLMRequest) -> Completion:
        self.calls.append(request)
        text = self.respond(request)
        return Completion(text=text, completion_tokens=len(text.split()))

    def count(self, mark: str) -> int:
        return sum(mark in (r.prompt or "") for r in self.calls)


def section(prompt: str, header: str) -> str:
    """The text under `### <header>:` in a prompt."""
    return prompt.split(f"### {header}:\n", 1)[1].split("\n\n### ", 1)[0]


def topic_of(text: str) -> str:
    return TOPICS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(TOPICS)]


def default_reply(request: LLMRequest) -> str:
    return reply_for_prompt(request.prompt or "")


def reply_for_prompt(prompt: str) -> str:
    """Plausible replies: an English instruction about the document's topic, then run-on text as
    a base model writes it; judges say good; rewrites stay in English / Swahili as asked."""
    if prompt.rstrip().endswith(GENERATE_MARK):
        text = section(prompt, "Text")
        story = hashlib.sha256(text.encode()).hexdigest()[:6]
        return f" Write a short news report about {topic_of(text)} for readers of story number {story}.\n\n### Text:\nblah"
    if JUDGE_MARK in prompt:
        return " good\nThe response fits."
    if SCORE_MARK in prompt:
        return " 5"
    if REFINE_INSTRUCTION_MARK in prompt:
        return " Describe the events reported in this news story in detail."
    if REFINE_RESPONSE_MARK in prompt:
        return " Habari hii inaeleza matukio ya wiki iliyopita katika mji mkuu wa nchi hiyo kwa undani."
    raise BackendError(f"fake backend: unexpected prompt {prompt[:80]!r}")
