"""Curation stages are plug-ins: each registers its config and class (stage.py's `STAGES`), the
recipe's `curation:` blocks and `models:` roles come from the registered stages, and flow.py's
table routes every outcome. A stage whose registration is forgotten fails here; a throwaway
stage with a new role (tests/polish_stage.py) loads from a recipe and routes, in a fresh
interpreter, touching no file of the package."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

import xinstruction_dataset.curation as curation
from xinstruction_dataset.curation.config import ROLES, CurationConfig, ModelsConfig
from xinstruction_dataset.curation.flow import ROUTES, Flow, build_stages
from xinstruction_dataset.curation.pairs import Pair, Reject
from xinstruction_dataset.curation.stage import DONE, STAGES, Stage, StageKind, Work
from xinstruction_dataset.documents import Document
from xinstruction_dataset.options import ConfigModel

TESTS = Path(__file__).resolve().parent
TGI = {"backend": "tgi", "model": "org/judge", "endpoints": ["http://127.0.0.1:9"]}


def _stage_classes(cls: type = Stage) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        if not inspect.isabstract(sub) and sub.__module__.startswith("xinstruction_dataset."):
            found.add(sub)
        found |= _stage_classes(sub)
    return found


def test_every_stage_is_imported_registered_and_routed():
    """A stage package that curation/__init__.py does not import registers only when something
    imports it, after the registry closed (refused: RuntimeError here); a Stage subclass without
    its decorator is not among the registered ones; a registered stage is a `curation:` key, its
    role a `models:` key, and each of its outcomes has a route."""
    for module in pkgutil.walk_packages(curation.__path__, curation.__name__ + "."):
        importlib.import_module(module.name)
    registered = {STAGES.implementation(kind) for kind in STAGES.kinds()}
    assert _stage_classes() <= registered, "Stage subclasses without @STAGES.register"
    assert {"generate", "judge", "refine"} <= set(STAGES.kinds()) <= set(CurationConfig.model_fields)
    assert set(ROLES) == set(ModelsConfig.model_fields) == {STAGES.implementation(kind).role for kind in STAGES.kinds()}
    stages = build_stages(CurationConfig())
    assert list(stages) == list(STAGES.kinds()) and all(stage.name == kind for kind, stage in stages.items())


def test_a_stage_registered_after_the_config_was_built_is_refused():
    class LateConfig(ConfigModel):
        stage: StageKind[Literal["late"]] = "late"

    with pytest.raises(RuntimeError, match="import its module from the plug-in package's __init__"):
        STAGES.register(LateConfig)
    assert "late" not in STAGES.kinds()


def test_a_flow_missing_a_stage_it_routes_to_fails_when_built():
    classes = {kind: STAGES.implementation(kind) for kind in STAGES.kinds() if kind != "refine"}
    with pytest.raises(RuntimeError, match="refine"):
        Flow(CurationConfig(), classes)


def test_roles_and_their_fallbacks_come_from_the_stages():
    assert ROLES == {"generator": None, "judge": "generator", "refiner": "judge"}
    assert list(ModelsConfig.model_fields) == ["generator", "judge", "refiner"]  # the dumped order
    alone = ModelsConfig()
    assert alone.spec("refiner") == alone.spec("judge") == alone.spec("generator")
    assert alone.spec("generator").model_dump() == {"backend": "local", **_local_defaults()}
    with_judge = ModelsConfig.model_validate({"judge": TGI})
    assert with_judge.spec("refiner").model == "org/judge" and with_judge.spec("generator").backend == "local"
    assert list(with_judge.resolved()) == ["generator", "judge", "refiner"]


def _local_defaults() -> dict:
    return {k: v for k, v in ModelsConfig().generator.model_dump().items() if k != "backend"}


def test_a_stage_block_reads_and_dumps_as_before():
    """The registry's kind field of a block is implied by its key: never dumped, never a known key."""
    config = CurationConfig.from_dict({"judge": {"scale": "five_point"}})
    assert config.judge.stage == "judge" and "stage" not in config.to_dict()["judge"]
    assert list(config.to_dict()) == ["seed", "input", "cache", "records_per_shard", "models", "generate", "judge", "refine", "diversify"]
    with pytest.raises(ValueError, match=r"known keys at curation\.refine: rounds, target, prompt, sampling, keep_exhausted, min_language_prob$"):
        CurationConfig.from_dict({"refine": {"round": 1}})


# -- the routing table ------------------------------------------------------------------------


def _labelled(outcome: str, label: str, round_: int = 0, score: float | None = None) -> Work:
    doc = Document(id="d1", text="Habari za leo.", url="u", source="s")
    pair = Pair(doc, "Describe the news.", doc.text, label=label, score=score, round=round_)
    return Work(doc, "sw", "judge").labelled(outcome, (pair,), "judge_round_0_" + label)


@pytest.mark.parametrize(
    "label, round_, refine, expected",
    [
        ("good", 0, {}, ("done", ())),
        ("needs_refinement", 0, {}, ("refine", ("refine_round_1",))),
        ("needs_refinement", 1, {"rounds": 2}, ("refine", ("refine_round_2",))),
        ("needs_refinement", 2, {"rounds": 2}, "refine:rounds_exhausted"),
        ("needs_refinement", 2, {"rounds": 2, "keep_exhausted": True}, ("done", ())),
        ("needs_refinement", 0, {"rounds": 0}, "refine:rounds_exhausted"),
        ("bad", 0, {}, "judge:bad"),
    ],
)
def test_the_flow_routes_the_judges_labels(label, round_, refine, expected):
    flow = Flow(CurationConfig.from_dict({"refine": refine}), {kind: STAGES.implementation(kind) for kind in STAGES.kinds()})
    routed = flow.route("judge", _labelled(label, label, round_, score=4.0))
    if isinstance(expected, str):
        assert isinstance(routed, Reject) and routed.reason == expected
        assert routed.detail == ({"instruction": "Describe the news.", "round": round_, "score": 4.0} if label == "bad" else {"instruction": "Describe the news.", "round": round_})
        assert routed.events == ("judge_round_0_" + label,)
    else:
        assert isinstance(routed, Work) and (routed.next, routed.events[1:]) == expected and routed.outcome == ""
    with pytest.raises(RuntimeError, match="not one of its declared outcomes"):
        flow.route("judge", _labelled("shrug", label))


