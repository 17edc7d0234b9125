"""Throughput of the TGI backend against a TGI-protocol server with a set latency and slot count.

Each endpoint is a `tests/tgi_server.py` process that works on `--slots` requests at once, each
taking `--latency` seconds, and queues the rest (it reports TGI's default queue limit,
`max_concurrent_requests` 128, in /info), so no client can beat slots / latency requests a second
per endpoint. Every figure is run twice: with a fixed service time, and with a log-normal one of
the same mean (`--sigma`), where a client that sends in batches of the slot count waits for each
batch's slowest request. With log-normal times the limit is slots / (the mean of the times the
server drew, from its `GET /stats`). The figure printed is *answered* requests/s (failed calls do
not count) over that limit (target: >= 0.95), for
CallRunner + TGIBackend with 1 and 2 endpoints, and for distilabel's `InferenceEndpointsLLM` +
`TextGeneration` on the same server, run in its own virtual environment (its pins clash with
ours) as a subprocess:

    python -m venv .venv-distilabel
    .venv-distilabel/bin/pip install "distilabel[hf-inference-endpoints]" requests
    python benchmarks/bench_tgi_throughput.py --distilabel-python .venv-distilabel/bin/python

distilabel has no tokenizer here (it would download one from the Hub), so it uses the chat route;
ours is measured on both routes. distilabel sends one batch (`input_batch_size`, default 50) at a
time and waits for the whole batch (asyncio.gather) before the next, so it is measured with its
default batch size and with a batch the size of the server's slots.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, default_distilabel_python, distilabel_unavailable, server_stats, tgi_servers

sys.path.insert(0, str(ROOT))

from xinstruction_dataset.llm.backends import GenerationParams, LLMRequest, build_backend  # noqa: E402
from xinstruction_dataset.llm.cache import CallCache  # noqa: E402
from xinstruction_dataset.llm.calls import CallRunner  # noqa: E402

TARGET = 0.95
SERVICE_TIMES = ("fixed", "lognormal")


def service_options(service: str, sigma: float) -> list[str]:
    return ["--service-time", service, "--sigma", str(sigma)]

DISTILABEL_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    from distilabel.models.llms import InferenceEndpointsLLM
    from distilabel.steps.tasks import TextGeneration

    url, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    llm = InferenceEndpointsLLM(base_url=url, api_key="unused", generation_kwargs={"max_new_tokens": 16})
    task = TextGeneration(llm=llm, input_batch_size=batch)
    task.load()
    inputs = [{"instruction": f"document {i} says hello"} for i in range(n)]
    answered = 0
    started = time.perf_counter()
    for start in range(0, n, batch):
        for row in next(task.process(inputs[start:start + batch])):
            answered += row.get("generation") is not None
    print(json.dumps({"elapsed": time.perf_counter() - started, "answered": answered}))
    """
)


@dataclass
class Measurement:
    label: str
    requests: int
    answered: int
    elapsed: float
    limit: float  # requests/s the servers allow

    @property
    def ratio(self) -> float:
        """Answered requests a second over the limit: a failed call is no throughput."""
        return self.answered / self.elapsed / self.limit

    def line(self) -> str:
        verdict = "ok" if self.ratio >= TARGET else f"below {TARGET}"
        return (
            f"{self.label:<70} {self.answered:>5}/{self.requests:<5} answered in {self.elapsed:6.2f} s = "
            f"{self.answered / self.elapsed:7.1f} req/s = {self.ratio:.3f} of limit {self.limit:.1f} ({verdict})"
        )


def drawn_limit(urls: list[str], slots: int, fallback: float) -> float:
    """slots / mean service time the servers drew (their /stats), over all endpoints."""
    stats = [server_stats(url) for url in urls]
    busy, count = sum(s.get("busy", 0.0) for s in stats), sum(s["count"] for s in stats)
    return len(urls) * slots / (busy / count) if count and busy else fallback


def bench_ours(urls: list[str], route: str, n: int, limit: float) -> Measurement:
    backend = build_backend({"backend": "tgi", "model": "bench/echo", "endpoints": urls, "route": route})
    params = GenerationParams(max_new_tokens=16)
    requests = ((i, LLMRequest(prompt=f"document {i} says hello", params=params)) for i in range(n))
    with tempfile.TemporaryDirectory() as folder, CallCache(Path(folder) / "calls.sqlite") as cache:
        runner = CallRunner(backend, cache, progress=False)
        started = time.perf_counter()
        answered = sum(result.ok for result in runner.run(requests))
        elapsed = time.perf_counter() - started
    label = f"xinstruction CallRunner+TGIBackend route={route} endpoints={len(urls)}"
    return Measurement(label, n, answered, elapsed, limit)


def bench_distilabel(python: str, url: str, n: int, batch: int, limit: float) -> Measurement | str:
    """distilabel's figure, or why there is none."""
    done = subprocess.run([python, "-c", DISTILABEL_SCRIPT, url, str(n), str(batch)], capture_output=True, text=True)
    if done.returncode != 0:
        return f"distilabel run failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    label = f"distilabel InferenceEndpointsLLM+TextGeneration batch={batch} endpoints=1"
    return Measurement(label, n, result["answered"], result["elapsed"], limit)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--waves", type=int, default=50, help="requests per endpoint = waves x slots")
    parser.add_argument("--sigma", type=float, default=0.5, help="shape of the log-normal service time")
    parser.add_argument("--distilabel-python", default=default_distilabel_python())
    args = parser.parse_args(argv)

    per_endpoint = args.slots / args.latency
    n = args.waves * args.slots
    print(f"server: {args.slots} slots x {args.latency} s mean latency = limit {per_endpoint:.1f} req/s per endpoint; "
          f"{n} requests per endpoint; target >= {TARGET}")
    for service in SERVICE_TIMES:
        for route in ("generate", "chat"):
            for endpoints in (1, 2):
                with tgi_servers(endpoints, args.slots, args.latency, *service_options(service, args.sigma)) as urls:
                    measured = bench_ours(urls, route, n * endpoints, per_endpoint * endpoints)
                    measured.limit = drawn_limit(urls, args.slots, measured.limit)
                    measured.label += f" {service}"
                print(measured.line(), flush=True)

    why_not = distilabel_unavailable(args.distilabel_python)
    if why_not:
        print(f"distilabel: not measured: {why_not}")
        return
    for service in SERVICE_TIMES:
        for batch in sorted({50, args.slots}):
            with tgi_servers(1, args.slots, args.latency, *service_options(service, args.sigma)) as urls:
                outcome = bench_distilabel(args.distilabel_python, urls[0], n, batch, per_endpoint)
                if not isinstance(outcome, str):
                    outcome.limit = drawn_limit(urls, args.slots, outcome.limit)
                    outcome.label += f" {service}"
            print(outcome if isinstance(outcome, str) else outcome.line(), flush=True)
    print("distilabel: one base_url per InferenceEndpointsLLM, so no 2-endpoint figure "
          "(spreading needs several LLM steps in a pipeline)")


if __name__ == "__main__":
    main()
