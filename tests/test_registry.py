"""The plug-in idiom itself: a kind dispatches to what registered it, an unknown kind is an error
naming the known ones, and a registration the union cannot see is refused."""

from __future__ import annotations

from typing import Literal

import pytest

from xinstruction_dataset.errors import UsageError
from xinstruction_dataset.options import ConfigModel
from xinstruction_dataset.registry import Registry


class RedSpec(ConfigModel):
    kind: Literal["red"] = "red"
    shade: int = 1


class BlueSpec(ConfigModel):
    kind: Literal["blue"] = "blue"


def _registry() -> Registry:
    colours = Registry("colour", key="kind")

    @colours.register(RedSpec)
    class Red:
        pass

    colours.register(BlueSpec, "collections:OrderedDict")
    return colours


def test_a_kind_dispatches_to_its_implementation_and_a_lazy_one_is_imported_on_use():
    colours = _registry()
    assert colours.kinds() == ("red", "blue")
    assert colours.implementation("red").__name__ == "Red"
    import collections

    assert colours.implementation("blue") is collections.OrderedDict
    assert colours.parse({"kind": "red", "shade": 3}) == RedSpec(shade=3)


def test_an_unknown_kind_names_the_known_ones():
    colours = _registry()
    with pytest.raises(UsageError, match=r"unknown kind 'green'; one of: blue, red"):
        colours.parse({"kind": "green"})
    with pytest.raises(UsageError, match=r"one of: blue, red"):
        colours.implementation("green")
    with pytest.raises(UsageError, match=r"unknown key"):
        colours.parse({"kind": "red", "hue": 1})


def test_a_registration_after_the_union_was_taken_is_refused():
    colours = _registry()
    colours.union()

    class GreenSpec(ConfigModel):
        kind: Literal["green"] = "green"

    with pytest.raises(RuntimeError, match="registered after the colour union was built"):
        colours.register(GreenSpec, object)


def test_a_spec_without_a_one_value_literal_kind_is_refused():
    class Vague(ConfigModel):
        kind: Literal["a", "b"] = "a"

    with pytest.raises(TypeError, match="one-value Literal"):
        Registry("colour", key="kind").register(Vague, object)
