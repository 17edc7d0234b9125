"""Folders the toolkit replaces whole (an export, the run report): no data loss.

- The folder swap (`storage.staged_folder`) is SIGKILLed at each of its steps, in a subprocess:
  the next run finds the previous folder or the new one whole, at most one retired copy whose
  state is known, and no leftover (staging, retired, journal, temporary file).
- A folder the toolkit did not write is never replaced: `report -o`, `build` and `export` refuse
  it with exit 2, naming it; their own folders (marker, or an older version's layout) are.
- The data and the card of an export change together, through `xinstruction export` and
  `xinstruction build`: a card step that fails after new data leaves the folder's bytes as
  they were. A folder copy that fails says which file and why, in one line.

The kills are real: a subprocess runs the real code with an audit hook (`sys.addaudithook`,
the interpreter's own observation point for renames, removals and opens) that sends SIGKILL to
its own process when the named step is about to happen. Nothing in the code under test is
patched or told about the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from filtered_output import kept_rows
from hub_folders import xinstruction_records
from tgi_server import TGIServer, curation_reply
from xinstruction_dataset.records import ShardWriter
from xinstruction_dataset.storage import MARKER_FILE

# Runs `cli <args>`, `swap <folder> <version>` or `recover <folder>`, SIGKILLing itself at the
# step `argv[1]` describes: {"event", "arg" (index), "contains", "endswith", "nth", "after"}.
DRIVER = r"""
import json, os, signal, sys
from pathlib import Path

spec = json.loads(sys.argv[1])
state = {"armed": "after" not in spec, "count": 0}

def text(args, index):
    value = args[index] if len(args) > index else None
    if isinstance(value, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(value))
    return None

def matches(condition, event, args):
    found = text(args, condition.get("arg", 0))
    return event == condition["event"] and found is not None and condition.get("contains", "") in found and found.endswith(condition.get("endswith", ""))

def hook(event, args):
    if not spec or state["count"] < 0:
        return
    if not state["armed"]:
        state["armed"] = matches(spec["after"], event, args)
        return
    if matches(spec, event, args):
        state["count"] += 1
        if state["count"] == spec.get("nth", 1):
            state["count"] = -1
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
mode, rest = sys.argv[2], sys.argv[3:]
if mode == "cli":
    from xinstruction_dataset import cli
    sys.exit(cli.main(rest))
from xinstruction_dataset.errors import UserError
from xinstruction_dataset.storage import FolderKind, recover_folder, staged_folder
folder = Path(rest[0])
try:
    if mode == "recover":
        recover_folder(folder)
        sys.exit(0)
    with staged_folder(folder, FolderKind("test", "test folder", lambda path: False)) as staging:
        for name in ("a.txt", "b.txt", "c.txt"):
            (staging / name).write_text(rest[1])
        (staging / "sub").mkdir()
        (staging / "sub" / "d.txt").write_text(rest[1])
except UserError as error:  # as the command line reports it
    print(f"error: {error}", file=sys.stderr)
    sys.exit(error.exit_code)
