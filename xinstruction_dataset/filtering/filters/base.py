"""The filter block: built from its options model, one `filter(doc)` method, its own counters.

A block is one file: its options model (a `ConfigModel` whose `type` is a one-value `Literal`,
the recipe's `type:`) and the block, registered on it:

    class WordCountOptions(ConfigModel):
        type: Literal["word_count"] = "word_count"
        min_words: Annotated[int, Field(ge=0)] = 50

    @FILTERS.register(WordCountOptions)
    class WordCountFilter(BaseFilter):
        options: WordCountOptions

        def filter(self, doc: Document) -> FilterResult:
            n = len(doc.text.split())
            return n >= self.options.min_words or (False, f"too_few_words:{n}")

plus the import of that file in filters/__init__.py (the registry's idiom, registry.py). The
options are checked once, by the model, when the recipe loads; the block reads them from
`self.options`, and `config()` is their dump. `WordCountFilter()` is built with the defaults.

As in datatrove, `filter(doc)` returns True to keep a document, or False / (False, reason) to
reject it. The block prefixes the reason with its kind (`language:wrong_language:en`), so a
rejects file says which block dropped a document and why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, Callable, ClassVar

from ...documents import Document
from ...options import ConfigModel
from ...registry import Registry

FilterResult = bool | tuple[bool, str]


class FilterRegistry(Registry[ConfigModel]):
    """The filter plug-in point: a `Registry` whose registration also tells the block its kind
    (its `name`, the prefix of its reasons) and its options model (what it is built from)."""

    def register(self, spec_model: type[ConfigModel], implementation: Any = None) -> Callable[[type[BaseFilter]], type[BaseFilter]]:
        if implementation is not None:
            raise TypeError("a filter block registers as a decorator on its class: @FILTERS.register(ItsOptions)")
        record = super().register(spec_model)

        def named(block: type[BaseFilter]) -> type[BaseFilter]:
            block.name, block.options_model = self.kind_of(spec_model), spec_model
            return record(block)

        return named


FILTERS = FilterRegistry("filter", key="type")


class BaseFilter(ABC):
    name: ClassVar[str] = "filter"
    options_model: ClassVar[type[ConfigModel] | None] = None  # set by FILTERS.register
    # Filters that judge a document against the recipe's target language get `language=` injected
    # by build_filter when their options leave it out.
    needs_language: ClassVar[bool] = False

    def __init__(self, options: ConfigModel | None = None) -> None:
        model = type(self).options_model
        if model is not None and options is None:
            options = model()
        elif model is not None and not isinstance(options, model):
            raise TypeError(f"{type(self).__name__} is built from {model.__name__}, got {type(options).__name__}")
        self.options = options
        self.stats: Counter[str] = Counter()

    @abstractmethod
    def filter(self, doc: Document) -> FilterResult:
        """Return True to keep `doc`; False or (False, reason) to reject it."""

    def __call__(self, doc: Document) -> str | None:
        """Apply the filter and count; return the prefixed reject reason, or None when kept."""
        self.stats["in"] += 1
        result = self.filter(doc)
        keep, reason = (result, "rejected") if isinstance(result, bool) else result
        if keep:
            self.stats["kept"] += 1
            return None
        self.stats[f"rejected:{reason}"] += 1
        return f"{self.name}:{reason}"

    def config(self) -> dict[str, Any]:
        """The options this block was built with, as the block resolved them (a detector's default
        threshold filled in): its options model's dump without `type`."""
        return {} if self.options is None else self.options.model_dump(exclude={"type"})
