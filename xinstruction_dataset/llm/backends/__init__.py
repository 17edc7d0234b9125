"""LLM access: one small interface (`base.LLMBackend`), one kind of backend per file.

A recipe's model entry is the spec of its `backend` kind:

    {"backend": "local"}                                  # embedded default: gemma3-270m on CPU
    {"backend": "local", "model": "/path/model.gguf", "dtype": "float32"}
    {"backend": "vllm", "model": "meta-llama/Llama-3.3-70B-Instruct", "endpoints": ["http://h1:8000"],
     "max_concurrency": 256}                              # route: completions (default) or chat
    {"backend": "sglang", "model": "org/name", "endpoints": ["http://h1:30000"]}
    {"backend": "llamacpp", "model": "gemma3-270m", "endpoints": ["http://h1:8080"]}
    {"backend": "openai", "model": "gpt-4o-mini", "endpoints": ["https://api.openai.com"], "token_env": "OPENAI_API_KEY"}
    {"backend": "tgi", "model": "org/name", "endpoints": ["http://h1:8080", "http://h2:8080"],
     "route": "generate", "max_concurrency": 64, "timeout": 120, "retries": 5,
     "context_policy": "truncate"}
    {"backend": "vllm", "model": "org/name", "serve": {"model": "/models/name", "replicas": 2}}

A served entry gives `endpoints:` (servers someone else runs) or `serve:` (the toolkit starts them,
llm/serving/; its backend is built with their endpoint source: `build_backend(spec, endpoints)`).

The kinds are registered in `base.BACKENDS` (registry.py) by their own files: `local.py`
(`LocalConfig` and `LocalBackend`), and one file per server kind (`vllm.py`, `sglang.py`,
`llamacpp.py`, `tgi.py`, `openai.py`), each a spec on `server_config.ServerConfig` registered to
the one server backend (server.py: `ServerBackend`, imported on first use). `ModelSpec`, the union of every registered spec, types the recipe's model
entries, so they are checked when the recipe is loaded: an unknown kind or key is an error that
names it and lists the known ones, and nothing here waits for a model or a socket to find a typo.
The checked, frozen spec is what reaches `build_backend`; it is not checked again.

A new kind is one file here (its spec and `@BACKENDS.register(Spec)` on its `LLMBackend`) and
its import below.
"""

from __future__ import annotations

from typing import Any

from ..endpoints import EndpointSource
from . import llamacpp, local, openai, sglang, tgi, vllm  # noqa: F401 - the kinds: each file registers itself in BACKENDS
from .base import BACKENDS, BackendError, Completion, GenerationParams, LLMBackend, LLMRequest, RetryableError
from .llamacpp import LlamaCppConfig
from .local import LocalConfig
from .openai import OpenAIConfig
from .server_config import ServerConfig
from .sglang import SGLangConfig
from .tgi import TGIConfig
from .vllm import VLLMConfig

# One model entry of a recipe: the spec of its `backend` kind.
ModelSpec = BACKENDS.union()

__all__ = [
    "BACKENDS",
    "BackendError",
    "Completion",
    "GenerationParams",
    "LLMBackend",
    "LLMRequest",
    "LlamaCppConfig",
    "LocalConfig",
    "ModelSpec",
    "OpenAIConfig",
    "RetryableError",
    "SGLangConfig",
    "ServerConfig",
    "TGIConfig",
    "VLLMConfig",
    "build_backend",
    "model_spec",
]


def model_spec(entry: Any) -> Any:
    """The checked spec of a model entry (a mapping; a spec is returned as it is), without
    loading a model or opening a socket."""
    return BACKENDS.parse(entry)


def build_backend(spec: Any, endpoints: EndpointSource | None = None) -> LLMBackend:
    """The backend of a model spec (a mapping is checked first: `model_spec`). A served model
    takes its endpoints from `endpoints` (default: the spec's `endpoints:`, `StaticEndpoints`);
    one with `serve:` needs the source of the servers started for it."""
    spec = model_spec(spec)
    return BACKENDS.implementation(spec.backend)(spec, endpoints)
