"""`run_curation`: filtered documents -> generate -> judge -> refine rounds -> diversify ->
curated shards with full provenance, rejects with reasons, and a summary (see layout.py).

Two phases, so a corpus can be split across machines:
- label (per document shard `i/n`), every language at once in one engine (engine.py): each
  document goes generate -> judge -> (refine -> judge)* on its own; the shard's pairs and rejects
  go to `curation/<lang>/work/` (labelling.py). Documents are split by a hash of their id (or,
  when the filter ran sharded, shard i takes the filter's shard i folder as it is).
- merge (needs every shard's work files), per language: embed, cluster and pick over the whole
  language, then write `curated/<lang>/` and the merged rejects and summary (merge.py).
A run without `shard` does both for shard 0/1.

Resume: every LLM call and embedding is stored in the call cache before it is used, and every
stage is a deterministic function of its inputs and those stored results, so a run killed at any
point and started again repeats no finished call and writes the same bytes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..filtering.kept import KeptDocuments, open_kept
from ..filtering.runner import group_reasons
from ..layout import RunLayout
from ..llm.backends.base import LLMBackend
from ..llm.calls import CallScheduler
from ..storage import write_text
from .config import CurationConfig, ModelsConfig
from .diversify import Embedder, build_embedder
from .engine import Engine, LanguageJob
from .flow import build_stages
from .labelling import LabelSink, documents
from .merge import LanguageMerge
from .versions import Versions, folder_versions

logger = logging.getLogger(__name__)

@dataclass
class Models:
    """The built backends; one instance per distinct spec (the judge is often the generator)."""

    generator: LLMBackend
    judge: LLMBackend
    refiner: LLMBackend

    @classmethod
    def build(cls, config: ModelsConfig) -> "Models":
        from ..llm.backends import build_backend

        built: dict[str, LLMBackend] = {}

        def get(spec: dict[str, Any]) -> LLMBackend:
            key = json.dumps(spec, sort_keys=True)
            if key not in built:
                built[key] = build_backend(spec)
            return built[key]

        return cls(get(config.generator), get(config.judge_spec()), get(config.refiner_spec()))

    def ids(self) -> dict[str, str]:
        return {"generator_model": self.generator.model_id, "judge_model": self.judge.model_id, "refiner_model": self.refiner.model_id}


@dataclass
class LanguageReport:
    language: str
    counts: Counter = field(default_factory=Counter)  # deterministic: documents, labels, pool...
    rejected: Counter = field(default_factory=Counter)  # reason -> documents
    calls: Counter = field(default_factory=Counter)  # this run only: <stage>_called/_cached/_failed
    curated: int | None = None  # None until merged
    seconds: float = 0.0

    def format(self) -> str:
        lines = [f"== {self.language}: {self.counts['documents']} documents"]
        if self.curated is not None:
            lines.append(f"  curated:   {self.curated} (clusters: {self.counts['clusters']}, pool: {self.counts['pool']})")
        else:
            lines.append(f"  pool:      {self.counts['pool']} labelled pairs (merge pending)")
        lines.append(f"  rejected:  {sum(self.rejected.values())}")
        lines += [f"    {n:>8}  {reason}" for reason, n in group_reasons(self.rejected).most_common()]
        stages = sorted({key.rsplit("_", 1)[0] for key in self.calls})
        for stage in stages:
            lines.append(
                f"  {stage + ':':<10} {self.calls[stage + '_called']} calls, {self.calls[stage + '_cached']} from cache, "
                f"{self.calls[stage + '_failed']} failed"
            )
        lines.append(f"  elapsed:   {self.seconds:.1f} s")
        return "\n".join(lines)


ROLES = ("generator", "judge", "refiner")


class CurationRecipe(Protocol):
    """What curation needs of a `recipe.Recipe` (the recipe imports curation's config, not the
    reverse: data and imports flow one way)."""

    name: str
    version: str
    languages: list[str]
    curation: Any  # a CurationConfig, or its mapping
    output_path: Path

    def resolve(self, path: str) -> str: ...


class Curation:
    """One curation run over a recipe (see `run_curation`)."""

    def __init__(self, recipe: CurationRecipe, *, models: Models | None = None, progress: bool = True):
        self.recipe = recipe
        self.config = CurationConfig.from_dict(recipe.curation)
        self.layout = RunLayout(recipe.output_path)
        self.progress = progress
        self._models = models
        self._cache = None

    @property
    def cache_path(self) -> Path:
        return Path(self.recipe.resolve(self.config.cache)) if self.config.cache else self.layout.default_cache()

    @property
    def cache(self):
        if self._cache is None:
            from ..llm.cache import CallCache

            self._cache = CallCache(self.cache_path)
        return self._cache

    @property
    def models(self) -> Models:
        if self._models is None:
            self._models = Models.build(self.config.models)
        return self._models

    @functools.cache  # noqa: B019 - one run object per command: the cache lives exactly as long as the run
    def _embedder(self) -> Embedder:
        """One embedding model per run, shared by every language's merge."""
        return build_embedder(self.config.diversify.embedding)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # -- label phase ---------------------------------------------------------------------------

    def kept(self, language: str, shard: tuple[int, int]) -> KeptDocuments:
        """The filtered documents of `language` (filtering/kept.py: a filter run's manifest, an older
        run's kept.jsonl, the `--shard` layout, or the file `curation.input` names)."""
        base = Path(self.recipe.resolve(self.config.input.format(language=language))) if self.config.input else self.layout.default_input(language)
        found = open_kept(base, shard)
        if found is None:
            raise FileNotFoundError(
                f"no filtered documents for {language!r} in {base}: run `xinstruction filter` with this recipe first, "
                "or point `curation.input` at a JSONL file or folder of filtered documents"
            )
        return found

    def input_files(self, language: str, shard: tuple[int, int]) -> tuple[list[Path], bool]:
        """What `language`'s documents are read from (manifests or files), and whether they are
        already this shard."""
        found = self.kept(language, shard)
        return found.files, found.presharded

    def documents(self, language: str, shard: tuple[int, int]):
        found = self.kept(language, shard)
        return documents(found.documents(), language, None if found.presharded else shard)

    def label(self, languages: list[str], shard: tuple[int, int], reports: dict[str, LanguageReport], versions: Versions) -> None:
        """Label every language's shard in one engine run (see engine.py), with the folder's
        judge parser and instruction checks (versions.py)."""
        meta = {"models": self.models.ids(), "config": self.config.to_dict(), **versions.record()}
        jobs = []
        for language in languages:
            sink = LabelSink(self.layout, language, shard)
            reports[language].calls = sink.calls
            jobs.append(LanguageJob(language, self.documents(language, shard), sink, _finisher(sink, meta, reports[language])))
        schedulers = self._schedulers()
        engine = Engine(build_stages(self.config, versions), schedulers, progress=self.progress, total=self._total(languages, shard))
        asyncio.run(engine.run(jobs))

    def _schedulers(self) -> dict[str, CallScheduler]:
        """One scheduler per distinct backend: roles served by one server share its slots."""
        by_backend: dict[int, CallScheduler] = {}
        backends = dict(zip(ROLES, (self.models.generator, self.models.judge, self.models.refiner)))
        return {role: by_backend.setdefault(id(b), CallScheduler(b, self.cache)) for role, b in backends.items()}

    def _total(self, languages: list[str], shard: tuple[int, int]) -> int | None:
        """Documents to label, for the progress bar: known without reading them when unsharded."""
        if shard[1] > 1:
            return None
        return sum(self.kept(language, shard).count() for language in languages)

    # -- merge phase ---------------------------------------------------------------------------

    def merge(self, language: str, report: LanguageReport) -> None:
        merged = LanguageMerge(self.layout, self.config, self.cache, self._embedder, language, progress=self.progress).run()
        report.counts, report.rejected, report.curated = merged.counts, merged.rejected, merged.curated


