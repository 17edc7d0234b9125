"""One idiom for every plug-in point: a typed spec plus a registry that dispatches on its kind.

A plug-in point (filters, language-level steps, LLM backends, embedders, executors, export
formats, curation stages) is one `Registry`. A plug-in is one file: a pydantic spec whose
discriminator field is a one-value `Literal` (its kind), and the implementation, registered with
a decorator in that file:

    BACKENDS = Registry("backend", key="backend")        # in the plug-in point's module

    class VLLMConfig(ConfigModel):                       # in the new plug-in's file
        backend: Literal["vllm"] = "vllm"
        ...

    @BACKENDS.register(VLLMConfig)
    class VLLMBackend: ...

The one other line is the import of that file in the plug-in package's `__init__`, so that the
registration runs before the point's union is built. `union()` is the pydantic discriminated union
of every registered spec (what a recipe field is typed with); an unknown kind is a load-time error
that names the known ones. There is no fall-through: `implementation(kind)` of a kind that was
never registered is a bug, not "the other one".

A registration after `union()` has been taken would be missing from the recipes' checks, so it is
refused (the import was forgotten in the package `__init__`).

A point whose recipe key once implied its kind (`executor: {workers: 4}` meant local) names that
kind as its `default`: an entry without the key is that kind. A spec is a `PluginSpec`: checked
once, at load, then frozen, so the object the recipe holds is the one the implementation gets.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, Callable, Generic, TypeVar, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import UsageError
from .options import ConfigModel, readable_error

Spec = TypeVar("Spec", bound=BaseModel)
Impl = TypeVar("Impl")


class PluginSpec(ConfigModel):
    """The base of a plug-in's spec: a strict recipe mapping (options.ConfigModel), frozen once
    checked; a changed copy is `spec.model_copy(update=...)`."""

    model_config = ConfigDict(frozen=True)


class Registry(Generic[Spec]):
    """Kinds of one plug-in point: kind -> (spec model, implementation)."""

    def __init__(self, point: str, *, key: str = "type", default: str | None = None) -> None:
        self.point = point  # how errors name it: "filter", "backend", "executor", ...
        self.key = key  # the spec's discriminator field
        self.default = default  # the kind of an entry without `key` (see the module docstring)
        self._specs: dict[str, type[Spec]] = {}
        self._implementations: dict[str, Any] = {}
        self._union: Any = None
        self._adapter: TypeAdapter | None = None

    # -- registration -----------------------------------------------------------------------

    def kind_of(self, spec_model: type[BaseModel]) -> str:
        """The kind a spec model declares: the one value of its `Literal` discriminator."""
        field = spec_model.model_fields.get(self.key)
        values = get_args(field.annotation) if field is not None else ()
        if len(values) != 1 or not isinstance(values[0], str):
            raise TypeError(f"{spec_model.__name__}.{self.key} must be a one-value Literal naming its {self.point} kind")
        return values[0]

    def register(self, spec_model: type[Spec], implementation: Any = None) -> Callable[[Impl], Impl]:
        """Decorator (or call with `implementation`): make `spec_model`'s kind dispatch to the
        decorated class or function. `implementation` may be "module:attribute", imported on
        first use, for a plug-in whose code is heavy to import (torch, ray)."""
        kind = self.kind_of(spec_model)
        if self._union is not None:
            raise RuntimeError(
                f"{self.point} kind {kind!r} registered after the {self.point} union was built: import its module "
                f"from the plug-in package's __init__"
            )
        if kind in self._specs and self._specs[kind] is not spec_model:
            raise RuntimeError(f"{self.point} kind {kind!r} is registered twice ({self._specs[kind].__name__}, {spec_model.__name__})")
        self._specs[kind] = spec_model

        def wrap(target: Impl) -> Impl:
            self._implementations[kind] = target
            return target

        if implementation is not None:
            wrap(implementation)
        return wrap

    # -- lookup -----------------------------------------------------------------------------

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def spec_model(self, kind: str) -> type[Spec]:
        try:
            return self._specs[kind]
        except KeyError:
            raise UsageError(f"unknown {self.point} {self.key} {kind!r}; one of: {', '.join(sorted(self._specs))}") from None

    def implementation(self, kind: str) -> Any:
        """What `kind` dispatches to. A registered spec without an implementation is a bug."""
        self.spec_model(kind)
        target = self._implementations.get(kind)
        if target is None:
            raise RuntimeError(f"{self.point} kind {kind!r} has a spec but no implementation registered")
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
            self._implementations[kind] = target
        return target

    def union(self) -> Any:
        """The discriminated union of every registered spec, for typing a recipe field. Taking it
        closes the registry (see the module docstring)."""
        if self._union is None:
            if not self._specs:
                raise RuntimeError(f"no {self.point} kind is registered")
            specs = tuple(self._specs.values())
            member = specs[0] if len(specs) == 1 else Union[specs]  # noqa: UP007 (a runtime tuple)
            union = Annotated[member, Field(discriminator=self.key)] if len(specs) > 1 else member
            self._union = Annotated[union, BeforeValidator(self._with_default)] if self.default else union
        return self._union

    def _with_default(self, data: Any) -> Any:
        if self.default and isinstance(data, dict) and self.key not in data:
            return {self.key: self.default, **data}
        return data

    def parse(self, data: Any) -> Spec:
        """A checked spec from a mapping (or the spec itself); a UsageError names the bad key and,
        for an unknown kind, the known ones."""
        if isinstance(data, tuple(self._specs.values())):
            return data
        if not isinstance(data, dict):
            raise UsageError(f"a {self.point} entry is a mapping with a `{self.key}` key ({', '.join(sorted(self._specs))}), got {data!r}")
        if self._adapter is None:
            self._adapter = TypeAdapter(self.union())
        data = self._with_default(data)
        try:
            return self._adapter.validate_python(data)
        except ValidationError as error:
            raise UsageError(f"bad {self.point} {data.get(self.key)!r}: {readable_error(error, self.union())}") from None
