"""What filtering leaves on disk, and what stands between its last task and curation.

    python benchmarks/bench_filtered_storage.py [--docs 20000 200000] [--files 8] [--workers 2]
        [--chain default|light] [--old-worktree /path/to/a/checkout/of/the/old/code]

For each corpus size, one language (Swahili) is generated from the shared corpus into `--files`
JSONL files, as a crawl looks to dedup: each document the corpus's words of one paragraph in a
seeded order (so texts are distinct), 10% of them a re-cased exact copy of an earlier one, 5% a
near copy (a few words changed), and every 500th id repeated. Then the real command,
`xinstruction filter RECIPE --workers N`, runs in a process of its own into a fresh folder, with
this checkout (the new path) and, given `--old-worktree`, with that checkout on the same corpus
(its PYTHONPATH), and prints per run:

  * bytes under filtered/ per input byte: every file of the run's `filtered/` (task outputs,
    rejects, signatures, the language's files) over the input's bytes;
  * reduce s: from the last filter task's end (the newest task marker, `done.json`, mtime) to
    the end of filtering's reduce (the newest file of the language folder outside `tasks/`,
    mtime: the manifest on the new path, the merged kept.jsonl / summary.json on the old). This
    is what stands between the last task and curation's first request: curation opens the
    manifest and streams the first task's first line at once (`first document s`);
  * command s: the whole command.

Then the new path's language reduce is run again alone in a process of its own over the largest
run's tasks (it reads `ids.json`, `digests.npy` and `signatures.npy` only; the signatures, dropped
after the manifest, are made again first by the finished tasks, timed apart), for its time and
peak memory (what it allocates, traced by tracemalloc, numpy's arrays included; its max RSS also
counts the memory-mapped signatures' pages, which are page cache), extrapolated linearly to 10 M
documents.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CORPORA, ROOT

sys.path.insert(0, str(ROOT))

LANGUAGE = "sw"
LIGHT_CHAIN = [{"type": "length", "min_chars": 200, "max_chars": 20000}, {"type": "dedup"}]


def write_corpus(folder: Path, docs: int, files: int, seed: int = 7) -> int:
    """The generated corpus (see the module docstring); returns its bytes."""
    rows = [json.loads(line) for line in open(CORPORA / f"{LANGUAGE}.jsonl", encoding="utf-8")]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sinks = [open(folder / f"part-{i:03d}.jsonl", "w", encoding="utf-8") for i in range(files)]
    texts: list[str] = []
    try:
        for i in range(docs):
            roll = rng.random()
            if texts and roll < 0.10:
                text = rng.choice(texts).upper()
            elif texts and roll < 0.15:
                words = rng.choice(texts).split()
                for _ in range(3):
                    words[rng.randrange(len(words))] = rng.choice(words)
                text = " ".join(words)
            else:
                words = rows[i % len(rows)]["text"].split()
                rng.shuffle(words)
                text = " ".join(words)
                if len(texts) < 5000:
                    texts.append(text)
                else:
                    texts[rng.randrange(len(texts))] = text
            doc_id = f"{LANGUAGE}-{i:08d}" if i % 500 != 499 else f"{LANGUAGE}-{i - 1:08d}"
            sinks[i * files // docs].write(json.dumps({"id": doc_id, "text": text, "url": rows[i % len(rows)].get("url", "")}, ensure_ascii=False) + "\n")
    finally:
        for sink in sinks:
            sink.close()
    return sum(path.stat().st_size for path in folder.iterdir())


def write_recipe(folder: Path, sources: Path, chain: list[dict]) -> Path:
    import yaml

    recipe = {"name": "bench-storage", "languages": [LANGUAGE], "sources": [{"path": str(sources / "*.jsonl"), "language": LANGUAGE}], "filters": chain}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def run_filter(code: Path, recipe: Path, output: Path, workers: int) -> dict[str, float]:
    command = [sys.executable, "-m", "xinstruction_dataset.cli", "filter", str(recipe), "--output-dir", str(output), "--no-progress", "--workers", str(workers)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=code, env={**os.environ, "PYTHONPATH": str(code)})
    command_s = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` in {code} failed:\n{result.stderr[-3000:]}")
    filtered = output / "filtered"
    language = filtered / LANGUAGE
    last_task = max(path.stat().st_mtime for path in language.glob("tasks/*/done.json"))
    reduce_end = max(path.stat().st_mtime for path in language.iterdir() if path.is_file())
    summary = json.loads((language / "summary.json").read_text())
    return {
        "bytes": sum(path.stat().st_size for path in filtered.rglob("*") if path.is_file()),
        "reduce_s": reduce_end - last_task,
        "command_s": command_s,
        "kept": summary["kept"],
        "first_document_s": first_document_s(code, language),
    }


def first_document_s(code: Path, language: Path) -> float:
    """Seconds from opening the language's filtered documents to the first one, as curation
    reads them (in a process of `code`)."""
    probe = (
        "import sys, time\nfrom pathlib import Path\n"
        "try:\n    from xinstruction_dataset.filtering.kept import open_kept\n"
        "    start = time.perf_counter(); next(iter(open_kept(Path(sys.argv[1])).documents()))\n"
        "except ImportError:\n    from xinstruction_dataset.filtering.runner import read_documents\n"
        "    start = time.perf_counter(); next(iter(read_documents(Path(sys.argv[1]) / 'kept.jsonl')))\n"
        "print(time.perf_counter() - start)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(language)], capture_output=True, text=True, cwd=code,
                         env={**os.environ, "PYTHONPATH": str(code)}, check=True)
    return float(out.stdout.strip())


REDUCE_PROBE = r"""
import json, resource, sys, time, tracemalloc
from pathlib import Path
from xinstruction_dataset.filtering.pipeline import plan_tasks, reduce_language
from xinstruction_dataset.filtering.tasks import run_filter_task
from xinstruction_dataset.recipe import Recipe
recipe = Recipe.from_yaml(sys.argv[1]).model_copy(update={"output_dir": sys.argv[2]})
out = Path(sys.argv[2]) / "filtered" / sys.argv[3]
tasks = plan_tasks(recipe, sys.argv[3], out)
start = time.perf_counter()
results = [run_filter_task(task) for task in tasks]  # finished: each signs its kept documents again (dropped after the manifest)
sign_s = time.perf_counter() - start
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
summary, manifest = reduce_language(tasks, results, out)
seconds = time.perf_counter() - start
tracemalloc.start()  # again, traced (several times slower): what it allocates
reduce_language(tasks, results, out)
allocated = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": seconds, "sign_s": sign_s, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base,
                  "allocated_kb": allocated / 1024,
                  "documents": sum(r["summary"]["kept"] for r in results), "removed": manifest["removals"]["count"]}))
