"""The one parser of typed configuration (recipes, the curation block, model specs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from xinstruction_dataset.recipe import Recipe
from xinstruction_dataset.typed import from_mapping


@dataclass
class Inner:
    size: int
    ratio: float = 0.5


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=lambda: Inner(1))
    items: list[Inner] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    extra: dict | None = None


def test_nested_lists_and_widening():
    built = from_mapping(Outer, {"name": "x", "inner": {"size": 2, "ratio": 1}, "items": [{"size": 3}], "tags": "one"}, "cfg")
    assert built == Outer("x", Inner(2, 1.0), [Inner(3)], ["one"]) and isinstance(built.inner.ratio, float)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "innr": {}}, r"cfg: unknown key\(s\) innr; known keys: name, inner, items, tags, extra"),
        ({}, r"cfg: missing required key\(s\) name"),
        ({"name": "x", "inner": {"size": "big"}}, r"cfg.inner.size must be int, got 'big'"),
        ({"name": "x", "items": [{"size": 1}, {"size": True}]}, r"cfg.items\[1\].size must be int"),
        ({"name": "x", "inner": 3}, r"cfg.inner must be Inner, got 3"),
        ("not a mapping", "cfg must be a mapping, got str"),
    ],
)
def test_errors_say_where_and_what(data, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(Outer, data, "cfg")


def test_an_empty_yaml_value_means_the_default():
    assert from_mapping(Outer, {"name": "x", "inner": None, "extra": None}, "cfg") == Outer("x")
    recipe = Recipe.from_dict({"name": "r", "curation": None, "sources": [{"path": "a.jsonl", "language": "sw"}]})
    assert recipe.curation == {} and recipe.languages == ["sw"]
