"""`xinstruction export --format alpaca|messages`: curated shards in training formats, as JSONL and
as a hub-ready folder that `load_dataset` reads."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from hub_folders import xinstruction_records
from xinstruction_dataset.cli import main
from xinstruction_dataset.hub.training_formats import cross_lingual_instruction
from xinstruction_dataset.hub.training_formats.alpaca import to_alpaca
from xinstruction_dataset.hub.training_formats.messages import to_messages
from xinstruction_dataset.records import ShardWriter

COUNTS = {"sw": 5, "th": 3}


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    root = tmp_path / "curated"
    for language, count in COUNTS.items():
        with ShardWriter(root / language / "shard-00000.jsonl") as writer:
            for record in xinstruction_records(language, count):
                writer.write(record)
    return root


def export(curated: Path, folder: Path, *extra: str) -> int:
    return main(["export", str(folder), "--language", "sw", "--language", "th", "--data-dir", str(curated),
                 "--cache-dir", str(folder.parent / "cache"), "--no-progress", *extra])


def test_alpaca_format_as_jsonl_and_hub_folder(curated, tmp_path):
    folder = tmp_path / "alpaca"
    assert export(curated, folder, "--format", "alpaca") == 0
    expected = xinstruction_records("sw", COUNTS["sw"])
    lines = [json.loads(line) for line in (folder / "jsonl" / "sw.jsonl").read_text().splitlines()]
    assert lines == [
        {"instruction": f"{r.instruction} Answer in Swahili.", "input": "", "output": r.output} for r in expected
    ]
    assert datasets.get_dataset_config_names(str(folder)) == ["sw", "th"]
    thai = datasets.load_dataset(str(folder), "th", split="train")
    assert thai.column_names == ["instruction", "input", "output"] and thai.num_rows == COUNTS["th"]
    assert all(i.endswith(" Answer in Thai.") and i.count("Answer in") == 1 for i in thai["instruction"])
    assert datasets.load_dataset(str(folder), "sw", split="train").to_list() == lines


def test_messages_format_with_a_system_prompt(curated, tmp_path):
    folder = tmp_path / "messages"
    assert export(curated, folder, "--format", "messages", "--system", "You are a helpful assistant.") == 0
    record = xinstruction_records("th", 1)[0]
    first = json.loads((folder / "jsonl" / "th.jsonl").read_text().splitlines()[0])
    assert first == {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"{record.instruction} Answer in Thai."},
        {"role": "assistant", "content": record.output},
    ]}
    loaded = datasets.load_dataset(str(folder), "th", split="train")
    assert loaded.column_names == ["messages"] and loaded[0] == first
    card = (folder / "README.md").read_text()
    assert "config_name: sw" in card and "messages" in card


def test_messages_without_system_and_the_suffix_is_never_doubled():
    record = {"instruction": "Describe the market. Answer in Swahili.", "output": "Soko ni kubwa.", "language": "sw"}
    assert to_messages(record)["messages"][0] == {"role": "user", "content": "Describe the market. Answer in Swahili."}
    assert to_alpaca(record)["instruction"] == "Describe the market. Answer in Swahili."
    assert cross_lingual_instruction("Describe the market.  ", "ur") == "Describe the market. Answer in Urdu."


def test_a_system_prompt_in_alpaca_format_is_refused_and_the_folder_left_as_it_was(curated, tmp_path, capsys):
    folder = tmp_path / "alpaca"
    assert export(curated, folder, "--format", "alpaca") == 0
    before = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    assert export(curated, folder, "--format", "alpaca", "--system", "Be brief.") == 2
    assert "--system" in capsys.readouterr().err
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == before


def test_every_training_format_is_registered_built_and_a_format_choice():
    """A new training format is one file in hub/training_formats/ (its spec and its
    TrainingFormat registered in TRAINING_FORMATS) and its name on the package __init__'s import
    line: forgetting either fails here, as does an `export --format` that does not offer it."""
    import xinstruction_dataset.hub.training_formats as formats
    from plugin_checks import point_problems

    assert point_problems(formats.TRAINING_FORMATS, formats, formats.FORMATS) == []
    assert {"alpaca", "messages"} <= set(formats.FORMATS)  # a new format needs no change here
