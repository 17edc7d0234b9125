"""A server that speaks TGI's protocol, for tests and benchmarks (real HTTP on 127.0.0.1).

Routes: `POST /generate` and `POST /` (TGI's native route; `/` answers a one-element list, as TGI
does), `POST /v1/chat/completions` and `POST /v1/completions` (OpenAI-compatible chat and text
completions), `GET /info`, `GET /health`, and `GET /stats` (the request log, below; not TGI's).

`limits_route` picks how the server tells its limits: `"info"` (TGI's `GET /info`, the default),
`"props"` (llama.cpp's `GET /props`: `default_generation_settings.n_ctx` = `max_total_tokens`,
`total_slots` = `max_concurrent_requests`), `"models"` (vLLM's `GET /v1/models`: `data[0].max_model_len`
= `max_total_tokens`, no slot count; the `openai` flavour's has no max_model_len, as OpenAI's),
`"server_info"` (SGLang's `GET /server_info`, and `GET /get_server_info`, its deprecated alias: `max_running_requests` = `max_concurrent_requests`,
`max_req_input_len` = `max_input_tokens`, `context_length` = `max_total_tokens`; also `/v1/models`)
or `"none"`; `has_info=False` is `"none"`. The `vllm` flavour also serves `GET /metrics`
(Prometheus text: `vllm:num_requests_running` and `vllm:num_requests_waiting`, the requests in a
slot and those queued for one, as vLLM's metrics.py names its gauges).
`completion_bodies` and `chat_bodies` keep the JSON bodies the OpenAI routes received.

The "model" is a deterministic function `reply(prompt, parameters) -> str` (default: echoes the
prompt's last words and the seed). Like TGI, the server honours `stop` (the stop string ends the
text, kept in it), `max_new_tokens` (a word is a token), and answers 429 "Model is overloaded" past
`max_concurrent_requests` requests at once.

It refuses what the real servers refuse, with their status codes and messages (`flavour`):
- `"tgi"` (the default; TGI's router `validation.rs`): 422 `Input validation error: ...` for
  `temperature <= 0`, `top_p` outside (0, 1), `top_k <= 0`, `max_new_tokens == 0`, more stop
  strings than `max_stop_sequences`, empty `inputs`, input over `max_input_tokens` or input +
  `max_new_tokens` over `max_total_tokens`. On the OpenAI routes TGI reads no `top_k` (ignored),
  takes `temperature: 0` as greedy, and ignores `model`.
- `"vllm"`: no native route, limits from `/v1/models`; 404 `The model `X` does not exist.` for a
  `model` it does not serve; 400 for `temperature < 0`, `top_p` outside (0, 1], `top_k` other than
  -1, 0 or >= 1, `max_tokens < 1`, and input + `max_tokens` over the context ("This model's
  maximum context length is ...").
  The context error is vLLM's since v0.18 (entrypoints/openai/serving_engine.py, `_validate_input`),
  in its error envelope since v0.10.1 (`{"error": {"message", "type": "BadRequestError", "param",
  "code": 400}}`): "This model's maximum context length is N tokens. However, you requested M
  output tokens and your prompt contains T input tokens, for a total of T+M tokens. ..."
- `"sglang"`: no TGI native route, limits from `/server_info`; 400 in SGLang's ErrorResponse
  (`{"object": "error", "message", "type": "BadRequest", "param": null, "code": 400}`) for what its
  SamplingParams.verify refuses (python/sglang/srt/sampling/sampling_params.py: temperature < 0,
  top_p outside (0, 1], top_k other than -1 or >= 1 (0 included), max_new_tokens < 0) and for its
  tokenizer manager's context checks: "The input (N tokens) is longer than the model's context
  length (M tokens)." and "Requested token count exceeds the model's maximum context length of M
  tokens. You requested a total of T tokens: N tokens from the input messages and K tokens for
  the completion. ...". `temperature: 0` is greedy; `model` is not checked.
- `"llamacpp"`: no native route, limits from `/props`; 400 `exceed_context_size_error` for input
  + `max_tokens` over `n_ctx`; any sampling value is taken.
- `"openai"`: OpenAI's own API: no native route, `/v1/models` without a context length; 400
  `invalid_request_error` "Unrecognized request argument supplied: <name>" for a body field the
  API does not have (`top_k` among them), 404 `model_not_found` for a `model` it does not serve,
  and its context error ("This model's maximum context length is N tokens, however you requested
  T tokens (P in your prompt; K for the completion). ...").
Tokens are counted by `count` (a function, e.g. a real tokenizer), else by `tokens_per_byte`:
a number (tokens per UTF-8 byte, every script), or None (the default): a byte-fallback tokenizer,
a token per 3 ASCII bytes (a multilingual tokenizer on Swahili or Finnish; English does better) and
one per byte of any other script (Thai, Tamil, Bengali...: a client estimating 2 bytes a token
sends twice too much). Chat messages add `CHAT_TEMPLATE_TOKENS` each. `slots` requests are processed at once, each taking
`latency` seconds; the rest queue (FIFO), so the server's limit is slots / latency requests a second.
`service_time="lognormal"` draws each request's time from a log-normal distribution with mean
`latency` and shape `sigma` (seeded by `seed`, so a run is reproducible up to arrival order);
`service_time()` draws one without sleeping (tests check the distribution in-process).

Every answered generation is logged (`requests`: arrival, start of service, end of service, on
`time.monotonic()`, which on Linux is one clock for every process); `stats()` and `GET /stats`
give the log and its summary, so a benchmark in another process can measure how busy the slots
were between the first arrival and the last answer (`utilisation` = busy-slot-seconds /
(slots x span)).

`curation_reply(needs_refinement=, bad=)` is a model for the curation pipeline (`xinstruction
build`): plausible English instructions, and judge labels drawn per prompt by hashing it, so
the share of pairs sent to refinement is fixed and a rerun labels every pair the same way.

Faults, injected with `inject(kind, count, match)` and consumed in order by matching requests:
`429`, `503` (error replies), `hang` (no reply until the server stops: the client times out),
`malformed` (200 with a truncated JSON body), `drop` (connection closed without a reply),
`huge` (200 whose text is `huge_reply_bytes` bytes, whatever `max_new_tokens` says),
`echo_headers` (500 whose body echoes the request's headers, Authorization included).
`info_hang=True`: `GET /info` never answers (until the server stops).
`kill()` closes the listener and every open connection at once; `restart()` listens again on the
same port. `successes` (replies written) / `attempts` count requests per prompt, across restarts;
`authorizations` counts the Authorization headers received.

Run as a script to serve from another process (benchmarks):
    python tests/tgi_server.py --slots 16 --latency 0.2    # prints the URL, serves until killed
    python tests/tgi_server.py --slots 32 --latency 0.2 --service-time lognormal --sigma 0.5 \
        --reply curation --needs-refinement 0.3 --bad 0.2
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FLAVOURS = ("tgi", "vllm", "sglang", "llamacpp", "openai")
# The body fields of OpenAI's own completions and chat completions APIs (platform.openai.com API
# reference); the `openai` flavour refuses any other.
OPENAI_FIELDS = {
    "completions": {"model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
                    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user"},
    "chat": {"model", "messages", "audio", "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens",
             "metadata", "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty", "reasoning_effort",
             "response_format", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
             "tool_choice", "tools", "top_logprobs", "top_p", "user"},
}
DEFAULT_LIMITS_ROUTES = {"vllm": "models", "sglang": "server_info", "llamacpp": "props", "openai": "models"}
CHAT_TEMPLATE_TOKENS = 4  # a chat template's role markers, per message
ASCII_BYTES_PER_TOKEN = 3  # the default count's bytes a token of Latin-script text
FAULT_KINDS = ("429", "503", "hang", "malformed", "drop", "huge", "echo_headers")
SERVICE_TIMES = ("fixed", "lognormal")
REPLIES = ("echo", "curation")
LIMITS_ROUTES = ("info", "props", "models", "server_info", "none")
Reply = Callable[[str, dict[str, Any]], str]


def echo_reply(prompt: str, parameters: dict[str, Any]) -> str:
    """The default model: the prompt's last five words, reversed, and the seed."""
    words = prompt.split()[-5:]
    return " ".join(reversed(words)) + f" (seed {parameters.get('seed')})"


