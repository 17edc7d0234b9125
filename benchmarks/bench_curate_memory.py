"""Peak memory of `xinstruction curate` at 3,000 and 30,000 documents of one language: curation
should stream (its memory flat in the corpus size), so the ratio's target is < 1.2x.

The real commands run as subprocesses: `xinstruction filter RECIPE` (not measured), then
`xinstruction curate RECIPE --no-progress`, against a TGI-protocol server process
(tests/tgi_server.py, `--reply curation`: the judge sends --needs-refinement of the pairs back,
refine.rounds 2) with no service time, so the run is as short as the client allows. Documents are
real sw text from shared/corpora, cycled to the count (unique ids, repeats numbered). Diversify
embeds with the packaged MiniLM and picks `--target-size` pairs (the same k for both sizes).

Two figures per size:
- tree peak: the largest sum of RSS over the curate process and all its descendants, polled
  every 50 ms with psutil (what the machine must have);
- largest process: ru_maxrss of RUSAGE_CHILDREN of a fresh wrapper process (the biggest single
  process of the tree, exact, not sampled).

    . .venv/bin/activate
    python benchmarks/bench_curate_memory.py            # 3,000 and 30,000 documents
    python benchmarks/bench_curate_memory.py --quick    # 300 and 3,000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

from _common import tgi_servers, write_corpus, xinstruction_command

LANGUAGE = "sw"
TARGET = 1.2
WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'w'), stderr=subprocess.STDOUT).returncode\n"
    "print(json.dumps({'code': code, 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure_curate(recipe: Path, log: Path) -> dict:
    """Run curate under the wrapper; poll the tree's RSS until it exits."""
    started = time.monotonic()
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, str(log), xinstruction_command(), "curate", str(recipe),
                                "--no-progress"], stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        root = psutil.Process(wrapper.pid)
        while not done.is_set():
            try:
                children = root.children()  # the curate process and its descendants, not the wrapper
                peak = max(peak, sum(tree_rss(child) for child in children))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, _ = wrapper.communicate()
    done.set()
    poller.join()
    result = json.loads(out.strip().splitlines()[-1])
    return {"code": result["code"], "tree_peak": peak, "largest": result["maxrss_kib"] * 1024,
            "seconds": time.monotonic() - started}


def run_size(folder: Path, documents: int, args: argparse.Namespace) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(LANGUAGE, documents, folder / "corpus" / f"{LANGUAGE}.jsonl")
    server = ["--reply", "curation", "--needs-refinement", str(args.needs_refinement), "--bad", str(args.bad),
              "--max-input-tokens", "8192", "--max-total-tokens", "16384"]
    with tgi_servers(1, args.slots, 0.0, *server) as urls:
        recipe = folder / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "name": "bench-curate-memory",
            "languages": [LANGUAGE],
            "sources": [{"path": str(corpus), "language": LANGUAGE}],
            "filters": [{"type": "length", "min_chars": 100, "max_chars": 100000}],
            "output_dir": str(folder / "run"),
            "curation": {
                "models": {"generator": {"backend": "tgi", "model": "bench/curation-model", "endpoints": urls}},
                "generate": {"candidates": 1},
                "refine": {"rounds": 2},
                "diversify": {"target_size": args.target_size},
            },
        }), encoding="utf-8")
        with open(folder / "filter.log", "w") as log:
            filtered = subprocess.run([xinstruction_command(), "filter", str(recipe), "--no-progress"], stdout=log,
                                      stderr=subprocess.STDOUT)
        if filtered.returncode != 0:
            return {"documents": documents, "error": f"filter failed (exit {filtered.returncode}; {folder / 'filter.log'})"}
        result = measure_curate(recipe, folder / "curate.log")
    result["documents"] = documents
    if result["code"] != 0:
        tail = (folder / "curate.log").read_text(errors="replace").strip().splitlines()[-2:]
        result["error"] = f"curate failed (exit {result['code']}): {' | '.join(tail)}"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 and 3,000 documents")
    parser.add_argument("--sizes", default="3000,30000", help="document counts; the ratio is last over first")
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--needs-refinement", type=float, default=0.3)
    parser.add_argument("--bad", type=float, default=0.2)
    parser.add_argument("--target-size", type=int, default=500, help="diversify.target_size (k) for every size")
    parser.add_argument("--keep", type=Path, help="keep work folders here")
    args = parser.parse_args(argv)
    sizes = [300, 3000] if args.quick else [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-curate-memory-") as temporary:
        work = args.keep or Path(temporary)
        results = []
        for documents in sizes:
            results.append(run_size(work / f"docs-{documents}", documents, args))
            r = results[-1]
            print(f"{documents} documents: " + (r["error"] if "error" in r else
                  f"tree peak {r['tree_peak'] / 2**20:.0f} MiB, largest process {r['largest'] / 2**20:.0f} MiB, "
                  f"{r['seconds']:.0f} s"), flush=True)
    print()
    print(f"{'documents':>10}  {'tree peak MiB':>13}  {'largest process MiB':>19}  {'curate s':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['documents']:>10}  {r['error']}")
        else:
            print(f"{r['documents']:>10}  {r['tree_peak'] / 2**20:>13.0f}  {r['largest'] / 2**20:>19.0f}  {r['seconds']:>8.0f}")
    ok = [r for r in results if "error" not in r]
    if len(ok) == len(results) >= 2:
        first, last = ok[0], ok[-1]
        for name, key in (("tree peak", "tree_peak"), ("largest process", "largest")):
            ratio = last[key] / first[key]
            print(f"{name}: {last['documents']} / {first['documents']} documents = {ratio:.2f}x "
                  f"(target < {TARGET}x: {'ok' if ratio < TARGET else 'MISSED'})")
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
