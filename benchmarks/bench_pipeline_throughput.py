"""How busy `xinstruction build` keeps TGI endpoints, end to end: the real command, as a subprocess,
against TGI-protocol server processes (tests/tgi_server.py), beside distilabel's two-step pipeline.

Each endpoint is a `tests/tgi_server.py` process (its own interpreter: the client never shares a
GIL with it) with `--slots` slots; a request's service time is `--latency` seconds (`fixed`), or
drawn from a log-normal distribution with that mean and shape `--sigma` (`lognormal`). Its model
is `curation_reply`: English instructions that pass the generator's checks, and a judge that
answers needs_refinement for `--needs-refinement` of the pairs and bad for `--bad` of them (the
rest good), chosen by hashing the prompt, so a pair's label is the same on every run. Recipes
have `refine.rounds: 2`, one candidate per document, a filter chain of just `length` (documents
are real text from shared/corpora, cycled to reach the counts with ids made unique and a counter
appended to repeated texts), and the packaged MiniLM embedder for diversify.

Figures, per scenario and service-time distribution:

- share: busy-slot-seconds / (slots x span), summed over the endpoints, where the span runs from
  the first request's arrival at any server to the last answer from any (the servers log the
  arrival, start and end of service of every request; `GET /stats`). Slots serve FIFO, so a slot
  idles only when no request is waiting: share is the fraction of the servers' capacity the client
  used while it had work. It equals achieved requests/s over the limit slots / (mean service
  time), taking the mean of the service times drawn (with `fixed`, exactly `--latency`).
- outside: wall seconds outside that span: process start to the first request (start-up,
  filtering) plus the last answer to process exit (diversify's embeddings, export).

- req/s: requests answered / span; CPU-ms/req: each labelling driver's CPU time within the span
  (sampled from /proc: the build process with one driver, its K busiest worker processes with K)
  over the requests it made (the paid rows of its call-cache file).

Scenarios (targets from the issues; 4 is the bar for 1-3 to beat):

  1  10 languages x 300 documents, 1 endpoint                      share >= 0.95
  2  1 language (sw) x 3,000 documents, 1 endpoint                 share >= 0.95
  3  10 languages x 300 documents, 2 endpoints (two processes)     share >= 0.93
  5  as 1, on a server that queues nothing past its 32 slots       share >= 0.96, 1 driver and 2
     (`--max-concurrent-requests` = slots, as llama.cpp's total_slots: the client holds exactly
     the slots, so any time a slot waits for the client's next request is lost; TGI's queue of
     128 in 1-3 hides it)
  6  as 2, on that server                                          share >= 0.96, 1 driver and 2
  7  10 languages x 300, 2 drivers (`curation.drivers: 2`), 2 endpoints   share >= 0.95
  8  a client-bound fleet: 4 servers x 128 slots x 10 ms (fixed), 10 languages x 300,
     1 driver vs 2: requests/s with 2 >= 1.4 x with 1; CPU-ms per request of each driver
  9  as 1, the server started by the tool (`serve:` with tests/tgi_server.py as its command):
     the time from `build` start to the server published and to its first request (the server
     stops with the run, so its request log is read while it runs: no share)
  4  distilabel 1.5 Pipeline: LoadDataFromDicts -> TextGeneration (the instruction prompt) ->
     TextGeneration (the three-level judge prompt), InferenceEndpointsLLM on the chat route (no
     tokenizer here), as many rows as scenario 2; input batch sizes --distilabel-batches are tried
     with fixed service times and the best is run with log-normal ones. No refinement rounds:
     two requests a row. Both steps run at once (one process each), so up to 2 x batch requests
     are in flight; past TGI's queue (128) the server answers 429, which distilabel does not
     retry: a run that leaves rows unlabelled is shown with that note and is not its best.

    . .venv/bin/activate
    python benchmarks/bench_pipeline_throughput.py --quick              # smoke run, ~1 minute
    python benchmarks/bench_pipeline_throughput.py                      # everything (~15 min)
    python benchmarks/bench_pipeline_throughput.py --scenario 2 --service-time fixed
    python benchmarks/bench_pipeline_throughput.py --scenario 5 --scenario 6 --scenario 7 --scenario 8 \
        --service-time lognormal                                        # issue 19's figures

distilabel runs in its own virtual environment (its pins clash with ours):

    python -m venv .venv-distilabel
    .venv-distilabel/bin/pip install "distilabel[hf-inference-endpoints]" requests beautifulsoup4

(beautifulsoup4: distilabel 1.5.3 imports it on the way and, without it, silently labels nothing.)
To measure another commit's engine, put an export of it first on PYTHONPATH (the `xinstruction`
command runs outside the checkout, so it imports from there):

    git archive COMMIT | tar -x -C /tmp/xi && PYTHONPATH=/tmp/xi python benchmarks/bench_pipeline_throughput.py

Peak memory of `xinstruction curate` is measured by benchmarks/bench_curate_memory.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import threading
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from _common import (ROOT, TGI_DEFAULT_QUEUE, TGI_SERVER, busy_slots, combined_stats, default_distilabel_python, distilabel_unavailable, tgi_servers,
                     write_corpus, xinstruction_command)

ALL_LANGUAGES = ["fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur"]
SINGLE_LANGUAGE = "sw"
SERVICE_TIMES = ("fixed", "lognormal")
# Long documents (3000 characters of Thai or Tamil are ~9 kB) fit, as on a real TGI deployment.
SERVER_CONTEXT = ("--max-input-tokens", "8192", "--max-total-tokens", "16384")
GENERATE_PROMPT = ROOT / "xinstruction_dataset" / "curation" / "generate" / "prompts" / "instruction_v1.txt"
JUDGE_PROMPT = ROOT / "xinstruction_dataset" / "curation" / "judge" / "prompts" / "judge_three_level_v1.txt"


@dataclass
class Scenario:
    key: str
    title: str
    languages: list[str]
    docs_per_language: int
    endpoints: int = 1
    target: float | None = None
    distilabel: bool = False
    drivers: tuple[int, ...] = (1,)  # `curation.drivers` of each run
    queue: int | None = None  # the servers' max_concurrent_requests (None: TGI's 128)
    slots: int | None = None  # per server (None: --slots)
    latency: float | None = None  # mean service time (None: --latency)
    services: tuple[str, ...] | None = None  # service-time kinds it runs with (None: --service-time)
    managed: bool = False  # the tool starts the server (`serve:`)


@dataclass
class Row:
    scenario: str
    service: str
    docs: int
    requests: int = 0
    span: float | None = None
    share: float | None = None
    before: float | None = None  # process start -> first request
    after: float | None = None  # last answer -> process exit
    wall: float = 0.0
    target: str = ""
    note: str = ""
    drivers: int = 1
    cpu_ms: list[float] = field(default_factory=list)  # per driver: CPU-ms per request within the span
    slots: int = 0  # of all servers
    first_busy: float | None = None  # mean slots serving in the span's first START_S
    steady_busy: float | None = None  # ... from then to END_S before its end
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.requests / self.span if self.span else None

    def cells(self) -> list[str]:
        def num(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        outside = None if self.before is None or self.after is None else self.before + self.after
        cpu = "/".join(format(c, ".2f") for c in self.cpu_ms) or "-"
        return [self.scenario, self.service, str(self.drivers), str(self.docs), str(self.requests), num(self.span, ".1f"),
                num(self.rate, ".0f"), num(self.share, ".3f"), self.target,
                f"{num(self.first_busy, '.1f')} / {num(self.steady_busy, '.1f')} of {self.slots}", cpu, num(outside, ".1f"),
                f"{num(self.before, '.1f')} + {num(self.after, '.1f')}", num(self.wall, ".1f"), self.note]


HEADER = ["scenario", "service", "drivers", "docs", "requests", "span s", "req/s", "share", "target",
          "busy first 5 s / steady", "CPU-ms/req", "outside s", "(start + end)", "wall s", "note"]


def scenarios(args: argparse.Namespace) -> dict[str, Scenario]:
    many = ALL_LANGUAGES[: args.languages]
    return {
        "1": Scenario("1", f"1: {len(many)} langs x {args.docs_per_language}, 1 endpoint", many, args.docs_per_language,
                      target=0.95),
        "2": Scenario("2", f"2: 1 lang x {args.single_language_docs}, 1 endpoint", [SINGLE_LANGUAGE],
                      args.single_language_docs, target=0.95),
        "3": Scenario("3", f"3: {len(many)} langs x {args.two_endpoint_docs}, 2 endpoints", many, args.two_endpoint_docs,
                      endpoints=2, target=0.93),
        "4": Scenario("4", f"4: distilabel, {args.single_language_docs} rows, 1 endpoint", [SINGLE_LANGUAGE],
                      args.single_language_docs, distilabel=True),
        "5": Scenario("5", f"5: {len(many)} langs x {args.docs_per_language}, 1 endpoint, no queue", many,
                      args.docs_per_language, target=0.96, drivers=(1, 2), queue=args.slots),
        "6": Scenario("6", f"6: 1 lang x {args.single_language_docs}, 1 endpoint, no queue", [SINGLE_LANGUAGE],
                      args.single_language_docs, target=0.96, drivers=(1, 2), queue=args.slots),
        "7": Scenario("7", f"7: {len(many)} langs x {args.two_endpoint_docs}, 2 endpoints", many, args.two_endpoint_docs,
                      endpoints=2, target=0.95, drivers=(2,)),
        "8": Scenario("8", f"8: {len(many)} langs x {args.fleet_docs}, fleet {args.fleet_servers} x "
                      f"{args.fleet_slots} slots x {args.fleet_latency * 1000:g} ms", many, args.fleet_docs,
                      endpoints=args.fleet_servers, drivers=(1, 2), slots=args.fleet_slots, latency=args.fleet_latency,
                      queue=args.fleet_slots, services=("fixed",)),
        "9": Scenario("9", f"9: {len(many)} langs x {args.docs_per_language}, 1 endpoint started by the tool", many,
                      args.docs_per_language, managed=True),
    }

FLEET_TARGET = 1.4  # scenario 8: requests/s with 2 drivers over 1
START_S, END_S = 5.0, 5.0  # the span's start-up and drain, left out of its steady state


# --- documents and recipes ----------------------------------------------------------------------

def write_recipe(folder: Path, scenario: Scenario, urls: list[str], drivers: int = 1, serve: dict | None = None) -> Path:
    sources = [{"path": str(write_corpus(lang, scenario.docs_per_language, folder / "corpora" / f"{lang}.jsonl")),
                "language": lang} for lang in scenario.languages]
    model = {"backend": "tgi", "model": "bench/curation-model", "endpoints": urls}
    if serve is not None:
        model = {"backend": "tgi", "model": "bench/curation-model", "serve": serve}
    recipe = {
        "name": f"bench-pipeline-{scenario.key}",
        "languages": scenario.languages,
        "sources": sources,
        "filters": [{"type": "length", "min_chars": 100, "max_chars": 100000}],
        "output_dir": str(folder / "run"),
        "curation": {
            "models": {"generator": model},
            "generate": {"candidates": 1},
            "refine": {"rounds": 2},
            "diversify": {"target_size": 50},
            **({"drivers": drivers} if drivers > 1 else {}),
        },
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def server_options(args: argparse.Namespace, service: str) -> list[str]:
    return ["--service-time", service, "--sigma", str(args.sigma), "--reply", "curation",
            "--needs-refinement", str(args.needs_refinement), "--bad", str(args.bad), *SERVER_CONTEXT]


class TreeCPU:
    """CPU seconds of a process and its descendants over time, read from /proc every
    `interval` seconds in a thread (Linux), so the CPU each process spent within a span can be
    told apart from its start-up and its exit."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root, self.interval = root, interval
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for pid, cpu in self._tree().items():
                self.samples.setdefault(pid, []).append((now, cpu))
            self._stop.wait(self.interval)

    def _tree(self) -> dict[int, float]:
        parents, cpu = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            pid = int(entry)
            parents[pid] = int(fields[1])
            cpu[pid] = (int(fields[11]) + int(fields[12])) / self.TICK
        tree, grew = {self.root}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in tree} - tree
            tree |= more
            grew = bool(more)
        return {pid: cpu[pid] for pid in tree if pid in cpu}

    def within(self, start: float, end: float) -> dict[int, float]:
        """CPU seconds each process spent between `start` and `end` (monotonic)."""
        def at(series: list[tuple[float, float]], moment: float) -> float:
            before = [cpu for t, cpu in series if t <= moment]
            return before[-1] if before else 0.0

        return {pid: at(series, end) - at(series, start) for pid, series in self.samples.items()}


