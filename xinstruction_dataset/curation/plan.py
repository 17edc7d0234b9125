"""`curate --dry-run`: what a run would do (inputs, models by role, stages, call budget, outputs),
computed without building a model or making a call. The models are the resolved ones
(`ModelsConfig.specs`: a role left out shows its fallback's entry), secrets redacted."""

from __future__ import annotations

import json
from collections import Counter

from ..llm.cache import cache_files, driver_cache
from ..redact import redact_secret_values
from .config import CurationConfig
from .curate import Curation, CurationRecipe
from .flow import build_stages
from .pairs import Reject
from .versions import folder_versions


def describe_plan(recipe: CurationRecipe, *, shard: tuple[int, int] | None = None, merge: bool = False) -> str:
    curation = Curation(recipe, progress=False)
    config, layout = curation.config, curation.layout
    shard = shard or (0, 1)
    cache = curation.cache_path
    lines = [
        f"recipe {recipe.name} {recipe.version}: curate {', '.join(recipe.languages)}",
        f"mode: {_mode(shard, merge)}",
        f"call cache: {cache}" + (" (exists: finished calls are reused)" if cache_files(cache) else " (new)"),
        *([f"drivers: {config.drivers} labelling driver tasks on the executor, each writing {driver_cache(cache, 0).parent}/driver-<k>.sqlite"]
          if config.drivers > 1 and not merge else []),
        "models:",
        *(f"  {role}: {json.dumps(spec, sort_keys=True)}" for role, spec in _models(config).items()),
        "stages:",
        *_stages(config),
    ]
    if not merge:
        lines.append(f"rules: {folder_versions(layout, force=False, write=False).describe()} (curation/versions.json)")
    for language in recipe.languages:
        lines += _language(curation, language, shard, merge)
    lines.append(f"resolved config: {layout.config_file} (written by a real run)")
    return "\n".join(lines)


def _mode(shard: tuple[int, int], merge: bool) -> str:
    if merge:
        return "merge finished shards: embed, cluster, pick, write curated shards"
    if shard[1] > 1:
        return f"label shard {shard[0]} of {shard[1]} (generate, judge, refine); diversify later with --merge"
    return "label all documents, then diversify and write curated shards"


def _models(config: CurationConfig) -> dict[str, dict]:
    return {role: redact_secret_values(spec.model_dump()) for role, spec in config.models.specs().items()}


def _stages(config: CurationConfig) -> list[str]:
    """One line per registered stage (its own `describe`), then diversify."""
    d = config.diversify
    return [
        *(f"  {name + ':':<9} {stage.describe()}" for name, stage in build_stages(config).items()),
        f"  diversify: {d.embedding.backend} embeddings ({d.embedding.model}), k = min({d.target_size}, pairs), one per cluster",
    ]


def _language(curation: Curation, language: str, shard: tuple[int, int], merge: bool) -> list[str]:
    layout, config = curation.layout, curation.config
    lines = [f"{language}:"]
    if merge:
        found = layout.finished_shards(language)
        lines.append(f"  finished shards: {', '.join(f'{len(v)} of {n}' for n, v in sorted(found.items())) or 'none'}")
    else:
        files, presharded = curation.input_files(language, shard)
        seen = Counter(isinstance(item, Reject) for item in curation.documents(language, shard))  # streamed
        d, duplicates, c, rounds = seen[False], seen[True], config.generate.candidates, config.refine.rounds
        lines += [
            f"  input: {', '.join(map(str, files))}" + (" (this shard's filter output)" if presharded else ""),
            f"  documents: {d}" + (f" in shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "") + (f" ({duplicates} duplicate ids)" if duplicates else ""),
            f"  calls at most: generate {d * c}, judge {2 * d * c + 2 * rounds * d}, refine {rounds * d}",
        ]
    if merge or shard[1] == 1:
        lines.append(f"  output: {layout.curated(language)}/train-*.jsonl, {layout.language_dir(language)}/rejects.jsonl, summary.json")
    else:
        lines.append(f"  output: {layout.work(language, 'pairs', shard).parent}/*-{shard[0]:05d}-of-{shard[1]:05d}.*")
    return lines