def _finisher(sink: LabelSink, meta: dict[str, Any], report: LanguageReport):
    def finish() -> None:
        sink.finish(meta)
        report.counts, report.rejected = Counter(sink.counts), Counter(sink.rejected)
    return finish


def run_curation(
    recipe: CurationRecipe,
    *,
    languages: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    merge: bool = False,
    models: Models | None = None,
    progress: bool = True,
    force: bool = False,
) -> list[LanguageReport]:
    """Curate the recipe's languages. `shard=(i, n)` with n > 1 labels only that shard; `merge`
    only merges finished shards; neither does both for the whole corpus. `models` replaces the
    recipe's backends (tests). `force` relabels a folder made with older rules with the current
    judge parser and instruction checks (versions.py)."""
    curation = Curation(recipe, models=models, progress=progress)
    shard = shard or (0, 1)
    languages = list(languages or recipe.languages)
    label, do_merge = not merge, merge or shard[1] == 1
    # Before config.yaml: a folder's curation files are what marks it as made before versions.
    versions = folder_versions(curation.layout, force=force) if label else None
    write_text(curation.layout.config_file, curation.config.to_yaml())
    reports = {language: LanguageReport(language) for language in languages}
    start = time.perf_counter()
    try:
        if label:
            for language in languages:  # fail on a missing input before any call is paid for
                curation.kept(language, shard)
            curation.label(languages, shard, reports, versions)
        for language in languages if do_merge else ():
            curation.merge(language, reports[language])
    finally:
        curation.close()
    for report in reports.values():
        report.seconds = time.perf_counter() - start
    return list(reports.values())
