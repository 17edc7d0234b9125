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
from .errors import UsageError
from .execution.settings import ExecutorSpec, default_executor
from .filtering.filters.spec import FilterSpec
from .filtering.sources import SourceSpec
from .options import ConfigModel, LanguageCode, NotFingerprinted, check_output_folder, clip, expand_home, readable_error

PACKAGE_PREFIX = "package:"
# Bounds of a recipe, checked before its values are built: YAML aliases repeat what they name, so
# 800 bytes of nested aliases ("billion laughs") expand to 10^9 values, which took 36 s and all
# memory in validation. The recipes of builder/ are a few KiB and a few hundred values.
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_VALUES = 100_000  # scalars, lists and mappings, counting each alias as what it repeats
MAX_RECIPE_CHARS = 10_000_000  # the characters of every scalar, likewise
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
        raise UsageError(f"targets {', '.join(unversioned)} need `version` (or set publish.version)")
    return plan


def load_yaml(text: str, name: str) -> Any:
    """`yaml.safe_load(text)`, refused (UsageError naming `name`) when it would expand past the
    recipe bounds or refers to itself: the size is counted on the composed node graph, where
    an alias is one shared node, so counting costs what the text costs."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise UsageError(f"{name}: not valid YAML: {e}") from None
        if node is None:
            return None
        values, chars = _expanded_size(node, name)
        if values > MAX_RECIPE_VALUES or chars > MAX_RECIPE_CHARS:
            raise UsageError(
                f"{name}: expands to {values:,} values and {chars:,} characters once its YAML aliases are repeated "
                f"(at most {MAX_RECIPE_VALUES:,} and {MAX_RECIPE_CHARS:,}): write the recipe out without nested aliases"
            )
        try:
            return loader.construct_document(node)
        except (yaml.YAMLError, ValueError) as e:  # ValueError: an int of 5000 digits, a 13th month
            raise UsageError(f"{name}: not valid YAML: {clip(str(e), 300)}") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node, name: str) -> tuple[int, int]:
    """(values, scalar characters) of the document `root` once every alias is expanded, each
    shared node sized once (iteratively: deep nesting must not hit the recursion limit)."""
    sizes: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, len(node.value))
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if children_done:
            on_path.discard(key)
            sizes[key] = (1 + sum(sizes[id(c)][0] for c in children), sum(sizes[id(c)][1] for c in children))
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise UsageError(f"{name}: a YAML alias refers to a value that contains it (a recursive recipe); write it out instead")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise UsageError(f"{name}: a YAML alias refers to a value that contains it (a recursive recipe); write it out instead")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


class Recipe(ConfigModel):
    """A build recipe. Fields marked NotFingerprinted do not shape a run's outputs (see
    fingerprint.py): a run folder may be resumed after changing them."""

    name: Annotated[NonEmpty, NotFingerprinted("label")]
    version: Annotated[NonEmpty, NotFingerprinted("label")] = "0.1.0"
    # Which languages to run now (default: those of the sources); each language's outputs are its own.
    languages: Annotated[list[LanguageCode], NotFingerprinted("selection")] = Field(default_factory=list)
    sources: list[SourceSpec] = Field(default_factory=list)
    filters: list[FilterSpec] = Field(default_factory=list)
    output_dir: Annotated[NonEmpty, AfterValidator(expand_home), NotFingerprinted("output path")] = "runs/default"
    curation: CurationConfig = Field(default_factory=CurationConfig)
    # Where the CPU-heavy steps run (local processes or a Ray cluster): never changes the outputs.
    executor: Annotated[ExecutorSpec, NotFingerprinted("throughput")] = Field(default_factory=default_executor)
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
        """The output folder, absolute; never the filesystem root or the home folder (UsageError)."""
        return check_output_folder(self.resolve(expand_home(self.output_dir)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path = Path(".")) -> "Recipe":
        """The checked recipe of a mapping; a ValueError names every bad key path."""
        try:
            recipe = cls.model_validate(data)
        except ValidationError as error:
            raise readable_error(error, cls) from None
        recipe.base_dir = base_dir
        recipe.output_path  # noqa: B018 - refused now, not when the first command writes there
        return recipe

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist; see builder/default.yaml for an example")
        if path.is_dir():
            raise UsageError(f"recipe {path} is a folder; pass the path of the recipe's .yaml file instead")
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_RECIPE_BYTES + 1)
        except OSError as e:
            raise UsageError(f"recipe {path} cannot be read: {e.strerror or e}") from None
        if len(raw) > MAX_RECIPE_BYTES:
            raise UsageError(f"{path}: larger than {MAX_RECIPE_BYTES >> 20} MiB; a recipe is a few KiB of YAML: is this the right file?")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{path}: not UTF-8 text (byte {e.start}); save the recipe as UTF-8") from None
        data = load_yaml(text, str(path))
        if not isinstance(data, dict):
            raise UsageError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data, base_dir=path.resolve().parent)
        except ValueError as e:
            raise UsageError(f"{path}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        data["curation"].update(self.curation.run_settings())
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
