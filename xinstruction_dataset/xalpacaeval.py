"""X-AlpacaEval: PLUG's benchmark, fetched, validated, and exposed as `test`-split configs.

Source: hub dataset `zhihz0535/X-AlpacaEval` at a pinned revision, one JSON array per language
(`english.json`, `chinese.json`, `korean.json`, `italian.json`, `spanish.json`), each item
`{"id", "dataset", "instruction"}`: the 805 AlpacaEval instructions, professionally translated.

Configs (features `XALPACAEVAL_FEATURES`: id, dataset, instruction, language). The source's
field names and types are kept (`id` an integer, `dataset` the AlpacaEval source set). PLUG's
`calculate_pair_judge_score.py` reads both from its `-data` file, and a `category` the release
lacks (its line 100): `xinstruction eval judge --export plug` writes a data file that has it.

- `en zh ko it es`: the released instructions;
- `cross-<code>` for each X-Instruction language: the English instruction followed by
  "Answer in <Language>.". These are this project's construction, in the style of the prompts
  X-Instruction's paper evaluates tuned models with; they are not the paper's test set. There
  `language` is the language the answer should be in.

`export_xalpacaeval(folder)` writes them to a hub-ready folder with its own card (licence
CC BY-NC 4.0, PLUG citation), ready for `xinstruction publish`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from .errors import UsageError
from .features import XALPACAEVAL_FEATURES
from .languages import LANGUAGES, XALPACAEVAL_LANGUAGES

REPO_ID = "zhihz0535/X-AlpacaEval"
# Pinned: a benchmark must not change under a published evaluation.
REVISION = "03d79e702ac75fc1c7a1fe773b1c168653193c69"
SOURCE_FILES: dict[str, str] = {code: f"{name.lower()}.json" for code, name in XALPACAEVAL_LANGUAGES.items()}
EXPECTED_ITEMS = 805
SPLIT = "test"
CROSS_PREFIX = "cross-"
CARD_DATASET = "x-alpacaeval"


class XAlpacaEvalError(UsageError):
    """The source files are not the X-AlpacaEval release: the message names the file and the problem."""


@dataclass(frozen=True)
class BenchmarkItem:
    id: int
    dataset: str  # the AlpacaEval source set (helpful_base, koala, oasst, selfinstruct, vicuna)
    instruction: str


def config_names() -> list[str]:
    """`en zh ko it es`, then `cross-<code>` for each X-Instruction language."""
    return [*SOURCE_FILES, *(f"{CROSS_PREFIX}{code}" for code in LANGUAGES)]


def fetch_source_files(source_dir: str | Path | None = None, revision: str = REVISION) -> dict[str, Path]:
    """Paths of the five released files: from `source_dir` when given, else downloaded from the Hub.

    Args:
        source_dir: a local folder holding `english.json` ... `spanish.json` (the Hub's shape).
        revision: the Hub revision to download (default: the pinned one).
    """
    if source_dir is not None:
        paths = {code: Path(source_dir) / name for code, name in SOURCE_FILES.items()}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"X-AlpacaEval source file(s) missing: {', '.join(missing)}; --source-dir must hold {', '.join(SOURCE_FILES.values())}")
        return paths
    from huggingface_hub import hf_hub_download

    return {code: Path(hf_hub_download(REPO_ID, name, repo_type="dataset", revision=revision)) for code, name in SOURCE_FILES.items()}


def read_source_file(path: str | Path) -> list[BenchmarkItem]:
    """Parse one released file (a JSON array of {id, dataset, instruction})."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XAlpacaEvalError(f"{path}: not valid UTF-8 JSON ({e})") from e
    if not isinstance(items, list):
        raise XAlpacaEvalError(f"{path}: expected a JSON array of items, got {type(items).__name__}")
    return [_parse_item(item, path, index) for index, item in enumerate(items)]


def _parse_item(item: Any, path: Path, index: int) -> BenchmarkItem:
    if not isinstance(item, dict) or "id" not in item or "instruction" not in item:
        raise XAlpacaEvalError(f"{path}: item {index} is not an object with `id`, `dataset` and `instruction`")
    if not isinstance(item["id"], int) or isinstance(item["id"], bool):
        raise XAlpacaEvalError(f"{path}: item {index} has id {item['id']!r}; X-AlpacaEval ids are integers")
    instruction = item["instruction"]
    if not isinstance(instruction, str) or not instruction.strip():
        raise XAlpacaEvalError(f"{path}: item {index} (id {item['id']}) has an empty instruction")
    return BenchmarkItem(id=item["id"], dataset=str(item.get("dataset") or ""), instruction=instruction)


def validate(items_by_language: dict[str, list[BenchmarkItem]], paths: dict[str, Path] | None = None) -> None:
    """Check the release: 805 items per language, unique ids, the same ids in every language."""
    where = {code: str(paths[code]) if paths else code for code in items_by_language}
    reference_code = next(iter(items_by_language))
    reference_ids = [item.id for item in items_by_language[reference_code]]
    for code, items in items_by_language.items():
        if len(items) != EXPECTED_ITEMS:
            raise XAlpacaEvalError(f"{where[code]}: {len(items)} items, X-AlpacaEval has {EXPECTED_ITEMS} per language")
        ids = [item.id for item in items]
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise XAlpacaEvalError(f"{where[code]}: duplicate id(s) {', '.join(map(str, duplicates[:5]))}")
        if set(ids) != set(reference_ids):
            only_here = sorted(set(ids) - set(reference_ids))[:5]
            only_there = sorted(set(reference_ids) - set(ids))[:5]
            raise XAlpacaEvalError(
                f"{where[code]}: ids differ from {where[reference_code]} "
                f"(only here: {', '.join(map(str, only_here)) or '-'}; only there: {', '.join(map(str, only_there)) or '-'})"
            )


def load_source(source_dir: str | Path | None = None, revision: str = REVISION) -> dict[str, list[BenchmarkItem]]:
    """Read and validate the five released files; language code -> items in file order."""
    paths = fetch_source_files(source_dir, revision)
    items = {code: read_source_file(path) for code, path in paths.items()}
    validate(items, paths)
    return items


def config_rows(config: str, source: dict[str, list[BenchmarkItem]]) -> list[dict[str, Any]]:
    """The rows of one config, from validated source items."""
    if config in SOURCE_FILES:
        return [{"id": i.id, "dataset": i.dataset, "instruction": i.instruction, "language": config} for i in source[config]]
    code = config.removeprefix(CROSS_PREFIX)
    if not config.startswith(CROSS_PREFIX) or code not in LANGUAGES:
        raise UsageError(f"unknown X-AlpacaEval config {config!r}; configs are: {', '.join(config_names())}")
    suffix = LANGUAGES[code].answer_suffix
    return [
        {"id": i.id, "dataset": i.dataset, "instruction": f"{i.instruction.rstrip()} {suffix}", "language": code}
        for i in source["en"]
    ]


def load_xalpacaeval(config: str, source_dir: str | Path | None = None, revision: str = REVISION) -> datasets.Dataset:
    """One config's `test` split as a `datasets.Dataset`, fetched (or read) and validated."""
    return datasets.Dataset.from_list(config_rows(config, load_source(source_dir, revision)), features=XALPACAEVAL_FEATURES, split=SPLIT)


def export_xalpacaeval(
    folder: str | Path,
    *,
    source_dir: str | Path | None = None,
    revision: str = REVISION,
    configs: list[str] | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Write every config (or `configs`) to a hub-ready folder, then render its card; the data
    and the card replace the folder's together (`hub.export.staged_folder`).

    Returns config -> number of records written.
    """
    from .hub.cards import update_card
    from .hub.export import export_dataset, staged_folder

    source = load_source(source_dir, revision)
    written: dict[str, int] = {}
    with staged_folder(folder) as staging:
        for config in configs or config_names():
            dataset = datasets.Dataset.from_list(config_rows(config, source), features=XALPACAEVAL_FEATURES, split=SPLIT)
            written[config] = export_dataset(dataset, staging, config, SPLIT, update_card=False, progress=progress).num_examples
        update_card(staging, CARD_DATASET)
    return written
