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

Faults, injected with `inject(kind, count)` and consumed by the next requests: `503` (TEI's
unhealthy reply), `429` (overloaded). `batches` logs each request's batch size (refused ones too).
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("503", "429")


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
                 max_concurrent_requests: int = 512, has_info: bool = True) -> None:
        self.model_id, self.dim = model_id, dim
        self.max_client_batch_size = max_client_batch_size
        self.max_concurrent_requests = max_concurrent_requests
        self.has_info = has_info
        self.batches: list[int] = []  # batch size of every embedding request, in arrival order
        self.status_counts: Counter[int] = Counter()
        self.authorizations: Counter[str | None] = Counter()
        self._faults: list[list[Any]] = []  # [kind, remaining]
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
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def inject(self, kind: str, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append([kind, count])

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
            fault = next((f for f in self._faults if f[1] > 0), None)
            if fault is not None:
                fault[1] -= 1
        if fault is not None and fault[0] == "503":
            return 503, {"error": "Model is not healthy", "error_type": "Unhealthy"}
        if fault is not None and fault[0] == "429":
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
            return 200, [vector(text, self.dim) for text in batch]
        finally:
            with self._lock:
                self._active -= 1


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
            self._send(200, self.app.info())
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
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