def driver_requests(run_dir: Path, drivers: int) -> list[int]:
    """Requests each driver sent (paid and failed rows of its call-cache file's ledger)."""
    cache = run_dir / "cache" / "calls.sqlite"
    files = [cache] if drivers == 1 else [cache.with_name(cache.name + ".d") / f"driver-{k}.sqlite" for k in range(drivers)]
    counts = []
    for path in files:
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            counts.append(db.execute("SELECT count(*) FROM ledger WHERE kind IN ('paid', 'failed')").fetchone()[0])
    return counts


def measure(row: Row, command: list[str], urls: list[str], log: Path, env: dict[str, str] | None = None,
            run_dir: Path | None = None) -> Row:
    """Run `command` to its end and fill `row` from the servers' request logs (and, with
    `run_dir`, each driver's CPU per request)."""
    started = time.monotonic()  # CLOCK_MONOTONIC: the servers' clock too (Linux)
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, env=env)
        cpu = TreeCPU(process.pid)
        code = process.wait()
        cpu.stop()
    ended = time.monotonic()
    stats = combined_stats(urls)
    row.wall = ended - started
    row.requests = stats["count"]
    if stats["overloaded"]:
        row.extra["overloaded"] = stats["overloaded"]
    if stats["count"]:
        # (arrival, start, end of service) of every request: with --keep, for a look at the run's
        # slot use second by second
        (log.parent / "server-requests.json").write_text(json.dumps(stats["log"]))
        row.span, row.share = stats["span"], stats["utilisation"]
        row.before, row.after = stats["first_arrival"] - started, ended - stats["last_end"]
        first, last = stats["first_arrival"], stats["last_end"]
        row.slots = stats["slots"]
        row.first_busy = busy_slots(stats["log"], first, min(last, first + START_S))
        row.steady_busy = busy_slots(stats["log"], first + START_S, last - END_S)
        if run_dir is not None:
            sent = driver_requests(run_dir, row.drivers)
            busiest = sorted(cpu.within(stats["first_arrival"], stats["last_end"]).values(), reverse=True)
            if sent and len(busiest) >= row.drivers:
                # The partitions are even (ids hashed), so the k-th busiest process is matched with
                # the mean driver's requests; the split itself is shown beside.
                mean = sum(sent) / len(sent)
                row.cpu_ms = [1000 * seconds / mean for seconds in busiest[: row.drivers]]
                row.extra["sent"] = sent
    if code == 0 and not stats["count"]:
        row.note = f"no request reached the servers (log: {log})"
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        row.note = f"exit {code}: {' | '.join(tail)} (log: {log})"
    return row


