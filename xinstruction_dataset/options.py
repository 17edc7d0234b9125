"""The base of every recipe model (the recipe, each filter's options, the `curation:` block, each
model spec) and the one way their validation errors are reported.

A recipe is checked whole when it is loaded, so a typo costs seconds, not a night of filtering:

- `ConfigModel` is strict (a quoted `"3"` is not the integer 3: in a recipe it is a mistake) and
  forbids unknown keys (a misspelt key would otherwise be ignored and its default used).
  An empty YAML value (`curation:`) means the field's default.
- `readable_error` turns pydantic's errors into one ValueError that names each full key path as
  the recipe spells it (`curation.judge.scael`, `filters[2].min_chars`) and what is accepted
  there: the known keys for an unknown key, the choices for an enum, the range for a number.
- `NotFingerprinted` marks fields that do not change what a run writes (paths, throughput,
  credentials): the run fingerprint (fingerprint.py) leaves them out. `FingerprintedWhenSet`
  marks fields added later: at their default they are left out too, so older folders resume.
- `LanguageCode` is an X-Instruction language code, checked against languages.py.
"""

from __future__ import annotations

import argparse
import os
import reprlib
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import annotated_types
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator
from typing_extensions import is_typeddict

from .errors import UsageError
from .languages import get_language


class ConfigModel(BaseModel):
    """A recipe mapping: strict types, no unknown keys, empty values take the default."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """`key:` with no value in YAML is None; for a field with a default it means that default."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if v is not None or k not in fields or fields[k].is_required()}


