"""The typed `curation:` block of a recipe: every knob of generate, judge, refine and diversify.

The block is checked with the rest of the recipe when it is loaded (recipe.py): unknown keys are
an error that lists the known ones, out-of-range values an error that gives the range, omitted
keys take the documented defaults below. The resolved config serialises back to a dict / YAML
(`to_dict`, `to_yaml`): a run writes it beside its outputs and into its summary, so every
curated record can be traced to the exact settings.

The paper did not publish its labelling scale, thresholds, number of refinement rounds,
embedding model or k; the defaults here are this project's choices (see DESIGN.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ..errors import UsageError
from ..llm.backends import LocalConfig, ModelSpec
from .embedders import EmbeddingSpec, LocalEmbedding
from ..llm.backends.base import GenerationParams
from ..options import ConfigModel, NotFingerprinted, readable_error
from ..registry import PluginSpec

JUDGE_SCALES = ("three_level", "five_point")
REFINE_TARGETS = ("instruction", "response")
# Keys of a model/endpoint spec that may hold credentials: never written out.
SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_?key|authorization|headers|credentials?)$", re.IGNORECASE)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Score = Annotated[int, Field(ge=1, le=5)]


class Sampling(ConfigModel):
    """Sampling settings of one stage; the defaults are the paper's (DESIGN.md)."""

    max_new_tokens: Annotated[int, Field(ge=1, le=131072)]
    temperature: Annotated[float, Field(ge=0.0)] = 0.7  # 0: greedy
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    top_k: Annotated[int, Field(ge=0)] = 50  # 0: off

    def params(self, seed: int, stop: tuple[str, ...] = ()) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=stop,
            seed=seed,
        )


class ModelsConfig(ConfigModel):
    """Backend specs (`backends.build_backend`). `judge` defaults to the generator, `refiner` to
    the judge. The model ids recorded in provenance are the built backends' `model_id`."""

    # Each a checked, frozen spec of its backend kind (errors name `curation.models.judge.timeout`);
    # the default generator is the embedded model: in process, CPU, no network.
    generator: ModelSpec = Field(default_factory=LocalConfig)
    judge: ModelSpec | None = None
    refiner: ModelSpec | None = None

    def judge_spec(self) -> PluginSpec:
        return self.judge or self.generator

    def refiner_spec(self) -> PluginSpec:
        return self.refiner or self.judge_spec()

    def resolved(self) -> dict[str, PluginSpec]:
        """The spec of each role, defaults applied (what the fingerprint records)."""
        return {"generator": self.generator, "judge": self.judge_spec(), "refiner": self.refiner_spec()}


class GenerateConfig(ConfigModel):
    """Instruction back-generation: `candidates` English instructions per document."""

    prompt: Annotated[str, Field(min_length=1)] = "instruction_v1"  # template file in curation/generate/prompts/
    candidates: Annotated[int, Field(ge=1, le=64)] = 2  # sampled with seeds seed, seed+1, ...; the best-judged one is kept
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=128))
    min_words: Annotated[int, Field(ge=0)] = 3  # fewer words: rejected `too_short`
    max_chars: Annotated[int, Field(ge=1)] = 600  # paper's instructions are ~100±85 chars; longer: rejected `too_long`
    max_copy_overlap: Probability = 0.6  # share of words inside 3-grams copied from the document
    min_english_prob: Probability = 0.5  # language-ID probability of English below this: `not_english`


class JudgeConfig(ConfigModel):
    """Labels each (instruction, response) pair: good / needs_refinement / bad.

    `three_level`: the judge answers the label directly. `five_point`: the judge answers a 1-5
    score, mapped to a label with `good_min_score` / `refine_min_score` (the score is kept)."""

    scale: Literal[JUDGE_SCALES] = "three_level"
    prompt: str = ""  # default: judge_<scale>_v1
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=48, temperature=0.3))
    good_min_score: Score = 4
    refine_min_score: Score = 3

    @model_validator(mode="after")
    def _resolve(self) -> "JudgeConfig":
        if self.refine_min_score > self.good_min_score:
            raise UsageError(f"refine_min_score ({self.refine_min_score}) must be <= good_min_score ({self.good_min_score})")
        self.prompt = self.prompt or f"judge_{self.scale}_v1"
        return self


class RefineConfig(ConfigModel):
    """Pairs labelled needs_refinement are rewritten and judged again, up to `rounds` times.

    `target: instruction` rewrites the English instruction to fit the (human-written) response;
    `target: response` rewrites the response in the target language, keeping its facts. Pairs
    still needing refinement after the last round are rejected, or kept ranked below `good`
    pairs when `keep_exhausted` is true."""

    rounds: Annotated[int, Field(ge=0, le=10)] = 2
    target: Literal[REFINE_TARGETS] = "instruction"
    prompt: str = ""  # default: refine_<target>_v1
    sampling: Sampling | None = None  # default: 128 new tokens (instruction) / 1024 (response)
    keep_exhausted: bool = False
    min_language_prob: Probability = 0.5  # a rewritten response below this for the target language: rejected

    @model_validator(mode="after")
    def _resolve(self) -> "RefineConfig":
        self.prompt = self.prompt or f"refine_{self.target}_v1"
        if self.sampling is None:
            self.sampling = Sampling(max_new_tokens=128 if self.target == "instruction" else 1024)
        return self


class DiversifyConfig(ConfigModel):
    """k-means over instruction embeddings, k = min(target_size, pool size); one pair per cluster
    (best label and score, then nearest to the centroid)."""

    target_size: Annotated[int, Field(ge=1)] = 32000  # the paper's per-language size
    embedding: EmbeddingSpec = Field(default_factory=LocalEmbedding)  # curation/embedders: local or tei
    kmeans_batch_size: Annotated[int, Field(ge=1)] = 4096
    kmeans_epochs: Annotated[int, Field(ge=1, le=1000)] = 5  # MiniBatchKMeans max_iter (passes over the data)


class CurationConfig(ConfigModel):
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    input: str = ""  # filtered documents; default: the filter runner's <output_dir>/filtered/<language>
    # call cache (SQLite); default: <output_dir>/cache/calls.sqlite
    cache: Annotated[str, NotFingerprinted("output path")] = ""
    records_per_shard: Annotated[int, Field(ge=1)] = 10000
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    diversify: DiversifyConfig = Field(default_factory=DiversifyConfig)

    @classmethod
    def from_dict(cls, data: "dict[str, Any] | CurationConfig | None") -> "CurationConfig":
        """The config of a recipe's `curation:` (already checked when the recipe was loaded, then
        returned as is) or of a mapping (checked here; errors name `curation.<key path>`)."""
        if isinstance(data, CurationConfig):
            return data
        try:
            return cls.model_validate(data or {})
        except ValidationError as error:
            raise readable_error(error, cls, "curation") from None

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        data = self.model_dump()
        return _redact(data) if redact else data

    def to_yaml(self) -> str:
        return yaml.safe_dump({"curation": self.to_dict()}, sort_keys=False, allow_unicode=True)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if SECRET_KEY.search(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
