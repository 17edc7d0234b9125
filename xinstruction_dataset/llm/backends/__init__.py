"""LLM access: one small interface (`base.LLMBackend`), one kind of backend per file.

A recipe's model entry is the spec of its `backend` kind:

    {"backend": "local"}                                  # embedded default: gemma3-270m on CPU
    {"backend": "local", "model": "/path/model.gguf", "dtype": "float32"}
    {"backend": "tgi", "model": "org/name", "endpoints": ["http://h1:8080", "http://h2:8080"],
     "route": "generate", "max_concurrency": 64, "timeout": 120, "retries": 5,
     "context_policy": "truncate"}

The kinds are registered in `base.BACKENDS` (registry.py) by their own files: `local.py`
(`LocalConfig` and `LocalBackend`) and `tgi_config.py` (`TGIConfig`, whose backend, tgi.py, is
imported on first use). `ModelSpec`, the union of every registered spec, types the recipe's model
entries, so they are checked when the recipe is loaded: an unknown kind or key is an error that
names it and lists the known ones, and nothing here waits for a model or a socket to find a typo.
The checked, frozen spec is what reaches `build_backend`; it is not checked again.

A new kind is one file here (its spec and `@BACKENDS.register(Spec)` on its `LLMBackend`) and
its import below.
"""

from __future__ import annotations

from typing import Any

from . import local, tgi_config  # noqa: F401 - the kinds: each file registers itself in BACKENDS
from .base import BACKENDS, BackendError, Completion, GenerationParams, LLMBackend, LLMRequest, RetryableError
from .local import LocalConfig
from .tgi_config import TGIConfig

# One model entry of a recipe: the spec of its `backend` kind.
ModelSpec = BACKENDS.union()

__all__ = [
    "BACKENDS",
    "BackendError",
    "Completion",
    "GenerationParams",
    "LLMBackend",
    "LLMRequest",
    "LocalConfig",
    "ModelSpec",
    "RetryableError",
    "TGIConfig",
    "build_backend",
    "model_spec",
]


def model_spec(entry: Any) -> Any:
    """The checked spec of a model entry (a mapping; a spec is returned as it is), without
    loading a model or opening a socket."""
    return BACKENDS.parse(entry)


def build_backend(spec: Any) -> LLMBackend:
    """The backend of a model spec (a mapping is checked first: `model_spec`)."""
    spec = model_spec(spec)
    return BACKENDS.implementation(spec.backend)(spec)
