"""CPU time per request of the HTTP clients a labelling driver could use, side by side in one run,
against one TGI-protocol server process (tests/tgi_server.py; its own interpreter).

Why it matters: one driver's CPU per request bounds how many slots it keeps busy. A slot the
server has freed waits until the client's event loop gets round to sending the next request, and
the loop is busy for (CPU per request) x (requests per second); this is what kept whole-span
shares near 0.93 on a 32-slot server (issue 19). The clients, each doing the same POST /generate
(TGI's native route, `details: true`), `--concurrency` in flight:

- huggingface_hub's `AsyncInferenceClient.text_generation` (what the toolkit used until 0.x);
- huggingface_hub's `get_async_session()` (httpx) posting the JSON and reading the body;
- aiohttp (what `llm/backends/http.py` uses now);
- the toolkit's own route (`ServerBackend.acomplete`: the pool, the fit to the context, the
  parse, the retry policy), to show what the rest of the request path costs on top.

    . .venv/bin/activate
    python benchmarks/bench_http_client.py                 # 3,000 requests per client
    python benchmarks/bench_http_client.py --requests 10000 --concurrency 64

CPU time is this process's (user + system, `resource.getrusage`), so the server's own work does
not count; requests/s depends on the server too and is shown only as a check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Awaitable, Callable

from _common import tgi_servers


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, one: Callable[[int], Awaitable[object]], requests: int, concurrency: int) -> dict[str, float]:
    gate = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> None:
        async with gate:
            await one(i)

    await asyncio.gather(*(guarded(i) for i in range(concurrency)))  # connections opened, imports done
    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(requests)))
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    row = {"client": name, "cpu_ms_per_request": 1000 * cpu / requests, "requests_per_s": requests / wall}
    print(f"{name:<44} {row['cpu_ms_per_request']:6.2f} CPU-ms/request {row['requests_per_s']:8.0f} req/s", flush=True)
    return row


def body(i: int) -> dict[str, object]:
    return {"inputs": f"document {i} says hello", "parameters": {"max_new_tokens": 8, "details": True, "seed": i}, "stream": False}


async def run(url: str, requests: int, concurrency: int) -> list[dict[str, float]]:
    import aiohttp
    from huggingface_hub import AsyncInferenceClient, get_async_session

    from xinstruction_dataset.llm.backends import LLMRequest, build_backend
    from xinstruction_dataset.llm.backends.base import GenerationParams

    rows = []
    client = AsyncInferenceClient(base_url=url, provider="hf-inference", headers={"authorization": ""})
    rows.append(await measure(
        "huggingface_hub AsyncInferenceClient", lambda i: client.text_generation(f"document {i} says hello", details=True, max_new_tokens=8, seed=i),
        requests, concurrency,
    ))
    await client.close()

    session = get_async_session()

    async def httpx_post(i: int) -> object:
        async with session.stream("POST", url + "/generate", json=body(i)) as response:
            return json.loads(b"".join([chunk async for chunk in response.aiter_bytes()]))

    rows.append(await measure("huggingface_hub get_async_session (httpx)", httpx_post, requests, concurrency))
    await session.aclose()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as plain:
        async def aiohttp_post(i: int) -> object:
            async with plain.post(url + "/generate", json=body(i)) as response:
                return json.loads(await response.read())

        rows.append(await measure("aiohttp", aiohttp_post, requests, concurrency))

    backend = build_backend({"backend": "tgi", "model": "bench/model", "endpoints": [url], "max_concurrency": concurrency, "ramp_start": concurrency})
    rows.append(await measure(
        "xinstruction ServerBackend (route generate)",
        lambda i: backend.acomplete(LLMRequest(prompt=f"document {i} says hello", params=GenerationParams(max_new_tokens=8, seed=i))),
        requests, concurrency,
    ))
    await backend.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--slots", type=int, default=64, help="the server's slots (more than --concurrency: nothing queues)")
    parser.add_argument("--latency", type=float, default=0.01, help="the server's service time, seconds")
    args = parser.parse_args()
    with tgi_servers(1, args.slots, args.latency) as (url,):
        asyncio.run(run(url, args.requests, args.concurrency))


if __name__ == "__main__":
    main()