class NotFingerprinted:
    """Field metadata: this value does not shape a run's outputs (`why`: "output path",
    "throughput", "credentials"...), so changing it between runs of one output folder is fine."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"NotFingerprinted({self.why!r})"


def is_fingerprinted(field: Any) -> bool:
    return not any(isinstance(m, NotFingerprinted) for m in getattr(field, "metadata", ()))


class FingerprintedWhenSet:
    """Field metadata: a field added after run folders were made. Left at its default it is not
    in the fingerprint, so those folders keep resuming; set, it is, like any other field."""


def fingerprint_skips(field: Any, value: Any) -> bool:
    """Whether `value` of `field` stays out of the fingerprint (a `FingerprintedWhenSet` default)."""
    return value == field.default and any(isinstance(m, FingerprintedWhenSet) for m in getattr(field, "metadata", ()))


def _known_language(code: str) -> str:
    return get_language(code).code


LanguageCode = Annotated[str, AfterValidator(_known_language)]


# --- output folders ----------------------------------------------------------------------------


def expand_home(path: str) -> str:
    """`~` and `~user` at the start of `path` expanded as a shell would (a recipe value or a
    quoted option reaches us unexpanded, and made a folder literally named `~`)."""
    return os.path.expanduser(path) if path.startswith("~") else path


def check_output_folder(path: str | Path, what: str = "output_dir") -> Path:
    """`path` with `~` expanded (absolute, or relative to the working folder), refused when it is
    the filesystem root or the home folder: a run creates, replaces and deletes folders inside
    its output folder, and the root or a home folder holds everything else."""
    expanded = Path(expand_home(str(path)))
    resolved = expanded.resolve()
    home = Path.home().resolve()
    if resolved.parent == resolved or resolved == home:
        place = "the filesystem root" if resolved.parent == resolved else "your home folder"
        raise UsageError(
            f"{what} {str(path)!r} is {place} ({resolved}); the toolkit writes and replaces folders inside it: "
            f"give a folder of its own, e.g. {resolved / 'runs' / 'NAME'}"
        )
    return expanded


def output_folder_option(text: str) -> str:
    """argparse `type=` of a command-line option naming an output folder (`--output-dir`, `-o`,
    an export's FOLDER): the same rule as a recipe's output_dir, refused as a usage error (exit 2)."""
    try:
        return str(check_output_folder(text, "the folder"))
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# --- errors ---------------------------------------------------------------------------------


def readable_error(error: ValidationError, root: Any, at: str = "") -> ValueError:
    """One ValueError for all of `error`'s problems; `root` is the type that was validated and
    `at` its key path in the recipe (`curation`, or "" for the recipe itself)."""
    problems = list(dict.fromkeys(_describe(detail, root, at) for detail in error.errors(include_url=False)))
    more = f"; and {len(problems) - MAX_PROBLEMS} more problem(s)" if len(problems) > MAX_PROBLEMS else ""
    return UsageError("; ".join(clip(p, MAX_PROBLEM_CHARS) for p in problems[:MAX_PROBLEMS]) + more)


def _describe(detail: dict[str, Any], root: Any, at: str) -> str:
    loc, kind, ctx = detail["loc"], detail["type"], detail.get("ctx") or {}
    path, field = _walk(root, loc, at)
    shown = _short(detail.get("input"))
    if kind == "extra_forbidden":
        parent, owner = _walk(root, loc[:-1], at)
        where = f" at {parent}" if parent else ""
        return f"unknown key {path}; known keys{where}: {', '.join(_keys(owner))}"
    if kind == "missing":
        return f"{path} is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = ctx.get("discriminator", "type").strip("'")
        tags = ", ".join(_tags(field)) or ctx.get("expected_tags", "")
        got = f"unknown {key} {ctx['tag']!r}" if kind == "union_tag_invalid" else f"no `{key}` key"
        return f"{_join(path, key)}: {got}; one of: {tags}"
    if kind == "literal_error":
        return f"{path} must be one of {ctx['expected']}, got {shown}"
    if kind in _TYPES:
        return f"{path} must be {_TYPES[kind]}, got {shown}"
    if kind in _BOUNDS:
        return f"{path} must be {_range(field, ctx)}, got {shown}"
    message = str(ctx["error"]) if "error" in ctx else detail["msg"].replace("Input should be", "must be")
    return f"{path}: {message}" if path else message


_TYPES = {
    "int_type": "int", "int_from_float": "int", "float_type": "a number", "string_type": "str",
    "bool_type": "true or false", "list_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "typed_dict_type": "a mapping",
}
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _range(field: Any, ctx: dict[str, Any]) -> str:
    """The whole accepted range of a number (`in (0, 1]`), found in its annotation's bounds."""
    bounds = {name: getattr(b, name) for b in _bound_markers(field) for name in ("gt", "ge", "lt", "le") if hasattr(b, name)}
    bounds = bounds or ctx
    low = f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else None
    high = f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    return ("<= " if high and high[-1] == "]" else "< ") + (high or "?")[:-1]


_BOUND_TYPES = (annotated_types.Gt, annotated_types.Ge, annotated_types.Lt, annotated_types.Le)


def _bound_markers(annotation: Any) -> list[Any]:
    """The Gt/Ge/Lt/Le constraints in a FieldInfo or annotation, however deeply annotated."""
    if isinstance(annotation, _BOUND_TYPES):
        return [annotation]
    found = [m for m in getattr(annotation, "metadata", ()) if isinstance(m, _BOUND_TYPES)]
    inner = getattr(annotation, "annotation", annotation)
    for arg in typing.get_args(inner):
        found += _bound_markers(arg)
    return found


# An error line stays a line: a list of 10^5 wrong items names the first problems, not all.
MAX_PROBLEMS = 20
MAX_PROBLEM_CHARS = 500
# The refused value is quoted cut *before* it is formatted: a repr of a whole refused value (a
# deeply aliased list) cost minutes and all memory. reprlib stops at these sizes and depths.
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxtuple, _QUOTE.maxdict, _QUOTE.maxset = 3, 6, 6, 6, 6
_QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 78, 78, 40


def _short(value: Any) -> str:
    return clip(_QUOTE.repr(value), 80)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


# --- walking a type along an error location -----------------------------------------------


def _walk(root: Any, loc: tuple[Any, ...], at: str) -> tuple[str, Any]:
    """(the key path of `loc` as the recipe spells it, the field or type found there).

    pydantic's locations also hold steps that are not keys: the tag of a discriminated union
    (`filters, 2, 'length', 'min_chars'`), the member of a plain union, `[key]` of a dict key.
    Walking the declared types says which steps are keys."""
    path, here = at, root
    for step in loc:
        here, shown = _step(here, step)
        if shown is not None:
            path = _join(path, shown)
    return path, here


def _step(here: Any, step: Any) -> tuple[Any, Any]:
    """(what `step` leads to inside `here`, the key to show or None for a non-key step)."""
    if step == "[key]":  # the error is in a mapping's key, which the path already ends with
        return here, None
    kind = _unwrap(here)
    if isinstance(step, int) and typing.get_origin(kind) is not dict:
        args = typing.get_args(kind)
        return (args[0] if args else None), step
    fields = _fields(kind)
    if fields is not None:
        return fields.get(step), step
    members = _members(kind)
    if members:
        tagged = [m for m in members if step in _literals(m)]
        return (tagged[0] if tagged else here), None
    if typing.get_origin(kind) is dict:
        return typing.get_args(kind)[1], step
    return None, step


def _unwrap(annotation: Any) -> Any:
    """The type behind a FieldInfo, `Annotated[...]`, `Required[...]` or `X | None`."""
    while True:
        annotation = getattr(annotation, "annotation", annotation)
        origin = typing.get_origin(annotation)
        if origin is Annotated or origin in (typing.Required, typing.NotRequired):
            annotation = typing.get_args(annotation)[0]
            continue
        members = [m for m in _members(annotation) if m is not type(None)]
        if len(members) == 1:
            annotation = members[0]
            continue
        return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return ()


def _fields(kind: Any) -> dict[str, Any] | None:
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return dict(kind.model_fields)
    if is_typeddict(kind):
        return typing.get_type_hints(kind, include_extras=True)
    return None


def _keys(owner: Any) -> list[str]:
    """The keys a recipe writes at `owner`: its fields, but those never dumped (a stage block's
    kind, implied by the block's key)."""
    fields = _fields(_unwrap(owner)) or {}
    return [name for name, field in fields.items() if not getattr(field, "exclude", False)] or ["(none)"]


def _literals(member: Any) -> set[Any]:
    """The single-value Literal fields of a union member: its tag (`type: length`)."""
    found = set()
    for field in (_fields(_unwrap(member)) or {}).values():
        args = typing.get_args(_unwrap(field))
        if typing.get_origin(_unwrap(field)) is typing.Literal and len(args) == 1:
            found.add(args[0])
    return found


def _tags(union: Any) -> list[str]:
    return sorted(str(tag) for member in _members(_unwrap(union)) for tag in _literals(member))
