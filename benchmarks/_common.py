"""Helpers shared by the benchmarks: TGI-protocol server processes (tests/tgi_server.py), their
request logs, and the distilabel virtual environment (its pins clash with ours, so it runs as a
subprocess of its own Python)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("XINSTRUCTION_CORPORA", ROOT.parent / "shared" / "corpora"))
TGI_SERVER = ROOT / "tests" / "tgi_server.py"
TGI_DEFAULT_QUEUE = 128  # TGI's default max_concurrent_requests
DEFAULT_DISTILABEL_PYTHON = ROOT / ".venv-distilabel" / "bin" / "python"
DISTILABEL_INSTALL = (
    "python -m venv .venv-distilabel && "
    '.venv-distilabel/bin/pip install "distilabel[hf-inference-endpoints]" requests beautifulsoup4'
)


@contextmanager
def tgi_servers(count: int, slots: int, latency: float, *extra: str) -> Iterator[list[str]]:
    """`count` TGI-protocol server processes (each its own interpreter, so a client never
    shares a GIL with them), TGI's default queue of 128; `extra` are more tgi_server.py
    options. Yields their URLs; the processes are killed on exit."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(TGI_SERVER), "--slots", str(slots), "--latency", str(latency),
             "--max-concurrent-requests", str(TGI_DEFAULT_QUEUE), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        yield [process.stdout.readline().strip() for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def server_stats(url: str) -> dict[str, Any]:
    """A server's request log and its summary (`GET /stats`, see tests/tgi_server.py)."""
    with urllib.request.urlopen(f"{url}/stats", timeout=60) as answer:
        return json.load(answer)


def combined_stats(urls: Sequence[str]) -> dict[str, Any]:
    """The servers' logs taken together: `span` from the first arrival at any of them to the
    last answer from any, `busy` slot-seconds summed, `utilisation` = busy / (all slots x span)."""
    stats = [server_stats(url) for url in urls]
    slots = sum(s["slots"] for s in stats)
    requests = sum(s["count"] for s in stats)
    overloaded = sum(s.get("statuses", {}).get("429", 0) for s in stats)
    out: dict[str, Any] = {"slots": slots, "count": requests, "overloaded": overloaded, "utilisation": None, "span": None,
                           "first_arrival": None, "last_end": None, "busy": 0.0}
    answered = [s for s in stats if s["count"]]
    if answered:
        first = min(s["first_arrival"] for s in answered)
        last = max(s["last_end"] for s in answered)
        busy = sum(s["busy"] for s in answered)
        span = last - first
        out.update(first_arrival=first, last_end=last, span=span, busy=busy,
                   utilisation=busy / (slots * span) if span > 0 else None,
                   log=[tuple(r) for s in answered for r in s["requests"]])
    return out


def busy_slots(log: Sequence[tuple[float, float, float]], start: float, end: float) -> float | None:
    """Mean slots serving between `start` and `end` (monotonic), from a request log of
    (arrival, start of service, end of service); None for an empty window."""
    if end <= start:
        return None
    return sum(max(0.0, min(stop, end) - max(begin, start)) for _, begin, stop in log) / (end - start)


def distilabel_unavailable(python: str | None) -> str | None:
    """Why distilabel cannot be measured, or None if it can."""
    if not python:
        return f"no --distilabel-python given (and no .venv-distilabel here; make one with: {DISTILABEL_INSTALL})"
    if not Path(python).exists():
        return f"{python} does not exist (make it with: {DISTILABEL_INSTALL})"
    probe = subprocess.run([python, "-c", "import distilabel.models.llms, distilabel.steps.tasks"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"distilabel does not import there: {probe.stderr.strip().splitlines()[-1]}"
    return None


def default_distilabel_python() -> str | None:
    return str(DEFAULT_DISTILABEL_PYTHON) if DEFAULT_DISTILABEL_PYTHON.exists() else None


def write_corpus(language: str, count: int, path: Path) -> Path:
    """`count` documents of real `language` text, cycling the shared corpus: every id unique, and
    repeats carry a counter, so no two prompts (and no two cache keys) are the same."""
    source = CORPORA / f"{language}.jsonl"
    if not source.exists():
        raise SystemExit(f"{source} not found: set XINSTRUCTION_CORPORA to the shared corpora folder")
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            row, cycle = rows[i % len(rows)], i // len(rows)
            text = row["text"] if cycle == 0 else f"{row['text']} ({cycle})"
            out.write(json.dumps({"id": f"{row['id']}~{cycle}", "text": text, "url": row.get("url", "")},
                                 ensure_ascii=False) + "\n")
    return path


def xinstruction_command() -> str:
    beside = Path(sys.executable).parent / "xinstruction"  # the venv's console script
    found = str(beside) if beside.exists() else shutil.which("xinstruction")
    if not found:
        raise SystemExit("no `xinstruction` command: activate the project's venv (. .venv/bin/activate)")
    return found
