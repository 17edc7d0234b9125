"""A hub source split into tasks: `xinstruction filter` on one `hf:<repo>:<config>` source of
`--files` Parquet files, served by the project's Hub-protocol server (tests/hub_server.py, in
this process, on 127.0.0.1), with 1 worker (in the command's process) and 2 worker processes.

    python benchmarks/bench_hub_sources.py [--files 8] [--docs-per-file 2500] [--repeats 5] [--settle 60]

Each run is the real command in a process of its own, with a fresh output folder and a fresh
Hugging Face cache (so every run lists the config and downloads its files, as a first run
does). The config's documents are the shared Swahili corpus cycled into the files (ids made
unique; repeated texts are exact duplicates, so the whole-language dedup has work to do), and
the chain is the default one. Runs are paired and repeated as in bench_scale.py: each repeat
runs both configurations, in an order that alternates, after a lull in the machine's other load;
the speed-up is the median ratio over the quiet repeats (the rest of the machine, this script's
own server thread excluded, used < 0.15 cores during both runs), every repeat's ratio beside it.
Target: >= 1.7x for 2 workers. Per run: `filter s` (summary.json `elapsed_s`: the listing, every
task with its download, the language's dedup and merge), `command s` (the whole command), and
`others` (cores the rest of the machine used meanwhile).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Read once, when huggingface_hub is imported: the local server speaks no Xet and is the only Hub.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from _common import CORPORA, ROOT  # noqa: E402
from bench_scale import QUIET_CORES, FilterRun, describe_load, is_quiet, machine_busy_s, wait_until_idle  # noqa: E402

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from xinstruction_dataset.filtering.pipeline import DEFAULT_FILTERS  # noqa: E402
from xinstruction_dataset.layout import RunLayout  # noqa: E402
from xinstruction_dataset.recipe import Recipe  # noqa: E402

REPO_ID = "bench/hub-corpus"
CONFIG = "sw"


def publish_corpus(url: str, files: int, docs_per_file: int) -> int:
    """The config `sw` of REPO_ID on the server at `url`: `files` Parquet files, one commit."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import CommitOperationAdd, HfApi

    rows = [json.loads(line) for line in open(CORPORA / f"{CONFIG}.jsonl", encoding="utf-8")]
    api = HfApi(endpoint=url, token=False)
    api.create_repo(REPO_ID, repo_type="dataset")
    operations = []
    for part in range(files):
        table = [{**rows[(part * docs_per_file + i) % len(rows)], "id": f"{CONFIG}-{part}-{i}"} for i in range(docs_per_file)]
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"], "url": r.get("url", "")} for r in table]), buffer)
        operations.append(CommitOperationAdd(f"{CONFIG}/train-{part:05d}-of-{files:05d}.parquet", buffer.getvalue()))
    card = f"---\nconfigs:\n- config_name: {CONFIG}\n  data_files: {CONFIG}/*.parquet\n---\n"
    operations.append(CommitOperationAdd("README.md", card.encode()))
    api.create_commit(REPO_ID, operations, commit_message="corpus", repo_type="dataset")
    return files * docs_per_file


def write_recipe(root: Path) -> Path:
    recipe = Recipe.from_dict({"name": "bench-hub", "sources": [{"path": f"hf:{REPO_ID}:{CONFIG}", "language": CONFIG}],
                               "filters": DEFAULT_FILTERS, "output_dir": str(root / "run")})
    path = root / "recipe.yaml"
    path.write_text(recipe.to_yaml(), encoding="utf-8")
    return path


def own_cpu_s() -> float:
    """CPU of this script (the Hub server's threads serve the downloads) and of its commands."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_filter(recipe: Path, output: Path, hf_home: Path, url: str, workers: int, files: int) -> FilterRun:
    command = [sys.executable, "-m", "xinstruction_dataset.cli", "filter", str(recipe), "--output-dir", str(output), "--no-progress", "--workers", str(workers)]
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env.update(PYTHONPATH=str(ROOT), HF_ENDPOINT=url, HF_HOME=str(hf_home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    busy, ours, started = machine_busy_s(), own_cpu_s(), time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    others = (machine_busy_s() - busy) - (own_cpu_s() - ours)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{result.stderr[-3000:]}")
    layout = RunLayout(output)
    tasks = len(list((layout.filtered(CONFIG) / "tasks").glob("task-*")))
    if tasks != files:
        raise RuntimeError(f"expected one task per data file ({files}), found {tasks}")
    summary = json.loads((layout.filtered(CONFIG) / "summary.json").read_text(encoding="utf-8"))
    return FilterRun(summary["documents_in"], summary["elapsed_s"], wall, max(others, 0.0) / wall)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8)
    # 20,000 documents, as bench_scale.py: the figure is the throughput, not the second or so of
    # worker start-up and listing that dominates a smaller run (8,000 documents: x1.61 median).
    parser.add_argument("--docs-per-file", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait at most for a lull before each repeat")
    args = parser.parse_args(argv)

    from hub_server import HubServer

    configs = {"1 worker (in process)": 1, "2 worker processes": 2}
    runs: dict[str, list[FilterRun]] = {label: [] for label in configs}
    with HubServer() as server, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        docs = publish_corpus(server.url, args.files, args.docs_per_file)
        recipe = write_recipe(root)
        print(f"hub source hf:{REPO_ID}:{CONFIG}: {args.files} Parquet files, {docs} documents, default chain", flush=True)
        for repeat in range(args.repeats):
            order = list(configs) if repeat % 2 == 0 else list(reversed(configs))
            wait_until_idle(args.settle)
            for number, label in enumerate(order):
                place = root / f"run-{repeat}-{number}"
                runs[label].append(run_filter(recipe, place / "out", place / "hf", server.url, configs[label], args.files))
            print(f"repeat {repeat + 1}: " + "; ".join(
                f"{label}: filter {run[-1].filter_s:.2f} s, command {run[-1].command_s:.2f} s, others {describe_load(run[-1].others)}"
                for label, run in runs.items()), flush=True)
    one, two = runs["1 worker (in process)"], runs["2 worker processes"]
    paired = [b.rate / a.rate for a, b in zip(one, two)]
    quiet = [ratio for ratio, a, b in zip(paired, one, two) if is_quiet(a) and is_quiet(b)]
    for label, measured in runs.items():
        print(f"filter  {label:<24} {measured[0].docs:>6} docs  {statistics.median(r.rate for r in measured):6.0f} docs/s (median of all runs)")
    print(f"speed-up, 2 workers over 1: x{statistics.median(quiet or paired):.2f} ({len(quiet)} of {len(paired)} repeats quiet "
          f"(others < {QUIET_CORES} cores){'' if quiet else ': none quiet, median of all'}; every repeat [{' '.join(f'{r:.2f}' for r in paired)}]; "
          f"best runs x{max(r.rate for r in two) / max(r.rate for r in one):.2f}); target >= 1.7")


if __name__ == "__main__":
    main()