"""


def reduce_alone(recipe: Path, output: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", REDUCE_PROBE, str(recipe), str(output), LANGUAGE], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chain", choices=["default", "light"], default="default", help="the default chain, or length + dedup only (faster)")
    parser.add_argument("--old-worktree", type=Path, help="a checkout of the old code (e.g. `git worktree add ../old 28cb09a`)")
    args = parser.parse_args()
    from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS

    chain = DEFAULT_FILTERS if args.chain == "default" else LIGHT_CHAIN
    codes = {"new": ROOT} | ({"old": args.old_worktree.resolve()} if args.old_worktree else {})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        alone = None
        print(f"{'docs':>8} {'code':<4} {'input MB':>9} {'filtered MB':>12} {'x input':>8} {'kept':>8} {'reduce s':>9} {'first doc s':>12} {'command s':>10}")
        for docs in args.docs:
            sources = folder / f"sources-{docs}"
            input_bytes = write_corpus(sources, docs, args.files)
            recipe = write_recipe(folder, sources, chain)
            for name, code in codes.items():
                output = folder / f"run-{docs}-{name}"
                run = run_filter(code, recipe, output, args.workers)
                print(f"{docs:>8} {name:<4} {input_bytes / 1e6:>9.1f} {run['bytes'] / 1e6:>12.1f} {run['bytes'] / input_bytes:>7.2f}x {run['kept']:>8}"
                      f" {run['reduce_s']:>9.2f} {run['first_document_s']:>12.4f} {run['command_s']:>10.1f}", flush=True)
                if name == "new" and docs == max(args.docs):
                    alone = reduce_alone(recipe, output)
                shutil.rmtree(output)  # keep the disk in use small
            shutil.rmtree(sources)
        if alone is not None:
            scale = 10_000_000 / max(alone["documents"], 1)
            print(f"\nthe new path's language reduce alone (ids and signatures only): {alone['documents']} documents, {alone['removed']} removed, "
                  f"{alone['seconds']:.2f} s, peak allocated {alone['allocated_kb'] / 1024:.0f} MB"
                  f" (max RSS +{alone['peak_kb'] / 1024:.0f} MB: that counts the memory-mapped signatures' pages, page cache); at 10 M"
                  f" documents (linear): ~{alone['seconds'] * scale / 60:.0f} min, ~{alone['allocated_kb'] * scale / 1024 / 1024:.1f} GB allocated"
                  f" (signing the tasks' documents again, needed only when a later reduce runs: {alone['sign_s']:.2f} s on one core)")


if __name__ == "__main__":
    main()
