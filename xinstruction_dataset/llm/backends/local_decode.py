"""Batched decoding for the embedded model: many requests, each with its own sampling.

`transformers`' `generate` takes one set of sampling settings, one seed (the global RNG) and one
list of stop strings for a whole batch. The pipeline's requests differ in all three (a generator
call and a judge call can share a batch), so this is a small decode loop of its own:

- prompts are left-padded into one batch and prefilled together (`logits_to_keep=1`: only the
  last position's logits, not a vocabulary row per prompt token);
- each row samples from its own logits with its own temperature, top-k and top-p (in
  `transformers`' order: temperature, then top-k, then top-p), from its own `torch.Generator`
  seeded with the request's seed; temperature 0 is greedy;
- each row stops on its own: an end-of-sequence token, one of its stop strings in the decoded
  text, or its `max_new_tokens`. A finished row leaves the batch and its KV cache
  (`batch_select_indices`), so the rest decode without it.

Batched arithmetic is not batch-invariant: padding and batch shape can change a logit in its
last bits, so a request may decode to another token in a different batch. Every completion is
stored in the call cache before it is used, so a re-run reads the same answers.
"""

from __future__ import annotations

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
    width = max(len(r.prompt_ids) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    cache_arg = _cache_argument(model)
    active = list(range(len(rows)))  # batch slot -> row
    while True:
        logits = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **{cache_arg: cache}
        ).logits[:, -1, :]
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
        ids = torch.tensor(tokens, device=device).unsqueeze(1)
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        positions = positions[:, -1:] + 1


def _cache_argument(model: Any) -> str:
    """`cache` from transformers 5.24 on; `past_key_values` (deprecated there) before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _pick(logits: Any, row: _Row) -> int:
    import torch

    params = row.params
    if row.generator is None:
        return int(torch.argmax(logits))
    scores = logits.float() / params.temperature
    if params.top_k and params.top_k > 0:
        kth = torch.topk(scores, min(params.top_k, scores.shape[-1])).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        probabilities = torch.softmax(ordered, dim=-1)
        # Drop a token once the tokens before it already reach top_p; the top token always stays.
        drop = (probabilities.cumsum(-1) - probabilities) > params.top_p
        scores = scores.scatter(0, order[drop], float("-inf"))
    return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=row.generator))


def _append(tokenizer: Any, row: _Row, token: int, eos: frozenset[int]) -> None:
    if token in eos:
        row.ended = True
        return
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
