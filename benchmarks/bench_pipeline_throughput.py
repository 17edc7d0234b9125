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

Scenarios (targets from the issue; 4 is the bar for 1-3 to beat):

  1  10 languages x 300 documents, 1 endpoint                      share >= 0.95
  2  1 language (sw) x 3,000 documents, 1 endpoint                 share >= 0.95
  3  10 languages x 300 documents, 2 endpoints (two processes)     share >= 0.93
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
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from _common import (ROOT, combined_stats, default_distilabel_python, distilabel_unavailable, tgi_servers,
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
    extra: dict = field(default_factory=dict)

    def cells(self) -> list[str]:
        def num(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        outside = None if self.before is None or self.after is None else self.before + self.after
        return [self.scenario, self.service, str(self.docs), str(self.requests), num(self.span, ".1f"),
                num(self.share, ".3f"), self.target, num(outside, ".1f"),
                f"{num(self.before, '.1f')} + {num(self.after, '.1f')}", num(self.wall, ".1f"), self.note]


HEADER = ["scenario", "service", "docs", "requests", "span s", "share", "target", "outside s",
          "(start + end)", "wall s", "note"]


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
    }


# --- documents and recipes ----------------------------------------------------------------------

def write_recipe(folder: Path, scenario: Scenario, urls: list[str]) -> Path:
    sources = [{"path": str(write_corpus(lang, scenario.docs_per_language, folder / "corpora" / f"{lang}.jsonl")),
                "language": lang} for lang in scenario.languages]
    model = {"backend": "tgi", "model": "bench/curation-model", "endpoints": urls}
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
        },
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def server_options(args: argparse.Namespace, service: str) -> list[str]:
    return ["--service-time", service, "--sigma", str(args.sigma), "--reply", "curation",
            "--needs-refinement", str(args.needs_refinement), "--bad", str(args.bad), *SERVER_CONTEXT]


def measure(row: Row, command: list[str], urls: list[str], log: Path, env: dict[str, str] | None = None) -> Row:
    """Run `command` to its end and fill `row` from the servers' request logs."""
    started = time.monotonic()  # CLOCK_MONOTONIC: the servers' clock too (Linux)
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, env=env).returncode
    ended = time.monotonic()
    stats = combined_stats(urls)
    row.wall = ended - started
    row.requests = stats["count"]
    if stats["overloaded"]:
        row.extra["overloaded"] = stats["overloaded"]
    if stats["count"]:
        row.span, row.share = stats["span"], stats["utilisation"]
        row.before, row.after = stats["first_arrival"] - started, ended - stats["last_end"]
    if code == 0 and not stats["count"]:
        row.note = f"no request reached the servers (log: {log})"
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        row.note = f"exit {code}: {' | '.join(tail)} (log: {log})"
    return row


def run_build(args: argparse.Namespace, scenario: Scenario, service: str, folder: Path) -> Row:
    with tgi_servers(scenario.endpoints, args.slots, args.latency, *server_options(args, service)) as urls:
        recipe = write_recipe(folder, scenario, urls)
        row = Row(scenario.title, service, scenario.docs_per_language * len(scenario.languages),
                  target=f">= {scenario.target}" if scenario.target else "")
        measure(row, [xinstruction_command(), "build", str(recipe), "--no-progress"], urls, folder / "build.log")
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

def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    table = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 1)]
    print()
    print(f"server: {args.slots} slots per endpoint, mean service time {args.latency} s "
          f"(lognormal sigma {args.sigma}); judge: needs_refinement {args.needs_refinement}, bad {args.bad}; "
          "refine.rounds 2")
    print("share = busy-slot-seconds / (slots x span), span = first arrival .. last answer; "
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few documents and rows")
    parser.add_argument("--scenario", action="append", choices=["1", "2", "3", "4"],
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
    parser.add_argument("--distilabel-python", default=default_distilabel_python())
    parser.add_argument("--distilabel-batches", default="50,256,512", help="input batch sizes tried")
    parser.add_argument("--keep", type=Path, help="keep work folders (recipes, logs, runs) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.languages, args.docs_per_language, args.two_endpoint_docs = 2, 30, 30
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
            for service in services:
                rows.append(run_build(args, scenario, service, work / f"s{key}-{service}"))
                report(rows[-1])
    finally:
        print_table(rows, args)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(row.note.startswith("exit") for row in rows) else 0


def report(row: Row) -> None:
    share = "-" if row.share is None else f"{row.share:.3f}"
    print(f"{row.scenario} [{row.service}]: {row.requests} requests, share {share}, wall {row.wall:.1f} s"
          + (f"; {row.extra['log']}" if row.extra.get("log") else "") + (f"; {row.note}" if row.note else ""),
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
