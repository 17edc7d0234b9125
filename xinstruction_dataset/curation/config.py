"""The typed `curation:` block of a recipe, composed from the registered stages.

    curation:
      seed, input, cache, records_per_shard      the run's own knobs (here)
      drivers, budget, cost                      throughput and spending (here; not in the
                                                 fingerprint nor in the written config)
      models: {<role>: <model entry>, ...}       one entry per role a registered stage declares
      <stage>: {...}                             each registered stage's block: its config model,
                                                 beside it (generate/config.py, judge/config.py, ...)
      diversify: {...}                           the merge phase's block (diversify/config.py)

The stages are plug-ins (stage.py: `STAGES`): `CurationConfig` has one field per registered
stage, in registration order, and `ModelsConfig` one entry per role they declare. Building them
here closes the registry, so every stage package is imported before this module (by
`curation/__init__.py`). A role left out of `models:` is served by the model of the role it
falls back to, which its stage declares (`Stage.role_fallback`); the toolkit's chain is
refiner -> judge -> generator -> the embedded local model. `ModelsConfig.spec` resolves it, for
every reader of the models (the backends, the fingerprint, the dry-run plans).

The block is checked with the rest of the recipe when it is loaded (recipe.py): unknown keys are
an error that lists the known ones, out-of-range values an error that gives the range, omitted
keys take the documented defaults. The resolved config serialises back to a dict / YAML
(`to_dict`, `to_yaml`), secrets redacted: a run writes it beside its outputs and into its
summary, so every curated record can be traced to the exact settings.

The paper did not publish its labelling scale, thresholds, number of refinement rounds,
embedding model or k; the defaults are this project's choices, recorded with every run (its
`curation/config.yaml` and each language's summary).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import yaml
from pydantic import Field, ValidationError, create_model

from ..llm.backends import LocalConfig, ModelSpec
from ..options import ConfigModel, NotFingerprinted, readable_error
from ..redact import redact_secret_values
from ..registry import PluginSpec
from .budget import BudgetConfig, CostConfig
from .diversify.config import DiversifyConfig
from .embedders import EmbeddingSpec
from .generate.config import GenerateConfig
from .judge.config import JUDGE_SCALES, JudgeConfig
from .refine.config import REFINE_TARGETS, RefineConfig
from .stage import STAGES, Sampling, stage_roles

# The blocks of the toolkit's own stages, for the callers that name their types.
__all__ = [
    "CurationConfig", "DiversifyConfig", "EmbeddingSpec", "GenerateConfig", "JUDGE_SCALES",
    "JudgeConfig", "ModelsConfig", "REFINE_TARGETS", "ROLES", "RefineConfig", "Sampling",
]

# Every role the registered stages declare -> the role it falls back to (None: the local model).
ROLES: dict[str, str | None] = stage_roles()


class _Models(ConfigModel):
    def spec(self, role: str) -> PluginSpec:
        """The checked, frozen model spec serving `role`: its own, else its fallback role's (ROLES)."""
        own = getattr(self, role)
        return own if own is not None else self.spec(ROLES[role])

    def specs(self) -> dict[str, PluginSpec]:
        """Every role's model spec, fallbacks applied (what the backends are built from and the
        fingerprint records)."""
        return {role: self.spec(role) for role in ROLES}

    resolved = specs


def _role_field(fallback: str | None) -> tuple[Any, Any]:
    if fallback is None:  # a role at the root of the chain: the embedded model, unless named
        return ModelSpec, Field(default_factory=LocalConfig)
    return Optional[ModelSpec], None  # noqa: UP045 (a runtime annotation)


ModelsConfig = create_model(
    "ModelsConfig",
    __base__=_Models,
    __module__=__name__,
    __doc__="Backend specs by role (`backends.build_backend`), one per role of the registered stages; a role "
    "left out is served by its fallback's model (ROLES). The model ids recorded in provenance are the built "
    "backends' `model_id`.",
    **{role: _role_field(fallback) for role, fallback in ROLES.items()},
)


class _Curation(ConfigModel):
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    input: str = ""  # filtered documents; default: the filter runner's <output_dir>/filtered/<language>
    # call cache (SQLite); default: <output_dir>/cache/calls.sqlite
    cache: Annotated[str, NotFingerprinted("output path")] = ""
    records_per_shard: Annotated[int, Field(ge=1)] = 10000
    # Spending, not shaping: out of the fingerprint and of the config written beside the outputs.
    budget: Annotated[BudgetConfig, NotFingerprinted("budget"), Field(exclude=True)] = Field(default_factory=BudgetConfig)
    cost: Annotated[CostConfig, NotFingerprinted("prices"), Field(exclude=True)] = Field(default_factory=CostConfig)
    # Labelling driver tasks on the executor (curation/drivers.py): throughput only, so out of the
    # fingerprint and of the config written beside the outputs (any count writes the same bytes).
    drivers: Annotated[int, NotFingerprinted("throughput"), Field(ge=1, le=1024, exclude=True)] = 1

    @classmethod
    def from_dict(cls, data: "dict[str, Any] | CurationConfig | None") -> "CurationConfig":
        """The config of a recipe's `curation:` (already checked when the recipe was loaded, then
        returned as is) or of a mapping (checked here; errors name `curation.<key path>`)."""
        if isinstance(data, CurationConfig):
            return data
        try:
            return CurationConfig.model_validate(data or {})
        except ValidationError as error:
            raise readable_error(error, CurationConfig, "curation") from None

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        data = self.model_dump()
        return redact_secret_values(data) if redact else data

    def to_yaml(self) -> str:
        return yaml.safe_dump({"curation": self.to_dict()}, sort_keys=False, allow_unicode=True)

    def run_settings(self) -> dict[str, Any]:
        """The fields left out of `to_dict` (drivers, budget, cost): a run's throughput and
        spending, which a recipe written back (`Recipe.to_dict`) must still carry."""
        return {name: value.model_dump() if isinstance(value, ConfigModel) else value
                for name, field in type(self).model_fields.items() if field.exclude
                for value in [getattr(self, name)]}


def _stage_fields() -> dict[str, tuple[Any, Any]]:
    fields = {}
    for kind in STAGES.kinds():
        if kind in _Curation.model_fields or kind in ("models", "diversify"):
            raise RuntimeError(f"curation stage {kind!r} takes the name of a `curation:` key of its own; rename the stage")
        spec = STAGES.spec_model(kind)
        fields[kind] = (spec, Field(default_factory=spec))
    return fields


CurationConfig = create_model(
    "CurationConfig",
    __base__=_Curation,
    __module__=__name__,
    __doc__="The `curation:` block: the run's knobs, `models:`, one block per registered stage, `diversify:`.",
    models=(ModelsConfig, Field(default_factory=ModelsConfig)),
    **_stage_fields(),
    diversify=(DiversifyConfig, Field(default_factory=DiversifyConfig)),
)
# Closes the stage registry: a stage registered from now on would be missing from the recipes'
# checks, so registering one is refused (import its package in curation/__init__.py).
STAGES.union()
