"""Scale-out figures: filter throughput on more cores and on a Ray cluster, and how many LLM
requests one client process can drive.

    python benchmarks/bench_scale.py [--docs-per-file 250] [--files 8] [--repeats 5] [--requests 4000]

Prints:
  * filter docs/s of the default chain over the 10 shared corpora (each language cut into
    `--files` files of `--docs-per-file` documents: one task per file), measured on what the user
    runs: the `xinstruction filter <recipe> --workers N` command, in a process of its own and a
    fresh output folder each time. With the local executor on 1 worker (in the command's own
    process) and 2 worker processes, then with the Ray executor on a 2-node local cluster
    (`ray start --head` + `ray start --address`, one CPU each), started after the local runs so
    its daemons do not load the machine during them. The machine may be shared, so the runs are
    paired and repeated: each repeat runs every configuration of its phase once (the Ray phase
    pairs Ray with 1 worker again), in an order that alternates between repeats, after a lull
    in the machine's other load (`--settle`). The speed-up is the median ratio to the 1-worker
    run of the same repeat over the quiet repeats (the rest of the machine used < 0.15 cores
    during both runs), every repeat's ratio and the best runs' ratio beside it (the target on a
    2-core machine is >= 1.8x for 2 workers). Per run: `filter s` (the command's own timer,
    summary.json `elapsed_s`: planning, every task and every language's dedup and merge),
    `command s` (the whole command: interpreter start, imports, exit), and `others` (CPU the rest
    of the machine used meanwhile, in cores, from /proc/stat less this script's commands and the
    Ray cluster's daemons; unknown for a Ray run, whose worker processes end with the job before
    their CPU can be read: a Ray repeat is quiet when its 1-worker run was).
  * the LLM client at saturation: `--requests` calls through CallRunner + the TGI backend
    against tests/tgi_server.py processes with many slots and a short latency (the server is
    never the limit), as requests/s and CPU milliseconds of the client process per request.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import CORPORA, ROOT, tgi_servers

sys.path.insert(0, str(ROOT))

from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS  # noqa: E402
from xinstruction_dataset.languages import LANGUAGE_CODES  # noqa: E402
from xinstruction_dataset.layout import RunLayout  # noqa: E402
from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend  # noqa: E402
from xinstruction_dataset.llm.cache import CallCache  # noqa: E402
from xinstruction_dataset.llm.calls import CallRunner  # noqa: E402
from xinstruction_dataset.recipe import Recipe  # noqa: E402


def write_corpus(root: Path, files: int, docs_per_file: int) -> Path:
    """Each language's shared corpus cycled into `files` files (ids made unique; repeated texts
    are exact duplicates, so dedup has work to do as on a web crawl); returns the recipe file."""
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
    recipe = Recipe.from_dict({"name": "bench-scale", "sources": sources, "filters": DEFAULT_FILTERS, "output_dir": str(root / "run")})
    path = root / "recipe.yaml"
    path.write_text(recipe.to_yaml(), encoding="utf-8")
    return path


@dataclass
class FilterRun:
    docs: int
    filter_s: float  # the command's own timer (summary.json elapsed_s)
    command_s: float  # the whole command, as the user waits for it
    others: float | None  # cores the rest of the machine used meanwhile (None: cannot be told)

    @property
    def rate(self) -> float:
        return self.docs / self.filter_s


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent not idle since boot (steal included)."""
    user, nice, system, idle, iowait, *rest = (int(x) for x in open("/proc/stat").readline().split()[1:])
    return (user + nice + system + sum(rest)) / os.sysconf("SC_CLK_TCK")


def our_cpu_s(cluster=None) -> float:
    """CPU seconds of the commands this script ran and waited for (their workers included) and
    of the Ray cluster's processes (daemons and Ray workers: not children of this script)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + (cluster_cpu_s(cluster) if cluster else 0.0)


def cluster_cpu_s(cluster) -> float:
    import psutil

    total = 0.0
    for node in cluster.nodes:
        for process in node.processes():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # ended between the listing and the reading
            total += times.user + times.system + times.children_user + times.children_system
    return total


def wait_until_idle(limit_s: float, cores: float = 0.3) -> float:
    """Wait (at most `limit_s`) until the rest of the machine uses under `cores` over one second;
    the load seen last. A shared machine's other jobs come and go: a repeat starts in a lull."""
    deadline = time.monotonic() + limit_s
    while True:
        busy = machine_busy_s()
        time.sleep(1.0)
        load = machine_busy_s() - busy
        if load < cores or time.monotonic() >= deadline:
            return load
        time.sleep(2.0)


def run_filter(recipe: Path, output: Path, executor_args: list[str], cluster=None) -> FilterRun:
    command = [sys.executable, "-m", "xinstruction_dataset.cli", "filter", str(recipe), "--output-dir", str(output), "--no-progress", *executor_args]
    busy, ours, started = machine_busy_s(), our_cpu_s(cluster), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    others = (machine_busy_s() - busy) - (our_cpu_s(cluster) - ours)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{result.stderr[-3000:]}")
    summaries = [json.loads((RunLayout(output).filtered(code) / "summary.json").read_text()) for code in LANGUAGE_CODES]
    # Ray's worker processes end with the job, before their CPU can be read: a Ray run's
    # `others` would count them, so it is left unknown.
    known = "--ray-address" not in executor_args
    return FilterRun(sum(s["documents_in"] for s in summaries), max(s["elapsed_s"] for s in summaries), wall, max(others, 0.0) / wall if known else None)