# Prompt marks of the curation stages (xinstruction_dataset/curation/*/prompts/*.txt).
GENERATE_MARK = "### English Instruction:"
JUDGE_LABEL_MARK = "### Label"
JUDGE_SCORE_MARK = "### Score"
REFINE_INSTRUCTION_MARK = "### Improved English Instruction:"
REFINE_RESPONSE_MARK = "### Improved Response"
TOPICS = ["farming", "football", "elections", "rainfall", "schools", "hospitals", "music", "trade", "roads", "fishing"]


def prompt_fraction(prompt: str) -> float:
    """A number in [0, 1) fixed by the prompt (the same on every run and machine)."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big") / 2**64


def judge_label(prompt: str, needs_refinement: float, bad: float) -> str:
    """good / needs_refinement / bad for a judge prompt: `needs_refinement` and `bad` are the
    shares of prompts given those labels (by hashing the prompt), the rest are good."""
    u = prompt_fraction(prompt)
    if u < needs_refinement:
        return "needs_refinement"
    if u < needs_refinement + bad:
        return "bad"
    return "good"


def _section(prompt: str, header: str) -> str:
    """The text under `### <header>:` (or `### <header> ...:`) in a prompt; "" without one."""
    at = prompt.rfind(f"### {header}")
    if at < 0:
        return ""
    body = prompt[at:].split("\n", 1)
    return body[1].split("\n\n### ", 1)[0] if len(body) > 1 else ""


def curation_reply(needs_refinement: float = 0.3, bad: float = 0.2) -> Reply:
    """A model for `xinstruction build`: English instructions of a few words that pass the
    generator's checks (about the document's topic, never copying it), run on past the answer as
    a base model does; judge labels by `judge_label` (five-point judges: 5 / 3 / 1); rewritten
    instructions in English, rewritten responses the original response unchanged."""
    if not 0 <= needs_refinement <= 1 or not 0 <= bad <= 1 - needs_refinement:
        raise ValueError("need 0 <= needs_refinement, bad and needs_refinement + bad <= 1")

    def reply(prompt: str, parameters: dict[str, Any]) -> str:
        stripped = prompt.rstrip()
        if stripped.endswith(GENERATE_MARK):
            text = _section(prompt, "Text")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            topic = TOPICS[int(digest, 16) % len(TOPICS)]
            return f" Write a short news report about {topic} for readers of story number {digest[:6]}.\n\n### Text:\nblah"
        if REFINE_INSTRUCTION_MARK in prompt:
            digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
            topic = TOPICS[int(digest, 16) % len(TOPICS)]
            return f" Describe the events about {topic} reported in news story number {digest[:6]} in detail."
        if REFINE_RESPONSE_MARK in prompt:
            return " " + _section(prompt, "Response")
        if JUDGE_LABEL_MARK in prompt or JUDGE_SCORE_MARK in prompt:
            label = judge_label(prompt, needs_refinement, bad)
            if JUDGE_SCORE_MARK in prompt and JUDGE_LABEL_MARK not in prompt:
                return " " + {"good": "5", "needs_refinement": "3", "bad": "1"}[label]
            return f" {label}\nThe pair was judged."
        return echo_reply(prompt, parameters)

    return reply


def count_tokens(text: str, tokens_per_byte: float | None = None) -> int:
    """The server's tokenizer: `tokens_per_byte` tokens a UTF-8 byte; None: a byte-fallback
    tokenizer (a token per `ASCII_BYTES_PER_TOKEN` ASCII bytes, a token per byte of every other script)."""
    data = text.encode("utf-8")
    if tokens_per_byte is not None:
        return math.ceil(len(data) * tokens_per_byte)
    non_ascii = sum(1 for byte in data if byte >= 0x80)
    return math.ceil((len(data) - non_ascii) / ASCII_BYTES_PER_TOKEN) + non_ascii


class Refusal(Exception):
    """A request the real server refuses: its status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def tgi_refusal(message: str) -> Refusal:
    return Refusal(422, {"error": f"Input validation error: {message}", "error_type": "validation"})


