"""Filter blocks. Importing this package registers every block, so `build_filter` knows them all.

Registry names (recipe `type:`): `language`, `length`, `boilerplate`, `repetition`, `markup`,
`mojibake`, `exact_dedup`, `near_dedup`, `dedup`. Each has an options model beside it; `FilterSpec`
(spec.py) is their union, how a recipe's `filters:` entries are checked.
"""

from .base import FILTERS, BaseFilter, FilterResult, register
from .spec import FilterSpec, build_filter, parse_filter_spec
from .heuristics import BoilerplateFilter, MarkupFilter, MojibakeFilter, RepetitionFilter
from .langid import LanguageFilter
from .length import LengthFilter

__all__ = [
    "FILTERS",
    "BaseFilter",
    "FilterResult",
    "FilterSpec",
    "build_filter",
    "parse_filter_spec",
    "register",
    "LanguageFilter",
    "LengthFilter",
    "BoilerplateFilter",
    "RepetitionFilter",
    "MarkupFilter",
    "MojibakeFilter",
]
