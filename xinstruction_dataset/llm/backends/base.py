"""The one interface every LLM backend implements, the registry of backend kinds, and the
request/result types stages use.

A request is either completion-style (`prompt`: the paper's prompts are completion prompts) or
chat-style (`messages`). `cache_key()` hashes (model, prompt or messages, parameters): it is the
key under which the result is stored durably before any stage uses it.

`BACKENDS` is the plug-in point (registry.py): a kind's file defines its spec (a `PluginSpec`
whose `backend` is a one-value Literal) and registers the `LLMBackend` built from it. A backend
answers for itself what callers need to know (`supports_chat`, `supports_no_repeat_ngram_size`,
`limits`): nothing above it reads its spec.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from ...registry import Registry


@dataclass(frozen=True)
class GenerationParams:
    # The paper's sampling settings; stages override max_new_tokens and stop.
    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    # No n-gram of this many tokens (prompt included) appears twice, as transformers' `generate`
    # does (X-Instruction decodes with 6). None: off, and absent from the cache key, so every
    # request made before it existed keeps its key.
    no_repeat_ngram_size: int | None = None

    def __post_init__(self) -> None:
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size is at least 1 (None: off), got {self.no_repeat_ngram_size}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        if self.no_repeat_ngram_size is None:
            del data["no_repeat_ngram_size"]
        return data


@dataclass(frozen=True)
class LLMRequest:
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...)
    params: GenerationParams = field(default_factory=GenerationParams)

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("an LLMRequest needs exactly one of `prompt` or `messages`")

    def cache_key(self, model_id: str) -> str:
        payload = {
            "model": model_id,
            "prompt": self.prompt,
            "messages": [list(m) for m in self.messages] if self.messages is not None else None,
            "params": self.params.to_dict(),
        }
        return content_key(payload)


def content_key(payload: dict[str, Any]) -> str:
    """The durable cache key of a call: sha256 of its canonical JSON (sorted keys, UTF-8)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class ContextLimits:
    """What a model accepts, in tokens; None where unknown (then nothing is checked)."""

    max_input_tokens: int | None = None
    max_total_tokens: int | None = None  # input + new tokens


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


def unstorable(completion: Completion) -> str | None:
    """Why `completion` cannot go into the call cache as it is, or None. A reply is checked
    before it is stored (a stored one is served on every rerun): its text must be a string that
    UTF-8 can encode (a JSON reply's "\\ud800" decodes to a lone surrogate, which it cannot),
    its counts integers or None, its finish reason a string or None."""
    if not isinstance(completion.text, str):
        return f"the text is {type(completion.text).__name__}, not a string"
    position = first_unencodable(completion.text)
    if position is not None:
        return f"the text is not valid Unicode: a lone surrogate U+{ord(completion.text[position]):04X} at character {position}"
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(completion, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{name} is {type(value).__name__}, not an integer"
    if completion.finish_reason is not None:
        if not isinstance(completion.finish_reason, str):
            return f"finish_reason is {type(completion.finish_reason).__name__}, not a string"
        if first_unencodable(completion.finish_reason) is not None:
            return "finish_reason is not valid Unicode"
    return None


def first_unencodable(text: str) -> int | None:
    """The index of the first character UTF-8 cannot encode (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def storable_text(text: str) -> str:
    """`text` with any lone surrogate written as its escape (`\\ud800`): error messages that
    quote a server go into the cache and the rejects, which must be able to store them."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class LLMBackend(ABC):
    """An LLM that completes requests. Implementations are safe to call concurrently up to
    `max_concurrency` requests at once; callers own the scheduling (see llm.calls)."""

    model_id: str
    max_concurrency: int = 1

    @property
    def supports_chat(self) -> bool:
        """Whether requests with `messages` reach the model as chat turns (its chat template)."""
        return False

    @property
    def supports_no_repeat_ngram_size(self) -> bool:
        """Whether `GenerationParams.no_repeat_ngram_size` is honoured (servers have no such parameter)."""
        return False

    def limits(self, params: GenerationParams | None = None) -> ContextLimits:
        """The context a request with `params` (default: the default ones) is fitted into before
        it is sent, in tokens, as far as the backend knows now; None fields: unknown."""
        return ContextLimits()

    @abstractmethod
    async def acomplete(self, request: LLMRequest) -> Completion:
        """Complete one request or raise; retryable failures raise `RetryableError`."""

    async def aclose(self) -> None:
        return None


# A recipe's model entry -> the LLMBackend its kind builds from it (see the module docstring).
BACKENDS: Registry = Registry("backend", key="backend")


class BackendError(RuntimeError):
    """A request failed for good (bad request, input over the context, malformed reply...)."""


class RetryableError(BackendError):
    """A request failed in a way worth retrying (429, 5xx, connection error, timeout)."""