def run_managed(args: argparse.Namespace, scenario: Scenario, service: str, folder: Path, drivers: int = 1) -> Row:
    """Scenario 9: `build` starts the server itself; the time to its publication and its first request."""
    command = [sys.executable, str(TGI_SERVER), "--port", "{port}", "--slots", str(args.slots), "--latency",
               str(args.latency), "--max-concurrent-requests", str(TGI_DEFAULT_QUEUE), *server_options(args, service)]
    serve = {"model": "bench/curation-model", "command": command, "replicas": 1, "gpus_per_replica": 0}
    recipe = write_recipe(folder, scenario, [], drivers, serve=serve)
    row = Row(scenario.title, service, scenario.docs_per_language * len(scenario.languages), drivers=drivers)
    published = folder / "run" / "run" / "servers" / "generator.endpoints.json"
    seen: dict[str, float] = {}
    started = time.monotonic()
    done = threading.Event()

    def watch() -> None:
        try:
            poll()
        except Exception as error:  # noqa: BLE001 - shown in the row's note
            seen["error"] = repr(error)

    def poll() -> None:  # the endpoints file, then the server's first answered request
        while not done.is_set() and "first" not in seen:
            try:
                urls = [e["url"] for e in json.loads(published.read_text())["endpoints"]]
            except (OSError, ValueError, KeyError):
                urls = []
            if urls:
                seen.setdefault("published", time.monotonic())
                try:
                    stats = combined_stats(urls)
                except OSError as error:
                    seen["last_poll_error"] = repr(error)
                    stats = {"count": 0}
                if stats["count"]:
                    seen["first"] = stats["first_arrival"]
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with open(folder / "build.log", "w") as out:
        code = subprocess.run([xinstruction_command(), "build", str(recipe), "--no-progress"], stdout=out,
                              stderr=subprocess.STDOUT, cwd=folder).returncode
    row.wall = time.monotonic() - started
    done.set()
    watcher.join()
    row.extra["log"] = (f"published {seen['published'] - started:.1f} s after the start" if "published" in seen
                        else "never published")
    if "first" in seen:
        row.before = seen["first"] - started
        row.extra["log"] += f", first request {row.before:.1f} s after the start"
    if "first" not in seen and "last_poll_error" in seen:
        row.extra["log"] += f"; the server's /stats: {seen['last_poll_error']}"
    if "error" in seen:
        row.note = f"watching the server failed: {seen['error']}"
    if code != 0:
        tail = (folder / "build.log").read_text(errors="replace").strip().splitlines()[-3:]
        row.note = f"exit {code}: {' | '.join(tail)} (log: {folder / 'build.log'})"
    return row


