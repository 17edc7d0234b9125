"""Issue 24, attacked with other inputs than its own tests use: folders holding FIFOs, dangling
links and link loops; TEI and LLM servers with other bad replies. Each through the real
`xinstruction` command line in a subprocess, against the local protocol servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hub_folders import xinstruction_folder, xinstruction_records
from xinstruction_dataset.curation.embedders import TEIEmbedder, TEIEmbedding
from xinstruction_dataset.errors import EnvironmentFault
from xinstruction_dataset.records import ShardWriter

SHARD = "train-00000-of-00001.parquet"


def xinstruction(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xinstruction_dataset.cli", *args], capture_output=True, text=True, timeout=timeout)


# -- a hub-ready folder holding something that is not a file -------------------------------------

ODD_PATHS = {
    # A FIFO as the card: reading it blocked `card check/render/update` forever.
    "fifo-card": ("README.md", lambda path: (path.unlink(), os.mkfifo(path)), "a FIFO"),
    # A FIFO under data/: silently left out of the card and of a publish.
    "fifo-data": ("data/sw/test-00000-of-00001.parquet", os.mkfifo, "a FIFO"),
    # A link loop: a RuntimeError traceback from Path.resolve.
    "link-loop": ("data/sw/train-00000-of-00002.parquet", lambda path: path.symlink_to(path.name), "a symlink loop"),
    # A dangling link named as a shard: silently left out (a publish would delete it remotely).
    "dangling": ("data/sw/test-00000-of-00001.parquet", lambda path: path.symlink_to("gone.parquet"), "a dangling link"),
    # A link to a config folder inside the folder: not walked, so its data was silently left out.
    "folder-link": ("data/fi", lambda path: _linked_config(path), "a link to a folder, not followed"),
}


def _linked_config(path: Path) -> None:
    store = path.parent.parent / "store" / "fi"
    store.mkdir(parents=True)
    os.link(path.parent / "sw" / SHARD, store / SHARD)
    path.symlink_to(Path("..", "store", "fi"), target_is_directory=True)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return xinstruction_folder(tmp_path, {"sw": 3})


@pytest.mark.parametrize("case", sorted(ODD_PATHS))
def test_card_commands_refuse_a_path_that_is_not_a_regular_file(folder, case):
    relative, make, why = ODD_PATHS[case]
    make(folder / relative)
    # Every card action scans the same way: all three once (for the FIFO card they would block on), `check` for the rest.
    for action in ("check", "render", "update") if case == "fifo-card" else ("check",):
        result = xinstruction("card", action, str(folder), timeout=30)
        assert result.returncode == 2, (action, result.stdout + result.stderr)
        assert f"{relative} ({why})" in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_publish_refuses_a_fifo_under_data_before_any_request(hub, repo_id, folder):
    os.mkfifo(folder / "data" / "sw" / "test-00000-of-00001.parquet")
    before = len(hub.requests)
    result = xinstruction("publish", str(folder), "--repo-id", repo_id, "--version", "1.0.0", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data/sw/test-00000-of-00001.parquet (a FIFO)" in result.stderr
    assert hub.requests[before:] == []


def test_export_refuses_a_target_holding_a_link_loop_and_leaves_it_as_it_was(tmp_path):
    curated = tmp_path / "curated"
    with ShardWriter(curated / "fi" / "shard-00000.jsonl") as writer:
        for record in xinstruction_records("fi", 3):
            writer.write(record)
    folder = xinstruction_folder(tmp_path, {"sw": 3})
    loop = folder / "data" / "sw" / "test-00000-of-00001.parquet"
    loop.symlink_to(loop.name)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    result = xinstruction(
        "export", str(folder), "--language", "fi", "--data-dir", str(curated), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data/sw/test-00000-of-00001.parquet (a symlink loop)" in result.stderr and "Traceback" not in result.stderr
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert not list(tmp_path.glob(".x-instruction.*"))  # no staging copy left beside it


# -- TEI replies that huggingface_hub cannot turn into floats ------------------------------------


class _Replies(BaseHTTPRequestHandler):
    """Every POST (TEI `/embed`, TGI, chat) answers 200 with the next body of `server.bodies`
    (built from the number of `inputs`),
    the last one for every later request; `GET /info` is absent (batches as configured)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        return

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        count = len(body.get("inputs") or ())
        bodies = self.server.bodies  # type: ignore[attr-defined]
        data = (bodies.pop(0) if len(bodies) > 1 else bodies[0])(count)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def raw_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _rows(value: str) -> Callable[[int], bytes]:
    return lambda count: ("[" + ",".join([f"[{value}, 0.5]"] * count) + "]").encode()


@pytest.mark.parametrize("value", ["1" + "0" * 400, '"0.5"', "true", "null", "[0.5]"], ids=["int-past-float", "string", "bool", "null", "list"])
def test_a_tei_reply_value_that_is_not_a_json_number_is_a_retried_call_never_a_vector(raw_server, value):
    """`10**400` was an OverflowError from huggingface_hub's float32 cast (a call failed for good,
    not retried); `"0.5"` and `true` were cast to numbers and stored as an embedding."""
    raw_server.bodies = [_rows(value), _rows("0.25")]
    config = TEIEmbedding(url=f"http://127.0.0.1:{raw_server.server_address[1]}", timeout=5,
                          concurrency=1, retries=1, backoff=0.01, backoff_max=0.02)
    vectors = TEIEmbedder(config).embed(["a", "b"])
    assert vectors.shape == (2, 2) and np.allclose(vectors, np.array([0.25, 0.5]) / np.hypot(0.25, 0.5))

    raw_server.bodies = [_rows(value)]
    with pytest.raises(EnvironmentFault, match="bad reply: vector 0 of 1 (holds|is)"):
        TEIEmbedder(config.model_copy(update={"retries": 0})).embed(["c"])


