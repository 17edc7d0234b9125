"""Build recipes: one YAML file per published dataset, reviewed like code (see `builder/`).

The recipe names the languages, the sources, the filter chain, the output folder, the
`curation:` block and the `publish:` plan. It is checked whole when it is loaded, before any
work: every filter's options, every curation knob and model entry, every range. A wrong key,
type or value is one ValueError that names the file, the key path (`curation.judge.scael`,
`filters[2].min_chars`) and what is accepted there (see options.py).

Relative paths in a recipe are relative to the recipe file, so a recipe works from any cwd;
`package:` paths point inside the installed package (the embedded sample corpus).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from typing_extensions import Required, TypedDict

from .curation.config import CurationConfig
from .execution.settings import ExecutorSettings
from .filtering.filters.spec import FilterSpec
from .filtering.sources import SourceSpec
from .options import ConfigModel, LanguageCode, NotFingerprinted, readable_error

PACKAGE_PREFIX = "package:"
NonEmpty = Annotated[str, Field(min_length=1)]


# `publish:` stays a plain mapping (hub/release.py reads it so) but is checked like the rest.
class PublishTarget(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(strict=True, extra="forbid")  # type: ignore[misc]
    repo_id: Required[Annotated[str, Field(pattern=r"^[\w.-]+/[\w.-]+$")]]  # owner/name
    folder: Required[NonEmpty]  # relative to the recipe file
    version: NonEmpty  # default: publish.version
    private: bool


class PublishPlan(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(strict=True, extra="forbid")  # type: ignore[misc]
    version: NonEmpty
    private: bool
    targets: dict[Literal["x-instruction", "x-alpacaeval"], PublishTarget]  # hub.cards.DATASETS


def _versioned(plan: PublishPlan) -> PublishPlan:
    """Each target needs a version, its own or the plan's: found now, not mid-release."""
    unversioned = [name for name, target in plan.get("targets", {}).items() if not target.get("version", plan.get("version"))]
    if unversioned:
        raise ValueError(f"targets {', '.join(unversioned)} need `version` (or set publish.version)")
    return plan


class Recipe(ConfigModel):
    """A build recipe. Fields marked NotFingerprinted do not shape a run's outputs (see
    fingerprint.py): a run folder may be resumed after changing them."""

    name: Annotated[NonEmpty, NotFingerprinted("label")]
    version: Annotated[NonEmpty, NotFingerprinted("label")] = "0.1.0"
    # Which languages to run now (default: those of the sources); each language's outputs are its own.
    languages: Annotated[list[LanguageCode], NotFingerprinted("selection")] = Field(default_factory=list)
    sources: list[SourceSpec] = Field(default_factory=list)
    filters: list[FilterSpec] = Field(default_factory=list)
    output_dir: Annotated[NonEmpty, NotFingerprinted("output path")] = "runs/default"
    curation: CurationConfig = Field(default_factory=CurationConfig)
    # Where the CPU-heavy steps run (local processes or a Ray cluster): never changes the outputs.
    executor: Annotated[ExecutorSettings, NotFingerprinted("throughput")] = Field(default_factory=ExecutorSettings)
    publish: Annotated[PublishPlan, AfterValidator(_versioned), NotFingerprinted("release plan")] = Field(default_factory=dict)
    _base_dir: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="before")
    @classmethod
    def _one_language(cls, data: Any) -> Any:
        """`languages: sw` means `[sw]`."""
        if isinstance(data, dict) and isinstance(data.get("languages"), str):
            return {**data, "languages": [data["languages"]]}
        return data

    @model_validator(mode="after")
    def _default_languages(self) -> "Recipe":
        if not self.languages:
            self.languages = sorted({s.language for s in self.sources})
        return self

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against: the recipe file's."""
        return self._base_dir

    @base_dir.setter
    def base_dir(self, value: Path) -> None:
        self._base_dir = Path(value)

    def sources_for(self, language: str) -> list[SourceSpec]:
        return [s for s in self.sources if s.language == language]

    def resolve(self, path: str) -> str:
        """Resolve a recipe path: `package:` paths, `hf:` ids and absolute paths pass through."""
        if path.startswith("hf:"):
            return path
        if path.startswith(PACKAGE_PREFIX):
            return str(resources.files(__package__).joinpath(path[len(PACKAGE_PREFIX):]))
        return str((self.base_dir / path).resolve()) if not Path(path).is_absolute() else path

    @property
    def output_path(self) -> Path:
        return Path(self.resolve(self.output_dir))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path = Path(".")) -> "Recipe":
        """The checked recipe of a mapping; a ValueError names every bad key path."""
        try:
            recipe = cls.model_validate(data)
        except ValidationError as error:
            raise readable_error(error, cls) from None
        recipe.base_dir = base_dir
        return recipe

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist; see builder/default.yaml for an example")
        if path.is_dir():
            raise ValueError(f"recipe {path} is a folder; pass the path of the recipe's .yaml file instead")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from None
        except OSError as e:
            raise ValueError(f"recipe {path} cannot be read: {e.strerror or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data, base_dir=path.resolve().parent)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
