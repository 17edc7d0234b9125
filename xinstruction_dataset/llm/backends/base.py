"""The one interface every LLM backend implements, and the request/result types stages use.

A request is either completion-style (`prompt`: the paper's prompts are completion prompts) or
chat-style (`messages`). `cache_key()` hashes (model, prompt or messages, parameters): it is the
key under which the result is stored durably before any stage uses it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any


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
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class LLMBackend(ABC):
    """An LLM that completes requests. Implementations are safe to call concurrently up to
    `max_concurrency` requests at once; callers own the scheduling (see curation.calls)."""

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

    @abstractmethod
    async def acomplete(self, request: LLMRequest) -> Completion:
        """Complete one request or raise; retryable failures raise `RetryableError`."""

    async def aclose(self) -> None:
        return None


class BackendError(RuntimeError):
    """A request failed for good (bad request, input over the context, malformed reply...)."""


class RetryableError(BackendError):
    """A request failed in a way worth retrying (429, 5xx, connection error, timeout)."""
