"""`XInstruction`: the GeneratorBasedBuilder of X-Instruction, one config per language.

`datasets` 5 runs no loading scripts, so this builder is used in code
(`XInstruction(config_name="sw", data_dir=...).download_and_prepare()`) and its output is
exported to a hub-ready folder (see `hub/export.py`) that `load_dataset` reads.

Two sources feed the same features:
- `source="shards"` (default): curated shards written by the curation backend
  (`records.py`: JSONL, JSONL.gz or Parquet) under `data_dir/<code>/` or directly in `data_dir`;
- `source="paper"`: the data the paper released, hub dataset `James-WYang/X-Instruction`, one
  `<code>.json` per language, fetched with `hf_hub_download` at a pinned revision (or read from
  `data_dir/<code>.json` when given), read streaming in any shape `paper_shapes` knows (Alpaca,
  prompt/response, ShareGPT; array, JSON lines or {"data": [...]}), mapped onto the same features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import datasets

from .citations import X_INSTRUCTION
from .errors import UsageError
from .features import XINSTRUCTION_FEATURES
from .languages import LANGUAGES, get_language
from .paper_shapes import read_pairs
from .records import Provenance, Record, read_shard, stable_id

logger = logging.getLogger(__name__)

PAPER_REPO_ID = "James-WYang/X-Instruction"
# The last commit of the released data (2024-05-27, "Upload README.md" after the 10 language files).
PAPER_REVISION = "19ea4d716294bb4321fd49389c7baddc092a90d4"
PAPER_PROMPT_VERSION = "x-instruction-paper-release"
SHARD_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.parquet")

DESCRIPTION = (
    "X-Instruction: English instructions paired with responses written natively in a lower-resource "
    "language; the responses are natural web text, the instructions were generated, judged, refined "
    "and sampled for diversity."
)


@dataclass
class XInstructionConfig(datasets.BuilderConfig):
    """One language. `source` is "shards" (curated by this toolkit) or "paper" (released data)."""

    source: str = "shards"
    paper_revision: str = PAPER_REVISION

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source not in ("shards", "paper"):
            raise ValueError(f"source must be 'shards' or 'paper', got {self.source!r}")


class XInstruction(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = XInstructionConfig
    BUILDER_CONFIGS = [
        XInstructionConfig(name=code, version=datasets.Version("1.0.0"), description=f"X-Instruction, {lang.name}")
        for code, lang in LANGUAGES.items()
    ]

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=XINSTRUCTION_FEATURES,
            citation=X_INSTRUCTION,
            homepage="https://arxiv.org/abs/2405.19744",
            license="apache-2.0",
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        files = self._paper_files() if self.config.source == "paper" else self._shard_files()
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": files})]

    def _generate_examples(self, files: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        for file in files:
            records = read_paper_file(file, self.config.name, self.config.paper_revision) if self.config.source == "paper" else read_shard(file)
            for index, record in enumerate(records):
                if record.language != self.config.name:
                    raise UsageError(f"{file}: record {record.id} is language {record.language!r} in config {self.config.name!r}")
                yield f"{file}:{index}", record.to_dict()

    def _shard_files(self) -> list[str]:
        if not self.config.data_dir:
            raise UsageError("source='shards' needs data_dir: the folder of curated shards (e.g. runs/default/curated)")
        root = Path(self.config.data_dir)
        folder = root / self.config.name if (root / self.config.name).is_dir() else root
        files = sorted(str(p) for pattern in SHARD_PATTERNS for p in folder.glob(pattern))
        if not files:
            raise FileNotFoundError(f"no curated shards ({', '.join(SHARD_PATTERNS)}) for {self.config.name!r} in {folder}")
        return files

    def _paper_files(self) -> list[str]:
        name = f"{self.config.name}.json"
        if self.config.data_dir:
            local = Path(self.config.data_dir) / name
            if not local.exists():
                raise FileNotFoundError(f"{local} does not exist: data_dir must hold the released <code>.json files")
            return [str(local)]
        from huggingface_hub import hf_hub_download

        return [hf_hub_download(PAPER_REPO_ID, name, repo_type="dataset", revision=self.config.paper_revision)]


def build_language(
    language: str,
    *,
    source: str = "shards",
    data_dir: str | None = None,
    cache_dir: str | None = None,
    paper_revision: str = PAPER_REVISION,
) -> datasets.Dataset:
    """Build one language's train split (always from the current files) and return it.

    `datasets` wraps errors raised while generating in DatasetGenerationError; the cause (which
    names the bad file and line) is what a user needs, so it is re-raised as is.
    """
    builder = XInstruction(
        config_name=language, source=source, data_dir=data_dir, cache_dir=cache_dir, paper_revision=paper_revision
    )
    try:
        # Curated shards change between builds: the sizes recorded by the last build are no check.
        builder.download_and_prepare(
            download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD,
            verification_mode=datasets.VerificationMode.NO_CHECKS,
        )
    except datasets.exceptions.DatasetGenerationError as e:
        if isinstance(e.__cause__, (ValueError, OSError)):
            raise e.__cause__ from None
        raise
    if not builder.info.splits or builder.info.splits["train"].num_examples == 0:
        if source == "paper":
            where = data_dir or f"{PAPER_REPO_ID}@{paper_revision}"
            raise UsageError(f"no {language!r} records in {where}: every record has an empty instruction or output")
        raise UsageError(f"no {language!r} records in {data_dir}: nothing to build (curation rejects say why each document was dropped)")
    return builder.as_dataset(split="train")


def read_paper_file(path: str, language: str, revision: str = PAPER_REVISION) -> Iterator[Record]:
    """Map a released `<code>.json` (any shape `paper_shapes` reads, streamed) onto X-Instruction
    records; provenance says where each came from and that the rest is unknown. Records with an
    empty instruction or output are skipped and counted in one warning."""
    get_language(language)
    skipped = 0
    for index, instruction, output in read_pairs(path):
        if not instruction or not output:
            skipped += 1
            continue
        yield Record(
            id=stable_id(language, instruction, output),
            instruction=instruction,
            output=output,
            language=language,
            provenance=Provenance(
                source_dataset=f"{PAPER_REPO_ID}@{revision}",
                source_id=f"{Path(path).name}#{index}",
                prompt_version=PAPER_PROMPT_VERSION,
            ),
        )
    if skipped:
        logger.warning("%s: %d records with an empty instruction or output skipped", path, skipped)
