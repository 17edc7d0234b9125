"""Typed configuration from YAML mappings: one dataclass per concept, one parser for all of them
(recipes, the `curation:` block, model specs).

`from_mapping(cls, data, where)` builds dataclass `cls` from a mapping, recursing into dataclass
fields and lists of them. Every error names where it is (`curation.judge.scale`,
`tgi backend.timeout`) and what is expected: unknown keys list the known ones. Values are checked
against simple type hints (str, int, float, bool, list[...], dict, X | None); YAML ints are
accepted where floats are expected, and one item where a list is.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], data: Any, where: str, *, exclude: tuple[str, ...] = ()) -> T:
    """Build `cls` from `data`; `exclude` names fields a mapping may not set (set in code)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    declared = {f.name: f for f in fields(cls) if f.name not in exclude}
    unknown = sorted(set(data) - set(declared))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(declared)}")
    missing = [name for name, f in declared.items() if name not in data and _required(f)]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    # A YAML key with no value (`curation:`) means "the default" where the field has one.
    given = {name: value for name, value in data.items() if value is not None or _admits_none(hints[name]) or _required(declared[name])}
    values = {name: convert(hints[name], value, f"{where}.{name}") for name, value in given.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def convert(hint: Any, value: Any, where: str) -> Any:
    """`value` checked (and widened: int to float, item to list) against type hint `hint`."""
    options = _union_members(hint)
    if value is None:
        if type(None) in options or Any in options:
            return None
        raise ValueError(f"{where} must not be empty")
    for option in options:
        converted = _try(option, value, where)
        if converted is not _NO_MATCH:
            return converted
    expected = " or ".join(_name(o) for o in options if o is not type(None))
    raise ValueError(f"{where} must be {expected}, got {value!r}")


_NO_MATCH = object()


def _try(option: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(option)
    if is_dataclass(option) and isinstance(value, dict):
        return from_mapping(option, value, where)
    if origin is list or option is list:
        (item,) = typing.get_args(option) or (Any,)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [convert(item, v, f"{where}[{i}]") for i, v in enumerate(items)]
    if option is Any or ((origin is dict or option is dict) and isinstance(value, dict)):
        return value
    if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if option is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if option in (str, bool) and isinstance(value, option):
        return value
    return _NO_MATCH


def _admits_none(hint: Any) -> bool:
    members = _union_members(hint)
    return type(None) in members or Any in members


def _required(field: Any) -> bool:
    return field.default is MISSING and field.default_factory is MISSING


def _union_members(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _name(option: Any) -> str:
    return getattr(option, "__name__", str(option))
