"""Filter blocks, one file each: an options model and its block, registered in FILTERS (base.py).

Importing this package registers every block, then takes the recipe union (`FilterSpec`, spec.py),
which closes the registry: a new block's module is imported here, above the `.spec` import, as
`from .word_count import WordCountFilter as WordCountFilter` (the `as` marks a re-export).
Registry kinds (recipe `type:`): `language`, `length`, `boilerplate`, `repetition`, `markup`,
`mojibake`; the dedup entries `exact_dedup`, `near_dedup` and `dedup` are whole-language steps
(filtering/dedup/, LANGUAGE_STEPS) whose options join the union.
"""

# Every block module, before .spec (which takes the union): one line per filter file.
from .langid import LanguageFilter as LanguageFilter
from .length import LengthFilter as LengthFilter
from .heuristics import BoilerplateFilter as BoilerplateFilter, MarkupFilter as MarkupFilter
from .heuristics import MojibakeFilter as MojibakeFilter, RepetitionFilter as RepetitionFilter

from .base import FILTERS, BaseFilter, FilterResult
from .spec import FilterSpec, build_filter, parse_filter_spec

__all__ = ["FILTERS", "BaseFilter", "FilterResult", "FilterSpec", "build_filter", "parse_filter_spec"]
