"""The local executor: worker processes give the same outputs as one process, finished tasks are
skipped on a re-run (completion markers), a worker that dies is replaced and its task run again,
a task's own error is raised as itself, and the local path never imports ray."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpora import read_corpus

from xinstruction_dataset.errors import EnvironmentFault
from xinstruction_dataset.execution import Group, make_executor
from xinstruction_dataset.execution.local import LocalExecutor
from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS, filter_languages
from xinstruction_dataset.recipe import Recipe
from filtered_output import language_files

LANGUAGES = ["fi", "sw", "th"]


def write_sources(root: Path, files_per_language: int = 3, docs: int = 24) -> Recipe:
    """Each language's corpus cut into `files_per_language` files, the last with a copy of the
    first file's first document (a cross-file duplicate)."""
    sources = []
    for language in LANGUAGES:
        rows = read_corpus(language, docs)
        step = len(rows) // files_per_language
        for part in range(files_per_language):
            chunk = rows[part * step:(part + 1) * step]
            if part == files_per_language - 1:
                chunk = chunk + [{**rows[0], "id": f"zz-copy-{rows[0]['id']}"}]
            path = root / "sources" / language / f"part-{part}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk), encoding="utf-8")
        sources.append({"path": str(root / "sources" / language / "*.jsonl"), "language": language})
    return Recipe.from_dict({"name": "exec", "sources": sources, "filters": DEFAULT_FILTERS, "output_dir": str(root / "run")})


def outputs(recipe: Recipe) -> dict[str, bytes]:
    """The language files, with the run's own folder (in each document's origin) left out, and
    so the manifest's checksums (of files naming that folder) too."""
    folder, root = recipe.output_path / "filtered", str(recipe.output_path.parent).encode()
    return {
        f"{language}/{name}": re.sub(rb'"sha256": "[0-9a-f]{64}"', b'"sha256": "-"', data.replace(root, b"ROOT"))
        for language in LANGUAGES for name, data in language_files(folder / language).items()
    }


def markers(recipe: Recipe) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(recipe.output_path.glob("filtered/*/tasks/*/done.json"))}


