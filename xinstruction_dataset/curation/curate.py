"""`run_curation`: filtered documents -> generate -> judge -> refine rounds -> diversify ->
curated shards with full provenance, rejects with reasons, and a summary (see outputs.py).

Two phases, so a corpus can be split across machines:
- label (per document shard `i/n`): generate, judge and refine; writes the shard's pairs and
  rejects under `curation/<lang>/work/`. Documents are split by a hash of their id (or, when the
  filter ran sharded, shard i takes the filter's shard i folder as it is).
- merge (needs every shard's work files): embed, cluster and pick over the whole language, then
  write `curated/<lang>/` and the merged rejects and summary.
A run without `shard` does both for shard 0/1.

Resume: every LLM call and embedding is stored in the call cache before it is used, and every
stage is a deterministic function of its inputs and those stored results, so a run killed at any
point and started again repeats no finished call and writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..llm.backends.base import LLMBackend
from ..documents import Document
from ..records import Provenance, Record, ShardWriter, stable_id
from ..recipe import Recipe
from .config import CurationConfig, ModelsConfig
from .diversify import build_embedder, diversify
from ..filtering.runner import group_reasons, read_documents
from .labelling import label_documents
from ..storage import read_jsonl, write_json, write_jsonl, write_text
from ..layout import RunLayout, shard_suffix
from .pairs import Pair, Reject

logger = logging.getLogger(__name__)

CURATED_SPLIT = "train"


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


class _CountingRunner:
    """A CallRunner that counts, per stage, calls made, served from cache, and failed."""

    def __init__(self, runner, calls: Counter, stage: str):
        self.runner, self.calls, self.stage = runner, calls, stage

    def run(self, requests: Iterable):
        for result in self.runner.run(requests):
            self.calls[f"{self.stage}_{'cached' if result.cached else 'called'}"] += 1
            self.calls[f"{self.stage}_failed"] += result.error is not None
            yield result


class Curation:
    """One curation run over a recipe (see `run_curation`)."""

    def __init__(self, recipe: Recipe, *, models: Models | None = None, progress: bool = True):
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

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # -- label phase ---------------------------------------------------------------------------

    def input_files(self, language: str, shard: tuple[int, int]) -> tuple[list[Path], bool]:
        """The filtered-document files of `language`, and whether they are already this shard."""
        base = Path(self.recipe.resolve(self.config.input.format(language=language))) if self.config.input else self.layout.default_input(language)
        if base.is_file():
            return [base], False
        own = base / f"shard-{shard_suffix(shard)}" / "kept.jsonl"
        if shard[1] > 1 and own.is_file():
            return [own], True
        files = [base / "kept.jsonl"] if (base / "kept.jsonl").is_file() else sorted(base.glob("shard-*/kept.jsonl"))
        if not files:
            raise FileNotFoundError(
                f"no filtered documents for {language!r} in {base}: run `xinstruction filter` with this recipe first, "
                "or point `curation.input` at a JSONL file or folder of filtered documents"
            )
        return files, False

    def load_documents(self, language: str, shard: tuple[int, int]) -> tuple[list[Document], list[Reject]]:
        files, presharded = self.input_files(language, shard)
        docs: dict[str, Document] = {}
        rejects = []
        for file in files:
            for doc in read_documents(file):
                if not presharded and shard_of(doc.id, shard[1]) != shard[0]:
                    continue
                if doc.id in docs:
                    rejects.append(Reject.of(doc, language, "input:duplicate_id"))
                else:
                    docs[doc.id] = doc
        return [docs[k] for k in sorted(docs)], rejects

    def label(self, language: str, shard: tuple[int, int], report: LanguageReport) -> None:
        docs, rejects = self.load_documents(language, shard)
        logger.info("%s shard %s: %d documents", language, shard_suffix(shard), len(docs))
        labelled = label_documents(docs, lambda stage: self._runner(stage, language, report.calls), self.config, language)
        report.counts.update(labelled.counts)
        report.counts["documents"] += len(rejects)  # duplicate ids are documents too
        rejects += labelled.rejects
        report.rejected.update(r.reason for r in rejects)
        write_jsonl(self.layout.work(language, "pairs", shard), (p.to_dict() for p in labelled.pool))
        write_jsonl(self.layout.work(language, "rejects", shard), (r.to_dict() for r in rejects))
        meta = {"models": self.models.ids(), "counts": dict(report.counts), "config": self.config.to_dict()}
        write_json(self.layout.work(language, "meta", shard), meta)

    def _runner(self, stage: str, language: str, calls: Counter) -> _CountingRunner:
        from ..llm.calls import CallRunner

        backend = {"generate": self.models.generator, "judge": self.models.judge, "refine": self.models.refiner}[stage]
        runner = CallRunner(backend, self.cache, desc=f"{language} {stage}", progress=self.progress)
        return _CountingRunner(runner, calls, stage)

    # -- merge phase ---------------------------------------------------------------------------

    def shard_count(self, language: str) -> int:
        found = self.layout.finished_shards(language)
        complete = [n for n, indices in found.items() if indices == set(range(n))]
        if len(complete) == 1:
            return complete[0]
        if not found:
            raise FileNotFoundError(f"no labelled shards for {language!r} under {self.layout.language_dir(language)}/work: run `xinstruction curate RECIPE --shard I/N` first")
        if complete:
            raise ValueError(f"{language}: complete shard sets for several counts ({sorted(complete)}); remove the stale work files")
        missing = {n: sorted(set(range(n)) - idx) for n, idx in found.items()}
        raise ValueError(f"{language}: shards not finished yet: " + "; ".join(f"{', '.join(map(str, m))} of {n}" for n, m in missing.items()))

    def merge(self, language: str, report: LanguageReport) -> None:
        n = self.shard_count(language)
        pairs: list[Pair] = []
        rejects: list[Reject] = []
        metas = []
        for i in range(n):
            pairs += [Pair.from_dict(row) for row in read_jsonl(self.layout.work(language, "pairs", (i, n)))]
            rejects += [Reject.from_dict(row) for row in read_jsonl(self.layout.work(language, "rejects", (i, n)))]
            metas.append(json.loads(self.layout.work(language, "meta", (i, n)).read_text(encoding="utf-8")))
        models = _same_models(metas, language)
        report.counts = Counter()
        for meta in metas:
            report.counts.update(meta["counts"])
        pairs.sort(key=lambda p: p.doc.id)
        outcome = diversify(pairs, self._embedder(pairs), self.cache, self.config.diversify, language, self.config.seed, progress=self.progress)
        records, duplicates = _records(outcome.selected, language, models)
        rejects += outcome.rejects + duplicates
        rejects.sort(key=lambda r: (r.doc_id, r.reason))
        report.counts["clusters"] = outcome.clusters
        report.curated = len(records)
        report.rejected = Counter(r.reason for r in rejects)
        self._write_curated(language, records)
        write_jsonl(self.layout.rejects(language), (r.to_dict() for r in rejects))
        summary = {"language": language, "shards": n, "models": models, "counts": dict(report.counts), "curated": len(records), "rejected": dict(report.rejected)}
        write_json(self.layout.summary(language), summary)

    def _embedder(self, pairs: list[Pair]):
        return build_embedder(self.config.diversify.embedding) if pairs else None

    def _write_curated(self, language: str, records: list[Record]) -> None:
        folder = self.layout.curated(language)
        size = self.config.records_per_shard
        count = max(1, -(-len(records) // size))
        names = [f"{CURATED_SPLIT}-{i:05d}-of-{count:05d}.jsonl" for i in range(count)]
        for i, name in enumerate(names):
            with ShardWriter(folder / name) as writer:
                for record in records[i * size : (i + 1) * size]:
                    writer.write(record)
        for stale in folder.glob(f"{CURATED_SPLIT}-*.jsonl"):
            if stale.name not in names:
                stale.unlink()


def shard_of(doc_id: str, count: int) -> int:
    """The shard of a document: a stable hash of its id, the same on every machine."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") % count


