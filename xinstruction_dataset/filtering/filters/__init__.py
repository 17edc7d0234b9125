"""Filter blocks. Importing this package registers every block, so `build_filter` knows them all.

Registry names (recipe `type:`): `language`, `length`, `boilerplate`, `repetition`, `markup`,
`mojibake`, `exact_dedup`, `near_dedup`, `dedup`.
"""

from .base import FILTERS, BaseFilter, FilterResult, build_filter, register
from .dedup import DedupFilter, ExactDedupFilter, NearDedupFilter
from .heuristics import BoilerplateFilter, MarkupFilter, MojibakeFilter, RepetitionFilter
from .langid import LanguageFilter
from .length import LengthFilter

__all__ = [
    "FILTERS",
    "BaseFilter",
    "FilterResult",
    "build_filter",
    "register",
    "LanguageFilter",
    "LengthFilter",
    "BoilerplateFilter",
    "RepetitionFilter",
    "MarkupFilter",
    "MojibakeFilter",
    "ExactDedupFilter",
    "NearDedupFilter",
    "DedupFilter",
]
