"""Build recipes: one YAML file per published dataset, reviewed like code (see `builder/`).

The recipe names the languages, the sources, the filter chain, the output folder, and carries
the `curation:` and `publish:` mappings that those stages parse into their own typed configs.
Relative paths in a recipe are relative to the recipe file, so a recipe works from any cwd;
`package:` paths point inside the installed package (the embedded sample corpus).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .languages import get_language
from .typed import from_mapping

PACKAGE_PREFIX = "package:"


@dataclass
class SourceSpec:
    """Where documents come from: a JSONL(.gz)/Parquet file or glob, or `hf:<repo>[:<config>]`."""

    path: str
    language: str
    name: str = ""
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    split: str = "train"


@dataclass
class Recipe:
    name: str
    version: str = "0.1.0"
    languages: list[str] = field(default_factory=list)
    sources: list[SourceSpec] = field(default_factory=list)
    filters: list[dict[str, Any]] = field(default_factory=list)
    output_dir: str = "runs/default"
    curation: dict[str, Any] = field(default_factory=dict)
    publish: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default=Path("."), repr=False, compare=False)

    def __post_init__(self) -> None:
        for code in self.languages:
            get_language(code)
        for source in self.sources:
            get_language(source.language)

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
        recipe = from_mapping(cls, data, "recipe", exclude=("base_dir",))
        recipe.base_dir = base_dir
        if not recipe.languages:
            recipe.languages = sorted({s.language for s in recipe.sources})
        return recipe

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist; see builder/default.yaml for an example")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data, base_dir=path.resolve().parent)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("base_dir")
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
