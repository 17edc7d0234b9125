"""Curated X-Instruction in the shapes training code reads (`xinstruction export --format`), one
format per file, registered in `base.TRAINING_FORMATS` (registry.py):

- `alpaca.py`: `{"instruction", "input", "output"}`, the instruction with the paper's
  " Answer in {Language}." suffix (the X-Instruction training prompt);
- `messages.py`: `{"messages": [{"role", "content"}, ...]}` (OpenAI's chat format, TRL's
  `SFTTrainer` conversational format), with an optional system prompt.

Each language is written twice: as a hub-ready config (`data/<code>/train-*.parquet`, a card whose
YAML `configs:` makes `load_dataset(folder, code)` work) and as `jsonl/<code>.jsonl` for training
scripts that read JSON lines.

A new format is one file here (its spec and `@TRAINING_FORMATS.register(Spec)` on its
`TrainingFormat`) and its name on the import line below.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from ...errors import UsageError
from ...registry import PluginSpec
from ...storage import AtomicFile, write_text
from ..export import ExportResult, export_dataset
from ..layout import CARD_FILE, scan_folder
from ..metadata import metadata_yaml
from ..review import Review
from . import alpaca, messages  # noqa: F401 - the kinds: each file registers itself in TRAINING_FORMATS
from .base import TRAINING_FORMATS, TrainingFormat, cross_lingual_instruction

# `--format`'s choices; taking the union closes the registry (a format registered later would be
# missing from them: registry.py refuses it).
TrainingFormatSpec = TRAINING_FORMATS.union()
FORMATS = TRAINING_FORMATS.kinds()
JSONL_DIR = "jsonl"

__all__ = [
    "FORMATS", "JSONL_DIR", "TRAINING_FORMATS", "TrainingFormat", "TrainingFormatSpec", "convert", "cross_lingual_instruction",
    "export_language_as", "export_training_format", "training_format", "write_format_card",
]


def training_format(name: str, system: str | None = None) -> TrainingFormat:
    """The format `name` (`--format`), with the system prompt `system` (`--system`) where it takes one."""
    spec_model = TRAINING_FORMATS.spec_model(name)
    options = {}
    if system:
        if "system" not in spec_model.model_fields:
            takes = [kind for kind in FORMATS if "system" in TRAINING_FORMATS.spec_model(kind).model_fields]
            raise UsageError(f"a system prompt (--system) goes into the {' or '.join(f'`{k}`' for k in takes)} format only, not {name}")
        options["system"] = system
    spec: PluginSpec = TRAINING_FORMATS.parse({"format": name, **options})
    return TRAINING_FORMATS.implementation(name)(spec)


def convert(dataset: datasets.Dataset, fmt: TrainingFormat) -> datasets.Dataset:
    """`dataset` (X-Instruction records) as training examples of `fmt`."""
    return dataset.map(fmt.row, remove_columns=dataset.column_names, features=fmt.features, desc=f"to {fmt.name}")


def export_training_format(
    folder: str | Path, dataset: datasets.Dataset, language: str, fmt: TrainingFormat, *, progress: bool = True
) -> ExportResult:
    """Write one language in format `fmt`: the hub-ready config and `jsonl/<code>.jsonl`."""
    converted = convert(dataset, fmt)
    with AtomicFile(Path(folder) / JSONL_DIR / f"{language}.jsonl") as f:
        for record in converted:
            f.write_json_line(record)
    return export_dataset(converted, folder, language, "train", update_card=False, progress=progress)


def write_format_card(folder: str | Path, fmt: TrainingFormat) -> Path:
    """A short card whose YAML lists every config of the folder (what `load_dataset` reads)."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    layout = scan_folder(folder)
    card_data = DatasetCardData()
    MetadataConfigs(
        {name: {"data_files": [{"split": split, "path": files.pattern} for split, files in splits.items()]} for name, splits in layout.configs.items()}
    ).to_dataset_card_data(card_data)
    metadata = {"license": "apache-2.0", "language": ["en", *sorted(layout.configs)], "tags": ["x-instruction", fmt.name], **card_data.to_dict()}
    body = (
        f"# X-Instruction, {fmt.name} format\n\nCurated X-Instruction records as training examples: {fmt.shape}. The instruction "
        "ends in \"Answer in <Language>.\", as in the paper's training prompt. The same rows are in "
        f"`{JSONL_DIR}/<code>.jsonl`.\n\nConfigs: {', '.join(f'`{name}`' for name in layout.configs)}.\n"
    )
    path = Path(folder) / CARD_FILE
    write_text(path, f"---\n{metadata_yaml(metadata)}---\n\n{body}")
    return path


def export_language_as(
    folder: str | Path, language: str, fmt: TrainingFormat, *, source: str = "shards",
    data_dir: str | Path | None = None, cache_dir: str | Path | None = None, progress: bool = True, review: Review | None = None,
) -> ExportResult:
    """Build one language with the `XInstruction` builder and export it in format `fmt` (a hand
    review's vetoed records left out, as in `export.export_language`)."""
    from ...builder import build_language

    dataset = build_language(language, source=source, data_dir=str(data_dir) if data_dir else None, cache_dir=str(cache_dir) if cache_dir else None)
    if review is not None:
        dataset, _ = review.apply(dataset, language)
    return export_training_format(folder, dataset, language, fmt, progress=progress)
