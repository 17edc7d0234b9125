"""Hardening of the process and its inputs, through the real command line (a subprocess):

- SIGTERM and SIGHUP stop `filter`'s worker processes and release the run lock, as Ctrl-C does
  (exit 143 and 129);
- a recipe of nested YAML aliases ("billion laughs") is refused at once, in bounded memory;
- `output_dir` (and every option naming an output folder) expands `~` as a shell would and
  refuses the filesystem root and the home folder;
- only the documented errors are one line: any other exception is a bug (traceback, a request to
  report it, exit 70), and the inputs that used to rely on "any ValueError is exit 2" still
  exit 2 (or 3 for a damaged file the toolkit wrote).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from corpora import read_corpus
from xinstruction_dataset.errors import EXIT_ENVIRONMENT, EXIT_USAGE
from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS
from xinstruction_dataset.recipe import Recipe

CLI = [sys.executable, "-m", "xinstruction_dataset.cli"]
EXIT_BUG = 70  # errors.EXIT_BUG: spelt out, so that this file also runs (and fails) on the code before it


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120, **env_changes: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_changes}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def write_recipe(folder: Path, sources: list[Path], **overrides) -> Path:
    recipe = {
        "name": "hardening",
        "languages": ["sw"],
        "sources": [{"path": str(path), "language": "sw"} for path in sources],
        "filters": [{"type": "length", "min_chars": 20, "max_chars": 200000}],
        "output_dir": str(folder / "run"),
        **overrides,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def small_corpus(folder: Path) -> Path:
    path = folder / "sw.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in read_corpus("sw", 20)), encoding="utf-8")
    return path


# --- SIGTERM and SIGHUP ---------------------------------------------------------------------------


def big_corpus(folder: Path, files: int = 4, target_bytes: int = 6 << 20) -> list[Path]:
    """`files` JSONL files of ~`target_bytes` each, the shared corpora's texts repeated (distinct ids,
    so the run has minutes of work for two workers on a busy machine)."""
    rows = [row for code in ("sw", "fi", "tr") for row in read_corpus(code)]
    paths = []
    for number in range(files):
        path = folder / f"big-{number}.jsonl"
        written, copy = 0, 0
        with open(path, "w", encoding="utf-8") as f:
            while written < target_bytes:
                for row in rows:
                    line = json.dumps({**row, "id": f"{number}-{copy}-{row['id']}"}, ensure_ascii=False) + "\n"
                    f.write(line)
                    written += len(line.encode())
                copy += 1
        paths.append(path)
    return paths


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            continue  # the thread ended between the listing and the read
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie, which an init that does not reap leaves in the table, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_to_the_main_process_stops_the_workers_and_releases_the_lock(tmp_path: Path, signum: int, code: int) -> None:
    # The default chain (language ID, repetition, dedup...), not just `length`: the tasks alone
    # must outlast the workers' start-up, now that no merge rewrites the text after them.
    recipe = write_recipe(tmp_path, big_corpus(tmp_path), filters=DEFAULT_FILTERS)
    lock = tmp_path / "run" / "run" / "lock.json"
    # A session of its own: the signal goes to the main process alone, as `kill PID` sends it.
    process = subprocess.Popen(
        [*CLI, "filter", str(recipe), "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        workers: set[int] = set()

        def two_workers_started() -> bool:
            workers.update(pid for pid in children(process.pid) if "spawn_main" in cmdline(pid))
            return len(workers) >= 2 or process.poll() is not None

        assert wait_until(two_workers_started, 120), "the filter run did not start its two workers"
        assert process.poll() is None, process.communicate()
        assert lock.exists()
        time.sleep(1.0)  # the workers are busy with their tasks
        assert process.poll() is None, "the run finished before the signal: give it more input"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == code, stderr[-3000:]
        assert f"stopped by {signal.Signals(signum).name}" in stderr and "run the same command again" in stderr, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert not lock.exists(), "the run lock was left behind"
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 10), (
            f"worker process(es) still running after the main process ended: {[p for p in workers if alive(p)]}"
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)



# --- billion laughs -------------------------------------------------------------------------------


def laughs(levels: int = 9, width: int = 9) -> str:
    lines = ['a: &a ["lol"]']
    for level in range(1, levels):
        lines.append(f"{chr(97 + level)}: &{chr(97 + level)} [{', '.join(['*' + chr(96 + level)] * width)}]")
    return "\n".join(lines)


BILLION_LAUGHS = {
    # 9 levels of 9: 9^8 lists of the innermost; the refused value lands in a recipe field.
    "nested lists": f"{laughs()}\nname: laughs\nlanguages: *i\nsources: []\n",
    # merge keys double at every level while the YAML loader flattens them (not only in validation)
    "merge keys": "x0: &x0 {k: v}\n" + "".join(f"x{n}: &x{n} {{<<: [*x{n - 1}, *x{n - 1}], k{n}: v}}\n" for n in range(1, 40)) + "name: *x39\n",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", BILLION_LAUGHS.values(), ids=BILLION_LAUGHS.keys())
def test_a_billion_laughs_recipe_is_refused_at_once_in_bounded_memory(tmp_path: Path, text: str) -> None:
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text(text, encoding="utf-8")
    assert len(text.encode()) < 2000
    # The peak RSS of the command alone: measured in a fresh parent whose only child it is.
    measure = textwrap.dedent(
        """
        import json, resource, subprocess, sys, time
        start = time.monotonic()
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=50)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(json.dumps({"rc": done.returncode, "stderr": done.stderr, "seconds": time.monotonic() - start,
                          "cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss_kib": usage.ru_maxrss}))
        """
    )
    probe = subprocess.run([sys.executable, "-c", measure, *CLI, "filter", str(recipe), "--no-progress"], capture_output=True, text=True, timeout=55)
    result = json.loads(probe.stdout)
    stderr = result["stderr"]
    assert result["rc"] == EXIT_USAGE, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "laughs.yaml" in lines[0] and "aliases" in lines[0], stderr[-3000:]
    assert len(lines[0]) < 1000 and "Traceback" not in stderr and "MemoryError" not in stderr
    # Within 5 s of work (~2 s of it is the command's start-up); the wall clock is checked loosely,
    # since CI machines run other jobs (the old code took 36 s of CPU, then all memory).
    assert result["cpu_seconds"] < 5 and result["seconds"] < 30, result
    assert result["max_rss_kib"] < 300 * 1024, result


def test_recursive_aliases_and_huge_files_are_refused_with_one_line(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("name: r\nsources: &s [*s]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="recursive"):
        Recipe.from_yaml(recursive)
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: h\n# " + "x" * (2 << 20) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="MiB"):
        Recipe.from_yaml(huge)
    digits = tmp_path / "digits.yaml"
    digits.write_text("name: d\nversion: " + "1" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="digits.yaml: not valid YAML"):
        Recipe.from_yaml(digits)


def test_an_error_quotes_a_long_refused_value_cut(tmp_path: Path) -> None:
    """1000 wrong values, each a long nested one: the line names the first problems, each value
    quoted cut, and counts the rest (JSON is YAML without aliases: every value is its own)."""
    wrong = [{"k": ["y" * 300] * 2, "n": i} for i in range(1000)]
    recipe = tmp_path / "wide.yaml"
    recipe.write_text(json.dumps({"name": "w", "languages": wrong}), encoding="utf-8")
    with pytest.raises(ValueError) as error:
        Recipe.from_yaml(recipe)
    message = str(error.value)
    assert "languages[0] must be str, got {" in message and "and 980 more problem(s)" in message, message[:2000]
    assert len(message) < 21 * 600 and "y" * 100 not in message


# --- output folders -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_tilde_in_output_dir_is_the_home_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)], output_dir="~/xi-runs/sw")
    done = run_cli("filter", str(recipe), "--no-progress", cwd=tmp_path, HOME=str(home))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "xi-runs" / "sw" / "filtered" / "sw" / "manifest.json").exists()
    assert not (tmp_path / "~").exists(), "a folder literally named ~ was made"
    # `~user` as a shell expands it: that user's home from the password database.
    root_home = Path(pwd.getpwnam("root").pw_dir)
    assert Recipe.from_yaml(write_recipe(tmp_path, [], output_dir="~root/x-runs")).output_path == root_home / "x-runs"


@pytest.mark.parametrize(
    "output_dir, names",
    [("/", "the filesystem root"), ("~", "your home folder"), ("~/", "your home folder"), ("{home}/../home", "your home folder")],
    ids=["root", "tilde", "tilde-slash", "home-by-another-name"],
)
def test_output_dir_may_not_be_the_root_or_the_home_folder(tmp_path: Path, output_dir: str, names: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)], output_dir=output_dir.format(home=home))
    done = run_cli("filter", str(recipe), "--no-progress", HOME=str(home))
    assert done.returncode == EXIT_USAGE, done.stderr[-3000:]
    lines = error_lines(done)
    assert len(lines) == 1 and names in lines[0] and "recipe.yaml" in lines[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in home.iterdir()) == [], "something was written into the home folder"


@pytest.mark.parametrize(
    "args",
    [
        ["filter", "{recipe}", "--output-dir", "~"],
        ["curate", "{recipe}", "--output-dir", "/"],
        ["build", "{recipe}", "--output-dir=~"],
        ["report", "{run}", "-o", "~"],
        ["export", "/", "--language", "sw", "--data-dir", "{run}"],
        ["xalpacaeval", "export", "~"],
        ["eval", "answer", "--output-dir", "~"],
    ],
    ids=["filter", "curate", "build", "report", "export", "xalpacaeval", "eval"],
)
def test_an_output_folder_option_may_not_be_the_root_or_the_home_folder(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)])
    done = run_cli(*[a.format(recipe=recipe, run=tmp_path / "run") for a in args], HOME=str(home))
    assert done.returncode == EXIT_USAGE, done.stderr[-3000:]
    assert "the filesystem root" in done.stderr or "your home folder" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_a_quoted_tilde_in_an_output_folder_option_is_expanded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)])
    done = run_cli("filter", str(recipe), "--no-progress", "--output-dir=~/out", cwd=tmp_path, HOME=str(home))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "out" / "filtered" / "sw" / "manifest.json").exists() and not (tmp_path / "~").exists()


def test_expanding_output_dir_leaves_the_fingerprint_alone(tmp_path: Path) -> None:
    from xinstruction_dataset.fingerprint import fingerprint

    plain = Recipe.from_yaml(write_recipe(tmp_path, [], output_dir=str(tmp_path / "a")))
    tilde = Recipe.from_yaml(write_recipe(tmp_path, [], output_dir="~/elsewhere"))
    assert fingerprint(plain) == fingerprint(tilde)


# --- a bug is a bug -------------------------------------------------------------------------------


BROKEN_COMMAND = textwrap.dedent(
    """
    import sys
    from xinstruction_dataset import cli
    from xinstruction_dataset.commands import card

    def broken(args):  # a broken invariant deep in a command: not a user's mistake
        (pair,) = []

    card.run_check = broken
    sys.argv = ["xinstruction", "card", "check", sys.argv[1]]
    cli.run()
    """
)


def test_an_unexpected_error_is_a_bug_with_its_traceback_and_exit_70(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", BROKEN_COMMAND, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_BUG, done.stderr[-3000:]
    assert "Traceback (most recent call last)" in done.stderr and "ValueError: not enough values to unpack" in done.stderr
    lines = error_lines(done)
    assert len(lines) == 1 and "bug" in lines[0] and "report it" in lines[0] and "issue tracker" in lines[0], done.stderr[-3000:]


SWALLOWING_COMMAND = textwrap.dedent(
    """
    import os, signal, sys
    from xinstruction_dataset import cli
    from xinstruction_dataset.commands import card

    def loads_profiles(args):  # as langdetect's loader: any exception, the stop included, becomes its own
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
        except:  # noqa: E722 - the library's habit under test
            raise RuntimeError("Profile format error")

    card.run_check = loads_profiles
    sys.argv = ["xinstruction", "card", "check", sys.argv[1]]
    cli.run()
    """
)


def test_a_stop_that_a_library_turns_into_its_own_error_is_still_a_stop(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SWALLOWING_COMMAND, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "stopped by SIGTERM" in done.stderr and "bug" not in done.stderr, done.stderr[-3000:]


def test_user_errors_that_were_value_errors_stay_exit_2(tmp_path: Path) -> None:
    corpus = small_corpus(tmp_path)
    cases = {
        "--shard 3/2": (["filter", str(write_recipe(tmp_path, [corpus])), "--shard", "3/2"], "--shard"),
        "unknown language code": (["filter", "--input", str(corpus), "--language", "xx", "--output-dir", str(tmp_path / "o")], "xx"),
        "--input without --language": (["filter", "--input", str(corpus)], "--language"),
        "a model spec that is not a mapping": (["eval", "answer", "--model", "[1, 2]"], "--model"),
    }
    for name, (args, names) in cases.items():
        done = run_cli(*args)
        lines = error_lines(done)
        assert done.returncode == EXIT_USAGE, (name, done.stderr[-3000:])
        assert len(lines) == 1 and names in lines[0] and "Traceback" not in done.stderr, (name, done.stderr[-3000:])


@pytest.mark.timeout(180)
def test_a_damaged_kept_file_is_an_environment_fault_like_a_damaged_cache(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)])
    assert run_cli("filter", str(recipe), "--no-progress").returncode == 0
    kept = tmp_path / "run" / "filtered" / "sw" / "tasks" / "task-00000" / "kept.jsonl"
    kept.write_text(kept.read_text(encoding="utf-8")[:-40] + "\n{not json\n", encoding="utf-8")
    done = run_cli("curate", str(recipe), "--no-progress")
    lines = error_lines(done)
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr[-3000:]
    assert len(lines) == 1 and "kept.jsonl" in lines[0] and "damaged" in lines[0] and "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.mark.timeout(180)
def test_a_damaged_file_in_a_run_folder_stops_the_report_with_one_line_naming_it(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)])
    assert run_cli("filter", str(recipe), "--no-progress").returncode == 0
    summary = tmp_path / "run" / "filtered" / "sw" / "summary.json"
    summary.write_text('{"documents_in": 3,', encoding="utf-8")  # cut short
    done = run_cli("report", str(tmp_path / "run"), "-o", str(tmp_path / "report"), "--no-progress")
    lines = error_lines(done)
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr[-3000:]
    assert len(lines) == 1 and "summary.json" in lines[0] and "damaged" in lines[0] and "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.mark.timeout(240)
def test_sigterm_stops_curate_mid_run_releasing_the_lock_and_the_rerun_finishes(tmp_path: Path, start_tgi_server) -> None:
    """A command without worker processes: the signal unwinds it as Ctrl-C does (calls stored,
    lock released), and the same command then resumes to the end."""
    from fake_llm import reply_for_prompt

    seen: list[str] = []

    def slow_reply(prompt: str, params) -> str:
        seen.append(prompt)
        return reply_for_prompt(prompt)

    server = start_tgi_server(reply=slow_reply, slots=2, latency=0.3)
    model = {"backend": "tgi", "model": "test/echo-model", "endpoints": [server.url], "retries": 0}
    recipe = write_recipe(tmp_path, [small_corpus(tmp_path)], curation={"models": {"generator": model}, "generate": {"candidates": 1}})
    assert run_cli("filter", str(recipe), "--no-progress").returncode == 0
    lock = tmp_path / "run" / "run" / "lock.json"
    process = subprocess.Popen([*CLI, "curate", str(recipe), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_until(lambda: len(seen) >= 2 or process.poll() is not None, 120), "curate made no call"
        assert process.poll() is None and lock.exists(), process.communicate()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 143, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert not lock.exists()
    again = run_cli("curate", str(recipe), "--no-progress", timeout=200)
    assert again.returncode == 0, again.stderr[-3000:]
