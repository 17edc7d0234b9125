"""Text rules every backend applies the same way: stop strings, and fitting input to a context.

Input over the model's context is never sent to fail. `fit_to_context` either truncates it
(policy `truncate`: middle-out, so the task header at the start of a prompt and the answer cue at
its end, e.g. `### English Instruction:`, both survive and only the body in between is shortened)
or raises `ContextOverflow` with the reason (policy `reject`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from .base import BackendError, ContextLimits, LLMRequest

CONTEXT_POLICIES = ("truncate", "reject")
TRUNCATION_MARK = "\n[...]\n"
# Per-message overhead of chat templates (role markers, separators), in tokens.
CHAT_MESSAGE_OVERHEAD = 8
# The share of a server's bytes-per-token that a calibrated estimate takes (`TokenCounter.calibrate`):
# a count is not additive, so a cut of the text may take a little more per byte than the whole.
CALIBRATION_MARGIN = 0.9


class ContextOverflow(BackendError):
    """The input does not fit the model's context and the policy says reject (or it cannot fit)."""


class TokenCounter:
    """Counts tokens with a tokenizer when one is given, else estimates from UTF-8 bytes.

    The estimate is deliberately high: byte-level tokenizers never use more tokens than bytes,
    and on the scripts of this dataset (Thai, Tamil, Bengali... are 3 bytes a character) common
    multilingual tokenizers average 2.5-4 bytes a token; `bytes_per_token=2` leaves margin."""

    def __init__(self, count_tokens: Callable[[str], int] | None = None, bytes_per_token: float = 2.0) -> None:
        if bytes_per_token <= 0:
            raise ValueError("bytes_per_token must be > 0")
        self._count_tokens = count_tokens
        self.bytes_per_token = bytes_per_token

    @property
    def exact(self) -> bool:
        return self._count_tokens is not None

    def count(self, text: str) -> int:
        if self._count_tokens is not None:
            return self._count_tokens(text)
        return math.ceil(len(text.encode("utf-8")) / self.bytes_per_token)

    def calibrate(self, request: LLMRequest, server_tokens: int) -> bool:
        """Learn from a server that counted `server_tokens` for `request` (in its refusal of an
        input over the context): the estimate's bytes a token is lowered to what that count
        implies, with a margin, so the request refitted and every later one fits. Only ever
        lowered, and never for an exact tokenizer. True if the estimate changed."""
        if self.exact or server_tokens <= 0:
            return False
        texts = [request.prompt] if request.prompt is not None else [c for _, c in request.messages or ()]
        size = sum(len(text.encode("utf-8")) for text in texts)
        # All of the server's count is put on the text (a chat template's tokens too): lower still.
        implied = CALIBRATION_MARGIN * size / server_tokens
        if implied >= self.bytes_per_token:
            return False
        self.bytes_per_token = implied
        return True

    def count_request(self, request: LLMRequest) -> int:
        if request.prompt is not None:
            return self.count(request.prompt)
        assert request.messages is not None
        return sum(self.count(content) + CHAT_MESSAGE_OVERHEAD for _, content in request.messages)


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """`text` up to (not including) the first stop string, and whether one was found."""
    positions = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True


def fit_to_context(request: LLMRequest, limits: ContextLimits, counter: TokenCounter, policy: str) -> LLMRequest:
    """`request` made to fit `limits`: unchanged if it fits, else truncated or rejected by policy.

    The input budget is `max_input_tokens`, lowered so that input + `max_new_tokens` fits
    `max_total_tokens` (but never below half of `max_input_tokens`); `max_new_tokens` is then
    lowered to what the total leaves. The cache key stays the caller's original request's."""
    if policy not in CONTEXT_POLICIES:
        raise ValueError(f"context_policy must be one of {CONTEXT_POLICIES}, got {policy!r}")
    budget = _input_budget(request, limits)
    if budget is None:
        return request
    used = counter.count_request(request)
    if used > budget:
        if policy == "reject":
            raise ContextOverflow(
                f"input of {_tokens(used, counter)} tokens exceeds the model's input budget of {budget} tokens "
                f"(max_input_tokens={limits.max_input_tokens}, max_total_tokens={limits.max_total_tokens}, "
                "context_policy=reject)"
            )
        request = _truncate(request, budget, counter)
        used = counter.count_request(request)
    return _clamp_new_tokens(request, used, limits)


def _input_budget(request: LLMRequest, limits: ContextLimits) -> int | None:
    budget = limits.max_input_tokens
    if limits.max_total_tokens is not None:
        room = limits.max_total_tokens - request.params.max_new_tokens
        floor = budget // 2 if budget is not None else 1
        budget = max(room, floor) if budget is None else max(min(budget, room), floor)
    return budget


def _clamp_new_tokens(request: LLMRequest, used: int, limits: ContextLimits) -> LLMRequest:
    if limits.max_total_tokens is None:
        return request
    room = limits.max_total_tokens - used
    if room < 1:
        raise ContextOverflow(f"input of {used} tokens leaves no room for output (max_total_tokens={limits.max_total_tokens})")
    if request.params.max_new_tokens <= room:
        return request
    return replace(request, params=replace(request.params, max_new_tokens=room))


def _truncate(request: LLMRequest, budget: int, counter: TokenCounter) -> LLMRequest:
    """Shorten the prompt (or the longest message) middle-out until the request fits `budget`."""
    if request.prompt is not None:
        return replace(request, prompt=_truncate_text(request.prompt, budget, counter))
    assert request.messages is not None
    messages = list(request.messages)
    longest = max(range(len(messages)), key=lambda i: len(messages[i][1]))
    role, content = messages[longest]
    others = counter.count_request(replace(request, messages=tuple(m for i, m in enumerate(messages) if i != longest)))
    messages[longest] = (role, _truncate_text(content, budget - others - CHAT_MESSAGE_OVERHEAD, counter))
    return replace(request, messages=tuple(messages))


def _truncate_text(text: str, budget: int, counter: TokenCounter) -> str:
    """The longest middle-out cut of `text` that counts at most `budget` tokens (binary search
    over the kept length: a tokenizer's count is not additive, so it is measured, not computed)."""
    if budget <= counter.count(TRUNCATION_MARK):
        raise ContextOverflow(f"the model's input budget ({budget} tokens) cannot hold even the truncated input")
    low, high = 0, len(text)  # characters kept: `low` always fits
    while low < high:
        mid = (low + high + 1) // 2
        if counter.count(_middle_out(text, mid)) <= budget:
            low = mid
        else:
            high = mid - 1
    return _middle_out(text, low)


def _middle_out(text: str, keep: int) -> str:
    if keep >= len(text):
        return text
    head = keep // 2
    return text[:head] + TRUNCATION_MARK + text[len(text) - (keep - head):]


def _tokens(count: int, counter: TokenCounter) -> str:
    return str(count) if counter.exact else f"~{count} (estimated)"