def test_routes_name_only_registered_outcomes():
    declared = {(kind, outcome) for kind in STAGES.kinds() for outcome in STAGES.implementation(kind).outcomes}
    assert set(ROUTES) == declared and DONE not in STAGES.kinds()


# -- a plug-in stage with a role of its own -------------------------------------------------------

PLUG_IN = r"""
import asyncio, json, sys
from collections import Counter
sys.path.insert(0, sys.argv[1])
import polish_stage  # registers the stage: before anything builds the curation config

from corpora import read_corpus
from fake_llm import FakeBackend, default_reply, section
from xinstruction_dataset.curation.config import ROLES
from xinstruction_dataset.curation.curate import Models
from xinstruction_dataset.curation.engine import Engine, LanguageJob
from xinstruction_dataset.curation.pairs import Reject
from xinstruction_dataset.curation.flow import build_stages
from xinstruction_dataset.documents import Document
from xinstruction_dataset.fingerprint import fingerprint
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.llm.calls import CallScheduler
from xinstruction_dataset.recipe import Recipe

def tgi(model):
    return {"backend": "tgi", "model": model, "endpoints": ["http://127.0.0.1:9"]}

out = {"roles": ROLES}
recipe = Recipe.from_dict({"name": "r", "curation": {
    "models": {"generator": tgi("org/gen"), "polisher": tgi("org/polisher")},
    "generate": {"candidates": 1}, "polish": {"max_chars": 200}}})
config = recipe.curation
out["specs"] = {role: spec.model for role, spec in config.models.specs().items()}
out["fallback"] = Recipe.from_dict({"name": "r", "curation": {"models": {"judge": tgi("org/j")}}}).curation.models.spec("polisher").model
out["dumped"] = list(config.to_dict())
out["fingerprint"] = {k: v for k, v in fingerprint(recipe).items() if "polish" in k}
try:
    Recipe.from_dict({"name": "r", "curation": {"polish": {"max_char": 1}}})
except ValueError as error:
    out["refusal"] = str(error)

backends = {"org/gen": FakeBackend(default_reply, "org/gen"),
            "org/polisher": FakeBackend(lambda r: " Polished: " + section(r.prompt, "Instruction"), "org/polisher")}
models = Models({role: backends[spec.model] for role, spec in config.models.specs().items()})
out["ids"] = models.ids()

class Sink:
    def __init__(self):
        self.calls, self.outcomes = Counter(), []
    def add(self, outcome):
        self.outcomes.append(outcome)

with CallCache(sys.argv[2]) as cache:
    schedulers, by_backend = {}, {}
    for role, backend in models.by_role.items():
        schedulers[role] = by_backend.setdefault(id(backend), CallScheduler(backend, cache))
    sink = Sink()
    docs = [Document(id=r["id"], text=r["text"][:600], url=r["url"], source=r["source"]) for r in read_corpus("sw", 3)]
    asyncio.run(Engine(build_stages(config), schedulers, progress=False).run([LanguageJob("sw", docs, sink, finish=lambda: None)]))
out["pool"] = [o.pairs[0].instruction for o in sink.outcomes if not isinstance(o, Reject)]
out["prompts"] = [list(o.pairs[0].prompts) for o in sink.outcomes if not isinstance(o, Reject)]
out["rejects"] = [o.reason for o in sink.outcomes if isinstance(o, Reject)]
out["events"] = sorted(e for o in sink.outcomes for e in o.events)
out["calls"] = dict(sink.calls)
out["polisher_calls"] = len(backends["org/polisher"].calls)
out["generator_polish_calls"] = backends["org/gen"].count(polish_stage.POLISH_MARK)
print(json.dumps(out))
"""


def test_a_plug_in_stage_with_a_new_role_loads_from_a_recipe_and_routes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", PLUG_IN, str(TESTS), str(tmp_path / "calls.sqlite")], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["roles"] == {"generator": None, "judge": "generator", "refiner": "judge", "polisher": "judge"}
    assert out["specs"] == {"generator": "org/gen", "judge": "org/gen", "refiner": "org/gen", "polisher": "org/polisher"}
    assert out["fallback"] == "org/j"  # polisher -> judge
    assert out["dumped"][-2:] == ["polish", "diversify"]
    assert out["fingerprint"]["curation.models.polisher.model"] == "org/polisher" and out["fingerprint"]["curation.polish.max_chars"] == 200
    assert "unknown key curation.polish.max_char; known keys at curation.polish: sampling, max_chars" in out["refusal"]
    assert out["ids"] == {"generator_model": "org/gen", "judge_model": "org/gen", "refiner_model": "org/gen", "polisher_model": "org/polisher"}
    # judge good -> polish (the polisher's server, and only it) -> done
    assert len(out["pool"]) == 3 and all(i.startswith("Polished: Write a short news report about") for i in out["pool"]), out
    assert all(p[-1] == "polish:inline" for p in out["prompts"]) and out["rejects"] == []
    assert out["polisher_calls"] == 3 and out["generator_polish_calls"] == 0
    assert out["calls"]["polish_called"] == 3 and out["events"].count("polished") == 3
