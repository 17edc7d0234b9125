"""A recipe's `filters:` entries, checked when the recipe loads: one options model per block,
picked by `type` (`FilterSpec`), and `build_filter`, which turns an entry into its block.

Each options model sits beside its block and lists exactly the block's constructor options
(tests/test_recipe_validation.py holds them to that), with their ranges, so a recipe's filter
chain is known to build before the first document is read.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from ...errors import UsageError
from ...options import ConfigModel, readable_error
from .base import FILTERS, BaseFilter
from ..dedup.options import DedupOptions, ExactDedupOptions, NearDedupOptions
from .heuristics import BoilerplateOptions, MarkupOptions, MojibakeOptions, RepetitionOptions
from .langid import LanguageOptions
from .length import LengthOptions

FilterSpec = Annotated[
    Union[
        LanguageOptions, LengthOptions, BoilerplateOptions, RepetitionOptions, MarkupOptions,
        MojibakeOptions, ExactDedupOptions, NearDedupOptions, DedupOptions,
    ],
    Field(discriminator="type"),
]
_SPEC = TypeAdapter(FilterSpec)


def parse_filter_spec(spec: dict[str, Any]) -> ConfigModel:
    """The options model of one mapping entry; a ValueError names the filter and the bad key."""
    try:
        return _SPEC.validate_python(spec)
    except ValidationError as error:
        kind = spec.get("type") if isinstance(spec, dict) else None
        raise UsageError(f"bad options for filter {kind!r}: {readable_error(error, FilterSpec)}") from None


def build_filter(spec: ConfigModel | dict[str, Any], language: str | None = None) -> BaseFilter:
    """Build one filter from a recipe entry: its checked options, or a mapping such as
    `{"type": "length", "min_chars": 200}`. Blocks that judge the target language get `language`
    unless the entry names one."""
    options = spec if isinstance(spec, ConfigModel) else parse_filter_spec(spec)
    cls = FILTERS[options.type]
    kwargs = options.model_dump(exclude={"type"})
    if cls.needs_language and kwargs.get("language") is None:
        kwargs["language"] = language
    return cls(**kwargs)
