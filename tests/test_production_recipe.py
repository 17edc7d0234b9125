"""builder/x-instruction.yaml, the recipe the README and builder/default.yaml point to: it loads,
and `build --dry-run` checks it and lists its steps, sources and endpoints with no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from xinstruction_dataset.languages import LANGUAGE_CODES
from xinstruction_dataset.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "builder" / "x-instruction.yaml"


def test_the_production_recipe_is_the_papers_setup():
    recipe = Recipe.from_yaml(RECIPE)
    assert sorted(recipe.languages) == sorted(LANGUAGE_CODES)
    assert {s.language: s.path for s in recipe.sources} == {code: f"hf:uonlp/CulturaX:{code}" for code in LANGUAGE_CODES}
    assert recipe.curation.diversify.target_size == 32000
    assert [f.type for f in recipe.filters][-1] == "dedup"
    assert recipe.executor.kind == "ray" and recipe.executor.retries >= 1
    assert all(config.backend == "vllm" for config in recipe.curation.models.resolved().values())
    assert recipe.curation.drivers == 2


def _offline() -> list[str]:
    """A prefix that runs a command with no network at all (a private network namespace), when
    this machine allows one; the dry run must not need it either way."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rn"]
    return []


def test_a_dry_run_lists_steps_sources_and_endpoints_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [*_offline(), sys.executable, "-m", "xinstruction_dataset.cli", "build", str(RECIPE), "--dry-run", "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for step in ("1. filter:", "2. dedup", "3. curate:", "4. export:"):
        assert step in out
    for code in LANGUAGE_CODES:
        assert f"{code}: hf:uonlp/CulturaX:{code} [hub: one task per data file, listed at the first run (not contacted now)" in out
    assert "generator: Qwen/Qwen2.5-72B-Instruct at http://vllm-gen-0:8000" in out
    assert "executor: Ray executor at auto" in out
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_a_dry_run_refuses_a_broken_recipe(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(RECIPE.read_text().replace("target_size: 32000", "target_size: 0"), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", "build", str(broken), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "curation.diversify.target_size" in result.stderr


def test_a_folder_the_recipe_made_when_it_said_tgi_resumes_now_that_it_says_vllm():
    """The recipe moved from `backend: tgi` to `backend: vllm` on the same model: the
    fingerprint the old code stored for it (fixture written at 28cb09a) still matches."""
    from xinstruction_dataset.fingerprint import changed_keys, fingerprint, upgrade_legacy

    stored = json.loads((ROOT / "tests" / "fixtures" / "fingerprints_before_server_kinds.json").read_text())["x-instruction.yaml"]["fingerprint"]
    assert any(key.endswith(".backend") and value == "tgi" for key, value in stored.items())
    assert changed_keys(upgrade_legacy(stored), fingerprint(Recipe.from_yaml(RECIPE))) == {}