def _same_models(metas: list[dict[str, Any]], language: str) -> dict[str, str]:
    models = metas[0]["models"]
    for i, meta in enumerate(metas[1:], start=1):
        if meta["models"] != models:
            raise ValueError(f"{language}: shard {i} was labelled with {meta['models']}, shard 0 with {models}; relabel with one set of models")
    return models


def _records(selected: list[tuple[Pair, int]], language: str, models: dict[str, str]) -> tuple[list[Record], list[Reject]]:
    records, duplicates, seen = [], [], set()
    for pair, cluster_id in selected:
        record = Record(
            id=stable_id(language, pair.instruction, pair.response),
            instruction=pair.instruction,
            output=pair.response,
            language=language,
            provenance=Provenance(
                source_dataset=pair.doc.source,
                source_id=pair.doc.id,
                source_url=pair.doc.url,
                generator_model=models["generator_model"],
                judge_model=models["judge_model"],
                prompt_version="+".join(pair.prompts),
                label=pair.label,
                score=pair.score,
                refinement_round=pair.round,
                cluster_id=cluster_id,
            ),
        )
        if record.id in seen:
            duplicates.append(Reject.of(pair.doc, language, "curate:duplicate_record", record_id=record.id))
            continue
        seen.add(record.id)
        records.append(record)
    return records, duplicates


def run_curation(
    recipe: Recipe,
    *,
    languages: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    merge: bool = False,
    models: Models | None = None,
    progress: bool = True,
) -> list[LanguageReport]:
    """Curate the recipe's languages. `shard=(i, n)` with n > 1 labels only that shard; `merge`
    only merges finished shards; neither does both for the whole corpus. `models` replaces the
    recipe's backends (tests)."""
    curation = Curation(recipe, models=models, progress=progress)
    shard = shard or (0, 1)
    label, do_merge = not merge, merge or shard[1] == 1
    write_text(curation.layout.config_file, curation.config.to_yaml())
    reports = []
    try:
        for language in languages or recipe.languages:
            report = LanguageReport(language)
            start = time.perf_counter()
            if label:
                curation.label(language, shard, report)
            if do_merge:
                curation.merge(language, report)
            report.seconds = time.perf_counter() - start
            reports.append(report)
    finally:
        curation.close()
    return reports
