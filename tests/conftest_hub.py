"""Fixtures of the local Hub-protocol server (`tests/hub_server.py`), loaded from conftest.py.

`huggingface_hub` and `datasets` read `HF_ENDPOINT` once, when imported, so the server's address
is fixed here, before any test module imports them: a free port is reserved now and the
session's server listens on it. Tests use distinct repo ids, so one server serves them all.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from hub_server import HubServer

TEST_TOKEN = "hf_TESTtokenNeverPrinted0123456789"  # what the server accepts; must never appear in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


HUB_PORT = _free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """The session's local Hub, at `HF_ENDPOINT`, accepting `TEST_TOKEN` for writes."""
    with HubServer(token=TEST_TOKEN, port=HUB_PORT) as server:
        yield server


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The local Hub with `HF_TOKEN` set and no faults left over from another test."""
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    hub_server.clear_faults()
    yield hub_server
    hub_server.clear_faults()


@pytest.fixture
def repo_id() -> str:
    """A repo id no other test uses."""
    return f"tests/ds-{uuid.uuid4().hex[:10]}"
