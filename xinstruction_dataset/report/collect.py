"""One pass over a language's files: every curated and rejected pair into the sample browser,
and what the distributions and the reject examples need along the way.

A curation reject names its document, not its text: the response is read back by offset from
the pool pairs (pairs that reached diversify) or from the filtered documents (`LineIndex`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from .funnel import group_reason
from .run_files import LanguageFiles, LineIndex, iter_jsonl
from .samples import NO_ROUND, PREVIEW_CHARS, Sample, SampleBook

EXAMPLES_PER_REASON = 3
FILTER_REJECT_LINES = 200_000  # filter rejects read for examples at most (the file can be huge)


@dataclass
class Distributions:
    lengths: dict[str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: {"instruction": [], "output": []}))
    lang_prob: dict[str, dict[str, list[float]]] = field(default_factory=lambda: defaultdict(lambda: {"kept": [], "curated": []}))
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # judge scores of pooled and judged-bad pairs
    clusters: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # cluster id -> pool pairs


@dataclass
class Example:
    id: str
    instruction: str
    text: str
    sample: int | None = None  # its row in the sample browser (curation rejects)


@dataclass
class Collected:
    distributions: Distributions = field(default_factory=Distributions)
    examples: dict[tuple[str, str], list[Example]] = field(default_factory=lambda: defaultdict(list))  # (language, reason)


def collect_language(files: LanguageFiles, book: SampleBook, collected: Collected, *, progress: bool = True) -> None:
    language, dist = files.language, collected.distributions
    kept, pairs = files.kept_index(), LineIndex(files.pair_files())
    try:
        probabilities: dict[str, float] = {}
        for doc in tqdm(kept.scan(lambda row: str(row["id"])), desc=f"report {language}: documents", unit="doc", disable=not progress):
            prob = (doc.get("metadata") or {}).get("lang_prob")
            if isinstance(prob, (int, float)):
                probabilities[str(doc["id"])] = float(prob)
                dist.lang_prob[language]["kept"].append(float(prob))
        for pair in pairs.scan(lambda row: str(row["doc"]["id"])):
            if pair.get("score") is not None:
                dist.scores[language].append(float(pair["score"]))
        for record in iter_jsonl(files.curated_files()):
            sample = _curated(record)
            book.add(sample)
            dist.lengths[language]["instruction"].append(len(sample.instruction))
            dist.lengths[language]["output"].append(len(sample.output))
            if sample.cluster is not None and sample.cluster >= 0:
                dist.clusters[language][sample.cluster] += 1
            if sample.doc_id in probabilities:
                dist.lang_prob[language]["curated"].append(probabilities[sample.doc_id])
        if files.curation_summary and not files.rejects_file.is_file():
            raise FileNotFoundError(
                f"{files.rejects_file} is missing (its summary.json is there): run the same `xinstruction curate` "
                "command again to write it, then the report"
            )
        if files.curation_summary:
            for reject in tqdm(iter_jsonl([files.rejects_file]), desc=f"report {language}: rejects", unit="doc", disable=not progress):
                sample = _rejected(reject, pairs, kept)
                number = book.add(sample)
                if sample.reason.startswith("diversify:") and sample.cluster is not None:
                    dist.clusters[language][sample.cluster] += 1
                if sample.reason.startswith("judge:bad") and sample.score is not None:
                    dist.scores[language].append(sample.score)
                _add_example(collected, language, sample.group, Example(sample.id, sample.instruction[:PREVIEW_CHARS], sample.output[:PREVIEW_CHARS], number))
        _filter_examples(files, collected)
    finally:
        kept.close()
        pairs.close()


def _curated(record: dict[str, Any]) -> Sample:
    provenance = record.get("provenance") or {}
    return Sample(
        kind="curated", language=record["language"], id=record["id"], doc_id=str(provenance.get("source_id", "")),
        instruction=record["instruction"], output=record["output"], label=provenance.get("label") or "",
        round=int(provenance.get("refinement_round") or 0), score=provenance.get("score"),
        cluster=provenance.get("cluster_id"), source=provenance.get("source_dataset") or "",
        url=provenance.get("source_url") or "", details=provenance,
    )


def _rejected(reject: dict[str, Any], pairs: LineIndex, kept: LineIndex) -> Sample:
    """A rejected document as a pair: the instruction it got (if any) and its text."""
    doc_id, detail, reason = str(reject["doc_id"]), reject.get("detail") or {}, reject["reason"]
    pair = pairs.get(doc_id)
    doc = pair["doc"] if pair else kept.get(doc_id)
    candidates = detail.get("candidates") or [{}]
    instruction = detail.get("instruction") or (pair or {}).get("instruction") or candidates[0].get("instruction") or ""
    output = (pair or {}).get("response") or (doc or {}).get("text") or ""
    label = (pair or {}).get("label") or ("bad" if reason == "judge:bad" else "")
    round_ = detail.get("round", (pair or {}).get("round", NO_ROUND))
    score = detail.get("score", (pair or {}).get("score"))
    return Sample(
        kind="rejected", language=reject["language"], id=doc_id, doc_id=doc_id, instruction=instruction, output=output,
        label=label, round=int(round_) if round_ is not None else NO_ROUND, score=score, reason=reason, group=group_reason(reason),
        cluster=detail.get("cluster_id"), source=reject.get("source") or "", url=reject.get("url") or "", details=detail,
    )


def _add_example(collected: Collected, language: str, reason: str, example: Example) -> None:
    found = collected.examples[(language, reason)]
    if len(found) < EXAMPLES_PER_REASON:
        found.append(example)


def _filter_examples(files: LanguageFiles, collected: Collected) -> None:
    """A few documents of each filter reject reason (the filter keeps them whole, with reason)."""
    wanted = {group_reason(reason) for reason in files.filter_summary.get("rejected", {})}
    for seen, doc in enumerate(files.filter_rejects()):
        reason = group_reason(doc.get("reason", ""))
        _add_example(collected, files.language, reason, Example(str(doc.get("id", "")), "", (doc.get("text") or "")[:PREVIEW_CHARS]))
        if len(collected.examples[(files.language, reason)]) == EXAMPLES_PER_REASON:
            wanted.discard(reason)
        if not wanted or seen >= FILTER_REJECT_LINES:
            break