def test_two_workers_write_what_one_process_writes_and_reruns_skip_finished_tasks(tmp_path):
    one, two = write_sources(tmp_path / "one"), write_sources(tmp_path / "two")
    summaries = filter_languages(one, LANGUAGES, executor=LocalExecutor(workers=1), progress=False)
    filter_languages(two, LANGUAGES, executor=LocalExecutor(workers=2), progress=False)
    assert outputs(one) == outputs(two)
    for language in LANGUAGES:
        assert summaries[language].rejected["dedup:exact_duplicate_of"] == 1  # the copy in another file
    assert len(markers(two)) == 3 * len(LANGUAGES)

    before = markers(two)
    changed = tmp_path / "two" / "sources" / "sw" / "part-1.jsonl"
    changed.write_text(changed.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    filter_languages(two, LANGUAGES, executor=LocalExecutor(workers=2), progress=False)
    after = markers(two)
    redone = {path for path in before if before[path] != after[path]}
    assert redone == {str(two.output_path / "filtered" / "sw" / "tasks" / "task-00001" / "done.json")}


def die_once(flag: str) -> int:
    """A task whose worker process dies the first time it runs (as if killed), then succeeds."""
    if not os.path.exists(flag):
        Path(flag).touch()
        os._exit(9)
    return os.getpid()


def always_die(_: str) -> int:
    os._exit(9)


def bad_input(text: str) -> int:
    raise ValueError(f"bad input {text}")


def test_a_dead_worker_is_replaced_and_its_task_run_again(tmp_path):
    flags = [str(tmp_path / f"flag-{i}") for i in range(4)]
    pids = LocalExecutor(workers=2, retries=4).map(die_once, flags, progress=False)
    assert len(pids) == 4 and all(os.path.exists(flag) for flag in flags)


def test_workers_that_keep_dying_end_the_run_with_the_cause(tmp_path):
    with pytest.raises(EnvironmentFault, match="worker processes died 2 times"):
        LocalExecutor(workers=2, retries=1).map(always_die, ["a", "b"], progress=False)


def test_a_task_error_is_raised_as_itself_not_retried():
    with pytest.raises(ValueError, match="bad input x"):
        LocalExecutor(workers=2, retries=3).map(bad_input, ["x", "x"], progress=False)


def square_where(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def total_where(name: str, results: list[tuple[int, int]]) -> tuple[str, list[int], int]:
    return name, [value for value, _ in results], os.getpid()


@pytest.mark.parametrize("workers", [1, 2])
def test_map_reduce_gives_each_group_its_results_in_member_order(workers):
    groups = [Group("odd", (5, 1, 3)), Group("none", ()), Group("even", (0, 2, 4))]
    reduced = LocalExecutor(workers=workers).map_reduce(square_where, range(6), total_where, groups, progress=False)
    assert [(name, values) for name, values, _ in reduced] == [("odd", [25, 1, 9]), ("none", []), ("even", [0, 4, 16])]
    pids = {pid for _, _, pid in reduced}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids)  # 2 workers: reduces run on them


def wait_for_flag(flag: str) -> str:
    """A task that cannot finish before the first group's reduce has run (it writes `flag`)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError("the reduce did not run before the waiting tasks")
        time.sleep(0.01)
    return flag


def first_task(flag: str) -> str:
    return flag


def run_either(task: tuple[str, str]) -> str:
    kind, flag = task
    return first_task(flag) if kind == "first" else wait_for_flag(flag)


def write_flag(flag: str, results: list[str]) -> str:
    Path(flag).touch()
    return flag


def test_a_ready_reduce_runs_before_the_tasks_still_waiting(tmp_path):
    """The first group's reduce goes ahead of the later tasks, which wait for it: were it
    queued behind them, both workers would wait on them and the run would time out."""
    flag = str(tmp_path / "reduced")
    tasks = [("first", flag)] + [("wait", flag)] * 4
    groups = [Group(flag, (0,)), Group(str(tmp_path / "rest"), (1, 2, 3, 4))]
    assert LocalExecutor(workers=2).map_reduce(run_either, tasks, write_flag, groups, progress=False) == [flag, str(tmp_path / "rest")]


def die_in_reduce_once(flag: str, results: list[int]) -> int:
    """A reduce whose worker dies the first time (as if killed), then succeeds."""
    if not os.path.exists(flag):
        Path(flag).touch()
        os._exit(9)
    return sum(results)


def test_a_reduce_whose_worker_died_runs_again_without_rerunning_finished_tasks(tmp_path):
    flags = [str(tmp_path / f"task-{i}") for i in range(4)]
    groups = [Group(str(tmp_path / "reduce"), (0, 1, 2, 3))]  # it starts when no task is in flight
    assert LocalExecutor(workers=2, retries=2).map_reduce(count_runs, flags, die_in_reduce_once, groups, progress=False) == [4]
    assert [Path(flag).read_text() for flag in flags] == ["x"] * 4  # each task ran once


def count_runs(flag: str) -> int:
    with open(flag, "a") as f:
        f.write("x")
    return 1


def test_settings_pick_the_executor_and_ray_is_optional():
    assert make_executor({"workers": 3}).describe() == "local executor, 3 worker process(es)"  # no kind: local
    assert make_executor({"kind": "ray", "ray_address": "10.0.0.1:6379"}).name == "ray"
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_executor({"workers": 0})
    with pytest.raises(ValueError, match="unknown kind 'slurm'; one of: local, ray"):
        make_executor({"kind": "slurm"})
    with pytest.raises(ValueError, match="unknown key.*workers"):  # a Ray cluster has no worker count
        make_executor({"kind": "ray", "workers": 2})


def test_the_local_path_never_imports_ray(tmp_path):
    recipe = write_sources(tmp_path, files_per_language=2, docs=6)
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe.to_dict()), encoding="utf-8")
    script = (
        "import sys; from xinstruction_dataset.cli import main\n"
        f"code = main(['filter', {str(tmp_path / 'recipe.yaml')!r}, '--workers', '2', '--no-progress'])\n"
        "assert code == 0, code\n"
        "print('ray imported' if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 'no ray')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("no ray")


def test_a_small_input_runs_in_this_process_unless_the_workers_were_chosen(tmp_path, caplog):
    """Starting a worker costs about what one core filters of 2 MB: a smaller input runs in the
    command's own process when the worker count is the default; a chosen count is kept, and an
    input of unknown size (hub streaming) gets the workers."""
    auto, chosen = LocalExecutor(), LocalExecutor(workers=2)
    assert auto.sized_for(10_000).workers == 1 and "in this process" in auto.sized_for(10_000).describe()
    assert auto.sized_for(None) is auto and auto.sized_for(64 << 20) is auto
    assert chosen.sized_for(10_000) is chosen
    recipe = write_sources(tmp_path, files_per_language=2, docs=6)
    caplog.set_level("INFO", logger="xinstruction_dataset.filtering.pipeline")
    filter_languages(recipe, LANGUAGES, executor=LocalExecutor(), progress=False)
    assert "on the local executor, in this process (a small input)" in caplog.text


def test_every_executor_kind_is_registered_built_and_an_executor_block():
    """A new executor is one file in execution/ (its spec and the function that builds it,
    registered in EXECUTORS) and its name on the package __init__'s import line: forgetting
    either fails here, as does a recipe `executor:` field that does not offer it."""
    import xinstruction_dataset.execution as execution
    from plugin_checks import kinds_of_annotation, point_problems
    from xinstruction_dataset.recipe import Recipe

    offered = kinds_of_annotation(execution.EXECUTORS, Recipe.model_fields["executor"].annotation)
    assert point_problems(execution.EXECUTORS, execution, offered) == []
    assert {"local", "ray"} <= set(execution.EXECUTORS.kinds())  # a new executor needs no change here


def test_command_line_overrides_respecify_the_recipe_executor():
    """`--executor local` on a Ray recipe keeps what both kinds have (retries), leaves the Ray
    address behind, and an option the kind has no field for is dropped, as before the kinds had
    specs of their own."""
    from xinstruction_dataset.execution import EXECUTORS, respecified

    ray = EXECUTORS.parse({"kind": "ray", "ray_address": "auto", "retries": 5})
    assert make_executor(ray).address == "auto" and make_executor(ray).retries == 5
    local = respecified(ray, "local", workers=2)
    assert local.model_dump() == {"kind": "local", "workers": 2, "retries": 5}
    assert respecified(local, ray_address="x") == local


def test_the_command_line_overrides_the_recipe_executor_as_before():
    """The production recipe runs on Ray (`ray_address: auto`, retries 3): `--executor local`
    runs it on this machine, `--ray-address` picks another cluster, `--workers` sizes the local
    pool, and `--ray-address` with `--executor local` is refused."""
    import argparse

    from xinstruction_dataset.commands.filter import executor_from_args
    from xinstruction_dataset.errors import UserError
    from xinstruction_dataset.recipe import Recipe

    spec = Recipe.from_yaml(Path(__file__).resolve().parents[1] / "builder" / "x-instruction.yaml").executor

    def executor(**options):
        return executor_from_args(argparse.Namespace(**{"executor": None, "ray_address": None, "workers": None, **options}), spec)

    assert (executor().name, executor().address, executor().retries) == ("ray", "auto", 3)
    assert executor(ray_address="10.0.0.1:6379").address == "10.0.0.1:6379"
    local = executor(executor="local", workers=3)
    assert (local.name, local.workers, local.retries) == ("local", 3, 3)
    with pytest.raises(UserError, match="--ray-address needs --executor ray"):
        executor(executor="local", ray_address="10.0.0.1:6379")
