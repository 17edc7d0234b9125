"""Curated X-Instruction in the shapes training code reads (`xinstruction export --format`):

- `alpaca`: `{"instruction", "input", "output"}`: the English instruction with the paper's
  " Answer in {Language}." suffix (the X-Instruction training prompt), an empty `input`, the
  response;
- `messages`: `{"messages": [{"role", "content"}, ...]}` (OpenAI's chat format, TRL's
  `SFTTrainer` conversational format): an optional system prompt, the user's instruction with
  the same suffix, the assistant's response.

Each language is written twice: as a hub-ready config (`data/<code>/train-*.parquet`, a card whose
YAML `configs:` makes `load_dataset(folder, code)` work) and as `jsonl/<code>.jsonl` for training
scripts that read JSON lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ..errors import UsageError
from ..languages import get_language
from ..storage import AtomicFile, write_text
from .export import ExportResult, export_dataset
from .layout import CARD_FILE, scan_folder
from .metadata import metadata_yaml
from .review import Review

FORMATS = ("alpaca", "messages")
JSONL_DIR = "jsonl"
_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}
FEATURES = {
    "alpaca": datasets.Features({k: datasets.Value("string") for k in ("instruction", "input", "output")}),
    "messages": datasets.Features({"messages": datasets.List(_MESSAGE)}),
}


def cross_lingual_instruction(instruction: str, language: str) -> str:
    """The instruction as the paper trains on it: followed by " Answer in {Language}." (once)."""
    suffix = get_language(language).answer_suffix
    instruction = instruction.rstrip()
    return instruction if instruction.endswith(suffix) else f"{instruction} {suffix}"


def to_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    return {"instruction": cross_lingual_instruction(record["instruction"], record["language"]), "input": "", "output": record["output"]}


def to_messages(record: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": cross_lingual_instruction(record["instruction"], record["language"])},
        {"role": "assistant", "content": record["output"]},
    ]
    return {"messages": messages}


def convert(dataset: datasets.Dataset, fmt: str, system: str | None = None) -> datasets.Dataset:
    """`dataset` (X-Instruction records) in training format `fmt`."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown training format {fmt!r}; formats: {', '.join(FORMATS)}")
    if system and fmt != "messages":
        raise UsageError("a system prompt (--system) goes into the `messages` format only")
    row = to_alpaca if fmt == "alpaca" else (lambda record: to_messages(record, system))
    return dataset.map(row, remove_columns=dataset.column_names, features=FEATURES[fmt], desc=f"to {fmt}")


def export_training_format(
    folder: str | Path, dataset: datasets.Dataset, language: str, fmt: str, *, system: str | None = None, progress: bool = True
) -> ExportResult:
    """Write one language in format `fmt`: the hub-ready config and `jsonl/<code>.jsonl`."""
    converted = convert(dataset, fmt, system)
    with AtomicFile(Path(folder) / JSONL_DIR / f"{language}.jsonl") as f:
        for record in converted:
            f.write_json_line(record)
    return export_dataset(converted, folder, language, "train", update_card=False, progress=progress)


def write_format_card(folder: str | Path, fmt: str) -> Path:
    """A short card whose YAML lists every config of the folder (what `load_dataset` reads)."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    layout = scan_folder(folder)
    card_data = DatasetCardData()
    MetadataConfigs(
        {name: {"data_files": [{"split": split, "path": files.pattern} for split, files in splits.items()]} for name, splits in layout.configs.items()}
    ).to_dataset_card_data(card_data)
    metadata = {"license": "apache-2.0", "language": ["en", *sorted(layout.configs)], "tags": ["x-instruction", fmt], **card_data.to_dict()}
    shape = "instruction / input / output (Alpaca)" if fmt == "alpaca" else "messages: [{role, content}] (OpenAI / TRL chat)"
    body = (
        f"# X-Instruction, {fmt} format\n\nCurated X-Instruction records as training examples: {shape}. The instruction "
        "ends in \"Answer in <Language>.\", as in the paper's training prompt. The same rows are in "
        f"`{JSONL_DIR}/<code>.jsonl`.\n\nConfigs: {', '.join(f'`{name}`' for name in layout.configs)}.\n"
    )
    path = Path(folder) / CARD_FILE
    write_text(path, f"---\n{metadata_yaml(metadata)}---\n\n{body}")
    return path


def export_language_as(
    folder: str | Path, language: str, fmt: str, *, system: str | None = None, source: str = "shards",
    data_dir: str | Path | None = None, cache_dir: str | Path | None = None, progress: bool = True, review: Review | None = None,
) -> ExportResult:
    """Build one language with the `XInstruction` builder and export it in format `fmt` (a hand
    review's vetoed records left out, as in `export.export_language`)."""
    from ..builder import build_language

    dataset = build_language(language, source=source, data_dir=str(data_dir) if data_dir else None, cache_dir=str(cache_dir) if cache_dir else None)
    if review is not None:
        dataset, _ = review.apply(dataset, language)
    return export_training_format(folder, dataset, language, fmt, system=system, progress=progress)
