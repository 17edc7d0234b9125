"""The run fingerprint: a run folder is resumed only with a recipe that shapes outputs the same
way; paths, throughput knobs and the language selection may change; --force overrides."""

from __future__ import annotations

import copy
import json
import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from xinstruction_dataset.cli import main
from xinstruction_dataset.fingerprint import check_fingerprint, fingerprint
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.recipe import Recipe
from xinstruction_dataset.redact import environment_secrets, is_secret_name, redact_secret_values

TGI = {"backend": "tgi", "model": "org/judge", "endpoints": ["http://h1:8080"]}
BASE = {
    "name": "t",
    "languages": ["sw"],
    "sources": [{"path": "docs.jsonl", "language": "sw"}],
    "filters": [{"type": "length", "min_chars": 20}],
    "output_dir": "out",
    "curation": {"models": {"judge": TGI}, "judge": {"good_min_score": 4}},
}


def recipe_with(tmp_path: Path, edit=lambda data: None) -> Recipe:
    data = copy.deepcopy(BASE)
    edit(data)
    return Recipe.from_dict(data, base_dir=tmp_path)


def check(recipe: Recipe, force: bool = False, **options) -> None:
    check_fingerprint(recipe, RunLayout(recipe.output_path), force=force, **options)


def test_written_when_absent_and_equal_passes(tmp_path):
    recipe = recipe_with(tmp_path)
    check(recipe)
    stored = json.loads(RunLayout(recipe.output_path).fingerprint_file.read_text())["fingerprint"]
    assert stored == fingerprint(recipe)
    assert stored["curation.models.judge.model"] == "org/judge" and stored["filters[0].min_chars"] == 20
    assert stored["curation.models.refiner.model"] == "org/judge"  # resolved: the refiner defaults to the judge
    assert not any(key.startswith(("output_dir", "name", "languages", "publish")) for key in stored)
    assert not any(key.endswith(("endpoints[0]", "max_concurrency", "timeout", "retries", "ramp_start", "cache")) for key in stored)
    check(recipe_with(tmp_path))  # same recipe again: resumes


@pytest.mark.parametrize(
    "edit, key, change",
    [
        (lambda d: d["curation"]["judge"].update(good_min_score=5), "curation.judge.good_min_score", "4 → 5"),
        (lambda d: d["curation"]["models"]["judge"].update(model="org/other"), "curation.models.judge.model", '"org/judge" → "org/other"'),
        # the chat template changes what the model sees: named by the prompt format, not the route's spelling
        (lambda d: d["curation"]["models"]["judge"].update(route="chat"), "curation.models.judge.prompt_format", '"raw" → "chat"'),
        (lambda d: d["filters"][0].update(min_chars=30), "filters[0].min_chars", "20 → 30"),
        (lambda d: d["curation"].update(seed=7), "curation.seed", "0 → 7"),
        (lambda d: d["filters"].append({"type": "exact_dedup"}), "filters[1].type", '(absent) → "exact_dedup"'),
    ],
)
def test_resuming_with_a_changed_recipe_is_refused_naming_the_key(tmp_path, edit, key, change):
    check(recipe_with(tmp_path))
    with pytest.raises(ValueError) as error:
        check(recipe_with(tmp_path, edit))
    message = str(error.value)
    assert f"{key}: {change}" in message and "--force" in message and "new output_dir" in message


def test_paths_throughput_and_selection_may_change(tmp_path, monkeypatch):
    check(recipe_with(tmp_path))
    monkeypatch.setenv("JUDGE_TOKEN", "hf_secret")

    def operational(data):
        data["curation"]["models"]["judge"].update(
            endpoints=["http://h1:8080", "http://h2:8080"], max_concurrency=8, timeout=30, retries=1, ramp_start=2, token_env="JUDGE_TOKEN"
        )
        data["curation"]["cache"] = "elsewhere.sqlite"
        data["curation"]["diversify"] = {"embedding": {"batch_size": 8}}
        data["name"], data["version"], data["languages"] = "renamed", "2.0.0", []

    check(recipe_with(tmp_path, operational))
    # Spelling out a default is no change either.
    check(recipe_with(tmp_path, lambda d: d["curation"]["models"].update(refiner=dict(TGI, context_policy="truncate"))))
    assert "hf_secret" not in RunLayout(recipe_with(tmp_path).output_path).fingerprint_file.read_text()


