"""Batched decoding for the embedded model: many requests, each with its own sampling.

`transformers`' `generate` takes one set of sampling settings, one seed (the global RNG) and one
list of stop strings for a whole batch. The pipeline's requests differ in all three (a generator
call and a judge call can share a batch), so this is a small decode loop of its own:

- prompts are left-padded into one batch and prefilled together (`logits_to_keep=1`: only the
  last position's logits, not a vocabulary row per prompt token); the tokens every prompt of the
  batch starts with are computed once and shared (`_prefill`);
- each row samples from its own logits with its own temperature, top-k and top-p (in
  `transformers`' order: temperature, then top-k, then top-p), from its own `torch.Generator`
  seeded with the request's seed; temperature 0 is greedy;
- a row with `no_repeat_ngram_size` n never draws a token that would complete an n-gram its
  prompt or answer already holds (transformers' `no_repeat_ngram_size`, applied, as there,
  before temperature, top-k and top-p);
- each row stops on its own: an end-of-sequence token, one of its stop strings in the decoded
  text, or its `max_new_tokens`. A finished row leaves the batch and its KV cache
  (`batch_select_indices`), so the rest decode without it.

Batched arithmetic is not batch-invariant: padding and batch shape can change a logit in its
last bits, so a request may decode to another token in a different batch. Every completion is
stored in the call cache before it is used, so a re-run reads the same answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .base import Completion, GenerationParams
from .text import cut_at_stop


@dataclass
class _Row:
    prompt_ids: list[int]
    params: GenerationParams
    generator: Any  # torch.Generator, or None when greedy
    new_ids: list[int] = field(default_factory=list)
    stopped: bool = False  # a stop string ended it
    ended: bool = False  # an end-of-sequence token ended it
    # With no_repeat_ngram_size n: every (n-1)-token prefix seen so far -> the tokens that followed it.
    ngrams: dict[tuple[int, ...], set[int]] | None = None

    def __post_init__(self) -> None:
        n = self.params.no_repeat_ngram_size
        if n:
            self.ngrams = {}
            for start in range(len(self.prompt_ids) - n + 1):
                self.ngrams.setdefault(tuple(self.prompt_ids[start:start + n - 1]), set()).add(self.prompt_ids[start + n - 1])

    def last(self, count: int) -> tuple[int, ...]:
        """The last `count` tokens of prompt + answer (fewer if there are fewer)."""
        if count <= 0:
            return ()
        tail = self.new_ids[-count:]
        missing = count - len(tail)
        head = self.prompt_ids[max(0, len(self.prompt_ids) - missing):] if missing > 0 else []
        return (*head, *tail)

    def banned(self) -> set[int]:
        """The tokens that would repeat an n-gram (none before the sequence holds n-1 tokens)."""
        n = self.params.no_repeat_ngram_size
        if not n or len(self.prompt_ids) + len(self.new_ids) + 1 < n:
            return set()
        return self.ngrams.get(self.last(n - 1), set())

    def record(self, token: int) -> None:
        """Count the n-gram `token` completes (call before appending it)."""
        n = self.params.no_repeat_ngram_size
        if n and len(self.prompt_ids) + len(self.new_ids) + 1 >= n:
            self.ngrams.setdefault(self.last(n - 1), set()).add(token)

    @property
    def done(self) -> bool:
        return self.stopped or self.ended or len(self.new_ids) >= self.params.max_new_tokens


def decode_batch(model: Any, tokenizer: Any, prompts: list[str], params: list[GenerationParams], device: str) -> list[Completion]:
    """One completion per prompt, decoded together; see the module docstring."""
    import torch

    rows = [_Row(tokenizer(p)["input_ids"], q, _generator(q, device)) for p, q in zip(prompts, params)]
    eos = _eos_ids(model, tokenizer)
    with torch.inference_mode():
        _decode(model, tokenizer, rows, eos, device)
    return [_completion(tokenizer, row, eos) for row in rows]


def _generator(params: GenerationParams, device: str) -> Any:
    import torch

    if params.temperature <= 0:
        return None
    return torch.Generator(device=device).manual_seed(params.seed or 0)


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The tokens that end a sequence: the tokenizer's and the generation config's (Gemma's
    `<end_of_turn>` is only in the latter)."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return frozenset(ids)


def _decode(model: Any, tokenizer: Any, rows: list[_Row], eos: frozenset[int], device: str) -> None:
    import torch
    from transformers import DynamicCache

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    cache = DynamicCache(config=model.config)
    step = _stepper(model, cache)
    logits, mask, positions = _prefill(step, cache, rows, pad, device)
    active = list(range(len(rows)))  # batch slot -> row
    while True:
        tokens = [_pick(logits[slot], rows[row]) for slot, row in enumerate(active)]
        for row, token in zip(active, tokens):
            _append(tokenizer, rows[row], token, eos)
        keep = [slot for slot, row in enumerate(active) if not rows[row].done]
        if not keep:
            return
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, positions = mask[index], positions[index]
            active, tokens = [active[s] for s in keep], [tokens[s] for s in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        positions = positions[:, -1:] + 1
        logits = step(torch.tensor(tokens, device=device).unsqueeze(1), mask, positions)


def _stepper(model: Any, cache: Any):
    """One forward pass over the cache, keeping only the last position's logits."""
    cache_arg = _cache_argument(model)

    def step(ids: Any, mask: Any, positions: Any) -> Any:
        return model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **{cache_arg: cache}
        ).logits[:, -1, :]

    return step


