"""Pytest fixtures for the TGI-protocol test server (tests/tgi_server.py), loaded as a plugin
from conftest.py. Every server a test starts is killed at teardown.

    def test_x(tgi_server):            # a server with the defaults, already listening
        backend = build_backend({"backend": "tgi", "model": "m", "endpoints": [tgi_server.url]})

    def test_y(start_tgi_server):      # a factory: any TGIServer options
        a = start_tgi_server(slots=8, latency=0.05, reply=lambda prompt, params: "...")
"""

from __future__ import annotations

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
def tgi_server(start_tgi_server: Callable[..., TGIServer]) -> TGIServer:
    """One TGI-protocol server with the default echo model, 4 slots, no latency."""
    return start_tgi_server()
