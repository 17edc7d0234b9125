"""The run fingerprint of served models records what the model is and sees (its `model`, the
prompt shaping fields, `prompt_format`), not the server kind or the route's spelling; folders
fingerprinted before the server kinds existed keep resuming (fingerprint.upgrade_legacy)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from xinstruction_dataset.errors import UsageError
from xinstruction_dataset.fingerprint import FORMAT, changed_keys, check_fingerprint, fingerprint, upgrade_legacy
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.llm.backends import BACKENDS, LLMRequest, build_backend, model_spec
from xinstruction_dataset.recipe import Recipe

BUILDER = Path(__file__).resolve().parents[1] / "builder"
# Written by the code at 28cb09a (tests/fixtures/make_fingerprints_before_server_kinds.py).
LEGACY = json.loads((Path(__file__).parent / "fixtures" / "fingerprints_before_server_kinds.json").read_text(encoding="utf-8"))
SERVER_KINDS = ("vllm", "sglang", "llamacpp", "tgi", "openai")


def _recipe(data: dict) -> Recipe:
    return Recipe.from_dict(copy.deepcopy(data), BUILDER)


def _served(route: str | None = None, kind: str = "tgi", **entry) -> Recipe:
    data = copy.deepcopy(LEGACY["x-instruction.yaml"]["recipe"])
    for model in data["curation"]["models"].values():
        model["backend"] = kind
        if route is not None:
            model["route"] = route
        model.update(entry)
    return _recipe(data)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_a_fingerprint_the_old_code_wrote_compares_equal(name):
    stored, recipe = LEGACY[name]["fingerprint"], _recipe(LEGACY[name]["recipe"])
    assert changed_keys(upgrade_legacy(stored), fingerprint(recipe)) == {}


@pytest.mark.parametrize("name", ["default.yaml", "release.yaml"])
def test_local_backend_entries_stay_byte_identical(name):
    stored = LEGACY[name]["fingerprint"]
    assert json.dumps(fingerprint(_recipe(LEGACY[name]["recipe"])), sort_keys=True) == json.dumps(stored, sort_keys=True)
    assert upgrade_legacy(stored) == stored  # nothing to upgrade in a local entry
    assert stored["curation.models.judge.backend"] == "local"


def test_every_builder_recipe_is_in_the_fixture():
    assert {p.name for p in BUILDER.glob("*.yaml")} <= set(LEGACY)


def test_an_old_run_folder_resumes_and_its_file_is_left_alone(tmp_path):
    """check_fingerprint on a folder whose fingerprint.json the old code wrote (backend: tgi,
    route: completions): the same recipe resumes, and moving it to backend: vllm too."""
    legacy = LEGACY["x-instruction.yaml route=completions"]["fingerprint"]
    layout = RunLayout(tmp_path)
    layout.fingerprint_file.parent.mkdir(parents=True)
    written = json.dumps({"format": FORMAT, "recipe": "x-instruction", "fingerprint": legacy})
    layout.fingerprint_file.write_text(written, encoding="utf-8")
    check_fingerprint(_served("completions"), layout, force=False)
    check_fingerprint(_served(None, kind="vllm"), layout, force=False)
    assert layout.fingerprint_file.read_text(encoding="utf-8") == written
    with pytest.raises(UsageError) as refused:
        check_fingerprint(_served("chat", kind="vllm"), layout, force=False)
    assert 'curation.models.generator.prompt_format: "raw" → "chat"' in str(refused.value)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_moving_a_tgi_completions_entry_to_its_kind_keeps_the_fingerprint(kind):
    assert fingerprint(_served(None, kind=kind)) == fingerprint(_served("completions", kind="tgi"))


def test_generate_and_completions_are_both_raw_and_chat_differs():
    raw = fingerprint(_served("generate"))
    assert raw == fingerprint(_served("completions"))
    assert raw["curation.models.generator.prompt_format"] == "raw"
    chat = fingerprint(_served("chat"))
    assert changed_keys(raw, chat) == {f"curation.models.{role}.prompt_format": '"raw" → "chat"' for role in ("generator", "judge", "refiner")}
    assert not any(key.endswith((".backend", ".route")) for key in raw if ".models." in key)


def test_serve_and_endpoints_are_out_of_the_fingerprint():
    given = fingerprint(_served(None, kind="vllm"))
    served = fingerprint(_served(None, kind="vllm", endpoints=None, serve={"model": "/models/qwen", "replicas": 2, "gpus_per_replica": 4}))
    assert served == given


def test_a_shaping_field_still_counts():
    assert changed_keys(fingerprint(_served(None, kind="vllm")), fingerprint(_served(None, kind="vllm", served_model="other"))) == {
        f"curation.models.{role}.served_model": 'null → "other"' for role in ("generator", "judge", "refiner")
    }


def test_upgrade_touches_only_a_tgi_kind_beside_a_route():
    stored = {"a.backend": "tgi", "a.route": "chat", "a.model": "m", "b.backend": "local", "b.model": "m", "c.backend": "tgi"}
    assert upgrade_legacy(stored) == {"a.prompt_format": "chat", "a.model": "m", "b.backend": "local", "b.model": "m", "c.backend": "tgi"}
    assert upgrade_legacy(upgrade_legacy(stored)) == upgrade_legacy(stored)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_call_cache_keys_do_not_depend_on_the_kind(kind):
    spec = model_spec({"backend": kind, "model": "org/m", "endpoints": ["http://127.0.0.1:9"]})
    backend = build_backend(spec)
    request = LLMRequest(prompt="Habari")
    assert backend.model_id == "org/m"
    assert request.cache_key(backend.model_id) == request.cache_key("org/m")
    assert set(SERVER_KINDS) | {"local"} == set(BACKENDS.kinds())