def vllm_refusal(message: str, status: int = 400, kind: str = "BadRequestError", param: str | None = None) -> Refusal:
    """vLLM's error envelope (since v0.10.1: entrypoints/openai/protocol.py ErrorResponse)."""
    return Refusal(status, {"error": {"message": message, "type": kind, "param": param, "code": status}})


def sglang_refusal(message: str, status: int = 400) -> Refusal:
    """SGLang's ErrorResponse (entrypoints/openai/protocol.py; serving_base.create_error_response)."""
    return Refusal(status, {"object": "error", "message": message, "type": "BadRequest", "param": None, "code": status})


def openai_refusal(message: str, status: int = 400, code: str | None = None, param: str | None = None) -> Refusal:
    return Refusal(status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})


def refusal_message(body: dict[str, Any]) -> str:
    """The message of a refusal body, whichever envelope it is in."""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message"))
    return str(error or body.get("message"))


@dataclass
class Fault:
    kind: str
    remaining: int
    match: str | None = None  # only requests whose prompt contains this


class _Abort(Exception):
    """End this connection without a reply (hang released by stop/kill, or an injected drop)."""


class TGIServer:
    """A TGI-protocol server on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        *,
        reply: Reply = echo_reply,
        model_id: str = "test/echo-model",
        slots: int = 4,
        latency: float = 0.0,
        service_time: str = "fixed",
        sigma: float = 0.5,
        seed: int = 0,
        max_concurrent_requests: int | None = None,
        max_input_tokens: int = 1024,
        max_total_tokens: int = 2048,
        native_route: bool = True,
        has_info: bool = True,
        port: int = 0,
        info_hang: bool = False,
        huge_reply_bytes: int = 20_000_000,
        limits_route: str | None = None,
        flavour: str = "tgi",
        tokens_per_byte: float | None = None,
        count: Callable[[str], int] | None = None,
        max_stop_sequences: int = 4,
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        self.flavour = flavour
        self.tokens_per_byte = tokens_per_byte
        self._count = count
        self.max_stop_sequences = max_stop_sequences
        if flavour != "tgi":  # only TGI has its /generate and /info
            native_route = False
            limits_route = limits_route or DEFAULT_LIMITS_ROUTES[flavour]
        self.reply = reply
        self.model_id = model_id
        self.slots = slots
        self.latency = latency  # the mean service time
        if service_time not in SERVICE_TIMES:
            raise ValueError(f"service_time must be one of {SERVICE_TIMES}")
        self.service_time_kind = service_time
        self.sigma = sigma
        self._rng = random.Random(seed)
        self.requests: list[tuple[float, float, float]] = []  # (arrival, service start, end), answered ones
        self.max_concurrent_requests = max_concurrent_requests or slots
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.native_route = native_route  # False: like llama.cpp, no `/` or `/generate`
        self.has_info = has_info  # False: like vLLM, no /info
        self.info_hang = info_hang  # True: /info never answers (until the server stops)
        self.huge_reply_bytes = huge_reply_bytes  # the text size of fault `huge`
        self.limits_route = limits_route or ("info" if has_info else "none")  # see the module docstring
        if self.limits_route not in LIMITS_ROUTES:
            raise ValueError(f"limits_route must be one of {LIMITS_ROUTES}")
        self.has_info = self.has_info and self.limits_route == "info"
        self.completion_bodies: list[dict[str, Any]] = []  # bodies POST /v1/completions received
        self.chat_bodies: list[dict[str, Any]] = []  # bodies POST /v1/chat/completions received
        self.server_info_paths = ("/server_info", "/get_server_info")  # SGLang's (an older one has only the second)
        self.port = port
        self.attempts: Counter[str] = Counter()  # every generation request, by prompt
        self.successes: Counter[str] = Counter()  # generation requests answered 200 with a result
        self.status_counts: Counter[int] = Counter()
        self.authorizations: Counter[str | None] = Counter()  # Authorization headers seen
        self.peak_active = 0  # most generation requests handled at once
        # (requests in progress with this one, requests answered before it) at each arrival
        self.arrivals: list[tuple[int, int]] = []
        self.refusals: list[str] = []  # the messages of refused requests (validation, context, model)
        self._active = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._slot_free_at = [0.0] * slots  # a heap: when each slot is next free
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TGIServer":
        self._stopping = threading.Event()
        self._slot_free_at = [0.0] * self.slots  # a restarted server starts idle
        self._httpd = _HTTPServer(("127.0.0.1", self.port), _Handler, app=self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def kill(self) -> None:
        """Stop at once: listener closed, open connections cut, requests in progress unanswered."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.cut_connections()
        self._httpd = None

    stop = kill

    def restart(self, downtime: float = 0.0) -> None:
        """Kill, wait `downtime` seconds, listen again on the same port."""
        self.kill()
        time.sleep(downtime)
        self.start()

    def __enter__(self) -> "TGIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # --- faults and counters ----------------------------------------------------------------

    def inject(self, kind: str, count: int = 1, match: str | None = None) -> None:
        """The next `count` generation requests (containing `match`, if given) get fault `kind`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(Fault(kind, count, match))

    def repeated_after_success(self) -> dict[str, int]:
        """Prompts answered successfully more than once (a client that repeats finished calls)."""
        return {prompt: n for prompt, n in self.successes.items() if n > 1}

    def count_success(self, prompt: str) -> None:
        """A generation answered: counted once its reply is written (a kill before that is no success)."""
        with self._lock:
            self.successes[prompt] += 1

    def _take_fault(self, prompt: str) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.match is None or fault.match in prompt):
                    fault.remaining -= 1
                    return fault.kind
        return None

    def service_time(self) -> float:
        """One request's service time: `latency`, or a log-normal draw with mean `latency`."""
        if self.service_time_kind == "fixed" or self.latency <= 0:
            return self.latency
        mu = math.log(self.latency) - self.sigma**2 / 2  # E[exp(N(mu, sigma))] = latency
        with self._lock:
            return self._rng.lognormvariate(mu, self.sigma)

    def _book_slot(self) -> tuple[float, float]:
        """(start, end) of this request's generation: it takes the slot that frees first (FIFO
        queue). Booked on a clock rather than by sleeping threads taking turns, so the server's
        own thread wake-ups (GIL, a loaded machine) never leave a slot idle: only a client that
        has no request waiting does."""
        duration = self.service_time()
        with self._lock:
            free_at = heapq.heappop(self._slot_free_at)
            start = max(time.monotonic(), free_at)
            heapq.heappush(self._slot_free_at, start + duration)
        return start, start + duration

    def stats(self) -> dict[str, Any]:
        """The answered generations' log and its summary: `span` runs from the first arrival to
        the last end of service; `busy` is the slot-seconds spent serving; `utilisation` =
        busy / (slots x span), which is also requests/s over the limit slots / (mean service
        time), taking the mean of the service times drawn."""
        with self._lock:
            requests = list(self.requests)
            statuses = {str(status): n for status, n in self.status_counts.items()}
        summary: dict[str, Any] = {"slots": self.slots, "latency": self.latency,
                                   "service_time": self.service_time_kind, "sigma": self.sigma,
                                   "count": len(requests), "statuses": statuses, "requests": requests}
        if requests:
            first = min(r[0] for r in requests)
            last = max(r[2] for r in requests)
            busy = sum(r[2] - r[1] for r in requests)
            span = last - first
            summary.update(first_arrival=first, last_end=last, span=span, busy=busy,
                           utilisation=busy / (self.slots * span) if span > 0 else None)
        return summary

    def _enter(self) -> bool:
        with self._lock:
            if self._active >= self.max_concurrent_requests:
                return False
            self._active += 1
            self.peak_active = max(self.peak_active, self._active)
            self.arrivals.append((self._active, sum(self.successes.values())))
            return True

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1

    # --- the model ------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """This server's token count of `text` (`count`, else `tokens_per_byte`)."""
        return self._count(text) if self._count is not None else count_tokens(text, self.tokens_per_byte)

    def generate(
        self, prompt: str, parameters: dict[str, Any], *, route: str = "generate", prompt_tokens: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(status, body) of one generation: faults, overload, validation, queue, reply.
        `route`: generate, chat or completions (what is validated depends on it and the flavour);
        `prompt_tokens`: the input's count where the route adds to the prompt (a chat template)."""
        arrival = time.monotonic()
        tokens = self.count_tokens(prompt) if prompt_tokens is None else prompt_tokens
        with self._lock:
            self.attempts[prompt] += 1
        fault = self._take_fault(prompt)
        if fault is not None:
            return self._fault_reply(fault)
        if not self._enter():
            return 429, {"error": "Model is overloaded", "error_type": "overloaded"}
        try:
            try:
                self._validate(prompt, tokens, parameters, route)
            except Refusal as refusal:
                with self._lock:
                    self.refusals.append(refusal_message(refusal.body))
                return refusal.status, refusal.body
            start, end = self._book_slot()
            if self._stopping.wait(max(0.0, end - time.monotonic())):
                raise _Abort()
            text, finish_reason, new_tokens = self._run_model(prompt, parameters)
        finally:
            self._leave()
        with self._lock:
            self.requests.append((arrival, start, end))
        return 200, {"generated_text": text, "finish_reason": finish_reason, "generated_tokens": new_tokens,
                     "prompt_tokens": tokens}

    def _fault_reply(self, fault: str) -> tuple[int, dict[str, Any]]:
        if fault == "429":
            return 429, {"error": "Model is overloaded", "error_type": "overloaded"}
        if fault == "503":
            return 503, {"error": "Service Unavailable", "error_type": "unhealthy"}
        if fault == "hang":
            self._stopping.wait()
        if fault == "huge":
            text = "x" * self.huge_reply_bytes
            return 200, {"generated_text": text, "finish_reason": "length", "generated_tokens": 1, "prompt_tokens": 1}
        raise _Abort(fault)  # hang (released by stop), drop, malformed, echo_headers: handled by the handler

    def _validate(self, prompt: str, tokens: int, parameters: dict[str, Any], route: str) -> None:
        """Raise the `Refusal` the real server (`flavour`) answers to this request, if any."""
        if self.flavour == "vllm":
            self._validate_vllm(tokens, parameters)
        elif self.flavour == "sglang":
            self._validate_sglang(tokens, parameters)
        elif self.flavour == "llamacpp":
            self._validate_llamacpp(tokens, parameters)
        elif self.flavour == "openai":
            self._validate_openai(tokens, parameters, route)
        else:
            self._validate_tgi(prompt, tokens, parameters, route)

    def _validate_tgi(self, prompt: str, tokens: int, parameters: dict[str, Any], route: str) -> None:
        """TGI's router (validation.rs), in its order. The OpenAI routes read no top_k, and take
        temperature 0 as greedy (the native route refuses it)."""
        temperature, top_p, top_k = parameters.get("temperature"), parameters.get("top_p"), parameters.get("top_k")
        if route != "generate" and temperature == 0:
            temperature = None
        if temperature is not None and temperature <= 0:
            raise tgi_refusal("`temperature` must be strictly positive")
        if top_p is not None and not 0 < top_p < 1:
            raise tgi_refusal("`top_p` must be > 0.0 and < 1.0")
        if route == "generate" and top_k is not None and top_k <= 0:
            raise tgi_refusal("`top_k` must be strictly positive")
        max_new_tokens = parameters.get("max_new_tokens")
        if max_new_tokens is not None and max_new_tokens <= 0:
            raise tgi_refusal("`max_new_tokens` must be strictly positive")
        stop = parameters.get("stop") or []
        if len(stop) > self.max_stop_sequences:
            raise tgi_refusal(f"`stop` supports up to {self.max_stop_sequences} stop sequences. Given: {len(stop)}")
        if not prompt:
            raise tgi_refusal("`inputs` cannot be empty")
        new_tokens = int(max_new_tokens or 20)
        if tokens > self.max_input_tokens:
            raise tgi_refusal(f"`inputs` must have less than {self.max_input_tokens} tokens. Given: {tokens}")
        if tokens + new_tokens > self.max_total_tokens:
            raise tgi_refusal(
                f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. "
                f"Given: {tokens} `inputs` tokens and {new_tokens} `max_new_tokens`"
            )

    def _validate_vllm(self, tokens: int, parameters: dict[str, Any]) -> None:
        """vLLM's SamplingParams checks and its context check (400 BadRequestError)."""
        temperature, top_p, top_k = parameters.get("temperature"), parameters.get("top_p"), parameters.get("top_k")
        if temperature is not None and temperature < 0:
            raise vllm_refusal(f"temperature must be non-negative, got {temperature}.")
        if top_p is not None and not 0 < top_p <= 1:
            raise vllm_refusal(f"top_p must be in (0, 1], got {top_p}.")
        if top_k is not None and top_k < -1:
            raise vllm_refusal(f"top_k must be -1 (disable), or at least 1, got {top_k}.")
        max_tokens = parameters.get("max_new_tokens")
        if max_tokens is not None and max_tokens < 1:
            raise vllm_refusal(f"max_tokens must be at least 1, got {max_tokens}.")
        new_tokens = int(max_tokens or 16)
        if tokens + new_tokens > self.max_total_tokens:
            raise vllm_refusal(
                f"This model's maximum context length is {self.max_total_tokens} tokens. However, you requested "
                f"{new_tokens} output tokens and your prompt contains {tokens} input tokens, for a total of "
                f"{tokens + new_tokens} tokens. Please reduce the length of the input prompt or the number of "
                f"requested output tokens. (parameter=input_tokens, value={tokens})", param="input_tokens",
            )

    def _validate_sglang(self, tokens: int, parameters: dict[str, Any]) -> None:
        """SGLang's SamplingParams (after its __post_init__: temperature 0 is greedy, a missing
        top_k is -1) and its tokenizer manager's context checks, in their order."""
        temperature, top_p = parameters.get("temperature"), parameters.get("top_p")
        top_k = parameters.get("top_k")
        if temperature is not None and temperature < 0:
            raise sglang_refusal(f"temperature must be a non-negative finite number, got {temperature}.")
        if top_p is not None and not 0 < top_p <= 1:
            raise sglang_refusal(f"top_p must be in (0, 1], got {top_p}.")
        if top_k is not None and top_k < 1 and top_k != -1:
            raise sglang_refusal(f"top_k must be -1 (disable) or at least 1, got {top_k}.")
        max_new_tokens = parameters.get("max_new_tokens")
        if max_new_tokens is not None and max_new_tokens < 0:
            raise sglang_refusal(f"max_new_tokens must be at least 0, got {max_new_tokens}.")
        context = self.max_total_tokens
        if tokens >= context:
            raise sglang_refusal(f"The input ({tokens} tokens) is longer than the model's context length ({context} tokens).")
        new_tokens = int(max_new_tokens if max_new_tokens is not None else 128)
        if tokens + new_tokens >= context:
            raise sglang_refusal(
                f"Requested token count exceeds the model's maximum context length of {context} tokens. You requested a "
                f"total of {tokens + new_tokens} tokens: {tokens} tokens from the input messages and {new_tokens} tokens "
                "for the completion. Please reduce the number of tokens in the input messages or the completion to fit "
                "within the limit."
            )

    def _validate_openai(self, tokens: int, parameters: dict[str, Any], route: str) -> None:
        """OpenAI's API: sampling ranges and the context (its unknown fields: `unknown_field`)."""
        temperature, top_p = parameters.get("temperature"), parameters.get("top_p")
        if temperature is not None and not 0 <= temperature <= 2:
            raise openai_refusal(f"{temperature} is greater than the maximum of 2 - 'temperature'", param="temperature")
        if top_p is not None and not 0 <= top_p <= 1:
            raise openai_refusal(f"{top_p} is greater than the maximum of 1 - 'top_p'", param="top_p")
        new_tokens = int(parameters.get("max_new_tokens") or 16)
        if tokens + new_tokens > self.max_total_tokens:
            raise openai_refusal(
                f"This model's maximum context length is {self.max_total_tokens} tokens, however you requested "
                f"{tokens + new_tokens} tokens ({tokens} in your prompt; {new_tokens} for the completion). Please reduce "
                "your prompt; or completion length.", code="context_length_exceeded",
            )

    def unknown_field(self, body: dict[str, Any], route: str) -> Refusal | None:
        """OpenAI refuses a body field its API does not have; the other servers read extensions."""
        if self.flavour != "openai":
            return None
        unknown = sorted(set(body) - OPENAI_FIELDS[route])
        return openai_refusal(f"Unrecognized request argument supplied: {unknown[0]}") if unknown else None

    def _validate_llamacpp(self, tokens: int, parameters: dict[str, Any]) -> None:
        """llama.cpp's server: only the context (n_ctx) is checked."""
        new_tokens = int(parameters.get("max_new_tokens") or 16)
        if tokens + new_tokens > self.max_total_tokens:
            raise Refusal(400, {"error": {
                "code": 400, "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error", "n_prompt_tokens": tokens, "n_ctx": self.max_total_tokens,
            }})

    def check_model(self, model: Any) -> Refusal | None:
        """vLLM and OpenAI answer 404 to a `model` they do not serve; TGI, SGLang and llama.cpp
        ignore the field."""
        if self.flavour == "vllm" and model != self.model_id:
            return vllm_refusal(f"The model `{model}` does not exist.", 404, "NotFoundError")
        if self.flavour == "openai" and model != self.model_id:
            return openai_refusal(f"The model `{model}` does not exist or you do not have access to it.", 404, "model_not_found")
        return None

    def _run_model(self, prompt: str, parameters: dict[str, Any]) -> tuple[str, str, int]:
        text = self.reply(prompt, parameters)
        words = text.split(" ")
        limit = int(parameters.get("max_new_tokens") or 20)
        finish = "eos_token"
        if len(words) > limit:
            text, finish = " ".join(words[:limit]), "length"
        for stop in parameters.get("stop") or []:
            at = text.find(stop)
            if stop and at >= 0:
                text, finish = text[: at + len(stop)], "stop_sequence"  # TGI keeps the stop string
        return text, finish, len(text.split())

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_best_of": 2,
            "max_stop_sequences": self.max_stop_sequences,
            "max_input_tokens": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "validation_workers": 2,
            "version": "test",
            "router": "text-generation-router",
        }

    def props(self) -> dict[str, Any]:
        """llama.cpp's `GET /props` (the fields the client reads, and a few others)."""
        return {
            "default_generation_settings": {"id": 0, "n_ctx": self.max_total_tokens, "params": {"n_predict": -1}},
            "total_slots": self.max_concurrent_requests,
            "model_path": f"/models/{self.model_id}.gguf",
            "chat_template": "",
        }

    def models(self) -> dict[str, Any]:
        """vLLM's (and SGLang's) `GET /v1/models`; OpenAI's has no context length."""
        if self.flavour == "openai":
            return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0, "owned_by": "system"}]}
        return {"object": "list", "data": [{
            "id": self.model_id, "object": "model", "created": 0, "owned_by": self.flavour, "root": self.model_id,
            "parent": None, "max_model_len": self.max_total_tokens, "permission": [],
        }]}

    def server_info(self) -> dict[str, Any]:
        """SGLang's `GET /server_info`: its server arguments (a few of the many), the
        scheduler's info and the per-DP internal states, in one object."""
        return {
            "model_path": self.model_id, "tokenizer_path": self.model_id, "host": "127.0.0.1", "port": self.port,
            "context_length": self.max_total_tokens, "max_running_requests": self.max_concurrent_requests,
            "max_prefill_tokens": 16384, "chunked_prefill_size": 8192, "tp_size": 1, "dp_size": 1,
            "max_total_num_tokens": 100 * self.max_total_tokens, "max_req_input_len": self.max_input_tokens,
            "internal_states": [{"last_gen_throughput": 0.0}], "version": "test",
        }

    def metrics(self) -> str:
        """vLLM's `GET /metrics` (Prometheus text) for its request gauges: requests in a slot
        (running) and those queued for one (waiting)."""
        with self._lock:
            active = self._active
        running, waiting = min(active, self.slots), max(0, active - self.slots)
        label = f'{{engine="0",model_name="{self.model_id}"}}'
        return (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{label} {float(running)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{label} {float(waiting)}\n"
        )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type, *, app: TGIServer) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def cut_connections(self) -> None:
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            _shut(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, OSError, _Abort)):
            return  # a client that went away, or a cut connection: expected in fault tests
        super().handle_error(request, client_address)


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the other side
        return
    finally:
        connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Reply headers and body go out in separate writes: without NODELAY, Nagle's algorithm
        # holds the body until the client's delayed ACK (40 ms) arrives.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:  # the connection was cut under us (kill)
            return

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return  # quiet: tests make thousands of requests

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed:
            app = self.server.app
            with app._lock:
                app.authorizations[self.headers.get("Authorization")] += 1
        return parsed

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        app = self.server.app
        if self.path == "/health":
            self._send(200, {})
        elif self.path == "/info" and app.has_info:
            if app.info_hang:
                app._stopping.wait()
                self.close_connection = True
                return
            self._send(200, app.info())
        elif self.path == "/props" and app.limits_route == "props":
            self._send(200, app.props())
        elif self.path == "/v1/models" and app.limits_route in ("models", "server_info"):
            self._send(200, app.models())
        elif self.path in app.server_info_paths and app.limits_route == "server_info":
            self._send(200, app.server_info())
        elif self.path == "/metrics" and app.flavour == "vllm":
            self._send_raw(200, app.metrics().encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")
        elif self.path == "/stats":
            self._send(200, app.stats())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError as error:
            self._send(400, {"error": f"bad JSON: {error}", "error_type": "validation"})
            return
        app = self.server.app
        if self.path in ("/", "/generate") and app.native_route:
            self._native(app, body, as_list=self.path == "/")
        elif self.path == "/v1/chat/completions":
            self._chat(app, body)
        elif self.path == "/v1/completions":
            self._completions(app, body)
        else:
            self._send(404, {"error": "not found"})

    def _native(self, app: TGIServer, body: dict[str, Any], *, as_list: bool) -> None:
        parameters = body.get("parameters") or {}
        result = self._generate(app, str(body.get("inputs", "")), parameters)
        if result is None:
            return
        status, out = result
        if status == 200:
            out = {
                "generated_text": out["generated_text"],
                "details": {"finish_reason": out["finish_reason"], "generated_tokens": out["generated_tokens"],
                            "seed": parameters.get("seed"), "prefill": [], "tokens": []},
            }
            if as_list:
                out = [out]  # type: ignore[assignment]
        self._send(status, out)
        if status == 200:
            app.count_success(body.get("inputs", ""))

    def _chat(self, app: TGIServer, body: dict[str, Any]) -> None:
        with app._lock:
            app.chat_bodies.append(body)
        contents = [str(m.get("content", "")) for m in body.get("messages") or []]
        prompt = "\n".join(contents)
        tokens = sum(app.count_tokens(content) + CHAT_TEMPLATE_TOKENS for content in contents)

        def choice(text: str, finish: str) -> dict[str, Any]:
            return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}

        self._openai(app, body, prompt, body.get("max_tokens"), choice, "chatcmpl-test", "chat.completion",
                     route="chat", prompt_tokens=tokens, system_fingerprint="test")

    def _completions(self, app: TGIServer, body: dict[str, Any]) -> None:
        """OpenAI text completions (vLLM, SGLang, llama.cpp): the raw prompt, no chat template."""
        with app._lock:
            app.completion_bodies.append(body)
        prompt = body.get("prompt", "")
        prompt = str(prompt[0] if isinstance(prompt, list) and prompt else prompt or "")

        def choice(text: str, finish: str) -> dict[str, Any]:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

        max_tokens = body.get("max_tokens", 16)  # OpenAI's default
        self._openai(app, body, prompt, max_tokens, choice, "cmpl-test", "text_completion", route="completions")

    def _openai(
        self, app: TGIServer, body: dict[str, Any], prompt: str, max_tokens: Any,
        choice: Callable[[str, str], dict[str, Any]], reply_id: str, kind: str, *, route: str,
        prompt_tokens: int | None = None, **extra: Any,
    ) -> None:
        """The part the OpenAI routes share: parameters, the model's answer, the reply's shape."""
        refused = app.unknown_field(body, route) or app.check_model(body.get("model"))
        if refused is not None:
            with app._lock:
                app.refusals.append(refusal_message(refused.body))
            self._send(refused.status, refused.body)
            return
        stop = body.get("stop") or []
        parameters = {
            "max_new_tokens": max_tokens,
            "stop": [stop] if isinstance(stop, str) else stop,
            "seed": body.get("seed"),
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "top_k": body.get("top_k") if app.flavour != "tgi" else None,  # TGI's OpenAI routes have no top_k
        }
        result = self._generate(app, prompt, parameters, route=route, prompt_tokens=prompt_tokens)
        if result is None:
            return
        status, out = result
        if status == 200:
            text = out["generated_text"]
            for stop_string in parameters["stop"]:  # OpenAI-style servers leave the stop string out
                if stop_string and text.endswith(stop_string):
                    text = text[: -len(stop_string)]
            finish = "stop" if out["finish_reason"] != "length" else "length"
            out = {
                "id": reply_id,
                "object": kind,
                "created": int(time.time()),
                "model": body.get("model") or app.model_id,
                **extra,
                "choices": [choice(text, finish)],
                "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["generated_tokens"],
                          "total_tokens": out["prompt_tokens"] + out["generated_tokens"]},
            }
        self._send(status, out)
        if status == 200:
            app.count_success(prompt)

    def _generate(self, app: TGIServer, prompt: str, parameters: dict[str, Any], **route: Any) -> tuple[int, Any] | None:
        """The model's answer, or None when the request ended without one (fault or kill)."""
        try:
            return app.generate(prompt, parameters, **route)
        except _Abort as abort:
            if str(abort) == "malformed":
                self._send_raw(200, b'{"generated_text": "trunc')
            elif str(abort) == "echo_headers":  # a server that puts the request's headers in its error
                self._send(500, {"error": f"Internal error; request headers: {dict(self.headers.items())}",
                                 "error_type": "internal"})
            else:
                self.close_connection = True
                _shut(self.connection)
            return None

    def _send(self, status: int, payload: Any) -> None:
        self._send_raw(status, json.dumps(payload).encode("utf-8"))

    def _send_raw(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        app = self.server.app
        with app._lock:
            app.status_counts[status] += 1
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the TGI-protocol test server until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--service-time", choices=SERVICE_TIMES, default="fixed",
                        help="fixed: every request takes --latency s; lognormal: mean --latency, shape --sigma")
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-concurrent-requests", type=int, default=None)
    parser.add_argument("--max-input-tokens", type=int, default=1024)
    parser.add_argument("--max-total-tokens", type=int, default=2048)
    parser.add_argument("--limits-route", choices=LIMITS_ROUTES, default=None,
                        help="how the server tells its limits: TGI /info, llama.cpp /props, vLLM /v1/models, none")
    parser.add_argument("--flavour", choices=FLAVOURS, default="tgi",
                        help="whose validation and error replies: TGI's router, vLLM's, SGLang's, llama.cpp's server or OpenAI's API")
    parser.add_argument("--tokens-per-byte", type=float, default=None,
                        help="tokens a UTF-8 byte; default: a byte-fallback tokenizer (1 a non-ASCII byte, 1/3 an ASCII one)")
    parser.add_argument("--reply", choices=REPLIES, default="echo", help="curation: a model for `xinstruction build`")
    parser.add_argument("--needs-refinement", type=float, default=0.3, help="--reply curation: share judged needs_refinement")
    parser.add_argument("--bad", type=float, default=0.2, help="--reply curation: share judged bad (the rest: good)")
    args = parser.parse_args(argv)
    reply = curation_reply(args.needs_refinement, args.bad) if args.reply == "curation" else echo_reply
    server = TGIServer(reply=reply, slots=args.slots, latency=args.latency, service_time=args.service_time,
                       sigma=args.sigma, seed=args.seed, max_concurrent_requests=args.max_concurrent_requests,
                       max_input_tokens=args.max_input_tokens, max_total_tokens=args.max_total_tokens,
                       port=args.port, limits_route=args.limits_route, flavour=args.flavour,
                       tokens_per_byte=args.tokens_per_byte).start()
    print(server.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
