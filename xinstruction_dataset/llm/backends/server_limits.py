"""Limits an endpoint reports about itself, read once per endpoint by `Endpoint.probe` (server.py).

Each kind names its routes, in order (`ServerConfig.LIMIT_SOURCES`); the first one the server
has (anything but 404/405) is the source:

- `/info` (TGI): `max_concurrent_requests`, `max_input_tokens`, `max_total_tokens`, kept as TGI
  sends them.
- `/props` (llama.cpp): `default_generation_settings.n_ctx` (the context of one slot: input and
  output together) as `max_total_tokens`, `total_slots` as `max_concurrent_requests`.
- `/v1/models` (vLLM, SGLang, OpenAI-compatible servers): `data[0].max_model_len` as
  `max_total_tokens`; no slot count (the recipe's `max_concurrency` stays the limit).
- `/server_info` and `/get_server_info` (SGLang's, the older name now a deprecated alias; its
  http_server.py answers the server arguments merged with the scheduler's info): `max_running_requests` (when set) as `max_concurrent_requests`,
  `max_req_input_len` as `max_input_tokens`, `context_length` (when set) less one as
  `max_total_tokens` (its tokenizer manager refuses input + max_new_tokens >= context_length).

The load gauges of a `/metrics` route (Prometheus text; vLLM's `vllm:num_requests_running` and
`vllm:num_requests_waiting`) are read by `read_load`: how many requests the server was running and
queueing when it was asked, which no limit is derived from (other clients may share the server).

Each is turned into the keys of TGI's `/info` (`Limits.info`). A server with none of them gets the
recipe's limits. The recipe's `max_input_tokens` / `max_total_tokens` override what a server says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .http import HTTPSession, HTTPStatusError

NO_SOURCE = "the recipe"  # `Limits.source` when the server has none of LIMIT_SOURCES


@dataclass
class Limits:
    source: str  # one of LIMIT_SOURCES, or NO_SOURCE
    info: dict[str, Any] = field(default_factory=dict)  # in TGI's /info keys


class LimitsError(Exception):
    """A limits route that answered, but not with usable limits (an HTTP error or a bad body)."""

    def __init__(self, path: str, error: Exception) -> None:
        super().__init__(f"{path}: {type(error).__name__}: {error}")
        self.path = path
        self.error = error


async def read_limits(http: HTTPSession, url: str, headers: dict[str, str], sources: tuple[str, ...]) -> Limits:
    """The first of `sources` the server at `url` has, as `Limits`. Transport errors and
    timeouts propagate as they are (the caller tells a server down from a slow one); any other
    failure of a route that answered is a `LimitsError` naming it."""
    for path in sources:
        response = await http.get(url + path, headers)
        if response.status in (404, 405):
            continue
        try:
            if not 200 <= response.status < 300:
                raise HTTPStatusError(url + path, response.status, response.body)
            return Limits(path, _PARSERS[path](response.json()))
        except Exception as error:  # noqa: BLE001 - an HTTP error or a bad body: named, then reported
            raise LimitsError(path, error) from error
    return Limits(NO_SOURCE)


def describe(limits: Limits) -> str:
    """The limits a source gave, for the log line (`key=value`, the ones it had)."""
    keys = ("max_concurrent_requests", "max_input_tokens", "max_total_tokens")
    said = [f"{key}={limits.info[key]}" for key in keys if limits.info.get(key) is not None]
    return ", ".join(said) or "no limits"


def _info(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError(f"not a JSON object: {type(body).__name__}")
    return body


def _props(body: Any) -> dict[str, Any]:
    settings = _info(body).get("default_generation_settings")
    if not isinstance(settings, dict):
        raise ValueError("no default_generation_settings object")
    return _present(
        max_total_tokens=_positive(settings.get("n_ctx"), "default_generation_settings.n_ctx"),
        max_concurrent_requests=_positive(body.get("total_slots"), "total_slots"),
        model_id=body.get("model_path") if isinstance(body.get("model_path"), str) else None,
    )


def _models(body: Any) -> dict[str, Any]:
    data = _info(body).get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ValueError("no data[0] model object")
    model = data[0]
    return _present(
        max_total_tokens=_positive(model.get("max_model_len"), "data[0].max_model_len"),
        model_id=model.get("id") if isinstance(model.get("id"), str) else None,
    )


def _server_info(body: Any) -> dict[str, Any]:
    body = _info(body)
    return _present(
        max_concurrent_requests=_positive(body.get("max_running_requests"), "max_running_requests"),
        max_input_tokens=_positive(body.get("max_req_input_len"), "max_req_input_len"),
        # SGLang refuses a request whose input + max_new_tokens reaches context_length: one token less.
        max_total_tokens=_minus_one(_positive(body.get("context_length"), "context_length")),
        model_id=body.get("model_path") if isinstance(body.get("model_path"), str) else None,
    )


async def read_load(http: HTTPSession, url: str, headers: dict[str, str], path: str, gauges: tuple[str, ...]) -> dict[str, float]:
    """The `gauges` a Prometheus `path` shows now ({name: value}, summed over label sets: one
    per model/engine); {} when the route is missing or answers garbage (the load is only shown)."""
    response = await http.get(url + path, headers)
    if response.status != 200:
        return {}
    return prometheus_gauges(response.text, gauges)


def prometheus_gauges(text: str, gauges: tuple[str, ...]) -> dict[str, float]:
    """Sum of each of `gauges` over its samples in a Prometheus text exposition."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        if name not in gauges:
            continue
        value = rest.rsplit("}", 1)[-1].split()[0] if "}" in rest else rest.split()[0]
        try:
            found[name] = found.get(name, 0.0) + float(value)
        except ValueError:
            continue  # a malformed sample: the rest still count
    return found


def _positive(value: Any, name: str) -> int | None:
    """A positive integer, None when absent; anything else is a bad body."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} is not a positive integer: {value!r}")
    return value


def _minus_one(value: int | None) -> int | None:
    return value - 1 if value is not None and value > 1 else value


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


_PARSERS = {"/info": _info, "/props": _props, "/v1/models": _models, "/server_info": _server_info,
            "/get_server_info": _server_info}
LIMIT_ROUTES = tuple(_PARSERS)  # the routes a kind may name in LIMIT_SOURCES