def _prefill(step, cache: Any, rows: list[_Row], pad: int, device: str) -> tuple[Any, Any, Any]:
    """(last logits, attention mask, positions) after every prompt is in the cache.

    The tokens all prompts start with (a stage's template and few-shot examples: half of a
    generate prompt) are computed once, for one row, and the cache is copied to every row; each
    row's own rest is left-padded after that prefix, where the mask hides the padding."""
    import torch

    shared = _shared_prefix_length(rows)
    if shared:
        prefix = torch.tensor([rows[0].prompt_ids[:shared]], device=device)
        step(prefix, torch.ones_like(prefix), torch.arange(shared, device=device).unsqueeze(0))
        cache.batch_repeat_interleave(len(rows))
    rests = [r.prompt_ids[shared:] for r in rows]
    width = max(len(rest) for rest in rests)
    ids = torch.tensor([[pad] * (width - len(rest)) + rest for rest in rests], device=device)
    mask = torch.tensor([[1] * shared + [0] * (width - len(rest)) + [1] * len(rest) for rest in rests], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    return step(ids, mask, positions), mask, positions


# Below this many shared tokens, a separate pass for the prefix costs more than it saves.
MIN_SHARED_PREFIX = 16


def _shared_prefix_length(rows: list[_Row]) -> int:
    """Tokens every prompt starts with, leaving each row at least one token of its own."""
    if len(rows) < 2:
        return 0
    shared = min(len(os.path.commonprefix([r.prompt_ids for r in rows])), min(len(r.prompt_ids) for r in rows) - 1)
    return shared if shared >= MIN_SHARED_PREFIX else 0


def _cache_argument(model: Any) -> str:
    """`cache` from transformers 5.24 on; `past_key_values` (deprecated there) before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _pick(logits: Any, row: _Row) -> int:
    import torch

    params = row.params
    banned = row.banned()
    if banned:
        logits = logits.clone()
        logits[list(banned)] = float("-inf")
    if row.generator is None:
        return int(torch.argmax(logits))
    scores = logits.float() / params.temperature
    if params.top_k and params.top_k > 0:
        # Only the k best can be drawn: sample among them, not over the 262k-token vocabulary (a
        # sort and a draw over the whole vocabulary were two thirds of a sampled decode step).
        scores, candidates = torch.topk(scores, min(params.top_k, scores.shape[-1]))  # sorted, best first
    else:
        scores, candidates = torch.sort(scores, descending=True)
    if params.top_p is not None and params.top_p < 1.0:
        probabilities = torch.softmax(scores, dim=-1)
        # Drop a token once the tokens before it already reach top_p; the top token always stays.
        keep = int(((probabilities.cumsum(-1) - probabilities) <= params.top_p).sum())
        scores, candidates = scores[:keep], candidates[:keep]
    return int(candidates[torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=row.generator)])


def _append(tokenizer: Any, row: _Row, token: int, eos: frozenset[int]) -> None:
    if token in eos:
        row.ended = True
        return
    row.record(token)
    row.new_ids.append(token)
    stops = [s for s in row.params.stop if s]
    if stops:
        text = tokenizer.decode(row.new_ids, skip_special_tokens=True)
        row.stopped = any(s in text for s in stops)


def _completion(tokenizer: Any, row: _Row, eos: frozenset[int]) -> Completion:
    text, stopped = cut_at_stop(tokenizer.decode(row.new_ids, skip_special_tokens=True), row.params.stop)
    if stopped:
        reason = "stop_sequence"
    elif row.ended:
        reason = "eos_token"
    else:
        reason = "length"
    # An end-of-sequence token is generated, so it is counted, as servers count it.
    return Completion(text=text, prompt_tokens=len(row.prompt_ids), completion_tokens=len(row.new_ids) + int(row.ended), finish_reason=reason)
