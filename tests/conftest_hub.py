"""Fixtures of the local Hub-protocol server (`tests/hub_server.py`), loaded from conftest.py.

`huggingface_hub` and `datasets` read `HF_ENDPOINT` once, when imported, so the server's address
is fixed here, before any test module imports them: a free port is reserved now and the
session's server listens on it. Tests use distinct repo ids, so one server serves them all.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

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
def hub(
    hub_server: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> Iterator[HubServer]:
    """The local Hub with `HF_TOKEN` set and no faults left over from another test.

    After the test, asserts that the token is in no output, no log record (debug included), no
    file the test or the clients wrote (tmp_path, the HF caches), and nothing the Hub stored.
    """
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    caplog.set_level(logging.DEBUG)
    hub_server.clear_faults()
    yield hub_server
    hub_server.clear_faults()
    captured = capsys.readouterr()
    # Give the output back to the test report (readouterr consumed it).
    print(captured.out, end="")
    assert TEST_TOKEN not in captured.out + captured.err, "token printed"
    # caplog.text holds the current phase only (teardown): read the records of the test's phases.
    logged = "\n".join(record.getMessage() for phase in ("setup", "call") for record in caplog.get_records(phase))
    assert TEST_TOKEN not in logged, "token logged"
    assert TEST_TOKEN.encode() not in hub_server.all_stored_bytes(), "token published"
    for root in (tmp_path, Path(os.environ["HF_HOME"])):
        for path in root.rglob("*"):
            if path.is_file():
                assert TEST_TOKEN.encode() not in path.read_bytes(), f"token written to {path}"


@pytest.fixture
def repo_id() -> str:
    """A repo id no other test uses."""
    return f"tests/ds-{uuid.uuid4().hex[:10]}"