def test_force_overwrites_and_dry_runs_do_not_write(tmp_path, caplog):
    check(recipe_with(tmp_path), write=False)
    assert not RunLayout(recipe_with(tmp_path).output_path).fingerprint_file.exists()
    check(recipe_with(tmp_path))
    changed = recipe_with(tmp_path, lambda d: d["curation"]["judge"].update(good_min_score=5))
    check(changed, force=True)
    assert "curation.judge.good_min_score" in caplog.text
    check(changed)  # the new fingerprint was recorded


def write_recipe(tmp_path: Path, **judge) -> Path:
    data = copy.deepcopy(BASE)
    data["curation"]["judge"].update(judge)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_cli_refuses_then_force_goes_on(tmp_path, capsys):
    docs = [{"id": f"d{i}", "text": f"Habari ya leo ni nzuri sana, rafiki yangu {i}."} for i in range(5)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    assert main(["filter", str(write_recipe(tmp_path)), "--no-progress"]) == 0
    kept = tmp_path / "out" / "filtered" / "sw" / "manifest.json"
    assert json.loads(kept.read_text())["documents"] == 5
    capsys.readouterr()

    changed = write_recipe(tmp_path, good_min_score=5)
    kept.unlink()
    assert main(["filter", str(changed), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "curation.judge.good_min_score: 4 → 5" in err and "--force" in err
    assert not kept.exists()  # refused before any work
    assert main(["curate", str(changed), "--dry-run"]) == 2
    assert "curation.judge.good_min_score" in capsys.readouterr().err

    assert main(["filter", str(changed), "--no-progress", "--force"]) == 0
    assert kept.exists()
    assert main(["filter", str(changed), "--no-progress"]) == 0  # the forced recipe is the folder's now


# -- secret names: one matcher (redact.is_secret_name) for config keys and environment variables --

# curation/config.py's SECRET_KEY before the one matcher replaced it: the fingerprint and the
# written configs left out exactly the recipe keys it matched, and must keep doing so.
OLD_KEY_RULE = re.compile(r"(^|_)(token|secret|password|api_?key|authorization|headers|credentials?)$", re.IGNORECASE)


def _recipe_keys(annotation, seen: set) -> set[str]:
    """Every key a recipe can hold: the field names of every model reachable from `Recipe`."""
    names: set[str] = set()
    if isinstance(annotation, FieldInfo):
        return _recipe_keys(annotation.annotation, seen) | {n for m in annotation.metadata for n in _recipe_keys(m, seen)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return names
        seen.add(annotation)
        for name, field in annotation.model_fields.items():
            names |= {name} | _recipe_keys(field, seen)
        return names
    for arg in typing.get_args(annotation):
        names |= _recipe_keys(arg, seen)
    return names


def test_the_secret_matcher_leaves_out_the_recipe_keys_it_always_did():
    keys = _recipe_keys(Recipe, set())
    assert {"token_env", "bytes_per_token", "max_new_tokens", "judge", "min_chars", "embedding"} <= keys  # the walk reaches every part
    assert {key for key in keys if is_secret_name(key)} == {key for key in keys if OLD_KEY_RULE.search(key)}
    for key in ("token", "hf_token", "api_key", "apikey", "password", "client_secret", "headers", "authorization", "credentials"):
        assert is_secret_name(key) and OLD_KEY_RULE.search(key), key


def test_the_secret_matcher_names_the_environments_secrets(monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GOOGLE_APPLICATION_CREDENTIALS", "MY_APIKEY"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "HF_HOME", "TOKENIZERS_PARALLELISM", "HF_TOKEN_PATH", "token_env", "tokenizer", "max_new_tokens"):
        assert not is_secret_name(name), name
    monkeypatch.setenv("XI_TEST_API_KEY", "sk-0123456789abcdef")
    monkeypatch.setenv("XI_TEST_TOKEN_ENV", "XI_TEST_API_KEY")  # names where the secret is: no secret itself
    assert "sk-0123456789abcdef" in environment_secrets() and "XI_TEST_API_KEY" not in environment_secrets()


def test_a_config_written_out_and_the_fingerprint_leave_out_the_same_keys(tmp_path):
    recipe = recipe_with(tmp_path)
    written = recipe.curation.to_dict()["models"]["judge"]
    assert written["bytes_per_token"] == "<redacted>" and written["token_env"] is None
    fingerprinted = fingerprint(recipe)
    assert "curation.models.judge.bytes_per_token" not in fingerprinted and "curation.models.judge.model" in fingerprinted
    assert redact_secret_values({"a": [{"api_key": "x", "b": 1}], "headers": {"x": "y"}}) == {"a": [{"api_key": "<redacted>", "b": 1}], "headers": "<redacted>"}
