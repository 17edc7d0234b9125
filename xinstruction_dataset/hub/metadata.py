"""The YAML metadata block of a dataset card, computed from the data in a hub-ready folder.

`configs` (data_files per split) is what makes `load_dataset(folder_or_repo, config)` work;
`dataset_info` (features, num_examples) is what the Hub's viewer and `datasets` read as the
declared sizes. Both are produced with `datasets`' own serialisers, so their shape is the one
`datasets` parses back.
"""

from __future__ import annotations

from typing import Any

import datasets
import pyarrow.parquet as pq
import yaml
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from .layout import FolderLayout
from .stats import ConfigStats
from .vocabulary import size_category

# Key order of the generated YAML: identity first, then the machine-read blocks.
METADATA_KEY_ORDER = (
    "pretty_name", "license", "language", "multilinguality", "size_categories",
    "task_categories", "tags", "configs", "dataset_info",
)


def config_features(layout: FolderLayout, config: str) -> datasets.Features:
    """The features of a config, read from the schema of its first Parquet file."""
    first_split = next(iter(layout.configs[config].values()))
    return datasets.Features.from_arrow_schema(pq.read_schema(layout.root / first_split.files[0]))


def card_metadata(
    layout: FolderLayout,
    stats: dict[str, ConfigStats],
    static: dict[str, Any],
) -> dict[str, Any]:
    """All metadata keys of the card: `static` (pretty_name, license, ...) plus what the data says."""
    card_data = DatasetCardData()
    MetadataConfigs(
        {
            name: {"data_files": [{"split": split, "path": files.pattern} for split, files in splits.items()]}
            for name, splits in layout.configs.items()
        }
    ).to_dataset_card_data(card_data)
    DatasetInfosDict({name: _dataset_info(layout, name) for name in layout.configs}).to_dataset_card_data(card_data)
    languages = set(static.get("extra_languages", ())) | {code for s in stats.values() for code in s.languages}
    computed = {
        "pretty_name": static["pretty_name"],
        "license": static["license"],
        "language": sorted(languages),
        "multilinguality": static.get("multilinguality", "multilingual"),
        "size_categories": [size_category(sum(s.num_examples for s in stats.values()))],
        "task_categories": list(static.get("task_categories", ())),
        "tags": list(static.get("tags", ())),
        **card_data.to_dict(),
    }
    return {key: computed[key] for key in METADATA_KEY_ORDER if computed.get(key) not in (None, [], "")}


def metadata_yaml(metadata: dict[str, Any]) -> str:
    """The YAML text between the card's `---` lines (ends with a newline)."""
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000)


def _dataset_info(layout: FolderLayout, config: str) -> DatasetInfo:
    splits = layout.configs[config]
    return DatasetInfo(
        features=config_features(layout, config),
        config_name=config,
        splits=datasets.SplitDict(
            {
                split: datasets.SplitInfo(name=split, num_examples=files.num_examples, num_bytes=files.num_bytes)
                for split, files in splits.items()
            }
        ),
        download_size=sum(files.num_bytes for files in splits.values()),
        dataset_size=sum(files.num_bytes for files in splits.values()),
    )
