"""The check behind each plug-in point's completeness test: a kind whose file was added but whose
registration, implementation or import was forgotten is found, with the fix named.

`point_problems(registry, package, consumer_kinds)` imports every module under the point's
package (so a file the package's `__init__` forgot is imported after the point's union was taken,
which the registry refuses), then lists what is wrong:

- a spec model defined in the package (a pydantic model whose discriminator is a one-value
  Literal) that is not the registered spec of its kind: its decorator is missing;
- a registered kind without an implementation that can be loaded;
- a registered kind missing from what the consumer offers (the recipe field's union, a
  command's choices).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from types import ModuleType
from typing import Any, Iterable

from pydantic import BaseModel

from xinstruction_dataset.registry import Registry


def point_problems(registry: Registry, package: ModuleType, consumer_kinds: Iterable[str]) -> list[str]:
    problems = []
    modules = [package]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except RuntimeError as error:  # the registry refused a registration after its union was taken
            problems.append(f"{info.name}: {error}")
    for module in modules:
        for spec in _specs_defined_in(module, registry.key):
            kind = registry.kind_of(spec)
            if kind not in registry.kinds() or registry.spec_model(kind) is not spec:
                problems.append(f"{module.__name__}.{spec.__name__} ({registry.point} kind {kind!r}) is not registered: decorate "
                                f"its implementation with the {registry.point} registry's .register({spec.__name__})")
    for kind in registry.kinds():
        try:
            registry.implementation(kind)
        except (RuntimeError, ImportError, AttributeError) as error:
            problems.append(f"kind {kind!r} has no implementation: {error}")
    offered = set(consumer_kinds)
    problems += [f"kind {kind!r} is registered but not offered (the union or choices were built without it)"
                 for kind in registry.kinds() if kind not in offered]
    return problems


def kinds_of_annotation(registry: Registry, annotation: Any) -> set[str]:
    """The kinds of the spec models in a (possibly Annotated, Optional) union annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return kinds_of_annotation(registry, typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(kinds_of_annotation(registry, arg) for arg in typing.get_args(annotation)))
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel) and registry.key in annotation.model_fields:
        return {registry.kind_of(annotation)}
    return set()


def _specs_defined_in(module: ModuleType, key: str) -> list[type[BaseModel]]:
    found = []
    for _, value in vars(module).items():
        if inspect.isclass(value) and issubclass(value, BaseModel) and value.__module__ == module.__name__:
            field = value.model_fields.get(key)
            values = typing.get_args(field.annotation) if field is not None else ()
            if typing.get_origin(field.annotation if field else None) is typing.Literal and len(values) == 1:
                found.append(value)
    return found