def run_build(args: argparse.Namespace, scenario: Scenario, service: str, folder: Path, drivers: int = 1) -> Row:
    if scenario.managed:
        return run_managed(args, scenario, service, folder, drivers)
    options = server_options(args, service)
    if scenario.queue is not None:  # after the default 128: the last one given counts
        options += ["--max-concurrent-requests", str(scenario.queue)]
    slots, latency = scenario.slots or args.slots, scenario.latency or args.latency
    with tgi_servers(scenario.endpoints, slots, latency, *options) as urls:
        recipe = write_recipe(folder, scenario, urls, drivers)
        row = Row(scenario.title, service, scenario.docs_per_language * len(scenario.languages),
                  target=f">= {scenario.target}" if scenario.target else "", drivers=drivers)
        measure(row, [xinstruction_command(), "build", str(recipe), "--no-progress"], urls, folder / "build.log",
                run_dir=folder / "run")
    summary = folder / "build.log"
    if not row.note:
        curated = [line for line in summary.read_text(errors="replace").splitlines() if "record" in line.lower()]
        row.extra["log"] = curated[-1].strip() if curated else ""
    return row


# --- distilabel ---------------------------------------------------------------------------------

DISTILABEL_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, warnings
    warnings.filterwarnings("ignore")
    from distilabel.models.llms import InferenceEndpointsLLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    url, corpus, batch, cache, generate_template, judge_template = sys.argv[1:7]
    batch = int(batch)
    rows = [{"text": json.loads(line)["text"]} for line in open(corpus, encoding="utf-8") if line.strip()]

    def llm():
        return InferenceEndpointsLLM(base_url=url, api_key="unused",
                                     generation_kwargs={"max_new_tokens": 128, "stop_sequences": ["\\n\\n###"],
                                                        "temperature": 0.7, "top_p": 0.9})

    with Pipeline(name="bench-two-step", cache_dir=cache) as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=batch)
        generate = TextGeneration(llm=llm(), template=generate_template, columns=["text"], input_batch_size=batch,
                                  output_mappings={"generation": "instruction", "model_name": "generator"})
        judge = TextGeneration(llm=llm(), template=judge_template, columns=["instruction", "response"],
                               input_mappings={"response": "text"}, input_batch_size=batch,
                               output_mappings={"generation": "label"})
        load >> generate >> judge
    distiset = pipeline.run(use_cache=False, logging_handlers=[logging.NullHandler()])
    data = distiset["default"]["train"]
    print(json.dumps({"rows": data.num_rows, "labelled": sum(label is not None for label in data["label"])}))
    """
)


def jinja(template_file: Path, **names: str) -> str:
    """A project prompt template ({name}) as a Jinja2 template ({{ name }}) for distilabel."""
    text = template_file.read_text(encoding="utf-8")
    for name, value in names.items():
        text = text.replace("{" + name + "}", value)
    for name in ("text", "instruction", "response"):
        text = text.replace("{" + name + "}", "{{ " + name + " }}")
    return text


def run_distilabel(args: argparse.Namespace, scenario: Scenario, service: str, batch: int, folder: Path) -> Row:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(SINGLE_LANGUAGE, scenario.docs_per_language, folder / "corpus.jsonl")
    script = folder / "two_step.py"
    script.write_text(DISTILABEL_SCRIPT, encoding="utf-8")
    generate = jinja(GENERATE_PROMPT)
    judge = jinja(JUDGE_PROMPT, language="Swahili")
    row = Row(f"4: distilabel batch={batch}, {scenario.docs_per_language} rows", service, scenario.docs_per_language,
              target="(bar)")
    env = {**os.environ, "DISTILABEL_LOG_LEVEL": "ERROR"}  # not HF_HUB_OFFLINE: it blocks the endpoint too
    with tgi_servers(1, args.slots, args.latency, *server_options(args, service)) as urls:
        command = [args.distilabel_python, str(script), urls[0], str(corpus), str(batch), str(folder / "cache"),
                   generate, judge]
        measure(row, command, urls, folder / "distilabel.log", env)
    if not row.note:
        lines = (folder / "distilabel.log").read_text(errors="replace").strip().splitlines()
        try:
            result = json.loads(lines[-1])
            row.extra["log"] = f"{result['labelled']}/{result['rows']} rows labelled"
            if result["labelled"] < result["rows"]:
                row.note = (f"only {result['labelled']}/{result['rows']} rows labelled "
                            f"({row.extra.get('overloaded', 0)} answered 429 Model is overloaded; no retry)")
        except (IndexError, ValueError):
            row.note = "no result line"
    return row


# --- main ---------------------------------------------------------------------------------------

def print_table(rows: list[Row], args: argparse.Namespace, command: str = "") -> None:
    table = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 1)]
    print()
    if command:
        print(f"command: {command}")
    print(f"machine: {os.cpu_count()} cores; load average at the end: "
          + " ".join(f"{value:.2f}" for value in os.getloadavg()))
    print(f"server: {args.slots} slots per endpoint, mean service time {args.latency} s "
          f"(lognormal sigma {args.sigma}); judge: needs_refinement {args.needs_refinement}, bad {args.bad}; "
          "refine.rounds 2")
    print("share = busy-slot-seconds / (slots x span), span = first arrival .. last answer; "
          f"busy = mean slots serving in the span's first {START_S:g} s / from then to {END_S:g} s before its end; "
          "CPU-ms/req = each driver's CPU in the span / its requests; "
          "outside = wall time before the first request + after the last answer")
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
    best = {}
    for row in rows:
        if row.scenario.startswith("4") and row.share is not None and not row.note:
            best[row.service] = max(best.get(row.service, 0.0), row.share)
    for service, share in best.items():
        ours = [r for r in rows if r.service == service and not r.scenario.startswith("4") and r.share is not None]
        verdicts = ", ".join(f"{r.scenario.split(':')[0]} {'ahead' if r.share > share else 'behind'}" for r in ours)
        print(f"distilabel's best share ({service}): {share:.3f}" + (f"; scenarios {verdicts}" if verdicts else ""))
    fleet = {row.drivers: row for row in rows if row.scenario.startswith("8") and row.rate and not row.note}
    if 1 in fleet and 2 in fleet:
        ratio = fleet[2].rate / fleet[1].rate
        print(f"8: requests/s with 2 drivers / 1 driver = {fleet[2].rate:.0f} / {fleet[1].rate:.0f} = {ratio:.2f} "
              f"(target >= {FLEET_TARGET}: {'met' if ratio >= FLEET_TARGET else 'not met'})")
    for row in rows:
        if row.target.startswith(">=") and row.share is not None and not row.note:
            wanted = float(row.target.split()[1])
            if row.share < wanted:
                print(f"below target: {row.scenario} [{row.service}, {row.drivers} driver(s)]: {row.share:.3f} < {wanted}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few documents and rows")
    parser.add_argument("--scenario", action="append", choices=["1", "2", "3", "4", "5", "6", "7", "8", "9"],
                        help="run only these scenarios (repeatable; default: all)")
    parser.add_argument("--service-time", action="append", choices=SERVICE_TIMES, help="default: both")
    parser.add_argument("--slots", type=int, default=32, help="slots per endpoint")
    parser.add_argument("--latency", type=float, default=0.2, help="mean service time, seconds")
    parser.add_argument("--sigma", type=float, default=0.5, help="shape of the log-normal service time")
    parser.add_argument("--needs-refinement", type=float, default=0.3, help="share of pairs the judge sends back")
    parser.add_argument("--bad", type=float, default=0.2, help="share of pairs judged bad (the rest: good)")
    parser.add_argument("--languages", type=int, default=10, help="languages in scenarios 1 and 3")
    parser.add_argument("--docs-per-language", type=int, default=300, help="scenario 1")
    parser.add_argument("--single-language-docs", type=int, default=3000, help="scenarios 2 and 4")
    parser.add_argument("--two-endpoint-docs", type=int, default=300, help="scenario 3, per language")
    parser.add_argument("--fleet-servers", type=int, default=4, help="scenario 8: servers in the fleet")
    parser.add_argument("--fleet-slots", type=int, default=128, help="scenario 8: slots per server")
    parser.add_argument("--fleet-latency", type=float, default=0.01, help="scenario 8: service time, seconds")
    parser.add_argument("--fleet-docs", type=int, default=300, help="scenario 8, per language")
    parser.add_argument("--distilabel-python", default=default_distilabel_python())
    parser.add_argument("--distilabel-batches", default="50,256,512", help="input batch sizes tried")
    parser.add_argument("--keep", type=Path, help="keep work folders (recipes, logs, runs) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.languages, args.docs_per_language, args.two_endpoint_docs, args.fleet_docs = 2, 30, 30, 60
        args.single_language_docs = 120
        args.distilabel_batches = "16,64"
    batches = [int(b) for b in args.distilabel_batches.split(",") if b]
    chosen = scenarios(args)
    keys = args.scenario or list(chosen)
    services = args.service_time or list(SERVICE_TIMES)

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    rows: list[Row] = []
    try:
        for key in keys:
            scenario = chosen[key]
            if scenario.distilabel:
                why_not = distilabel_unavailable(args.distilabel_python)
                if why_not:
                    print(f"scenario 4 (distilabel): not measured: {why_not}", flush=True)
                    continue
                tried: list[Row] = []
                first, *rest = services
                for batch in batches:
                    tried.append(run_distilabel(args, scenario, first, batch, work / f"s4-{first}-b{batch}"))
                    report(tried[-1])
                measured = [r for r in tried if r.share is not None and not r.note]  # every row labelled
                best_batch = batches[tried.index(max(measured, key=lambda r: r.share))] if measured else batches[0]
                rows += tried
                for service in rest:
                    rows.append(run_distilabel(args, scenario, service, best_batch, work / f"s4-{service}-b{best_batch}"))
                    report(rows[-1])
                continue
            for service in scenario.services or services:
                for drivers in scenario.drivers:
                    rows.append(run_build(args, scenario, service, work / f"s{key}-{service}-d{drivers}", drivers))
                    report(rows[-1])
    finally:
        print_table(rows, args, " ".join(["python", "benchmarks/bench_pipeline_throughput.py", *(argv or sys.argv[1:])]))
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(row.note.startswith("exit") for row in rows) else 0


def report(row: Row) -> None:
    share = "-" if row.share is None else f"{row.share:.3f}"
    rate = "" if row.rate is None else f", {row.rate:.0f} req/s"
    cpu = f", CPU-ms/req {'/'.join(f'{c:.2f}' for c in row.cpu_ms)} (requests per driver {row.extra['sent']})" if row.cpu_ms else ""
    print(f"{row.scenario} [{row.service}, {row.drivers} driver(s)]: {row.requests} requests, share {share}{rate}{cpu}, "
          f"wall {row.wall:.1f} s" + (f"; {row.extra['log']}" if row.extra.get("log") else "")
          + (f"; {row.note}" if row.note else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
