"""X-AlpacaEval: validation of the released files, the configs, the export, and the real download path."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from corpora import CORPORA_DIR
from hub_folders import write_xalpacaeval_sources
from xinstruction_dataset.features import XALPACAEVAL_FEATURES
from xinstruction_dataset.hub.check import check_card
from xinstruction_dataset.languages import LANGUAGES
from xinstruction_dataset.xalpacaeval import (
    REPO_ID,
    SOURCE_FILES,
    XAlpacaEvalError,
    config_names,
    export_xalpacaeval,
    load_source,
    load_xalpacaeval,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_xalpacaeval_sources(tmp_path / "source")


def edit(source: Path, name: str, change) -> None:
    items = json.loads((source / name).read_text())
    change(items)
    (source / name).write_text(json.dumps(items))


def test_configs():
    assert config_names()[:5] == ["en", "zh", "ko", "it", "es"]
    assert config_names()[5:] == [f"cross-{code}" for code in LANGUAGES]


@pytest.mark.parametrize("config", list(SOURCE_FILES))
def test_released_configs_are_the_files(source, config):
    ds = load_xalpacaeval(config, source_dir=source)
    assert ds.features == XALPACAEVAL_FEATURES and ds.split == "test" and ds.num_rows == 805
    assert ds[10] == {"id": 10, "dataset": "helpful_base", "instruction": f"[fake {config} instruction #10] Describe item 70.", "language": config}


def test_features_keep_the_source_shape(source, tmp_path):
    """The source's names and types: integer `id`, `dataset` (not renamed), `instruction`; the
    exported Parquet files carry the same, so a script keyed on `id`/`dataset` reads them as is."""
    released = json.loads((source / "english.json").read_text())[0]
    assert set(released) == {"id", "dataset", "instruction"} and isinstance(released["id"], int)
    assert XALPACAEVAL_FEATURES["id"].dtype == "int64" and XALPACAEVAL_FEATURES["dataset"].dtype == "string"
    assert "subset" not in XALPACAEVAL_FEATURES
    for config in ("en", "cross-sw"):
        row = load_xalpacaeval(config, source_dir=source)[0]
        assert row["id"] == released["id"] and row["dataset"] == released["dataset"]
    folder = tmp_path / "x-alpacaeval"
    export_xalpacaeval(folder, source_dir=source, configs=["ko"])
    loaded = datasets.load_dataset(str(folder), "ko", split="test")
    assert loaded.features == XALPACAEVAL_FEATURES and type(loaded[5]["id"]) is int


def test_a_string_id_is_not_the_release(source):
    edit(source, "chinese.json", lambda items: items[2].update(id="2"))
    with pytest.raises(XAlpacaEvalError, match=r"chinese.json: item 2 has id '2'; X-AlpacaEval ids are integers"):
        load_source(source)


def test_cross_lingual_configs_name_the_answer_language(source):
    english = load_xalpacaeval("en", source_dir=source)
    for code, language in LANGUAGES.items():
        ds = load_xalpacaeval(f"cross-{code}", source_dir=source)
        assert ds["id"] == english["id"] and set(ds["language"]) == {code}
        assert ds[0]["instruction"] == f"{english[0]['instruction']} Answer in {language.name}."


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("korean.json", lambda items: items.pop(), r"korean.json: 804 items, X-AlpacaEval has 805"),
        ("italian.json", lambda items: items[7].update(id=9999), r"italian.json: ids differ from .*english.json \(only here: 9999; only there: 7\)"),
        ("spanish.json", lambda items: items[3].update(instruction="  "), r"spanish.json: item 3 \(id 3\) has an empty instruction"),
        ("chinese.json", lambda items: items[5].update(id=4), r"chinese.json: duplicate id\(s\) 4"),
        ("english.json", lambda items: items.__setitem__(0, "not an object"), r"english.json: item 0 is not an object"),
    ],
)
def test_each_validation_failure_is_a_clear_error(source, name, change, message):
    edit(source, name, change)
    with pytest.raises(XAlpacaEvalError, match=message):
        load_source(source)


def test_not_an_array_and_missing_files(source):
    (source / "korean.json").write_text('{"id": 1}')
    with pytest.raises(XAlpacaEvalError, match="korean.json: expected a JSON array"):
        load_source(source)
    (source / "korean.json").unlink()
    with pytest.raises(FileNotFoundError, match="korean.json"):
        load_source(source)


def test_export_is_a_loadable_folder_with_its_card(source, tmp_path):
    folder = tmp_path / "x-alpacaeval"
    written = export_xalpacaeval(folder, source_dir=source)
    assert written == {config: 805 for config in config_names()}
    assert datasets.load_dataset(str(folder), "cross-ta", split="test")[0]["instruction"].endswith(" Answer in Tamil.")
    card = (folder / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "{PLUG}: Leveraging Pivot Language" in card
    assert "| `zh` | Chinese | 805 |" in card and "| `cross-ur` | Urdu | 805 |" in card
    assert "not** the X-Instruction paper's test set" in card and "`dataset`: the AlpacaEval source set" in card
    assert check_card(folder) == []


def test_download_path_fetches_the_pinned_files_from_the_hub(hub, source):
    """`hf_hub_download` of the five files from a Hub repo of the real shape, at a given revision."""
    api = HfApi()
    api.create_repo(REPO_ID, repo_type="dataset", exist_ok=True)
    commit = api.create_commit(
        REPO_ID, [CommitOperationAdd(name, str(source / name)) for name in SOURCE_FILES.values()],
        commit_message="X-AlpacaEval files", repo_type="dataset",
    )
    items = load_source(revision=commit.oid)
    assert {code: len(v) for code, v in items.items()} == {code: 805 for code in SOURCE_FILES}
    assert items["it"][1].instruction == "[fake it instruction #1] Describe item 7."


def test_the_real_release_shape_loads_with_its_own_names_and_types():
    """`../shared/xalpacaeval-shape`: the hub files' exact shape (english.json the real 805
    AlpacaEval instructions, ids 1..805): every config keeps the integer id and `dataset`."""
    shape = CORPORA_DIR.parent / "xalpacaeval-shape"
    if not (shape / "english.json").is_file():
        raise FileNotFoundError(f"{shape} not found: the tests need ../shared/xalpacaeval-shape beside the repository")
    released = json.loads((shape / "english.json").read_text(encoding="utf-8"))
    english = load_xalpacaeval("en", source_dir=shape)
    assert english.features == XALPACAEVAL_FEATURES and english.num_rows == 805
    assert english.to_list()[:3] == [{**item, "language": "en"} for item in released[:3]]
    assert english["id"] == list(range(1, 806)) and set(english["dataset"]) == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
    swahili = load_xalpacaeval("cross-sw", source_dir=shape)
    assert swahili["id"] == english["id"] and swahili["dataset"] == english["dataset"]
