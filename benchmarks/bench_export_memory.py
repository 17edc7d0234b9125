"""Peak memory of building + exporting N synthetic X-Instruction records to a hub-ready folder.

Each size runs in a fresh child process (peak RSS is per process), on shards written in a
streamed way beforehand. Flat memory means the 1M figure is close to the 100k figure.

    python benchmarks/bench_export_memory.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARD_ROWS = 100_000


def write_synthetic_shards(folder: Path, language: str, count: int, seed: int = 0) -> None:
    """Paper-like sizes: instruction ~100 chars, output ~1,100 chars; varied so Parquet can't cheat."""
    from xinstruction_dataset.records import Provenance, Record, ShardWriter

    rng = random.Random(seed)
    words = [f"neno{i}" for i in range(5000)]
    target = folder / language
    for shard in range(0, count, SHARD_ROWS):
        with ShardWriter(target / f"shard-{shard // SHARD_ROWS:05d}.jsonl") as writer:
            for i in range(shard, min(shard + SHARD_ROWS, count)):
                writer.write(
                    Record(
                        id=f"{language}-{i:09d}",
                        instruction=" ".join(rng.choices(words, k=14)),
                        output=" ".join(rng.choices(words, k=150)),
                        language=language,
                        provenance=Provenance(source_id=f"doc-{i}", label="good", refinement_round=i % 3, cluster_id=i),
                    )
                )


class PeakSampler(threading.Thread):
    """Samples /proc/self/status: RssAnon is the process's own heap (what must stay flat);
    RssFile counts pages of memory-mapped Arrow files, which the kernel can drop at will."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval, self.peak = interval, {"RssAnon": 0, "RssFile": 0}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for line in Path("/proc/self/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(value.split()[0]) // 1024)


def child(args: argparse.Namespace) -> None:
    from xinstruction_dataset.hub.export import export_language

    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    result = export_language(args.folder, "sw", data_dir=args.data_dir, cache_dir=args.cache_dir, progress=False)
    sampler.stopped.set()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": result.num_examples, "files": len(result.files), "seconds": time.perf_counter() - start,
                      "peak_rss_mb": peak_mb, "peak_anon_mb": sampler.peak["RssAnon"], "peak_file_mb": sampler.peak["RssFile"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-export-"))
    print(f"{'records':>10} {'files':>6} {'seconds':>9} {'peak RSS MB':>12} {'peak anon MB':>13} {'peak file-backed MB':>20}")
    try:
        for size in args.sizes:
            run_dir = work / str(size)
            write_synthetic_shards(run_dir / "curated", "sw", size)
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--folder", str(run_dir / "x-instruction"),
                 "--data-dir", str(run_dir / "curated"), "--cache-dir", str(run_dir / "cache")],
                check=True, capture_output=True, text=True,
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{figures['records']:>10} {figures['files']:>6} {figures['seconds']:>9.1f} {figures['peak_rss_mb']:>12.0f}"
                  f" {figures['peak_anon_mb']:>13} {figures['peak_file_mb']:>20}", flush=True)
            shutil.rmtree(run_dir)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