# -- LLM replies whose text is not a string ------------------------------------------------------


def _generated(text) -> Callable[[int], bytes]:
    details = {"finish_reason": "length", "generated_tokens": 2, "seed": None, "prefill": [], "tokens": []}
    return lambda _: json.dumps([{"generated_text": text, "details": details}]).encode()


def _chat(content) -> Callable[[int], bytes]:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", "logprobs": None}
    reply = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "system_fingerprint": "", "choices": [choice],
             "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    return lambda _: json.dumps(reply).encode()


@pytest.mark.parametrize(("route", "bad", "good"), [
    ("generate", _generated(123), _generated("fixed")),
    ("generate", _generated(None), _generated("fixed")),
    ("chat", _chat(7.5), _chat("fixed")),
], ids=["generate-number", "generate-null", "chat-number"])
def test_an_llm_reply_whose_text_is_not_a_string_is_a_retried_call(raw_server, route, bad, good):
    """A number or null as `generated_text` (or as a chat message's content) was a TypeError from
    the reply-size check: a call failed for good, where a malformed reply is tried again."""
    import asyncio

    from xinstruction_dataset.llm.backends.base import LLMRequest
    from xinstruction_dataset.llm.backends.server import ServerBackend as TGIBackend
    from xinstruction_dataset.llm.backends.tgi import TGIConfig

    raw_server.bodies = [bad, good]
    config = TGIConfig(backend="tgi", model="m", endpoints=[f"http://127.0.0.1:{raw_server.server_address[1]}"], route=route,
                       timeout=5, retries=1, backoff=0.01, backoff_max=0.02)
    request = LLMRequest(messages=(("user", "hi"),)) if route == "chat" else LLMRequest(prompt="hi")

    async def complete():
        backend = TGIBackend(config)
        try:
            return await backend.acomplete(request)
        finally:
            await backend.aclose()

    assert asyncio.run(complete()).text == "fixed"


# -- a card whose data_files point out of the folder ---------------------------------------------


@pytest.mark.parametrize(("pattern", "problem"), [
    ("/etc/*", "is an absolute path"),  # was a NotImplementedError traceback from Path.glob
    ("../{name}/data/sw/train-*", "leaves the folder"),  # matched the folder's own files from outside: "card OK"
    ("data/**x/*", "matches no file"),  # a ValueError traceback from Path.glob
])
def test_card_check_flags_data_files_outside_the_folder_on_its_line(folder, pattern, problem):
    card = folder / "README.md"
    text = card.read_text()
    assert text.count("path: data/sw/train-*") == 1
    card.write_text(text.replace("path: data/sw/train-*", f"path: {pattern.format(name=folder.name)}"))
    line = text[: text.index("path: data/sw/train-*")].count("\n") + 1
    result = xinstruction("card", "check", str(folder))
    assert result.returncode == 1 and result.stderr == "", result.stdout + result.stderr
    assert f"README.md:{line}: [config-files] config `sw`: data_files" in result.stdout and problem in result.stdout, result.stdout


def test_a_tei_reply_larger_than_its_vectors_can_be_is_a_bad_reply_never_read_whole(raw_server):
    """A vector wider than any embedding model, or a body far larger than `count x width` numbers
    can take as JSON (here padded with blanks), was parsed whole and the vector stored."""
    wide = lambda count: json.dumps([[0.5] * 70_000 for _ in range(count)]).encode()  # noqa: E731
    padded = lambda count: ("[" + ",".join(["[0.1, 0.2" + " " * 200_000 + "]"] * count) + "]").encode()  # noqa: E731
    config = TEIEmbedding(url=f"http://127.0.0.1:{raw_server.server_address[1]}", timeout=5,
                          concurrency=1, retries=0, backoff=0.01, backoff_max=0.02)
    raw_server.bodies = [wide]
    with pytest.raises(EnvironmentFault, match="vectors of 70000 values, more than any embedding model's"):
        TEIEmbedder(config).embed(["a"])

    embedder = TEIEmbedder(config.model_copy(update={"retries": 1}))
    raw_server.bodies = [_rows("0.25")]
    assert embedder.embed(["a"]).shape == (1, 2)  # the width is known from now on
    raw_server.bodies = [padded, _rows("0.75")]
    assert embedder.embed(["b", "c"]).shape == (2, 2)  # the padded reply was retried
    strict = TEIEmbedder(config)
    strict.dim = 2  # as embed_texts sets it from the vectors stored
    raw_server.bodies = [padded]
    with pytest.raises(EnvironmentFault, match=r"bad reply: a body of \d+ bytes for 2 vectors \(at most \d+\)"):
        strict.embed(["d", "e"])
