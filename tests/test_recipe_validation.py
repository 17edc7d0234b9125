"""A recipe is checked whole when it is loaded: every filter's options, the curation block, every
model entry and range. A mistake fails at once, naming its key path and what is accepted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xinstruction_dataset.curation.config import CurationConfig
from xinstruction_dataset.filtering.filters import FILTERS, build_filter
from xinstruction_dataset.filtering.dedup import LANGUAGE_STEPS, is_language_step
from xinstruction_dataset.filtering.filters.length import LengthOptions
from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS
from xinstruction_dataset.recipe import Recipe, SourceSpec

REPO = Path(__file__).resolve().parents[1]
XINSTRUCTION = Path(sys.executable).with_name("xinstruction")


def write_recipe(folder: Path, **sections) -> Path:
    data = {"name": "t", "sources": [{"path": "docs.jsonl", "language": "sw"}], "output_dir": "out", **sections}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def load_error(tmp_path: Path, **sections) -> str:
    path = write_recipe(tmp_path, **sections)
    with pytest.raises(ValueError) as error:
        Recipe.from_yaml(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    return message


def test_a_misspelt_key_deep_in_curation_names_its_path_and_the_known_keys(tmp_path):
    message = load_error(tmp_path, curation={"judge": {"scael": "five_point"}})
    assert "unknown key curation.judge.scael" in message
    assert "known keys at curation.judge: scale, prompt, sampling, good_min_score, refine_min_score" in message


def test_a_filter_option_of_the_wrong_type_names_its_path_and_the_type(tmp_path):
    filters = [{"type": "mojibake"}, {"type": "markup"}, {"type": "length", "min_chars": "many"}]
    message = load_error(tmp_path, filters=filters)
    assert "filters[2].min_chars must be int, got 'many'" in message


@pytest.mark.parametrize(
    "sections, expected",
    [
        ({"filters": [{"type": "lenght"}]}, "filters[0].type: unknown type 'lenght'; one of: boilerplate, dedup, exact_dedup, language"),
        ({"filters": [{"min_chars": 3}]}, "filters[0].type: no `type` key; one of: boilerplate"),
        ({"filters": [{"type": "length", "min_char": 3}]}, "unknown key filters[0].min_char; known keys at filters[0]: type, min_chars, max_chars"),
        ({"filters": [{"type": "language", "detector": "cld3"}]}, "filters[0].detector must be one of 'langdetect', 'fasttext' or 'cascade', got 'cld3'"),
        ({"curation": {"judge": {"scale": "ten_point"}}}, "curation.judge.scale must be one of 'three_level' or 'five_point', got 'ten_point'"),
        ({"curation": {"models": {"judge": {"backend": "ollama"}}}}, "curation.models.judge.backend: unknown backend 'ollama'; one of: llamacpp, local, openai, sglang, tgi, vllm"),
        (
            {"curation": {"models": {"generator": {"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "timeout": "fast"}}}},
            "curation.models.generator.timeout must be a number, got 'fast'",
        ),
        ({"curation": {"models": {"generator": {"backend": "local", "dtype": "float8"}}}}, "curation.models.generator.dtype must be one of"),
        ({"sources": [{"path": "a.jsonl", "language": "xx"}]}, "sources[0].language: unknown language code 'xx'"),
        ({"publish": {"targets": {"x-instruction": {"repo_id": "org/x", "folder": "f"}}}}, "publish: targets x-instruction need `version`"),
        ({"publish": {"version": "1.0.0", "targets": {"x-instruction": {"repo": "org/x"}}}}, "unknown key publish.targets.x-instruction.repo"),
        ({"curation": {"generate": {"candidates": "3"}}}, "curation.generate.candidates must be int, got '3'"),
    ],
)
def test_wrong_keys_types_and_choices_are_named(tmp_path, sections, expected):
    assert expected in load_error(tmp_path, **sections)


@pytest.mark.parametrize(
    "sections, expected",
    [
        ({"curation": {"generate": {"candidates": 0}}}, "curation.generate.candidates must be in [1, 64], got 0"),
        ({"curation": {"records_per_shard": -1}}, "curation.records_per_shard must be >= 1, got -1"),
        ({"curation": {"diversify": {"target_size": 0}}}, "curation.diversify.target_size must be >= 1, got 0"),
        ({"filters": [{"type": "length", "min_chars": 500, "max_chars": 100}]}, "filters[0]: min_chars (500) must be <= max_chars (100)"),
        ({"curation": {"judge": {"good_min_score": 2}}}, "curation.judge: refine_min_score (3) must be <= good_min_score (2)"),
        ({"curation": {"refine": {"rounds": -1}}}, "curation.refine.rounds must be in [0, 10], got -1"),
        ({"curation": {"generate": {"sampling": {"max_new_tokens": 0}}}}, "curation.generate.sampling.max_new_tokens must be in [1, 131072]"),
        ({"curation": {"judge": {"sampling": {"max_new_tokens": 8, "top_p": 0}}}}, "curation.judge.sampling.top_p must be in (0.0, 1.0], got 0"),
        ({"curation": {"refine": {"sampling": {"max_new_tokens": 8, "temperature": -0.1}}}}, "curation.refine.sampling.temperature must be >= 0.0"),
        ({"curation": {"generate": {"min_english_prob": 1.5}}}, "curation.generate.min_english_prob must be in [0.0, 1.0], got 1.5"),
        ({"curation": {"diversify": {"embedding": {"batch_size": 0}}}}, "curation.diversify.embedding.batch_size must be >= 1"),
        (
            {"curation": {"models": {"generator": {"backend": "tgi", "model": "m", "endpoints": ["http://h:1"], "max_concurrency": 0, "retries": -1}}}},
            "curation.models.generator.max_concurrency must be >= 1, got 0; curation.models.generator.retries must be in [0, 100], got -1",
        ),
        ({"filters": [{"type": "dedup", "threshold": 0}]}, "filters[0].threshold must be in (0.0, 1.0], got 0"),
        ({"filters": [{"type": "repetition", "max_top_ngram_chars": {2: 1.5}}]}, "filters[0].max_top_ngram_chars[2] must be in [0.0, 1.0], got 1.5"),
    ],
)
def test_out_of_range_values_are_refused_at_load(tmp_path, sections, expected):
    assert expected in load_error(tmp_path, **sections)


def test_every_problem_is_reported_at_once(tmp_path):
    message = load_error(tmp_path, curation={"generate": {"candidates": 0}, "judge": {"scael": 1}}, filters=[{"type": "length", "max_chars": "x"}])
    assert "curation.generate.candidates" in message and "curation.judge.scael" in message and "filters[0].max_chars" in message


def test_an_empty_yaml_value_means_the_default():
    recipe = Recipe.from_dict({"name": "r", "curation": None, "filters": None, "sources": [{"path": "a.jsonl", "language": "sw"}]})
    assert recipe.curation == CurationConfig() and recipe.filters == [] and recipe.languages == ["sw"]
    assert Recipe.from_dict({"name": "r", "curation": {"judge": {"sampling": None}}}).curation.judge.sampling.max_new_tokens == 48


def test_the_shipped_recipes_load_and_round_trip():
    for path in sorted((REPO / "builder").glob("*.yaml")):
        recipe = Recipe.from_yaml(path)
        again = Recipe.from_dict(yaml.safe_load(recipe.to_yaml()), base_dir=recipe.base_dir)
        assert again == recipe, path


def test_a_recipe_written_back_keeps_its_run_settings():
    # drivers, budget and cost stay out of the config a run writes beside its outputs, not out of
    # the recipe itself
    curation = {"drivers": 3, "budget": {"max_calls": 10}, "cost": {"currency": "EUR", "models": {"m": {"prompt_per_1k": 0.5}}}}
    recipe = Recipe.from_dict({"name": "r", "curation": curation})
    again = Recipe.from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe and again.curation.drivers == 3 and again.curation.budget.max_calls == 10
    assert "drivers" not in recipe.curation.to_yaml() and "budget" not in recipe.curation.to_yaml()


def test_curation_from_dict_takes_the_checked_config_or_a_mapping():
    config = Recipe.from_dict({"name": "r", "curation": {"refine": {"target": "response"}}}).curation
    assert CurationConfig.from_dict(config) is config
    assert config.refine.sampling.max_new_tokens == 1024 and config.refine.prompt == "refine_response_v1"
    assert config.models.spec("judge").backend == "local"
    with pytest.raises(ValueError, match=r"unknown key curation\.judge\.scael"):
        CurationConfig.from_dict({"judge": {"scael": 1}})


def test_filters_build_from_checked_options_or_mappings():
    recipe = Recipe(name="adhoc", filters=DEFAULT_FILTERS)
    blocks = [build_filter(spec, "sw") for spec in recipe.filters if not is_language_step(spec)]
    assert [b.config() for b in blocks] == [build_filter(spec, "sw").config() for spec in DEFAULT_FILTERS if spec["type"] not in LANGUAGE_STEPS.kinds()]
    options = LengthOptions(min_chars=5)
    assert build_filter(options).options is options  # the recipe's checked object, not a copy of its values
    adhoc = Recipe(name="a", sources=[SourceSpec(path="x.jsonl", language="sw")], filters=recipe.filters, curation=recipe.curation)
    assert adhoc.filters == recipe.filters


def test_a_blocks_config_is_its_options_model_dump():
    """config() (what the block says it was built with) is its options' dump: every option the
    model declares, nothing else, for every registered kind."""
    for kind in FILTERS.kinds():
        model = FILTERS.spec_model(kind)
        block = build_filter(model(), "sw")
        assert block.name == kind and type(block) is FILTERS.implementation(kind)
        assert set(block.config()) == set(model.model_fields) - {"type"}, kind
        assert block.config() == block.options.model_dump(exclude={"type"}), kind


# Run in a fresh interpreter (PYTHONPATH: the package to check): every module of the filters
# package imports after the package itself (a block module the package's __init__ forgot
# registers too late, and the registry refuses it), every block in it is registered, and every
# options model in it is in the recipe union. Prints the problems found, as JSON.
REGISTRATION_CHECK = """
import importlib, inspect, json, pkgutil, typing
import xinstruction_dataset.filtering.filters as package
from xinstruction_dataset.filtering.filters import FILTERS, BaseFilter, FilterSpec
from xinstruction_dataset.options import ConfigModel

