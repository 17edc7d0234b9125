"""Dataset cards (minimal first version: YAML metadata that makes the folder loadable).

`update_card(folder)` regenerates README.md from the data present in the folder.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from ..features import XINSTRUCTION_FEATURES
from .layout import CARD_FILE, FolderLayout, scan_folder


def card_data_for(layout: FolderLayout, features: datasets.Features = XINSTRUCTION_FEATURES) -> DatasetCardData:
    """YAML metadata: `configs` (data_files per split) and `dataset_info` (features, counts)."""
    card_data = DatasetCardData()
    configs = MetadataConfigs(
        {
            name: {"data_files": [{"split": split, "path": files.pattern} for split, files in splits.items()]}
            for name, splits in layout.configs.items()
        }
    )
    configs.to_dataset_card_data(card_data)
    infos = DatasetInfosDict(
        {
            name: DatasetInfo(
                features=features,
                config_name=name,
                splits=datasets.SplitDict(
                    {
                        split: datasets.SplitInfo(name=split, num_examples=files.num_examples, num_bytes=files.num_bytes)
                        for split, files in splits.items()
                    }
                ),
            )
            for name, splits in layout.configs.items()
        }
    )
    infos.to_dataset_card_data(card_data)
    return card_data


def update_card(folder: str | Path, dataset: str = "x-instruction") -> Path:
    folder = Path(folder)
    card_data = card_data_for(scan_folder(folder))
    card = DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n# {dataset}\n")
    path = folder / CARD_FILE
    card.save(path)
    return path
