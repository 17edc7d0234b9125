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

import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

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

        return kind, _typed(LocalConfig, options, kind)
    from .tgi import TGIConfig

    return kind, _typed(TGIConfig, options, kind)


def _typed(config_class: type, options: dict[str, Any], kind: str) -> Any:
    """`config_class(**options)` with errors that name the bad key and what it should be."""
    assert is_dataclass(config_class)
    declared = {f.name: f for f in fields(config_class)}
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise ValueError(f"{kind} backend: unknown key(s) {unknown}; known keys: {sorted(declared)}")
    missing = [name for name, f in declared.items() if f.default is MISSING and f.default_factory is MISSING and name not in options]  # type: ignore[misc]
    if missing:
        raise ValueError(f"{kind} backend: missing required key(s) {missing}")
    hints = typing.get_type_hints(config_class)
    converted = {key: _coerce(value, hints[key], f"{kind} backend: key `{key}`") for key, value in options.items()}
    try:
        return config_class(**converted)
    except ValueError as error:
        raise ValueError(f"{kind} backend: {error}") from error


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a simple type hint (str, int, float, bool, list[str], X | None);
    YAML ints are accepted where floats are expected, a single string where a list is."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{where} must not be empty")
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option)
        if origin is list:
            items = [value] if isinstance(value, str) else value
            if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
                return list(items)
        elif option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif option in (str, bool) and isinstance(value, option):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ValueError(f"{where} must be {expected}, got {value!r}")
