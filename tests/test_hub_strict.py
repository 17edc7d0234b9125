"""The test Hub refuses card metadata the real Hub refuses, with lists kept apart from the
project's own (tests/hub_vocabulary.py): the project's checker must never accept a value the
Hub refuses, and a card it renders must pass the Hub."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from huggingface_hub import HfApi

from conftest_hub import TEST_TOKEN
from hub_folders import xinstruction_folder
from hub_vocabulary import HUB_LANGUAGE, HUB_LICENSES, HUB_MULTILINGUALITY, HUB_SIZE_CATEGORIES, HUB_TASK_CATEGORIES, metadata_errors
from xinstruction_dataset.hub import vocabulary
from xinstruction_dataset.hub.check import check_card
from xinstruction_dataset.languages import LANGUAGES


def test_the_checker_accepts_nothing_the_hub_refuses():
    assert vocabulary.LICENSES <= HUB_LICENSES, sorted(vocabulary.LICENSES - HUB_LICENSES)
    assert vocabulary.TASK_CATEGORIES <= HUB_TASK_CATEGORIES, sorted(vocabulary.TASK_CATEGORIES - HUB_TASK_CATEGORIES)
    assert vocabulary.MULTILINGUALITY <= HUB_MULTILINGUALITY
    assert [name for _, name in vocabulary.SIZE_CATEGORIES] == list(HUB_SIZE_CATEGORIES)
    codes = sorted(LANGUAGES) + ["swh", "zh-Hant", "english", "EN", "e"]
    assert [c for c in codes if vocabulary.is_language_code(c) and not HUB_LANGUAGE.match(c)] == []


def test_a_card_the_checker_passes_passes_the_hub(tmp_path):
    folder = xinstruction_folder(tmp_path, {"sw": 3, "fi": 2})
    assert check_card(folder) == []
    assert metadata_errors((folder / "README.md").read_text()) == []


@pytest.mark.parametrize("line, value", [("license: apache-2.0", "license: cc-by-nc"),
                                         ("- text-generation", "- text-gen"), ("- n<1K", "- 1M-10M")])
def test_the_hub_refuses_a_commit_with_bad_card_metadata(hub, repo_id, tmp_path, line, value):
    folder = xinstruction_folder(tmp_path, {"sw": 3})
    card = (folder / "README.md").read_text()
    bad = card.replace(line, value, 1)
    assert bad != card
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):  # huggingface_hub asks validate-yaml first
        api.upload_file(path_or_fileobj=bad.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
    # The commit route refuses it too (a client that skips the early check).
    commit = "\n".join(json.dumps(line) for line in [
        {"key": "header", "value": {"summary": "card"}},
        {"key": "file", "value": {"path": "README.md", "content": bad, "encoding": "utf-8"}},
    ])
    request = urllib.request.Request(f"{hub.url}/api/datasets/{repo_id}/commit/main", commit.encode(),
                                     {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/x-ndjson"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400 and "Invalid metadata in README.md" in refused.value.read().decode()
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