union = typing.get_args(typing.get_args(FilterSpec)[0])
problems = []
for found in pkgutil.iter_modules(package.__path__):
    name = f"{package.__name__}.{found.name}"
    try:
        module = importlib.import_module(name)
    except RuntimeError as error:
        problems.append(f"{found.name}.py: {error}")
        continue
    for value in vars(module).values():
        if not isinstance(value, type) or value.__module__ != name:
            continue
        if issubclass(value, BaseFilter) and not inspect.isabstract(value):
            model = value.options_model
            if model is None or FILTERS.implementation(FILTERS.kind_of(model)) is not value:
                problems.append(f"{value.__name__} is not registered")
        if issubclass(value, ConfigModel) and "type" in value.model_fields and value not in union:
            problems.append(f"{value.__name__} is not in FilterSpec")
print(json.dumps(problems))
"""


def registration_problems(package_root: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(package_root)}  # and run there: `-c` puts the working folder first
    out = subprocess.run([sys.executable, "-c", REGISTRATION_CHECK], cwd=package_root, env=env, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout)


def test_every_filter_in_the_package_is_registered_and_in_the_recipe_union():
    assert registration_problems(REPO) == []


# A new filter: one file, whose options model and block are all there is to it.
WORD_COUNT = '''"""`word_count`: at least `min_words` whitespace-separated words."""

from typing import Annotated, Literal

from pydantic import Field

from ...options import ConfigModel
from .base import FILTERS, BaseFilter


class WordCountOptions(ConfigModel):
    type: Literal["word_count"] = "word_count"
    min_words: Annotated[int, Field(ge=0)] = 50


@FILTERS.register(WordCountOptions)
class WordCountFilter(BaseFilter):
    options: WordCountOptions

    def filter(self, doc):
        n = len(doc.text.split())
        return n >= self.options.min_words or (False, f"too_few_words:{n}")
'''

# With the new filter in the package: a recipe using it loads, filters a source through the
# executor's tasks, and counts and names its rejects. Prints what it saw, as JSON.
RUN_WORD_COUNT = """
import json, sys
from pathlib import Path
from xinstruction_dataset.filtering.kept import open_kept
from xinstruction_dataset.filtering.pipeline import filter_language
from xinstruction_dataset.recipe import Recipe

