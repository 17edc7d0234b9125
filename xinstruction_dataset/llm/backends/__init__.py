"""LLM access: one small interface (`base.LLMBackend`), one class per kind of server.

`build_backend(spec)` turns a recipe's model entry into a backend:

    {"backend": "local"}                                  # embedded default: gemma3-270m on CPU
    {"backend": "local", "model": "/path/model.gguf", "dtype": "float32"}
    {"backend": "tgi", "model": "org/name", "endpoints": ["http://h1:8080", "http://h2:8080"],
     "route": "generate", "max_concurrency": 64, "timeout": 120, "retries": 5,
     "context_policy": "truncate"}

The keys of each kind are the fields of its pydantic config (`LocalConfig` in local.py,
`TGIConfig` in tgi_config.py), picked by `backend`; an unknown or mistyped key is an error that
names it and lists the known ones. A recipe's model entries are checked against these when the
recipe is loaded (`ModelSpec`), so nothing here waits for a model or a socket to find a typo.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from ...errors import UsageError
from ...options import readable_error
from .base import BackendError, Completion, GenerationParams, LLMBackend, LLMRequest, RetryableError
from .local import LocalConfig
from .tgi_config import TGIConfig

BACKEND_KINDS = ("local", "tgi")
# One model entry of a recipe: the config of its `backend`.
ModelSpec = Annotated[Union[LocalConfig, TGIConfig], Field(discriminator="backend")]
_SPEC = TypeAdapter(ModelSpec)

__all__ = [
    "BACKEND_KINDS",
    "BackendError",
    "Completion",
    "GenerationParams",
    "LLMBackend",
    "LLMRequest",
    "LocalConfig",
    "ModelSpec",
    "RetryableError",
    "TGIConfig",
    "backend_config",
    "build_backend",
]


def build_backend(spec: dict[str, Any] | LocalConfig | TGIConfig) -> LLMBackend:
    """The backend a recipe entry describes (`{"backend": "local" | "tgi", ...}`)."""
    kind, config = backend_config(spec)
    if kind == "local":
        from .local import LocalBackend

        return LocalBackend(config)
    from .tgi import TGIBackend

    return TGIBackend(config)


def backend_config(spec: dict[str, Any] | LocalConfig | TGIConfig) -> tuple[str, LocalConfig | TGIConfig]:
    """(kind, typed config) of a recipe entry, checked without loading a model or opening a socket."""
    if isinstance(spec, (LocalConfig, TGIConfig)):
        return spec.backend, spec
    if not isinstance(spec, dict):
        raise UsageError(f"a model spec is a mapping with a `backend` key ({' or '.join(BACKEND_KINDS)}), got {spec!r}")
    try:
        config = _SPEC.validate_python(spec)
    except ValidationError as error:
        raise UsageError(f"model spec: {readable_error(error, ModelSpec)}") from None
    return config.backend, config
