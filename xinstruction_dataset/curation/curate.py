"""`run_curation`: filtered documents -> generate -> judge -> refine rounds -> diversify ->
curated shards with full provenance, rejects with reasons, and a summary (see layout.py).

Two phases, so a corpus can be split across machines:
- label (per document shard `i/n`), every language at once in one engine (engine.py): each
  document goes generate -> judge -> (refine -> judge)* on its own; the shard's pairs and rejects
  go to `curation/<lang>/work/` (labelling.py). Documents are split by a hash of their id (or,
  when the filter ran sharded, shard i takes the filter's shard i folder as it is).
- merge (needs every shard's work files), per language: embed, cluster and pick over the whole
  language, then write `curated/<lang>/` and the merged rejects and summary (merge.py).
A run without `shard` does both for shard 0/1. With `curation.drivers: K` > 1 the label phase
runs as K driver tasks on the recipe's executor, each labelling a partition of every language's
documents (by id), and the lead combines their parts before the merge (drivers.py): the same
bytes as one driver.

Resume: every LLM call and embedding is stored in the call cache before it is used, and every
stage is a deterministic function of its inputs and those stored results, so a run killed at any
point and started again repeats no finished call and writes the same bytes.

The ledger (llm/ledger.py) records every call of the run; its figures go to files of their own,
`run/ledger.json` and `curation/<lang>/ledger.json`, never into the outputs or summaries. The
per-run call counters each language reports are read from it. With `curation.budget`, a run that
reaches its budget stops admitting documents, merges only the languages it labelled whole, and
raises `BudgetReached` (exit 1). `estimate()` labels the first N documents of each language and
projects the whole run from them (estimate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..execution import Executor, make_executor
from ..filtering.kept import KeptDocuments, open_kept
from ..filtering.runner import group_reasons
from ..layout import RunLayout
from ..llm.backends.base import LLMBackend
from ..llm.calls import CallScheduler
from ..llm.cache import cache_files, driver_cache
from ..llm.ledger import new_run_id, read_rows, read_runs, stage_counters, summarise
from ..storage import write_json, write_text
from .budget import Budget, BudgetReached
from .config import ROLES, CurationConfig, ModelsConfig
from .diversify import Embedder, build_embedder
from .engine import Engine, LanguageJob
from .estimate import Estimate, estimate_language, fleet_speed, per_document
from .flow import build_stages
from .drivers import DriverResult, DriversProgress, DriverTask, SlotShare, driver_executor, reporting_progress, share_slots
from .labelling import LabelSink, combine_parts, documents, parts_done, remove_parts
from .merge import CurationMerge
from .versions import Versions, folder_versions

logger = logging.getLogger(__name__)

@dataclass
class Models:
    """The built backends by role (config.ROLES); one instance per distinct spec (the judge is
    often the generator)."""

    by_role: dict[str, LLMBackend]

    @classmethod
    def build(cls, config: ModelsConfig, sources: dict[str, Any] | None = None) -> "Models":
        """`sources`: {role: EndpointSource} of the roles served by managed servers (llm/serving/)."""
        from ..llm.backends import build_backend

        built: dict[str, LLMBackend] = {}

        def get(role: str, spec: Any) -> LLMBackend:
            key = spec.model_dump_json()  # equal specs (a judge spelt like the generator) share one backend
            if key not in built:
                built[key] = build_backend(spec, (sources or {}).get(role))
            return built[key]

        return cls({role: get(role, spec) for role, spec in config.specs().items()})

    @classmethod
    def serving_all(cls, backend: LLMBackend) -> "Models":
        """One backend for every role."""
        return cls({role: backend for role in ROLES})

    def ids(self) -> dict[str, str]:
        """`<role>_model` -> model id, what meta files and provenance record."""
        return {f"{role}_model": backend.model_id for role, backend in self.by_role.items()}


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


class CurationRecipe(Protocol):
    """What curation needs of a `recipe.Recipe` (the recipe imports curation's config, not the
    reverse: data and imports flow one way)."""

    name: str
    version: str
    languages: list[str]
    curation: Any  # a CurationConfig, or its mapping
    output_path: Path
    executor: Any  # the `executor:` spec the labelling drivers run on (curation.drivers > 1)

    def resolve(self, path: str) -> str: ...


class Curation:
    """One curation run over a recipe (see `run_curation`)."""

    def __init__(
        self, recipe: CurationRecipe, *, models: Models | None = None, progress: bool = True, command: str = "curate",
        driver: tuple[int, int] | None = None, run_id: str | None = None,
    ):
        self.recipe = recipe
        self.driver = driver  # (k, K): this is labelling driver k of K (drivers.py); None: the lead, or the only one
        self.run_id = run_id or new_run_id()  # a multi-driver run's drivers share the lead's
        self.config = CurationConfig.from_dict(recipe.curation)
        self.layout = RunLayout(recipe.output_path)
        self.progress = progress
        self.command = command
        self._models = models
        self.sources: dict[str, Any] = {}  # the managed servers' endpoints by role, while `serving`
        self._cache = None
        self.budget: Budget | None = None
        self.unfinished: list[str] = []  # languages a budget stop left not labelled whole
        self.sinks: list[LabelSink] = []  # the label phase's, while it runs (a driver reports their counts)

    @property
    def cache_path(self) -> Path:
        return Path(self.recipe.resolve(self.config.cache)) if self.config.cache else self.layout.default_cache()

    @property
    def cache(self):
        if self._cache is None:
            from ..llm.cache import CallCache

            # Written: the configured file, or this driver's own; read besides: every other file of
            # the set (a folder labelled with drivers before, the other drivers').
            path = self.cache_path if self.driver is None else driver_cache(self.cache_path, self.driver[0])
            self._cache = CallCache(path, command=self.command, run_id=self.run_id, configured=self.cache_path)
        return self._cache

    def cache_files(self) -> list[Path]:
        """Every call-cache file of the run folder (the ledger's rows are in all of them)."""
        self.cache.flush()
        return cache_files(self.cache_path)

    @property
    def models(self) -> Models:
        if self._models is None:
            self._models = Models.build(self.config.models, self.sources)
        return self._models

    def published_sources(self) -> dict[str, Any]:
        """The managed servers' endpoints by role, as any process of the run reads them."""
        from ..llm.serving.fleet import published_endpoints

        return published_endpoints(self.config.models, self.layout)

    @contextlib.contextmanager
    def serving(self, executor: Any = None):
        """The recipe's managed servers (`serve:` entries) running while the block runs (llm/serving/)."""
        from ..llm.serving.fleet import managed_servers

        with managed_servers(self.config.models, self.layout, executor, resolve=self.recipe.resolve) as self.sources:
            yield

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
        return documents(found.documents(), language, None if found.presharded else shard, self.driver)

    def label(self, languages: list[str], shard: tuple[int, int], reports: dict[str, LanguageReport], versions: Versions) -> list[str]:
        """Label every language's shard in one engine run (see engine.py), with the folder's
        judge parser and instruction checks (versions.py). The languages labelled whole (all
        of them, unless the budget stopped the run)."""
        meta = {"models": self.models.ids(), "config": self.config.to_dict(), **versions.record()}
        jobs = []
        for language in languages:
            sink = LabelSink(self.layout, language, shard, self.driver)
            jobs.append(LanguageJob(language, self.documents(language, shard), sink, _finisher(sink, meta, reports[language])))
        self.sinks = [job.sink for job in jobs]
        schedulers = self._schedulers()
        distinct = list({id(s): s for s in schedulers.values()}.values())
        if self.config.budget.limits:
            self.budget = Budget(self.config.budget, self.config.cost.prices(), self.cache, distinct, self.config.cost.currency)
        engine = Engine(
            build_stages(self.config, versions), schedulers, progress=self.progress, total=self._total(languages, shard),
            budget=self.budget, prices=self.config.cost.prices(), currency=self.config.cost.currency,
        )
        asyncio.run(engine.run(jobs))
        self.cache.flush()
        self._count_calls(reports)
        self.unfinished = [job.language for job in jobs if not job.fed]
        return [job.language for job in jobs if job.fed]

    def _count_calls(self, reports: dict[str, LanguageReport]) -> None:
        """Each language's call counters of this run: a view of the ledger."""
        rows = read_rows(self.cache_files(), "run = ?", (self.cache.run_id,))
        for language, report in reports.items():
            report.calls = Counter(stage_counters(r for r in rows if r["language"] == language))

    def stopped_by(self, limit: str) -> None:
        """A driver stopped at the budget's `limit`: the lead's budget says so (its message reads
        the whole folder's spending)."""
        if self.budget is None:
            self.budget = Budget(self.config.budget, self.config.cost.prices(), self.cache, [], self.config.cost.currency)
        self.budget.reached = limit

    # -- ledger files ----------------------------------------------------------------------------

    def write_ledger_files(self, languages: list[str], reports: dict[str, LanguageReport]) -> None:
        """`run/ledger.json` (every run of the folder) and `curation/<lang>/ledger.json`."""
        files = self.cache_files()
        rows, runs = read_rows(files), read_runs(files)
        cost = self.config.cost
        options = {"runs": runs, "prices": cost.prices(), "gpus": cost.gpus(), "currency": cost.currency}
        curated = {language: self._curated(language, reports.get(language)) for language in {*languages, *(r["language"] for r in rows if r["language"])}}
        known = [n for n in curated.values() if n is not None]
        write_json(self.layout.ledger_file, summarise(rows, curated=sum(known) if known else None, **options))
        for language in sorted(curated):
            mine = [r for r in rows if r["language"] == language]
            if mine:
                write_json(self.layout.ledger(language), summarise(mine, curated=curated[language], **options))

    def _curated(self, language: str, report: "LanguageReport | None") -> int | None:
        if report is not None and report.curated is not None:
            return report.curated
        path = self.layout.summary(language)
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("curated")
        return None

    # -- estimate --------------------------------------------------------------------------------

    def estimate(self, languages: list[str], measure: int) -> Estimate:
        """Label the first `measure` documents of each language for real (stored in the cache,
        no work file written), then project the whole input from them (estimate.py)."""
        sinks = {language: _CountingSink() for language in languages}
        jobs = [
            LanguageJob(language, _first(self.documents(language, (0, 1)), measure), sinks[language], lambda: None)
            for language in languages
        ]
        engine = Engine(
            build_stages(self.config, folder_versions(self.layout, force=False)), self._schedulers(), progress=self.progress,
            total=sum(min(measure, n) for n in self._populations(languages).values()), prices=self.config.cost.prices(),
            currency=self.config.cost.currency,
        )
        asyncio.run(engine.run(jobs))
        files = self.cache_files()
        mine, every = read_rows(files, "run = ?", (self.cache.run_id,)), read_rows(files)
        prices = self.config.cost.prices()
        documents = per_document(mine, prices)
        populations = self._populations(languages)
        estimates = [
            estimate_language(language, documents.get(language, {}), populations[language], sinks[language].pooled,
                              self.config.diversify.target_size, priced=bool(prices))
            for language in languages
        ]
        speed = fleet_speed(mine) or fleet_speed(every)
        gpu_cost_per_s = sum(p.of_time(1.0) for p in prices.values() if p.gpu_hour)
        result = Estimate(estimates, speed, self.config.cost.currency, gpu_cost_per_s)
        if gpu_cost_per_s and speed:
            for language_estimate in result.languages:  # the fleet's time, charged by the hour
                if language_estimate.cost is not None:
                    extra = gpu_cost_per_s * language_estimate.calls.value / speed
                    language_estimate.cost.value += extra
                    language_estimate.cost.low += gpu_cost_per_s * language_estimate.calls.low / speed
                    language_estimate.cost.high += gpu_cost_per_s * language_estimate.calls.high / speed
        return result

    def _populations(self, languages: list[str]) -> dict[str, int]:
        return {language: self.kept(language, (0, 1)).count() for language in languages}

    def _schedulers(self) -> dict[str, CallScheduler]:
        """One scheduler per distinct backend: roles served by one server share its slots."""
        by_backend: dict[int, CallScheduler] = {}
        return {role: by_backend.setdefault(id(b), CallScheduler(b, self.cache)) for role, b in self.models.by_role.items()}

    def _total(self, languages: list[str], shard: tuple[int, int]) -> int | None:
        """Documents to label, for the progress bar: known without reading them when unsharded
        (a driver's part is known only by reading them)."""
        if shard[1] > 1 or self.driver is not None:
            return None
        return sum(self.kept(language, shard).count() for language in languages)

    # -- merge phase ---------------------------------------------------------------------------

    def merge(self, language: str, report: LanguageReport) -> None:
        merged = CurationMerge(self.layout, self.config, self.cache, self._embedder, language, progress=self.progress).run()
        report.counts, report.rejected, report.curated = merged.counts, merged.rejected, merged.curated


class _CountingSink:
    """The outcomes of an estimate's documents, counted only (no work file is written)."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.documents = self.pooled = 0

    def add(self, outcome: Any) -> None:
        self.documents += 1
        self.pooled += not hasattr(outcome, "reason")


def _first(documents: Any, count: int):
    """The first `count` documents of a stream (rejected input lines pass, uncounted)."""
    taken = 0
    for item in documents:
        if taken >= count:
            return
        if not hasattr(item, "reason"):
            taken += 1
        yield item


def _finisher(sink: LabelSink, meta: dict[str, Any], report: LanguageReport):
    def finish() -> None:
        sink.finish(meta)
        report.counts, report.rejected = Counter(sink.counts), Counter(sink.rejected)
    return finish


def run_driver(task: DriverTask) -> DriverResult:
    """A driver task: label driver k's documents of every language of the shard (see the module
    docstring). Builds its own models from the recipe; takes no run lock (the lead holds it)."""
    folder = RunLayout(task.recipe.output_path).drivers_folder(task.run_id)
    share = SlotShare(folder, *task.driver)
    share.join()
    curation = Curation(task.recipe, progress=False, command=task.command, driver=task.driver, run_id=task.run_id)
    # The lead runs the managed servers; a driver (any process, any node) reads their endpoints.
    curation.sources = curation.published_sources()
    try:
        for backend in {id(b): b for b in curation.models.by_role.values()}.values():
            share_slots(backend, share)
        reports = {language: LanguageReport(language) for language in task.languages}
        with reporting_progress(folder, task.driver[0], lambda: sum(sink.counts["documents"] for sink in curation.sinks)):
            finished = curation.label(list(task.languages), task.shard, reports, task.versions)
        stopped = curation.budget.reached if curation.budget is not None else None
    finally:
        curation.close()
    share.leave()
    return DriverResult(task.driver[0], tuple(finished), stopped, os.getpid())


def label_with_drivers(curation: Curation, languages: list[str], shard: tuple[int, int], reports: dict, versions: Versions, executor: Executor) -> list[str]:
    """The lead's label phase with `curation.config.drivers` drivers; the languages labelled
    whole (their parts combined into the shard's work files), as `Curation.label` returns."""
    count, layout = curation.config.drivers, curation.layout
    for language in languages:  # parts of a killed run or of another driver count: never merged
        remove_parts(layout, language, shard)
    tasks = [
        DriverTask(curation.recipe, tuple(languages), shard, (k, count), curation.run_id, versions, curation.command)
        for k in range(count)
    ]
    runner = driver_executor(executor, count)
    logger.info("labelling with %d drivers on the %s", count, runner.describe())
    folder = layout.drivers_folder(curation.run_id)
    try:
        with DriversProgress(folder, count, curation._total(languages, shard), enabled=curation.progress):
            results: list[DriverResult] = runner.map(run_driver, tasks, progress=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    finished = [
        language for language in languages
        if all(language in result.finished for result in results) and parts_done(layout, language, shard, count)
    ]
    for language in finished:
        counts, rejected = combine_parts(layout, language, shard, count)
        reports[language].counts, reports[language].rejected = counts, rejected
    curation.unfinished = [language for language in languages if language not in finished]
    stopped = next((result.stopped for result in results if result.stopped), None)
    if stopped is not None:
        curation.stopped_by(stopped)
    return finished


def run_curation(
    recipe: CurationRecipe,
    *,
    languages: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    merge: bool = False,
    models: Models | None = None,
    progress: bool = True,
    force: bool = False,
    executor: Executor | None = None,
) -> list[LanguageReport]:
    """Curate the recipe's languages. `shard=(i, n)` with n > 1 labels only that shard; `merge`
    only merges finished shards; neither does both for the whole corpus. `models` replaces the
    recipe's backends (tests; one driver only: each driver builds its own). `force` relabels a
    folder made with older rules with the current judge parser and instruction checks
    (versions.py). `executor` (an `execution.Executor`; default: the recipe's) runs the
    labelling drivers when `curation.drivers` > 1, and the managed servers (`serve:`): Ray
    actors with the Ray executor, local processes otherwise."""
    curation = Curation(recipe, models=models, progress=progress)
    drivers = curation.config.drivers
    if drivers > 1 and models is not None:
        raise ValueError("models= replaces the backends of one process: with curation.drivers > 1 each driver builds its own")
    shard = shard or (0, 1)
    languages = list(languages or recipe.languages)
    label, do_merge = not merge, merge or shard[1] == 1
    # Before config.yaml: a folder's curation files are what marks it as made before versions.
    versions = folder_versions(curation.layout, force=force) if label else None
    write_text(curation.layout.config_file, curation.config.to_yaml())
    reports = {language: LanguageReport(language) for language in languages}
    start = time.perf_counter()
    try:
        labelled = languages
        if label:
            for language in languages:  # fail on a missing input before any call is paid for
                curation.kept(language, shard)
            with curation.serving(executor if executor is not None else getattr(recipe, "executor", None)):
                if drivers == 1:
                    labelled = curation.label(languages, shard, reports, versions)
                else:
                    executor = executor if executor is not None else make_executor(getattr(recipe, "executor", None))
                    labelled = label_with_drivers(curation, languages, shard, reports, versions, executor)
                    curation.cache.flush()
                    curation._count_calls(reports)
        for language in languages if do_merge else ():
            if language in labelled:  # a language a budget stop left half-labelled keeps its old outputs
                curation.merge(language, reports[language])
        curation.write_ledger_files(languages, reports)
    finally:
        curation.close()
    for report in reports.values():
        report.seconds = time.perf_counter() - start
    if curation.unfinished and curation.budget is not None:
        raise BudgetReached(curation.budget.message(curation.unfinished), list(reports.values()))
    return list(reports.values())


def run_estimate(recipe: CurationRecipe, measure: int, *, languages: list[str] | None = None, models: Models | None = None, progress: bool = True) -> Estimate:
    """`curate --estimate N`: label the first `measure` documents of each language and project
    the whole run (see Curation.estimate); the projection also goes to `run/estimate.json`."""
    curation = Curation(recipe, models=models, progress=progress, command="curate --estimate")
    languages = list(languages or recipe.languages)
    try:
        for language in languages:
            curation.kept(language, (0, 1))  # fail on a missing input before any call is paid for
        with curation.serving(getattr(recipe, "executor", None)):
            estimate = curation.estimate(languages, measure)
        write_json(curation.layout.estimate_file, {"measured_per_language": measure, **estimate.as_dict()})
    finally:
        curation.close()
    return estimate
