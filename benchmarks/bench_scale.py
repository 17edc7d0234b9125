"""Scale-out figures: filter throughput on more cores and on a Ray cluster, and how many LLM
requests one client process can drive.

    python benchmarks/bench_scale.py [--docs-per-file 100] [--files 4] [--requests 4000]

Prints:
  * filter docs/s (wall) of the default chain over the 10 shared corpora (each language cut
    into `--files` files of `--docs-per-file` documents: one task per file), with the local
    executor on 1 worker (in this process) and 2 worker processes, and with the Ray executor on
    a 2-node local cluster (`ray start --head` + `ray start --address`, one CPU each), plus the
    speed-up over 1 worker (the target on a 2-core machine is >= 1.8x for 2 workers);
  * the LLM client at saturation: `--requests` calls through CallRunner + the TGI backend
    against tests/tgi_server.py processes with many slots and a short latency (the server is
    never the limit), as requests/s and CPU milliseconds of the client process per request.
Wall-clock figures: run it on an otherwise idle machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import CORPORA, ROOT, tgi_servers

sys.path.insert(0, str(ROOT))

from xinstruction_dataset.execution.local import LocalExecutor  # noqa: E402
from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS, filter_languages  # noqa: E402
from xinstruction_dataset.languages import LANGUAGE_CODES  # noqa: E402
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend  # noqa: E402
from xinstruction_dataset.llm.cache import CallCache  # noqa: E402
from xinstruction_dataset.llm.calls import CallRunner  # noqa: E402
from xinstruction_dataset.recipe import Recipe  # noqa: E402


def write_corpus(root: Path, files: int, docs_per_file: int) -> Recipe:
    """Each language's shared corpus cycled into `files` files (ids made unique; repeated texts
    are exact duplicates, so dedup has work to do as on a web crawl)."""
    sources = []
    for code in LANGUAGE_CODES:
        rows = [json.loads(line) for line in open(CORPORA / f"{code}.jsonl", encoding="utf-8")]
        for part in range(files):
            path = root / code / f"part-{part}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                for i in range(docs_per_file):
                    row = rows[(part * docs_per_file + i) % len(rows)]
                    f.write(json.dumps({**row, "id": f"{code}-{part}-{i}"}, ensure_ascii=False) + "\n")
        sources.append({"path": str(root / code / "*.jsonl"), "language": code})
    return Recipe.from_dict({"name": "bench-scale", "sources": sources, "filters": DEFAULT_FILTERS, "output_dir": str(root / "run")})


def time_filter(corpus: Path, files: int, docs_per_file: int, executor) -> tuple[int, float]:
    """(documents, wall seconds) of one filter run of every language in a fresh output folder."""
    with tempfile.TemporaryDirectory(dir=corpus) as folder:
        recipe = write_corpus(Path(folder), files, docs_per_file)
        started = time.perf_counter()
        summaries = filter_languages(recipe, recipe.languages, executor=executor, progress=False)
        return sum(s.documents_in for s in summaries.values()), time.perf_counter() - started


def bench_filters(files: int, docs_per_file: int, ray_nodes: int) -> None:
    with tempfile.TemporaryDirectory() as corpus:
        corpus_path = Path(corpus)
        base = None
        for label, executor in (("local, 1 worker (in process)", LocalExecutor(workers=1)), ("local, 2 worker processes", LocalExecutor(workers=2))):
            docs, wall = time_filter(corpus_path, files, docs_per_file, executor)
            base = base or docs / wall
            print(f"filter  {label:<34} {docs:>6} docs  {wall:6.1f} s  {docs / wall:7.0f} docs/s  x{docs / wall / base:.2f}")
        if ray_nodes:
            from xinstruction_dataset.execution.local_cluster import LocalRayCluster
            from xinstruction_dataset.execution.ray_executor import RayExecutor

            cluster = LocalRayCluster(cpus_per_node=1).start(nodes=ray_nodes)
            try:
                cluster.wait_for_nodes(ray_nodes)
                docs, wall = time_filter(corpus_path, files, docs_per_file, RayExecutor(address=cluster.address))
                label = f"ray, {ray_nodes} nodes x 1 CPU"
                print(f"filter  {label:<34} {docs:>6} docs  {wall:6.1f} s  {docs / wall:7.0f} docs/s  x{docs / wall / base:.2f}")
            finally:
                cluster.stop()


def bench_client(requests: int, servers: int, slots: int, latency: float) -> None:
    with tgi_servers(servers, slots, latency) as urls:
        backend = build_backend({"backend": "tgi", "model": "bench/echo", "endpoints": urls, "max_concurrency": slots})
        params = GenerationParams(max_new_tokens=16)
        calls = ((i, LLMRequest(prompt=f"document {i} says hello", params=params)) for i in range(requests))
        with tempfile.TemporaryDirectory() as folder, CallCache(Path(folder) / "calls.sqlite") as cache:
            runner = CallRunner(backend, cache, progress=False)
            cpu, wall = time.process_time(), time.perf_counter()
            answered = sum(result.ok for result in runner.run(calls))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    limit = servers * slots / latency
    print(f"client  {answered}/{requests} requests, {servers} servers x {slots} slots x {latency * 1000:.0f} ms (server limit {limit:.0f} req/s): "
          f"{answered / wall:.0f} req/s, {cpu * 1000 / max(answered, 1):.2f} CPU-ms/request in the client process")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4, help="files (tasks) per language")
    parser.add_argument("--docs-per-file", type=int, default=100, help="documents per file")
    parser.add_argument("--ray-nodes", type=int, default=2, help="nodes of the local Ray cluster (0: skip Ray)")
    parser.add_argument("--requests", type=int, default=4000, help="LLM calls of the client measurement (0: skip)")
    parser.add_argument("--servers", type=int, default=2, help="TGI-protocol server processes")
    parser.add_argument("--slots", type=int, default=128, help="slots per server")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds per request on the server")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}")
    bench_filters(args.files, args.docs_per_file, args.ray_nodes)
    if args.requests:
        bench_client(args.requests, args.servers, args.slots, args.latency)


if __name__ == "__main__":
    main()
