"""The embedded model's speed: decode tokens/s by batch size, and the README's main job, timed.

1. Tokens/s: `--requests` sampled requests (short prompts, `--new-tokens` each) submitted at once
   to a `LocalBackend` with batch_size 1, 4 and 8 (1 is one request at a time, as before batching).
2. The main job, `xinstruction build builder/default.yaml` as the README runs it (a copy with its
   output in a temporary folder, a fresh call cache each time), timed as a whole command:
   - "before": one request at a time (`batch_size: 1`), or the code of `--before-rev REV` with
     that revision's own default recipe (a git worktree of that commit, run with the same Python);
   - "after": this checkout's default recipe.
   Runs alternate before/after `--repeats` times, so both see the same machine load.

    python benchmarks/bench_local_backend.py                        # both parts
    python benchmarks/bench_local_backend.py --before-rev 5a7b171   # main job against old code
    python benchmarks/bench_local_backend.py --skip-main-job
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The history of the printing press begins",
    "Here is a recipe for a simple vegetable soup:",
    "The three most important rules of a good interview are",
]


def tokens_per_second(batch_size: int, requests: int, new_tokens: int) -> tuple[float, float]:
    """(generated tokens / s, mean batch size) for `requests` submitted at once."""
    from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest
    from xinstruction_dataset.llm.backends.local import LocalBackend, LocalConfig

    backend = LocalBackend(LocalConfig(batch_size=batch_size))
    backend.complete(LLMRequest(prompt="Hello", params=GenerationParams(max_new_tokens=2, temperature=0)))  # warm
    first = len(backend.batcher.batch_sizes)
    batch = [
        LLMRequest(prompt=PROMPTS[i % len(PROMPTS)], params=GenerationParams(max_new_tokens=new_tokens, temperature=0.8, seed=i))
        for i in range(requests)
    ]
    start = time.perf_counter()
    results = [f.result() for f in [backend.submit(r) for r in batch]]
    elapsed = time.perf_counter() - start
    sizes = backend.batcher.batch_sizes[first:]
    return sum(r.completion_tokens for r in results) / elapsed, statistics.mean(sizes)


def main_job_recipe(folder: Path, batch_size: int | None, code: Path) -> Path:
    """The README's main job as `code` has it: its own builder/default.yaml, output moved to `folder`."""
    recipe = yaml.safe_load((code / "builder" / "default.yaml").read_text())
    recipe["output_dir"] = str(folder / "run")
    for source in recipe["sources"]:
        if not source["path"].startswith("package:"):
            source["path"] = str((code / "builder" / source["path"]).resolve())
    if batch_size is not None:
        recipe["curation"]["models"]["generator"]["batch_size"] = batch_size
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def time_build(recipe: Path, code: Path) -> tuple[float, str]:
    """Seconds for the whole command, and its last line (the exit code is checked)."""
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "xinstruction_dataset.cli", "build", str(recipe), "--no-progress"],
        cwd=code, env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"build failed ({done.returncode}) in {code}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    records = [line for line in done.stdout.splitlines() if "records ->" in line]
    return elapsed, records[-1].strip() if records else "?"


def main_job(repeats: int, before_rev: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before_code = ROOT
        if before_rev:
            before_code = tmp / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before_code), before_rev], check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"before": [], "after": []}
            for n in range(repeats):
                for label in ("before", "after"):
                    folder = tmp / f"{label}-{n}"
                    folder.mkdir()
                    batch = 1 if label == "before" and not before_rev else None
                    code = before_code if label == "before" else ROOT
                    seconds, records = time_build(main_job_recipe(folder, batch, code), code)
                    times[label].append(seconds)
                    print(f"  main job {label:6} run {n + 1}: {seconds:6.1f} s  ({records})", flush=True)
            what = f"code of {before_rev}" if before_rev else "batch_size 1"
            b, a = statistics.median(times["before"]), statistics.median(times["after"])
            print(f"main job: before ({what}) {b:.1f} s, after {a:.1f} s: {b / a:.2f}x faster")
        finally:
            if before_rev:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before_code)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16, help="requests per tokens/s measurement")
    parser.add_argument("--new-tokens", type=int, default=48, help="tokens generated per request")
    parser.add_argument("--repeats", type=int, default=2, help="main-job runs of each kind")
    parser.add_argument("--before-rev", help="time the main job of this git revision as 'before' (default: batch_size 1)")
    parser.add_argument("--skip-main-job", action="store_true")
    parser.add_argument("--skip-tokens", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.skip_tokens:
        base = None
        for batch_size in (1, 4, 8, 16):
            rate, mean_batch = tokens_per_second(batch_size, args.requests, args.new_tokens)
            base = base or rate
            print(f"batch_size {batch_size}: {rate:6.1f} tokens/s ({rate / base:.2f}x; mean batch {mean_batch:.1f})", flush=True)
    if not args.skip_main_job:
        main_job(args.repeats, args.before_rev)


if __name__ == "__main__":
    main()