root = Path(sys.argv[1])
docs = [{"id": "short", "text": "Habari za asubuhi."}, {"id": "long", "text": "Habari za asubuhi. " * 20}]
(root / "sw.jsonl").write_text("".join(json.dumps(d) + "\\n" for d in docs), encoding="utf-8")
recipe = Recipe.from_dict({"name": "wc", "sources": [{"path": str(root / "sw.jsonl"), "language": "sw"}],
                           "filters": [{"type": "word_count", "min_words": 10}], "output_dir": str(root / "run")})
summary = filter_language(recipe, "sw", progress=False)
rejects = list(open_kept(root / "run" / "filtered" / "sw").rejects())
print(json.dumps({"kept": summary.kept, "stats": summary.block_stats, "rejects": {r["id"]: r["reason"] for r in rejects}}))
"""


def test_a_new_filter_is_one_file_plus_one_import_line(tmp_path):
    package = tmp_path / "xinstruction_dataset"
    shutil.copytree(REPO / "xinstruction_dataset", package, ignore=shutil.ignore_patterns("__pycache__"))
    filters = package / "filtering" / "filters"
    (filters / "word_count.py").write_text(WORD_COUNT, encoding="utf-8")
    recipe = write_recipe(tmp_path, filters=[{"type": "word_count"}])
    load = [sys.executable, "-c", "import sys; from xinstruction_dataset.recipe import Recipe; Recipe.from_yaml(sys.argv[1])", str(recipe)]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    # The file alone: its registration is refused (the import line is missing), and a recipe
    # naming it fails to load, listing the kinds there are.
    [problem] = registration_problems(tmp_path)
    assert problem.startswith("word_count.py: filter kind 'word_count' registered after the filter union was built")
    refused = subprocess.run(load, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "filters[0].type: unknown type 'word_count'; one of: boilerplate, dedup" in refused.stderr

    # The one import line, above `.spec` in the package's __init__.
    init = filters / "__init__.py"
    lines = init.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(lines.index("from .spec import FilterSpec, build_filter, parse_filter_spec\n"), "from .word_count import WordCountFilter as WordCountFilter\n")
    init.write_text("".join(lines), encoding="utf-8")
    assert registration_problems(tmp_path) == []
    out = subprocess.run([sys.executable, "-c", RUN_WORD_COUNT, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=600)
    seen = json.loads(out.stdout)
    assert seen["kept"] == 1 and seen["rejects"] == {"short": "word_count:too_few_words:3"}
    assert seen["stats"]["word_count"] == {"in": 2, "kept": 1, "rejected:too_few_words:3": 1}
    changed = sorted(str(path.relative_to(tmp_path)) for path in package.rglob("*.py") if not _same_as_repo(path, tmp_path))
    assert changed == ["xinstruction_dataset/filtering/filters/__init__.py", "xinstruction_dataset/filtering/filters/word_count.py"]

    # Without its decorator the block and its options are reported, not silently left out.
    (filters / "word_count.py").write_text(WORD_COUNT.replace("@FILTERS.register(WordCountOptions)\n", ""), encoding="utf-8")
    assert sorted(registration_problems(tmp_path)) == ["WordCountFilter is not registered", "WordCountOptions is not in FilterSpec"]


def _same_as_repo(path: Path, root: Path) -> bool:
    original = REPO / path.relative_to(root)
    return original.is_file() and original.read_bytes() == path.read_bytes()


def test_the_cli_refuses_a_bad_recipe_before_reading_a_document(tmp_path):
    line = '{"id": "d", "text": "' + "Habari za asubuhi. " * 50 + '"}\n'
    (tmp_path / "docs.jsonl").write_text(line * 20000, encoding="utf-8")  # ~20 MB
    recipe = write_recipe(tmp_path, filters=[{"type": "length", "min_chars": 200}], curation={"judge": {"scael": "five_point"}})
    result = subprocess.run([str(XINSTRUCTION), "build", str(recipe)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "curation.judge.scael" in result.stderr and "known keys at curation.judge: scale" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # no filtered output, no fingerprint: nothing ran