def bench_filters(files: int, docs_per_file: int, repeats: int, ray_nodes: int, settle_s: float) -> None:
    """The local runs first, then (its daemons would load the machine during the local runs)
    the Ray runs on a cluster started for them, each paired with a 1-worker run again."""
    local = {"local, 1 worker (in process)": ["--workers", "1"], "local, 2 worker processes": ["--workers", "2"]}
    with tempfile.TemporaryDirectory() as folder:
        recipe = write_corpus(Path(folder), files, docs_per_file)
        phases = [measure(recipe, Path(folder) / "local", local, repeats, settle_s)]
        if ray_nodes:
            from xinstruction_dataset.execution.local_cluster import LocalRayCluster

            cluster = LocalRayCluster(cpus_per_node=1).start(nodes=ray_nodes)
            try:
                cluster.wait_for_nodes(ray_nodes)
                configs = {next(iter(local)): local[next(iter(local))], f"ray, {ray_nodes} nodes x 1 CPU": ["--ray-address", cluster.address]}
                phases.append(measure(recipe, Path(folder) / "ray", configs, repeats, settle_s, cluster))
            finally:
                cluster.stop()
    print_filter_table(phases)


def measure(recipe: Path, folder: Path, configs: dict[str, list[str]], repeats: int, settle_s: float, cluster=None) -> dict[str, list[FilterRun]]:
    runs: dict[str, list[FilterRun]] = {label: [] for label in configs}
    for repeat in range(repeats):
        order = list(configs) if repeat % 2 == 0 else list(reversed(configs))
        wait_until_idle(settle_s)
        for number, label in enumerate(order):
            runs[label].append(run_filter(recipe, folder / f"run-{repeat}-{number}", configs[label], cluster))
        print(f"repeat {repeat + 1}: " + "; ".join(
            f"{label.split(' (')[0]}: filter {run[-1].filter_s:.2f} s, command {run[-1].command_s:.2f} s, others {describe_load(run[-1].others)}"
            for label, run in runs.items()), flush=True)
    return runs


QUIET_CORES = 0.15  # a run counts as quiet when the rest of the machine used less meanwhile


def print_filter_table(phases: list[dict[str, list[FilterRun]]]) -> None:
    """Per configuration: its docs/s (median of its quiet runs, all runs when none was quiet) and
    the speed-up over 1 worker: the median ratio to the 1-worker run of the same repeat, over the
    repeats where both runs were quiet (a Ray run's own load is unknown: its 1-worker run's),
    so neither another job nor the slow drift of a shared machine between repeats enters it;
    beside it every repeat's ratio and the best runs' ratio (contention only ever slows a run)."""
    base_label = next(iter(phases[0]))
    base = [run for phase in phases for run in phase[base_label]]
    rows = {base_label: (base, base)} | {label: (measured, phase[base_label]) for phase in phases for label, measured in phase.items() if label != base_label}
    for label, (measured, pairs) in rows.items():
        paired = [run.rate / one.rate for run, one in zip(measured, pairs)]
        quiet = [ratio for ratio, run, one in zip(paired, measured, pairs) if is_quiet(one) and (run.others is None or is_quiet(run))]
        speedup = statistics.median(quiet or paired)
        best = max(run.rate for run in measured) / max(one.rate for one in base)
        print(
            f"filter  {label:<30} {measured[0].docs:>6} docs  {quiet_median_rate(measured):6.0f} docs/s  x{speedup:.2f}"
            f"  ({len(quiet)} of {len(paired)} repeats quiet (others < {QUIET_CORES} cores); every repeat [{' '.join(f'{r:.2f}' for r in paired)}];"
            f" best runs x{best:.2f}; whole command median {statistics.median(run.command_s for run in measured):.1f} s)"
        )


def is_quiet(run: FilterRun) -> bool:
    return run.others is not None and run.others < QUIET_CORES


def describe_load(others: float | None) -> str:
    return f"{others:.2f} cores" if others is not None else "unknown (Ray workers)"


def quiet_median_rate(measured: list[FilterRun]) -> float:
    quiet = [run for run in measured if is_quiet(run)] or measured
    return statistics.median(run.rate for run in quiet)


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
    # 20,000 documents: about 20 s on one core at today's chain speed, so the figure is the
    # throughput and not the ~1 s a worker process takes to start (interpreter, imports, profiles).
    parser.add_argument("--files", type=int, default=8, help="files (tasks) per language")
    parser.add_argument("--docs-per-file", type=int, default=250, help="documents per file")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the filter measurement (each runs every configuration once)")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait at most, before each repeat, for the rest of the machine to go idle (0: no wait)")
    parser.add_argument("--ray-nodes", type=int, default=2, help="nodes of the local Ray cluster (0: skip Ray)")
    parser.add_argument("--requests", type=int, default=4000, help="LLM calls of the client measurement (0: skip)")
    parser.add_argument("--servers", type=int, default=2, help="TGI-protocol server processes")
    parser.add_argument("--slots", type=int, default=128, help="slots per server")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds per request on the server")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}")
    print(f"load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    bench_filters(args.files, args.docs_per_file, args.repeats, args.ray_nodes, args.settle)
    if args.requests:
        bench_client(args.requests, args.servers, args.slots, args.latency)


if __name__ == "__main__":
    main()
