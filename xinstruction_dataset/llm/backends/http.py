"""The HTTP transport of the model servers (server.py's `Endpoint`): one aiohttp session per
endpoint and event loop, for every route and for the limits probe.

Why aiohttp and not huggingface_hub's clients (httpx underneath): a labelling driver's CPU per
request bounds how many slots one driver keeps busy (a slot waits for the client's next request
while the client is busy elsewhere). Side by side on one TGI-protocol server (64 slots, 10 ms, 32
in flight; benchmarks/bench_http_client.py): AsyncInferenceClient.text_generation 1.62 CPU-ms
per request, huggingface_hub's httpx session 1.23, aiohttp 0.26. aiohttp is maintained and
already installed with `datasets` (fsspec's HTTP file system).

What a route needs, and nothing else:
- `post_json(url, payload, headers, body_cap)`: the reply body of a 2xx, read in pieces and
  refused (`ReplyTooLarge`) as soon as it is over `body_cap` bytes (or says so by Content-Length),
  so an oversized reply is never held whole; any other status is an `HTTPStatusError` carrying
  the head of the server's body (classified by remote.py: retryable or not, secrets scrubbed);
- `get(url, headers, body_cap)`: status and body of a small route (limits, /metrics).
Transport failures stay aiohttp's own exceptions and timeouts `asyncio.TimeoutError`
(remote.py names them).

Proxies from the environment (HTTP_PROXY, NO_PROXY...) are honoured, as httpx does, but looked up
once per URL here (the standard library's `getproxies`/`proxy_bypass`), not by aiohttp's
`trust_env`: that looks up the proxy and the netrc file in a worker thread on every request, two
thread round trips between a slot's reply and the next request (benchmarks/
bench_pipeline_throughput.py scenario 6 measured the slot time they cost). No netrc, as
huggingface_hub's clients, and no cookie jar: model servers set none worth keeping.

User info in an endpoint URL (`http://user:password@host`) is sent as Basic auth, as httpx does,
unless the request already carries an `Authorization` header (the endpoint's token): aiohttp
refuses to combine the two, and the token is the one the recipe asked for by name.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

ERROR_BODY_BYTES = 64 * 1024  # the head of an error body kept for the message (it is cut to 500 chars)
SMALL_BODY_BYTES = 4 * 1024 * 1024  # limits and /metrics answers: far below this
CHUNK_BYTES = 64 * 1024


class HTTPStatusError(Exception):
    """A reply with a status outside 2xx: the status and the head of the server's body."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        self.url = url
        self.status = status
        self.body = body.decode("utf-8", "replace")
        super().__init__(f"HTTP {status}")


class ReplyTooLarge(Exception):
    """A reply body over the cap the caller gave (`size` says how it was told)."""

    def __init__(self, size: str, body_cap: int) -> None:
        self.size = size
        self.body_cap = body_cap
        super().__init__(f"a reply body of {size} > {body_cap}")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class HTTPSession:
    """One endpoint's HTTP client: an aiohttp session for the running event loop (a session is
    bound to the loop it was made in), made on first use, closed by `aclose`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wire: dict[str, _Address] = {}

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # No connection limit here: the endpoint pool hands out the server's slots.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return self._session

    def _address(self, url: str) -> "_Address":
        """How to send to `url`: without its user info (that as Basic auth), through the
        environment's proxy for it, if any (worked out once per URL: a route's URLs are few)."""
        address = self._wire.get(url)
        if address is None:
            address = self._wire[url] = _Address.of(url)
        return address

    async def post_json(self, url: str, payload: dict[str, Any], headers: dict[str, str], body_cap: int) -> bytes:
        data = json.dumps(payload).encode()
        address = self._address(url)
        async with self._current().post(
            address.url, data=data, headers=address.headers({**headers, "Content-Type": "application/json"}), proxy=address.proxy,
        ) as response:
            if not 200 <= response.status < 300:
                raise HTTPStatusError(url, response.status, await response.content.read(ERROR_BODY_BYTES))
            return await _read_capped(response, body_cap)

    async def get(self, url: str, headers: dict[str, str], body_cap: int = SMALL_BODY_BYTES) -> Reply:
        address = self._address(url)
        async with self._current().get(address.url, headers=address.headers(headers), proxy=address.proxy) as response:
            if not 200 <= response.status < 300:
                return Reply(response.status, await response.content.read(ERROR_BODY_BYTES))
            return Reply(response.status, await _read_capped(response, body_cap))

    async def aclose(self) -> None:
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()


@dataclass(frozen=True)
class _Address:
    url: str  # without user info
    basic: str | None  # the URL's user info as an Authorization header value
    proxy: str | None  # the environment's proxy for the URL

    @classmethod
    def of(cls, url: str) -> "_Address":
        parsed = URL(url)
        basic = None
        if parsed.user is not None:
            basic = "Basic " + base64.b64encode(f"{parsed.user}:{parsed.password or ''}".encode()).decode("ascii")
            url = str(parsed.with_user(None))
        proxy = None
        if not (parsed.host and urllib.request.proxy_bypass(parsed.host)):
            proxy = urllib.request.getproxies().get(parsed.scheme)
        return cls(url, basic, proxy)

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """`headers` with the URL's user info as Basic auth, unless they set Authorization."""
        if self.basic is None or any(name.lower() == "authorization" for name in headers):
            return headers
        return {**headers, "Authorization": self.basic}


async def _read_capped(response: aiohttp.ClientResponse, body_cap: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > body_cap:
        raise ReplyTooLarge(f"{declared} bytes", body_cap)
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        body += chunk
        if len(body) > body_cap:
            raise ReplyTooLarge(f"more than {body_cap} bytes", body_cap)
    return bytes(body)
