"""Pytest fixtures for the TGI-protocol test server (tests/tgi_server.py), loaded as a plugin
from conftest.py. Every server a test starts is killed at teardown.

    def test_x(tgi_server):            # a server with the defaults, already listening
        backend = build_backend({"backend": "tgi", "model": "m", "endpoints": [tgi_server.url]})

    def test_y(start_tgi_server):      # a factory: any TGIServer options
        a = start_tgi_server(slots=8, latency=0.05, reply=lambda prompt, params: "...")
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tgi_server import TGIServer


@pytest.fixture
def start_tgi_server() -> Iterator[Callable[..., TGIServer]]:
    """Start TGI-protocol servers with `TGIServer` options; all are killed after the test."""
    servers: list[TGIServer] = []

    def start(**options: Any) -> TGIServer:
        server = TGIServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def hang_guard() -> Callable[..., Any]:
    """`hang_guard(fn, *args, seconds=60)`: fn's result, or a failure if it has not returned
    within `seconds` (a hang, not a speed check: the limit is far above any normal run)."""

    def run(fn: Callable[..., Any], *args: Any, seconds: float = 60) -> Any:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(fn, *args)
            try:
                return future.result(timeout=seconds)
            except concurrent.futures.TimeoutError:
                pytest.fail(f"{getattr(fn, '__name__', fn)} hung: no return within {seconds:g}s")

    return run


@pytest.fixture
def tgi_server(start_tgi_server: Callable[..., TGIServer]) -> TGIServer:
    """One TGI-protocol server with the default echo model, 4 slots, no latency."""
    return start_tgi_server()
