"""`length`: bounds in characters and, with a tokenizer, in tokens.

Characters are counted on the stripped text. Tokens need a tokenizer: a sentencepiece `.model`
file (no model weights loaded), or a Hugging Face tokenizer name or folder (the generator's, so
the bound matches what the model will see). The tokenizer is loaded on the first document that
needs it, so building a recipe's filter chain stays cheap.

Reasons: `empty` (nothing but whitespace), `too_short_chars:N`, `too_long_chars:N`,
`too_short_tokens:N`, `too_long_tokens:N` (N: the document's count). Metadata: `n_chars`,
and `n_tokens` when token bounds are set.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Callable, Literal

from pydantic import Field, model_validator

from ...documents import Document
from ...errors import UsageError
from ...options import ConfigModel
from .base import FILTERS, BaseFilter, FilterResult

# Module-level, not per block: a lock attribute would make the block unpicklable (process pools).
_LOAD_LOCK = threading.Lock()


def load_token_counter(tokenizer: str) -> Callable[[str], int]:
    """A function counting the tokens of a text: sentencepiece for a `.model` file, otherwise
    `transformers.AutoTokenizer` (hub name or local folder)."""
    if tokenizer.endswith(".model"):
        if not Path(tokenizer).is_file():
            raise FileNotFoundError(f"sentencepiece model {tokenizer} not found (length filter option `tokenizer`)")
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=tokenizer)
        return lambda text: len(processor.encode(text))
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    # Counting, not feeding a model: no special tokens, no warning past model_max_length.
    return lambda text: len(hf_tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


class LengthOptions(ConfigModel):
    """`{type: length, ...}` in a recipe: LengthFilter's options, checked when the recipe loads."""

    type: Literal["length"] = "length"
    min_chars: Annotated[int | None, Field(ge=0)] = 200
    max_chars: Annotated[int | None, Field(ge=1)] = 20000
    min_tokens: Annotated[int | None, Field(ge=0)] = None
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    tokenizer: Annotated[str | None, Field(min_length=1)] = None

    @model_validator(mode="after")
    def _bounds(self) -> "LengthOptions":
        """An empty range rejects every document: surely a typo, so say so before filtering."""
        for unit in ("chars", "tokens"):
            low, high = getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}")
            if low is not None and high is not None and low > high:
                raise UsageError(f"min_{unit} ({low}) must be <= max_{unit} ({high})")
        if (self.min_tokens is not None or self.max_tokens is not None) and not self.tokenizer:
            raise UsageError("min_tokens/max_tokens need `tokenizer` (a sentencepiece .model path or a HF tokenizer name)")
        return self


@FILTERS.register(LengthOptions)
class LengthFilter(BaseFilter):
    """Keep documents whose length is within bounds (a bound set to None is not checked).

    Options (LengthOptions):
        min_chars: 200. The paper's responses average 1000-1290 characters; under 200 is a
            headline or a fragment, not an answer.
        max_chars: 20000. Longer pages are mostly concatenated listings; the generator's context
            is the tighter limit, which `max_tokens` expresses.
        min_tokens, max_tokens: None (off). Set them with `tokenizer`.
        tokenizer: a sentencepiece `.model` path, or a Hugging Face tokenizer name/path; the
            recipe gives the generator's when one is configured.
    """

    options: LengthOptions

    def __init__(self, options: LengthOptions | None = None):
        super().__init__(options)
        self._count_tokens: Callable[[str], int] | None = None

    def count_tokens(self, text: str) -> int:
        if self._count_tokens is None:
            with _LOAD_LOCK:
                if self._count_tokens is None:
                    self._count_tokens = load_token_counter(self.options.tokenizer)
        return self._count_tokens(text)

    def filter(self, doc: Document) -> FilterResult:
        bounds = self.options
        text = doc.text.strip()
        if not text:
            return False, "empty"
        doc.metadata["n_chars"] = len(text)
        reason = _out_of_bounds("chars", len(text), bounds.min_chars, bounds.max_chars)
        if reason or (bounds.min_tokens is None and bounds.max_tokens is None):
            return (False, reason) if reason else True
        n_tokens = self.count_tokens(text)
        doc.metadata["n_tokens"] = n_tokens
        reason = _out_of_bounds("tokens", n_tokens, bounds.min_tokens, bounds.max_tokens)
        return (False, reason) if reason else True


def _out_of_bounds(unit: str, count: int, low: int | None, high: int | None) -> str | None:
    if low is not None and count < low:
        return f"too_short_{unit}:{count}"
    if high is not None and count > high:
        return f"too_long_{unit}:{count}"
    return None
