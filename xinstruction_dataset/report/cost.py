"""What a run cost in LLM calls and tokens, per stage, read from its call cache.

The cache stores every paid call (request and completion, tokens where the server reported them)
and every call that failed for good; it does not store which stage made a call, so a call is
classed by its prompt: each stage's template (named in the run's `curation/config.yaml`) has a
fixed head and tail that the rendered prompt keeps, even when its middle was cut to fit the
context. The calls the stages asked for come from the summaries' deterministic counters; what
they asked for beyond what was paid was answered by an identical stored call (a repeated document
or prompt). Cache hits of a resumed run are not in any file: the engine's per-run `calls` counter
is printed, not saved.

Throughput is measured on the cache's own clock: the time between consecutive stored calls,
counting gaps under `IDLE_GAP_S` only (a pause between two runs is not work).
"""

from __future__ import annotations

import math
import sqlite3
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..curation.prompts import load_prompt
from ..llm.backends.text import TokenCounter

STAGES = ("generate", "judge", "refine")
DEFAULT_PROMPTS = {"generate": "instruction_v1", "judge": "judge_three_level_v1", "refine": "refine_instruction_v1"}
PAPER_SAMPLES = 320_000  # the paper's release: 32k per language, 10 languages
IDLE_GAP_S = 60.0
_HEAD, _TAIL = 400, 200  # prompt characters read back from the cache to class a call


@dataclass
class StageCost:
    stage: str
    asked: int = 0  # calls the stages made (from the summaries' counters)
    paid: int = 0  # calls stored in the cache
    failed: int = 0  # calls that failed for good and are not stored
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0  # calls whose tokens the server did not report (estimated from bytes)

    @property
    def from_cache(self) -> int:
        return max(0, self.asked - self.paid - self.failed)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class RunCost:
    stages: dict[str, StageCost]
    curated: int
    embeddings: int = 0  # embedding vectors stored in the cache
    busy_s: float = 0.0
    endpoints: int = 1
    cache_found: bool = True
    unclassed: StageCost = field(default_factory=lambda: StageCost("other"))

    @property
    def total(self) -> StageCost:
        total = StageCost("total")
        for cost in [*self.stages.values(), self.unclassed]:
            for name in ("asked", "paid", "failed", "prompt_tokens", "completion_tokens", "estimated_tokens"):
                setattr(total, name, getattr(total, name) + getattr(cost, name))
        return total

    @property
    def tokens_per_s(self) -> float:
        return self.total.tokens / self.busy_s if self.busy_s > 0 else 0.0

    def per_kept(self, value: int) -> float | None:
        return value / self.curated if self.curated else None

    def projection(self) -> dict[str, Any]:
        """The paper's 320k samples at this run's ratios (GPU-hours are computed in the page, from
        its throughput field; this is its default: tokens/s per endpoint, as measured)."""
        total = self.total
        calls, tokens = self.per_kept(total.paid + total.failed + total.from_cache), self.per_kept(total.tokens)
        return {
            "samples": PAPER_SAMPLES,
            "calls": round(calls * PAPER_SAMPLES) if calls is not None else None,
            "tokens": round(tokens * PAPER_SAMPLES) if tokens is not None else None,
            "throughput": round(self.tokens_per_s / max(1, self.endpoints), 1),
        }


def asked_calls(config: dict[str, Any], summaries: list[dict[str, Any]]) -> dict[str, int]:
    """Calls each stage asked for, from the deterministic counters of every language's summary."""
    candidates = int((config.get("generate") or {}).get("candidates", 1))
    asked = dict.fromkeys(STAGES, 0)
    for summary in summaries:
        counts, rejected = summary.get("counts", {}), summary.get("rejected", {})
        entered = counts.get("documents", 0) - sum(n for r, n in rejected.items() if r.startswith("input:"))
        asked["generate"] += entered * candidates
        asked["judge"] += sum(n for key, n in counts.items() if key.startswith("judge_round_"))
        asked["refine"] += sum(n for key, n in counts.items() if key.startswith("refine_round_"))
    return asked


