"""A server that speaks text-embeddings-inference's protocol, for tests (real HTTP on 127.0.0.1).

Routes: `POST /embed` and `POST /` (what huggingface_hub's `feature_extraction` posts to an
endpoint URL: `{"inputs": str | [str, ...], "normalize": ..., "truncate": ...}`), answered with
one vector per input; `GET /info` (TEI's: `model_id`, `max_client_batch_size`,
`max_concurrent_requests`, ...); `GET /health`.

Refused as TEI refuses: a batch over `max_client_batch_size` (413, error_type `Validation`,
"batch size N > maximum allowed batch size M"), an empty batch (422, "`inputs` cannot be
empty"), more than `max_concurrent_requests` at once (429 "Model is overloaded").

The "model" is deterministic: a text's vector is `dim` floats drawn from a hash of the text, so a
text has the same vector in any batch, and different texts differ.

Faults, injected with `inject(kind, count, path="/embed")` and consumed by the next requests to
`path` (`/embed` stands for both embedding routes; `/info` for `GET /info`): `503` (TEI's
unhealthy reply), `429` (overloaded), and replies a client must not trust, each a 200: `nan` (a
NaN in the first vector), `short` (one vector fewer than texts), `wide` (the first vector one
value longer: ragged rows), `narrow` (every vector one value shorter than the others the server
gives: the wrong width), `text` (strings instead of numbers), `trickle` (the right reply, sent
a byte every `trickle_s` seconds: a client whose timeout bounds only the wait between bytes
waits for the whole body). `clear()` drops the faults left (the server is fixed).
`batches` logs each request's batch size (refused ones too).
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("503", "429", "nan", "short", "wide", "narrow", "text", "trickle")
FAULT_PATHS = ("/embed", "/info")


def vector(text: str, dim: int) -> list[float]:
    """`dim` floats in [-1, 1) fixed by `text`."""
    out: list[float] = []
    counter = 0
    while len(out) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode("utf-8")).digest()
        out += [v / 2**31 for v in struct.unpack(">8i", digest)]
        counter += 1
    return out[:dim]


class TEIServer:
    """A TEI-protocol server on 127.0.0.1; see the module docstring."""

    def __init__(self, *, model_id: str = "test/embedder", dim: int = 8, max_client_batch_size: int = 32,
                 max_concurrent_requests: int = 512, has_info: bool = True, trickle_s: float = 0.05) -> None:
        self.model_id, self.dim = model_id, dim
        self.max_client_batch_size = max_client_batch_size
        self.max_concurrent_requests = max_concurrent_requests
        self.has_info = has_info
        self.trickle_s = trickle_s
        self.batches: list[int] = []  # batch size of every embedding request, in arrival order
        self.status_counts: Counter[int] = Counter()
        self.authorizations: Counter[str | None] = Counter()
        self._faults: list[list[Any]] = []  # [kind, remaining, path]
        self._stopped = threading.Event()  # ends a trickle still being sent
        self._active = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "TEIServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def inject(self, kind: str, count: int = 1, path: str = "/embed") -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        if path not in FAULT_PATHS:
            raise ValueError(f"fault path must be one of {FAULT_PATHS}")
        with self._lock:
            self._faults.append([kind, count, path])

    def clear(self) -> None:
        """Drop every fault not yet consumed."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, path: str) -> str | None:
        """The kind of the next fault injected for `path` (consumed), or None."""
        with self._lock:
            fault = next((f for f in self._faults if f[1] > 0 and f[2] == path), None)
            if fault is None:
                return None
            fault[1] -= 1
            return fault[0]

    def info(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "model_sha": None, "model_dtype": "float16",
                "model_type": {"embedding": {"pooling": "mean"}}, "max_concurrent_requests": self.max_concurrent_requests,
                "max_input_length": 512, "max_batch_tokens": 16384, "max_batch_requests": None,
                "max_client_batch_size": self.max_client_batch_size, "tokenization_workers": 2, "version": "test"}

    def embed(self, body: Any) -> tuple[int, Any]:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        batch = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(batch, list) or not all(isinstance(t, str) for t in batch):
            return 422, {"error": "Failed to deserialize the JSON body into the target type", "error_type": "Validation"}
        with self._lock:
            self.batches.append(len(batch))
        fault = self.take_fault("/embed")
        if fault == "503":
            return 503, {"error": "Model is not healthy", "error_type": "Unhealthy"}
        if fault == "429":
            return 429, {"error": "Model is overloaded", "error_type": "Overloaded"}
        if not batch:
            return 422, {"error": "`inputs` cannot be empty", "error_type": "Empty"}
        if len(batch) > self.max_client_batch_size:
            return 413, {"error": f"batch size {len(batch)} > maximum allowed batch size {self.max_client_batch_size}",
                         "error_type": "Validation"}
        with self._lock:
            if self._active >= self.max_concurrent_requests:
                return 429, {"error": "Model is overloaded", "error_type": "Overloaded"}
            self._active += 1
        try:
            return 200, self.bad_reply(fault, batch) if fault else [vector(text, self.dim) for text in batch]
        finally:
            with self._lock:
                self._active -= 1


    def bad_reply(self, fault: str, batch: list[str]) -> Any:
        """The reply of an embedding fault (a 200), or the right vectors for `trickle`."""
        vectors: list[list[Any]] = [vector(text, self.dim) for text in batch]
        if fault == "nan":
            vectors[0][0] = float("nan")
        elif fault == "short":
            vectors = vectors[:-1]
        elif fault == "wide":
            vectors[0] = vectors[0] + [0.5]
        elif fault == "narrow":
            vectors = [v[:-1] for v in vectors]
        elif fault == "text":
            vectors = [["x"] * self.dim for _ in batch]
        return _Trickle(vectors) if fault == "trickle" else vectors


class _Trickle:
    """A payload to send a byte at a time."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return

    @property
    def app(self) -> TEIServer:
        return self.server.app  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        if self.path == "/health":
            self._send(200, {})
        elif self.path == "/info" and self.app.has_info:
            fault = self.app.take_fault("/info")
            if fault == "503":
                self._send(503, {"error": "Model is not healthy", "error_type": "Unhealthy"})
            else:
                self._send(200, _Trickle(self.app.info()) if fault == "trickle" else self.app.info())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        with self.app._lock:
            self.app.authorizations[self.headers.get("Authorization")] += 1
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path not in ("/", "/embed"):
            self._send(404, {"error": "not found"})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as error:
            self._send(422, {"error": f"Failed to parse the request body as JSON: {error}", "error_type": "Validation"})
            return
        self._send(*self.app.embed(body))

    def _send(self, status: int, payload: Any) -> None:
        with self.app._lock:
            self.app.status_counts[status] += 1
        trickle = isinstance(payload, _Trickle)
        # json writes NaN for a float nan (as a server in Python or Rust's serde with NaN allowed would)
        data = json.dumps(payload.payload if trickle else payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not trickle:
            self.wfile.write(data)
            return
        try:
            for i in range(len(data)):
                if self.app._stopped.wait(self.app.trickle_s):
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: what a deadline is for
            return
