"""LLM access: one small interface (`base.LLMBackend`), one class per kind of server.

`build_backend(spec)` turns a recipe's model entry into a backend:

    {"backend": "local"}                                  # embedded default: gemma3-270m on CPU
    {"backend": "local", "model": "/path/model.gguf", "dtype": "float32"}
    {"backend": "tgi", "model": "org/name", "endpoints": ["http://h1:8080", "http://h2:8080"],
     "route": "generate", "max_concurrency": 64, "timeout": 120, "retries": 5,
     "context_policy": "truncate"}

The keys of each kind are the fields of its config dataclass (`LocalConfig`, `TGIConfig`); an
unknown or mistyped key is an error that names it and lists the known ones.
"""

from __future__ import annotations

from typing import Any

from ...typed import from_mapping
from .base import BackendError, Completion, GenerationParams, LLMBackend, LLMRequest, RetryableError

BACKEND_KINDS = ("local", "tgi")

__all__ = [
    "BACKEND_KINDS",
    "BackendError",
    "Completion",
    "GenerationParams",
    "LLMBackend",
    "LLMRequest",
    "RetryableError",
    "backend_config",
    "build_backend",
]


def build_backend(spec: dict[str, Any]) -> LLMBackend:
    """The backend a recipe entry describes (`{"backend": "local" | "tgi", ...}`)."""
    kind, config = backend_config(spec)
    if kind == "local":
        from .local import LocalBackend

        return LocalBackend(config)
    from .tgi import TGIBackend

    return TGIBackend(config)


def backend_config(spec: dict[str, Any]) -> tuple[str, Any]:
    """(kind, typed config) of a recipe entry, checked without loading a model or opening a socket."""
    if not isinstance(spec, dict):
        raise ValueError(f"a model spec is a mapping with a `backend` key, got {spec!r}")
    kind = spec.get("backend")
    if kind not in BACKEND_KINDS:
        raise ValueError(f"model spec: `backend` must be one of {BACKEND_KINDS}, got {kind!r}")
    options = {key: value for key, value in spec.items() if key != "backend"}
    if kind == "local":
        from .local import LocalConfig

        return kind, from_mapping(LocalConfig, options, f"{kind} backend")
    from .tgi import TGIConfig

    return kind, from_mapping(TGIConfig, options, f"{kind} backend")