"""


def drive(mode: str, *args: str, kill: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(kill or {}), mode, *map(str, args)],
        capture_output=True, text=True, timeout=180, cwd=cwd,
    )


def cli(*args: str, kill: dict | None = None) -> subprocess.CompletedProcess:
    return drive("cli", *args, kill=kill)


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder`: file bytes, or a link's target."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = path.read_bytes()
    return out


def contents(folder: Path) -> dict[str, str]:
    return {key: value.decode() for key, value in tree(folder).items() if key != MARKER_FILE}


def version(v: str) -> dict[str, str]:
    return {"a.txt": v, "b.txt": v, "c.txt": v, "sub/d.txt": v}


def leftovers(parent: Path, name: str) -> list[str]:
    """Entries beside `name` that a swap of it made: staging, retired, journal, temporary files."""
    return sorted(p.name for p in parent.iterdir() if p.name != name and (p.name.startswith(f".{name}.") or p.name.endswith(".tmp")))


# --- the swap, killed at each step ------------------------------------------------------------------

# step: (where the kill lands, whether the new folder was already in place)
KILL_POINTS = {
    "while the staging folder is written": ({"event": "open", "contains": ".staging-", "endswith": "b.txt"}, False),
    "while the journal is written": ({"event": "os.rename", "arg": 1, "endswith": ".folder.swap.json"}, False),
    "before the first rename": ({"event": "os.rename", "arg": 0, "endswith": "/folder"}, False),
    "between the two renames": ({"event": "os.rename", "arg": 1, "endswith": "/folder"}, False),
    "while the retired folder is removed": ({"after": {"event": "shutil.rmtree", "contains": "/.folder.retired"}, "event": "os.remove", "nth": 2}, True),
    "before the journal is removed": ({"event": "os.remove", "endswith": ".folder.swap.json"}, True),
}


@pytest.mark.parametrize("step", list(KILL_POINTS))
def test_a_swap_killed_at_any_step_leaves_one_whole_folder_and_the_next_run_cleans_up(tmp_path: Path, step: str) -> None:
    kill, committed = KILL_POINTS[step]
    folder = tmp_path / "folder"
    assert drive("swap", folder, "v1").returncode == 0
    killed = drive("swap", folder, "v2", kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # The next run (here: recovery alone) finds one whole folder: the previous one before the
    # commit, the new one after it; nothing else is left.
    assert drive("recover", folder).returncode == 0
    assert contents(folder) == version("v2" if committed else "v1")
    assert leftovers(tmp_path, "folder") == []

    assert drive("swap", folder, "v3").returncode == 0
    assert contents(folder) == version("v3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_half_removed_retired_folder_is_never_put_back(tmp_path: Path) -> None:
    """Killed while removing the previous folder, then the next swap killed between its
    renames: the folder that comes back is the whole one (v2), never the half-removed v1."""
    folder = tmp_path / "folder"
    assert drive("swap", folder, "v1").returncode == 0
    assert drive("swap", folder, "v2", kill=KILL_POINTS["while the retired folder is removed"][0]).returncode == -signal.SIGKILL
    assert drive("swap", folder, "v3", kill=KILL_POINTS["between the two renames"][0]).returncode == -signal.SIGKILL
    assert sum(".retired" in p.name for p in tmp_path.iterdir()) <= 1  # at most one retired copy
    assert drive("recover", folder).returncode == 0
    assert contents(folder) == version("v2")
    assert leftovers(tmp_path, "folder") == []


def test_retired_copies_of_an_older_version_are_never_guessed_between(tmp_path: Path) -> None:
    """Versions before the journal named retired copies at random: with the folder missing and
    two of them there, neither is picked (exit 3, naming them); with the folder there, they go."""
    folder = tmp_path / "folder"
    for name in (".folder.retired-1a2b3c4d", ".folder.retired-9f8e7d6c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_text(name)
        (tmp_path / name / MARKER_FILE).write_text(json.dumps({"kind": "test"}))
    result = drive("swap", folder, "v1")
    assert result.returncode == 3
    assert ".folder.retired-1a2b3c4d" in result.stderr and "cannot be told apart" in result.stderr
    assert not folder.exists()
    (tmp_path / ".folder.retired-9f8e7d6c").rename(folder)
    assert drive("swap", folder, "v2").returncode == 0
    assert contents(folder) == version("v2") and leftovers(tmp_path, "folder") == []


# --- export and build: the same rules through the real commands ------------------------------------------


def write_curated(root: Path, language: str, count: int, offset: int = 0) -> Path:
    with ShardWriter(root / language / "train-00000-of-00001.jsonl") as writer:
        for record in xinstruction_records(language, count, offset):
            writer.write(record)
    return root


def export(folder: Path, curated: Path, *languages: str, kill: dict | None = None) -> subprocess.CompletedProcess:
    args = ["export", str(folder), "--data-dir", str(curated), "--cache-dir", str(curated.parent / "cache"), "--no-progress"]
    return cli(*args, *(a for language in languages for a in ("--language", language)), kill=kill)


def test_an_export_killed_twice_comes_back_whole_with_every_language(tmp_path: Path) -> None:
    """The issue's sequence: killed while removing the retired folder, then killed between the
    renames; the next export exits 0 with every language and a card that checks, nothing left."""
    curated, folder = tmp_path / "curated", tmp_path / "x-instruction"
    write_curated(curated, "fi", 6)
    write_curated(curated, "sw", 5)
    assert export(folder, curated, "fi", "sw").returncode == 0
    removing = {"after": {"event": "shutil.rmtree", "contains": "/.x-instruction.retired"}, "event": "os.remove", "nth": 3}
    assert export(folder, curated, "fi", kill=removing).returncode == -signal.SIGKILL
    between = {"event": "os.rename", "arg": 1, "endswith": "/x-instruction"}  # staging -> folder
    assert export(folder, curated, "fi", kill=between).returncode == -signal.SIGKILL

    write_curated(curated, "fi", 4, offset=6)
    result = export(folder, curated, "fi")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["fi", "sw"]
    assert leftovers(tmp_path, "x-instruction") == []
    check = cli("card", "check", str(folder))
    assert check.returncode == 0, check.stdout + check.stderr
    card = (folder / "README.md").read_text()
    assert "config_name: sw" in card and "num_examples: 4" in card and "num_examples: 5" in card


def test_a_killed_filter_merge_leaves_no_temporary_file_after_the_next_run(tmp_path: Path) -> None:
    source = tmp_path / "sw.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Habari ya leo, rafiki yangu {i}. " * 4}) + "\n" for i in range(6)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "merge-kill", "languages": ["sw"], "sources": [{"path": str(source), "language": "sw"}],
        "filters": [{"type": "length", "min_chars": 20, "max_chars": 20000}], "output_dir": str(tmp_path / "run"),
    }))
    # The reduce commits quarantine.jsonl before the removal list: that one is still temporary.
    merge = {"event": "os.rename", "arg": 1, "endswith": "/filtered/sw/quarantine.jsonl"}
    killed = cli("filter", str(recipe), "--workers", "1", "--no-progress", kill=merge)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list((tmp_path / "run").rglob("*.tmp"))  # what the killed merge left
    result = cli("filter", str(recipe), "--workers", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "run").rglob("*.tmp")) == []
    assert len(kept_rows(tmp_path / "run" / "filtered" / "sw")) == 6


def break_card(folder: Path) -> None:
    """A hand-written section left open in the card (a maintainer's edit): the card step refuses
    to render over it (text would be lost), after the new data is written."""
    card = folder / "README.md"
    card.write_text(card.read_text() + "\n<!-- hand-written:notes start -->\nhalf-written note\n")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `xinstruction export` of fi, copied by each test that needs an export folder."""
    root = tmp_path_factory.mktemp("exported")
    curated = write_curated(root / "curated", "fi", 6)
    result = export(root / "x-instruction", curated, "fi")
    assert result.returncode == 0, result.stderr
    return root / "x-instruction"


def export_folder(exported: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the exported folder, a curated folder with new fi data) under `tmp_path`."""
    folder = tmp_path / "x-instruction"
    shutil.copytree(exported, folder, symlinks=True)
    return folder, write_curated(tmp_path / "curated", "fi", 3, offset=6)


def test_export_changes_data_and_card_together_or_not_at_all(exported: Path, tmp_path: Path) -> None:
    folder, curated = export_folder(exported, tmp_path)
    break_card(folder)
    before = tree(folder)
    result = export(folder, curated, "fi")  # new data for the same language, then the card fails
    assert result.returncode == 2 and "hand-written section(s) notes not closed" in result.stderr
    assert tree(folder) == before
    assert leftovers(tmp_path, "x-instruction") == []


def test_a_folder_copy_that_fails_names_the_file_in_one_line_and_leaves_no_staging(exported: Path, tmp_path: Path) -> None:
    folder, curated = export_folder(exported, tmp_path)
    os.mkfifo(folder / "notes.pipe")  # a named pipe cannot be copied
    before = tree(folder)
    result = export(folder, curated, "fi")
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "notes.pipe" in errors[0] and "named pipe" in errors[0] and "[(" not in result.stderr
    assert tree(folder) == before and leftovers(tmp_path, "x-instruction") == []


def test_export_takes_an_older_versions_export_and_keeps_a_symlink_in_it_a_symlink(exported: Path, tmp_path: Path) -> None:
    """An export written before markers (a card with configs and data/<code>/ shards) is the
    toolkit's own; a symbolic link in it stays a link, never a copy of what it points to."""
    folder, curated = export_folder(exported, tmp_path)
    (folder / MARKER_FILE).unlink()
    (tmp_path / "outside.txt").write_text("not part of the dataset")
    (folder / "notes.txt").symlink_to(tmp_path / "outside.txt")
    # what killed runs left inside it: another config's staging folder, a card writer's temporary file
    (folder / "data" / ".sw.staging-1a2b3c4d").mkdir()
    (folder / "data" / ".sw.staging-1a2b3c4d" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    (folder / "README.md.4194999.1a2b3c4d.tmp").write_text("half a card")  # a PID above Linux's maximum: gone
    result = export(folder, curated, "fi")
    assert result.returncode == 0, result.stderr
    assert (folder / MARKER_FILE).is_file() and (folder / "notes.txt").is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == [MARKER_FILE, "README.md", "data", "notes.txt"]
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["fi"]


def test_export_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    curated = write_curated(tmp_path / "curated", "fi", 4)
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# my project\n")
    (project / "data").mkdir()
    (project / "data" / "notes.csv").write_text("a,b\n")
    before = tree(project)
    result = export(project, curated, "fi")
    assert result.returncode == 2 and str(project) in result.stderr and "left as it is" in result.stderr
    assert tree(project) == before and leftovers(tmp_path, "project") == []


# --- the report --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filtered_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A filtered run folder (no LLM), enough for a report; each test takes a copy."""
    root = tmp_path_factory.mktemp("filtered")
    source = root / "sw.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Habari ya leo, rafiki yangu {i}. " * (1 + i)}) + "\n" for i in range(8)))
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "report-folders", "languages": ["sw"], "sources": [{"path": str(source), "language": "sw"}],
        "filters": [{"type": "length", "min_chars": 100, "max_chars": 20000}], "output_dir": str(root / "run"),
    }))
    result = cli("filter", str(recipe), "--workers", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    return root / "run"


@pytest.fixture
def run_dir(filtered_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(filtered_run, tmp_path / "run")
    return tmp_path / "run"


def test_report_into_the_run_folder_or_a_foreign_folder_is_refused_and_deletes_nothing(run_dir: Path, tmp_path: Path) -> None:
    before = tree(run_dir)
    result = cli("report", str(run_dir), "-o", str(run_dir), "--no-progress")
    assert result.returncode == 2 and str(run_dir) in result.stderr
    assert tree(run_dir) == before

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<html>my own page</html>")
    result = cli("report", str(run_dir), "-o", str(mine), "--no-progress")
    assert result.returncode == 2 and str(mine) in result.stderr
    assert (mine / "index.html").read_text() == "<html>my own page</html>" and leftovers(tmp_path, "mine") == []

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("report", str(run_dir), "-o", str(empty), "--no-progress").returncode == 0
    assert (empty / "index.html").is_file() and (empty / MARKER_FILE).is_file()


def test_report_replaces_its_own_folder_and_an_older_versions_report(run_dir: Path, tmp_path: Path) -> None:
    assert cli("report", str(run_dir), "--no-progress").returncode == 0
    report = run_dir / "report"
    (report / MARKER_FILE).unlink()  # as an older version wrote it: index.html, script, style, data
    assert cli("report", str(run_dir), "--no-progress").returncode == 0
    assert (report / MARKER_FILE).is_file()

    (report / MARKER_FILE).unlink()
    (report / "my-notes.txt").write_text("mine")  # no longer only what a report writes
    result = cli("report", str(run_dir), "--no-progress")
    assert result.returncode == 2 and str(report) in result.stderr
    assert (report / "my-notes.txt").read_text() == "mine"


def test_a_report_killed_between_its_renames_comes_back_on_the_next_run(run_dir: Path) -> None:
    assert cli("report", str(run_dir), "--no-progress").returncode == 0
    between = {"event": "os.rename", "arg": 1, "endswith": "/report"}  # staging -> folder
    assert cli("report", str(run_dir), "--no-progress", kill=between).returncode == -signal.SIGKILL
    assert not (run_dir / "report").exists()
    assert cli("report", str(run_dir), "--no-progress").returncode == 0
    assert (run_dir / "report" / "index.html").is_file() and leftovers(run_dir, "report") == []


# --- build -----------------------------------------------------------------------------------------


def write_build_recipe(root: Path, server_url: str) -> Path:
    rows = [row for record in xinstruction_records("sw", 4) for row in [{"id": record.id, "text": record.output[:500]}]]
    source = root / "sw.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    model = {"backend": "tgi", "model": "test/curation-model", "endpoints": [server_url], "timeout": 10.0, "retries": 3, "backoff": 0.05}
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "build-folders", "languages": ["sw"], "sources": [{"path": str(source), "language": "sw"}],
        "filters": [{"type": "length", "min_chars": 50, "max_chars": 20000}], "output_dir": str(root / "run"),
        "curation": {"models": {"generator": model}, "generate": {"candidates": 1}, "judge": {"scale": "three_level"},
                     "refine": {"rounds": 0}, "diversify": {"target_size": 3}},
    }))
    return recipe


