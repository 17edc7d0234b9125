"""Release plans: which folder goes to which repo under which version, read from a recipe's
`publish:` mapping, so a maintainer publishes both datasets in one reviewed step.

    publish:
      version: 1.1.0                  # default for every target
      private: false
      targets:
        x-instruction: {repo_id: ORG/x-instruction, folder: ../out/x-instruction}
        x-alpacaeval:  {repo_id: ORG/x-alpacaeval, folder: ../out/x-alpacaeval, version: 1.0.0}

Folders are relative to the recipe file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..recipe import Recipe
from .cards import DATASETS


@dataclass(frozen=True)
class ReleaseTarget:
    dataset: str
    repo_id: str
    folder: Path
    version: str
    private: bool = False


def release_targets(recipe: Recipe) -> list[ReleaseTarget]:
    """The publish targets of a recipe, in `DATASETS` order; a ValueError names what is missing."""
    publish: dict[str, Any] = recipe.publish or {}
    targets = publish.get("targets") or {}
    if not targets:
        raise UsageError(f"recipe {recipe.name!r} has no `publish.targets` (see hub/release.py for the shape)")
    unknown = set(targets) - set(DATASETS)
    if unknown:
        raise UsageError(f"unknown publish target(s) {', '.join(sorted(unknown))}; known: {', '.join(DATASETS)}")
    plan = []
    for dataset in (d for d in DATASETS if d in targets):
        spec = targets[dataset] or {}
        missing = [key for key in ("repo_id", "folder") if not spec.get(key)]
        version = str(spec.get("version") or publish.get("version") or "")
        if missing or not version:
            raise UsageError(f"publish target {dataset!r} needs {', '.join(missing + ([] if version else ['version']))}")
        plan.append(ReleaseTarget(dataset, spec["repo_id"], Path(recipe.resolve(spec["folder"])), version, bool(spec.get("private", publish.get("private", False)))))
    return plan
