"""A recipe's `filters:` entries, checked when the recipe loads: `FilterSpec` is the union of the
options models registered in FILTERS (per-document blocks) and in LANGUAGE_STEPS (whole-language
steps such as dedup, filtering/dedup/), picked by `type`; `build_filter` turns a block's entry into
its block.

Imported by filters/__init__.py after every block module, so the union sees every registration
(taking it closes both registries: a kind registered later is refused, naming the forgotten import).
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ...errors import UsageError
from ...options import ConfigModel, readable_error
from ..dedup import LANGUAGE_STEPS
from .base import FILTERS, BaseFilter

FILTERS.union(), LANGUAGE_STEPS.union()  # closes the registries (see the module docstring)
_MEMBERS = tuple(registry.spec_model(kind) for registry in (FILTERS, LANGUAGE_STEPS) for kind in registry.kinds())
FilterSpec = Annotated[Union[_MEMBERS], Field(discriminator="type")]  # noqa: UP007 (a runtime tuple)
_SPEC = TypeAdapter(FilterSpec)


def parse_filter_spec(spec: dict[str, Any]) -> ConfigModel:
    """The options model of one mapping entry; a UsageError names the filter and the bad key."""
    try:
        return _SPEC.validate_python(spec)
    except ValidationError as error:
        kind = spec.get("type") if isinstance(spec, dict) else None
        raise UsageError(f"bad options for filter {kind!r}: {readable_error(error, FilterSpec)}") from None


def build_filter(spec: ConfigModel | dict[str, Any], language: str | None = None) -> BaseFilter:
    """Build one filter from a recipe entry: its checked options, or a mapping such as
    `{"type": "length", "min_chars": 200}`. Blocks that judge the target language get `language`
    unless the entry names one."""
    options = spec if isinstance(spec, BaseModel) else parse_filter_spec(spec)
    if options.type in LANGUAGE_STEPS.kinds():
        raise UsageError(
            f"{options.type!r} is a whole-language step, not a per-document filter: it runs over every task of a "
            "language (filtering/dedup/, `plan_steps`); build it with LANGUAGE_STEPS"
        )
    block = FILTERS.implementation(options.type)
    if block.needs_language and options.language is None:
        options = options.model_copy(update={"language": language})
    return block(options)