class StageClassifier:
    """Which stage's template a prompt was rendered from (None: no template of this run)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.marks: list[tuple[str, str, str]] = []
        for stage in STAGES:
            name = (config.get(stage) or {}).get("prompt") or DEFAULT_PROMPTS[stage]
            try:
                text = load_prompt(stage, name).text
            except ValueError:
                continue  # a prompt of another version of the toolkit: its calls stay unclassed
            head, tail = _fixed_ends(text)
            self.marks.append((stage, head, tail))
        self.marks.sort(key=lambda mark: -(len(mark[1]) + len(mark[2])))  # the most specific first

    def stage(self, head: str, tail: str) -> str | None:
        for stage, mark_head, mark_tail in self.marks:
            if head.startswith(mark_head[:_HEAD]) and tail.endswith(mark_tail[-_TAIL:]):
                return stage
        return None


def _fixed_ends(template: str) -> tuple[str, str]:
    """The literal text before the first field and after the last one of a `str.format` template."""
    parts = list(string.Formatter().parse(template))
    head = parts[0][0] if parts else template
    tail = parts[-1][0] if parts and parts[-1][1] is None else ""
    return head, tail


def run_cost(cache_path: Path, config: dict[str, Any], summaries: list[dict[str, Any]], curated: int) -> RunCost:
    cost = RunCost({stage: StageCost(stage, asked=n) for stage, n in asked_calls(config, summaries).items()}, curated)
    cost.endpoints = _endpoints(config)
    if not cache_path.is_file():
        cost.cache_found = False
        return cost
    classifier = StageClassifier(config)
    bytes_per_token = TokenCounter().bytes_per_token
    connection = sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True)
    try:
        times = []
        prompt = "coalesce(json_extract(request, '$.prompt'), json_extract(request, '$.messages[#-1][1]'), '')"
        rows = connection.execute(
            f"SELECT substr({prompt}, 1, {_HEAD}), substr({prompt}, -{_TAIL}), json_extract(completion, '$.prompt_tokens'), "
            f"json_extract(completion, '$.completion_tokens'), length(CAST({prompt} AS BLOB)), "
            "length(CAST(json_extract(completion, '$.text') AS BLOB)), created_at FROM calls"
        )
        for head, tail, prompt_tokens, completion_tokens, prompt_bytes, text_bytes, created in rows:
            target = cost.stages.get(classifier.stage(head, tail) or "", cost.unclassed)
            target.paid += 1
            if prompt_tokens is None or completion_tokens is None:
                target.estimated_tokens += 1
            target.prompt_tokens += prompt_tokens if prompt_tokens is not None else math.ceil((prompt_bytes or 0) / bytes_per_token)
            target.completion_tokens += completion_tokens if completion_tokens is not None else math.ceil((text_bytes or 0) / bytes_per_token)
            times.append(created)
        for head, tail in connection.execute(f"SELECT substr({prompt}, 1, {_HEAD}), substr({prompt}, -{_TAIL}) FROM failures"):
            cost.stages.get(classifier.stage(head, tail) or "", cost.unclassed).failed += 1
        cost.embeddings = connection.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise OSError(f"the call cache {cache_path} cannot be read ({error}): pass the run's cache with --cache, or move a damaged one aside") from error
    finally:
        connection.close()
    cost.busy_s = busy_seconds(times)
    return cost


def busy_seconds(times: list[float]) -> float:
    """Seconds of work between stored calls, pauses of `IDLE_GAP_S` or more left out."""
    times = sorted(times)
    return sum(gap for gap in (b - a for a, b in zip(times, times[1:])) if gap < IDLE_GAP_S)


def _endpoints(config: dict[str, Any]) -> int:
    """Distinct servers the run's models used (a local model counts as one)."""
    found: set[str] = set()
    for spec in (config.get("models") or {}).values():
        if isinstance(spec, dict):
            found.update(spec.get("endpoints") or [f"{spec.get('backend')}:{spec.get('model')}"])
    return max(1, len(found))
