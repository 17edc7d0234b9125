"""The completeness check of the plug-in points (plugin_checks.py) can fail: a kind's file whose
import, decorator or implementation was forgotten is reported, naming the fix, and a complete
point has no problem."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from plugin_checks import kinds_of_annotation, point_problems

BASE = """
from xinstruction_dataset.registry import Registry
COLOURS = Registry("colour", key="kind")
"""
KIND = """
from typing import Literal
from xinstruction_dataset.registry import PluginSpec
from .base import COLOURS

class {name}Spec(PluginSpec):
    kind: Literal["{kind}"] = "{kind}"

{decorator}
class {name}:
    def __init__(self, spec):
        self.spec = spec
"""


def _package(root: Path, name: str, kinds: dict[str, str], imported: list[str]) -> object:
    """A plug-in package `name`: base.py, one file per kind (source), and an __init__ that imports
    `imported`, then takes the union."""
    folder = root / name
    folder.mkdir()
    (folder / "base.py").write_text(BASE)
    for kind, source in kinds.items():
        (folder / f"{kind}.py").write_text(textwrap.dedent(source))
    lines = [f"from . import {kind}  # noqa: F401" for kind in imported]
    (folder / "__init__.py").write_text("\n".join([*lines, "from .base import COLOURS", "UNION = COLOURS.union()", ""]))
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(root))


def kind(name: str, kind: str, decorated: bool = True, implementation: str | None = None) -> str:
    decorator = f"@COLOURS.register({name}Spec)" if decorated else ""
    source = KIND.format(name=name, kind=kind, decorator=decorator)
    if implementation:
        source = source.replace(decorator, "") + f"\nCOLOURS.register({name}Spec, {implementation!r})\n"
    return source


CASES = {
    "complete": ({"red": kind("Red", "red"), "blue": kind("Blue", "blue")}, ["red", "blue"], None),
    "import forgotten": ({"red": kind("Red", "red"), "blue": kind("Blue", "blue")}, ["red"],
                         "blue: colour kind 'blue' registered after the colour union was built: import its module"),
    "decorator forgotten": ({"red": kind("Red", "red"), "blue": kind("Blue", "blue", decorated=False)}, ["red", "blue"],
                            "BlueSpec (colour kind 'blue') is not registered"),
    "implementation gone": ({"red": kind("Red", "red"), "blue": kind("Blue", "blue", implementation="json:no_such")}, ["red", "blue"],
                            "kind 'blue' has no implementation"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_point_check_sees_what_was_forgotten(tmp_path, case):
    kinds, imported, expected = CASES[case]
    package = _package(tmp_path, f"colours_{case.replace(' ', '_')}", kinds, imported)
    problems = point_problems(package.COLOURS, package, kinds_of_annotation(package.COLOURS, package.UNION))
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_a_kind_missing_from_the_consumer_is_reported(tmp_path):
    package = _package(tmp_path, "colours_offered", {"red": kind("Red", "red"), "blue": kind("Blue", "blue")}, ["red", "blue"])
    problems = point_problems(package.COLOURS, package, ["red"])
    assert problems == ["kind 'blue' is registered but not offered (the union or choices were built without it)"]
