"""An output_dir belongs to one run at a time (`runlock.RunLock`), and `storage.AtomicFile`
writers of one path never share a temporary file."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xinstruction_dataset.cli import main
from xinstruction_dataset.errors import UserError
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.runlock import RunLock
from xinstruction_dataset.storage import AtomicFile
from filtered_output import kept_lines, reject_rows

CORPORA = Path("/work/shared/corpora")
if not CORPORA.is_dir():
    CORPORA = Path(__file__).resolve().parents[1] / "shared" / "corpora"


def big_recipe(root: Path, documents: int) -> Path:
    """A filter recipe over `documents` short lines cut from the shared corpora, with a chain of
    cheap filters: a run of some seconds."""
    rows = [json.loads(line) for f in sorted(CORPORA.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert rows, f"no corpora in {CORPORA}"
    source = root / "big.jsonl"
    with open(source, "w", encoding="utf-8") as out:
        for n in range(documents):
            row = rows[n % len(rows)]
            out.write(json.dumps({"id": f"{row['id']}-{n}", "text": row["text"][:300]}, ensure_ascii=False) + "\n")
    recipe = {
        "name": "runlock",
        "output_dir": str(root / "out"),
        "sources": [{"path": str(source), "language": "sw"}],
        "filters": [{"type": "length"}, {"type": "repetition"}, {"type": "mojibake"}, {"type": "markup"}, {"type": "boilerplate"}],
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xinstruction_dataset.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def lock_body(pid: int, host: str, heartbeat: float) -> str:
    return json.dumps({"pid": pid, "host": host, "started_at": "2024-01-01T00:00:00+00:00", "heartbeat": heartbeat, "token": "someone-else"})


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- (a) two runs on one output_dir -----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_second_concurrent_filter_run_is_refused_and_first_run_is_intact(tmp_path: Path) -> None:
    recipe = big_recipe(tmp_path, 45_000)
    lock_file = RunLayout(tmp_path / "out").lock_file()
    first = cli("filter", str(recipe), "--no-progress")
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the first run holds the lock
            assert first.poll() is None, first.communicate()
            try:
                if json.loads(lock_file.read_text())["pid"] == first.pid:
                    break
            except (FileNotFoundError, ValueError):
                pass
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.02)
        started = time.monotonic()
        second = cli("filter", str(recipe), "--no-progress")
        _, err = second.communicate(timeout=60)
        refused_in = time.monotonic() - started
        still_running = first.poll() is None
        assert second.returncode == 3, err  # an environment fault (errors.py)
        assert still_running, "the first run ended before the second was refused: make the corpus bigger"
        assert refused_in < 30
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err  # one line, no traceback
        assert f"PID {first.pid}" in err and socket.gethostname() in err and str(lock_file) in err
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    folder = tmp_path / "out" / "filtered" / "sw"
    summary = json.loads((folder / "summary.json").read_text())
    kept = kept_lines(folder)
    assert len(kept) == summary["kept"] > 0
    assert all(json.loads(line)["id"] for line in kept)  # whole lines: nothing torn
    assert len(reject_rows(folder)) == sum(summary["rejected"].values())
    assert not list(folder.glob("*.tmp"))
    assert not lock_file.exists()  # released at the end


def test_cli_is_refused_while_this_process_holds_the_lock(tmp_path: Path) -> None:
    recipe = big_recipe(tmp_path, 50)
    lock_file = RunLayout(tmp_path / "out").lock_file()
    with RunLock(lock_file):
        process = cli("filter", str(recipe), "--no-progress")
        _, err = process.communicate(timeout=60)
        assert process.returncode == 3
        assert err.startswith("error: ") and f"PID {os.getpid()}" in err and str(lock_file) in err
        assert "delete" in err  # says what to do
        assert not (tmp_path / "out" / "filtered").exists()  # nothing was written
    assert not lock_file.exists()
    process = cli("filter", str(recipe), "--no-progress")  # free again
    assert process.wait(timeout=60) == 0, process.communicate()


def test_curate_dry_run_takes_no_lock_and_build_and_curate_are_refused(tmp_path: Path, capsys) -> None:
    recipe = big_recipe(tmp_path, 50)
    lock_file = RunLayout(tmp_path / "out").lock_file()
    with RunLock(lock_file):
        for command in ("curate", "build"):
            assert main([command, str(recipe), "--no-progress"]) == 3
            assert f"PID {os.getpid()}" in capsys.readouterr().err
        main(["curate", str(recipe), "--dry-run"])  # whatever the plan says, the lock is not in the way
        assert "in use by another run" not in capsys.readouterr().err


def test_lock_is_released_on_exceptions_and_keyboard_interrupt(tmp_path: Path) -> None:
    lock_file = tmp_path / "run" / "lock.json"
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error):
            with RunLock(lock_file):
                assert lock_file.exists()
                raise error()
        assert not lock_file.exists()


# --- (b), (c) stale locks ---------------------------------------------------------------------------


def test_lock_of_a_dead_pid_on_this_host_is_taken_over(tmp_path: Path, caplog) -> None:
    lock_file = tmp_path / "run" / "lock.json"
    lock_file.parent.mkdir(parents=True)
    pid = dead_pid()
    lock_file.write_text(lock_body(pid, socket.gethostname(), time.time()))  # fresh heartbeat, dead PID
    with RunLock(lock_file) as lock:
        body = json.loads(lock_file.read_text())
        assert body["pid"] == os.getpid() and body["token"] == lock.token and body["host"] == socket.gethostname()
    assert f"PID {pid}" in caplog.text
    assert not lock_file.exists()
    assert not [p for p in lock_file.parent.iterdir()]  # no aside or temporary file left


def test_lock_of_a_live_pid_on_this_host_is_refused(tmp_path: Path) -> None:
    lock_file = tmp_path / "run" / "lock.json"
    lock_file.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.write_text(lock_body(holder.pid, socket.gethostname(), time.time() - 3600))  # old heartbeat, live PID
        with pytest.raises(UserError, match=f"PID {holder.pid} on host {socket.gethostname()}"):
            RunLock(lock_file).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert json.loads(lock_file.read_text())["pid"] == holder.pid  # untouched


def test_lock_from_another_host_is_refused_while_its_heartbeat_is_fresh(tmp_path: Path) -> None:
    lock_file = tmp_path / "run" / "lock.json"
    lock_file.parent.mkdir(parents=True)
    lock_file.write_text(lock_body(4242, "gpu-node-7.invalid", time.time() - 5))
    with pytest.raises(UserError) as refused:
        RunLock(lock_file, stale_after=60).acquire()
    message = str(refused.value)
    assert "PID 4242 on host gpu-node-7.invalid" in message and str(lock_file) in message and "\n" not in message
    assert json.loads(lock_file.read_text())["pid"] == 4242

    lock_file.write_text(lock_body(4242, "gpu-node-7.invalid", time.time() - 61))  # expired
    with RunLock(lock_file, stale_after=60):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()


def test_heartbeat_is_refreshed_and_a_lost_lock_is_noticed(tmp_path: Path) -> None:
    lock_file = tmp_path / "run" / "lock.json"
    with RunLock(lock_file, heartbeat_interval=0.05) as lock:
        first = json.loads(lock_file.read_text())["heartbeat"]
        deadline = time.monotonic() + 10
        while json.loads(lock_file.read_text())["heartbeat"] == first:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        lock_file.write_text(lock_body(4242, "gpu-node-7.invalid", time.time()))  # someone else's now
        while not lock.lost:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert json.loads(lock_file.read_text())["pid"] == 4242  # release leaves another run's lock alone


# --- (d) AtomicFile ---------------------------------------------------------------------------------


def test_two_atomic_writers_of_one_path_do_not_collide(tmp_path: Path) -> None:
    path = tmp_path / "kept.jsonl"
    a, b = AtomicFile(path), AtomicFile(path)
    assert a.tmp != b.tmp and a.tmp.parent == b.tmp.parent == tmp_path
    assert a.tmp.name.startswith("kept.jsonl.") and a.tmp.name.endswith(".tmp")
    for n in range(1000):
        a.write_json_line({"writer": "a", "n": n})
        b.write_json_line({"writer": "b", "n": n})
    a.commit()
    assert [json.loads(line)["writer"] for line in path.read_text().splitlines()] == ["a"] * 1000
    b.commit()  # the other writer's file was not renamed away under it
    assert [json.loads(line)["writer"] for line in path.read_text().splitlines()] == ["b"] * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl"]


@pytest.mark.parametrize("name", ["kept.jsonl", "kept.jsonl.gz"])
def test_abort_removes_the_temporary_file_even_when_close_fails(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    sink = AtomicFile(path)
    sink.write("x" * 100_000)
    real_close = sink.file.close

    def disk_full() -> None:
        real_close()
        raise OSError(errno.ENOSPC, "No space left on device")

    sink.file.close = disk_full
    with pytest.raises(OSError, match="No space left"):
        sink.abort()
    assert not sink.tmp.exists() and not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_commit_in_a_block_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    with pytest.raises(OSError, match="No space left"):
        with AtomicFile(path) as sink:
            sink.write("{}")
            real_close = sink.file.close

            def disk_full() -> None:
                real_close()
                raise OSError(errno.ENOSPC, "No space left on device")

            sink.file.close = disk_full
    assert list(tmp_path.iterdir()) == []


def test_shards_of_one_folder_lock_separately(tmp_path):
    layout = RunLayout(tmp_path / "out")
    assert layout.lock_file((0, 1)) == layout.lock_file()
    with RunLock(layout.lock_file((0, 2))), RunLock(layout.lock_file((1, 2))):  # side by side
        with pytest.raises(UserError, match="PID"):
            with RunLock(layout.lock_file((1, 2))):
                pass