def test_build_refuses_a_report_folder_it_did_not_write_before_any_work(tmp_path: Path) -> None:
    recipe = write_build_recipe(tmp_path, "http://127.0.0.1:9")  # never called: refused first
    mine = tmp_path / "run" / "report"
    mine.mkdir(parents=True)
    (mine / "plan.md").write_text("my plan")
    result = cli("build", str(recipe), "--no-progress")
    assert result.returncode == 2 and str(mine) in result.stderr
    assert sorted(p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*")) == ["report", "report/plan.md"]


def test_build_changes_the_export_data_and_card_together_or_not_at_all(exported: Path, tmp_path: Path) -> None:
    """An export folder from an earlier build, its card left with an open hand-written section:
    the build curates new data, the card step fails, and the folder keeps every byte."""
    with TGIServer(reply=curation_reply(needs_refinement=0.0, bad=0.0)) as server:
        recipe = write_build_recipe(tmp_path, server.url)
        folder = tmp_path / "run" / "x-instruction"
        shutil.copytree(exported, folder, symlinks=True)
        break_card(folder)
        before = tree(folder)
        result = cli("build", str(recipe), "--no-progress")
    assert result.returncode == 2 and "hand-written section(s) notes not closed" in result.stderr, result.stderr
    assert list((tmp_path / "run" / "curated" / "sw").glob("*.jsonl"))  # the build did curate new data
    assert tree(folder) == before
    assert leftovers(tmp_path / "run", "x-instruction") == []
