"""What every served model entry shares (`ServerConfig`, the base of the kinds' specs: vllm.py,
sglang.py, llamacpp.py, tgi.py, openai.py) and how each server API is spoken (the routes). The
endpoints are run by server.py; a recipe is checked against its kind's spec when it is loaded,
without importing an HTTP client.

A kind's spec says what differs between servers, and nothing else:
- which routes it has and its default one (the `route` field's Literal and default);
- where it reads its limits (`LIMIT_SOURCES`, read by server_limits.py);
- which sampling parameters its OpenAI routes take (`SENDS_TOP_K`: `top_k` is no OpenAI field;
  vLLM, SGLang, llama.cpp and TGI read it from the body, OpenAI's own API refuses it).

Where the servers are: `endpoints:` (servers someone else runs) or `serve:` (the toolkit runs
them, llm/serving/); exactly one of the two. Neither shapes what a run writes: both are out of
the run fingerprint, and so are the kind and the route's spelling (`fingerprint_derived`): the
fingerprint records `prompt_format`, "raw" (routes `generate`, `completions`: the prompt as it
is) or "chat" (the server's chat template wraps it), which is what the model sees.

Three routes, one strategy class each (`JSONRoute`: a path, a payload, a parse), posted with the
endpoint's HTTP session (http.py: aiohttp), its timeout and its headers (server.py: `Endpoint`):

- `generate` (`GenerateRoute`): TGI's native route (`POST /`), raw prompts; what the paper's
  completion-style prompts need. Path and body are huggingface_hub's `text_generation` ones.
- `chat` (`ChatRoute`): `/v1/chat/completions`; chat models with a chat template. A completion
  prompt goes as one user message (the server wraps it in its template).
- `completions` (`CompletionsRoute`): the OpenAI text-completions route `/v1/completions`, the raw
  prompt with no template: base models and the paper's prompts on vLLM, SGLang and llama.cpp.

Every route cuts the text at the first stop string (TGI keeps it; OpenAI servers leave it out)
and fails a reply over `max_reply_bytes` (`check_reply_size`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from ...errors import UsageError
from ...options import NotFingerprinted
from ...registry import PluginSpec
from ..serving.config import ServeConfig
from .base import BackendError, Completion, GenerationParams, LLMRequest, RetryableError, unstorable
from .text import CONTEXT_POLICIES, cut_at_stop

if TYPE_CHECKING:
    from .http import HTTPSession

ROUTES = ("generate", "chat", "completions")
OPENAI_ROUTES = ("completions", "chat")  # what every OpenAI-compatible server has
# What the model sees, by route: the prompt as it is, or wrapped in the server's chat template.
PROMPT_FORMATS = {"generate": "raw", "completions": "raw", "chat": "chat"}
REPLY_BYTES_MARGIN = 1024  # bytes a reply may have beyond max_reply_bytes_per_token x max_new_tokens
REPLY_PREFIX_CHARS = 80  # how much of a too-large reply its error quotes
# A JSON body may escape each byte of its text as `\uXXXX` (6 bytes); plus room for the rest of it.
JSON_ESCAPE_FACTOR = 6
JSON_BODY_MARGIN = 64 * 1024

_THROUGHPUT = NotFingerprinted("throughput")
# The kind and the route's spelling are out of the fingerprint; `prompt_format` stands for them.
SERVER_KIND = NotFingerprinted("the server kind: the fingerprint records prompt_format")

# The implementation of every server kind (server.py imports the HTTP client: loaded on first
# use, so a recipe loads and is checked without it).
SERVER_BACKEND = "xinstruction_dataset.llm.backends.server:ServerBackend"


class ServerConfig(PluginSpec):
    """What every served model entry says (see the module docstring); a kind's spec adds its
    one-value `backend` Literal, its `route` Literal with its default, and its class constants.

    Fields marked throughput decide how fast answers come, not what they say: a run may change
    them (more endpoints, a higher cap) and resume with the same fingerprint."""

    LIMIT_SOURCES: ClassVar[tuple[str, ...]] = ()  # the routes limits are read from, in order (server_limits.py)
    SENDS_TOP_K: ClassVar[bool] = True  # whether the OpenAI routes send `top_k` in the body
    # A `/metrics` route whose running/waiting request gauges are read with the limits (vLLM): logged,
    # and kept in the endpoint's stats (how busy the server was with other clients when first asked).
    LOAD_METRICS: ClassVar[tuple[str, str] | None] = None

    model: Annotated[str, Field(min_length=1)]  # the model id recorded in provenance and cache keys
    route: Annotated[Literal[ROUTES], SERVER_KIND] = "completions"  # each kind narrows it and sets its default
    endpoints: Annotated[list[str] | None, Field(min_length=1), _THROUGHPUT] = None  # base URLs, e.g. http://host:8080
    serve: Annotated[ServeConfig | None, NotFingerprinted("serving")] = None  # the toolkit runs the servers (llm/serving/)
    max_concurrency: Annotated[int, Field(ge=1), _THROUGHPUT] = 128  # per endpoint; caps the slots the server reports
    # An endpoint starts with this many requests in flight and gains one per success up to its
    # limit (halved on a failure): the first requests go out at once instead of queueing behind
    # a burst of hundreds, and a cold or just-restarted server is not flooded.
    ramp_start: Annotated[int, Field(ge=1), _THROUGHPUT] = 16
    # Seconds per attempt; also how long a request waits while no endpoint serves the model
    # (servers (re)starting) before that attempt fails and is retried.
    timeout: Annotated[float, Field(gt=0), _THROUGHPUT] = 120.0
    retries: Annotated[int, Field(ge=0, le=100), _THROUGHPUT] = 5  # attempts after the first
    backoff: Annotated[float, Field(ge=0), _THROUGHPUT] = 1.0  # first retry delay (s); doubles each retry, with jitter
    backoff_max: Annotated[float, Field(gt=0), _THROUGHPUT] = 60.0
    context_policy: Literal[CONTEXT_POLICIES] = "truncate"
    max_input_tokens: Annotated[int | None, Field(ge=1)] = None  # overrides what the server reports
    max_total_tokens: Annotated[int | None, Field(ge=2)] = None
    tokenizer: str | None = None  # a tokenizer name or path (loaded offline) to count tokens exactly
    bytes_per_token: Annotated[float, Field(gt=0)] = 2.0  # the estimate without a tokenizer (deliberately high)
    served_model: str | None = None  # the `model` field of chat/completions requests; default: `model`
    # A reply may have at most this many UTF-8 bytes per requested token (max_new_tokens), plus
    # REPLY_BYTES_MARGIN; a longer one fails the call (`reply_too_large`, see `check_reply_size`).
    # Not fingerprinted: it decides which calls fail, never what a kept reply says.
    max_reply_bytes_per_token: Annotated[int, Field(ge=8, le=65536), NotFingerprinted("reply size limit")] = 64
    # environment variable holding the endpoints' token
    token_env: Annotated[str | None, NotFingerprinted("credentials")] = None

    @field_validator("endpoints", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        """One URL may be written without a list (`endpoints: http://host:8080`)."""
        return [value] if isinstance(value, str) else value

    @field_validator("endpoints")
    @classmethod
    def _http_urls(cls, urls: list[str] | None) -> list[str] | None:
        if urls is None:
            return None
        bad = [url for url in urls if not url.startswith(("http://", "https://"))]
        if bad:
            raise UsageError(f"not http(s) URLs: {bad}")
        return [url.rstrip("/") for url in urls]

    @model_validator(mode="after")
    def _consistent(self) -> "ServerConfig":
        # Both would leave one of them unused (the backend reads the endpoints of one source):
        # refused, so a recipe never says more than is done.
        if self.endpoints is None and self.serve is None:
            raise UsageError(
                f"model {self.model!r}: give `endpoints:` (the URLs of servers already running) or `serve:` "
                "(the toolkit starts the servers)"
            )
        if self.endpoints is not None and self.serve is not None:
            raise UsageError(
                f"model {self.model!r}: `endpoints:` and `serve:` both given; keep `endpoints:` for servers someone "
                "else runs, or `serve:` for servers the toolkit starts, not both"
            )
        if self.max_input_tokens and self.max_total_tokens and self.max_input_tokens >= self.max_total_tokens:
            raise UsageError(f"max_input_tokens ({self.max_input_tokens}) must be < max_total_tokens ({self.max_total_tokens})")
        if self.backoff > self.backoff_max:
            raise UsageError(f"backoff ({self.backoff}) must be <= backoff_max ({self.backoff_max})")
        # Checked at load, not at the first request: a missing token should not wait for curation.
        if self.token_env and self.token_env not in os.environ:
            raise UsageError(f"token_env: environment variable {self.token_env} is not set")
        return self

    @property
    def prompt_format(self) -> str:
        """"raw" or "chat": what the model sees of a completion prompt on this route."""
        return PROMPT_FORMATS[self.route]

    def fingerprint_derived(self) -> dict[str, Any]:
        """What the run fingerprint records beside the fingerprinted fields (fingerprint.py): the
        prompt format, in place of the kind and the route, which it leaves out."""
        return {"prompt_format": self.prompt_format}

    def top_k(self, params: GenerationParams) -> int | None:
        """The `top_k` the OpenAI routes send: None where the kind's server takes none (or 0: off)."""
        return (params.top_k or None) if self.SENDS_TOP_K else None


# --- routes: one strategy per kind of server API -------------------------------------------


class RouteEndpoint(Protocol):
    """What a route needs of an endpoint (server.py's `Endpoint`)."""

    url: str
    timeout: float

    def session(self) -> HTTPSession: ...  # http.py: the endpoint's client, for this event loop
    def auth_headers(self) -> dict[str, str]: ...


class JSONRoute:
    """A route that posts one JSON body and reads one JSON reply: its `path`, its `payload` and
    its `parse`. The reply body is read in pieces and the call fails (`reply_too_large`) as soon
    as it is larger than a reply within `max_reply_bytes` can be as JSON: an oversized reply is
    never held whole."""

    name: ClassVar[str]
    path: ClassVar[str]

    async def send(self, endpoint: RouteEndpoint, request: LLMRequest, config: ServerConfig) -> Completion:
        from .http import ReplyTooLarge  # not at import: recipes load without aiohttp

        self.check(request)
        url = endpoint.url + self.path
        cap = max_reply_bytes(request, config)
        try:
            body = await endpoint.session().post_json(
                url, self.payload(request, config), endpoint.auth_headers(), JSON_ESCAPE_FACTOR * cap + JSON_BODY_MARGIN
            )
        except ReplyTooLarge as error:
            raise BackendError(
                f"reply_too_large: {error} (the JSON of a text of at most {config.max_reply_bytes_per_token} bytes x "
                f"{request.params.max_new_tokens} max_new_tokens + {REPLY_BYTES_MARGIN})"
            ) from None
        reply = self.unwrap(json.loads(body))  # a JSONDecodeError is a malformed reply: retried
        if not isinstance(reply, dict):
            raise RetryableError(f"{url}: malformed reply: a JSON {type(reply).__name__}, not an object")
        return self.parse(reply, url, request, config)

    def check(self, request: LLMRequest) -> None:
        if request.prompt is None:
            raise BackendError(f"route `{self.name}` takes completion prompts; use route `chat` for messages")

    def unwrap(self, reply: Any) -> Any:
        return reply

    def payload(self, request: LLMRequest, config: ServerConfig) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, reply: dict[str, Any], url: str, request: LLMRequest, config: ServerConfig) -> Completion:
        raise NotImplementedError


class GenerateRoute(JSONRoute):
    """TGI's native route: the raw prompt in, generated text and token count out. Posted to `/`,
    as huggingface_hub's `text_generation` does (TGI answers there with a one-element list)."""

    name = "generate"
    path = ""

    def unwrap(self, reply: Any) -> Any:
        return reply[0] if isinstance(reply, list) and len(reply) == 1 else reply

    def payload(self, request: LLMRequest, config: ServerConfig) -> dict[str, Any]:
        params = request.params
        greedy = params.temperature == 0
        parameters = {
            "details": True,
            "do_sample": not greedy,
            "max_new_tokens": params.max_new_tokens,
            "seed": params.seed,
            "stop": list(params.stop) or None,
            # TGI refuses temperature 0 and top_k/top_p with greedy decoding: send them only when sampling.
            "temperature": None if greedy else params.temperature,
            "top_k": None if greedy or not params.top_k else params.top_k,
            "top_p": None if greedy or params.top_p >= 1 else params.top_p,
        }
        # As huggingface_hub's text_generation sends it: no null parameters, `stream` false.
        return {"inputs": request.prompt, "parameters": _present(parameters), "stream": False}

    def parse(self, reply: dict[str, Any], url: str, request: LLMRequest, config: ServerConfig) -> Completion:
        text = reply.get("generated_text")
        require_text(text, "generated_text")
        check_reply_size(text, request, config)
        details = reply.get("details") if isinstance(reply.get("details"), dict) else {}
        finish = details.get("finish_reason")
        return _completion(
            text, request, prompt_tokens=None, completion_tokens=_int_or_none(details.get("generated_tokens")),
            finish_reason=finish if isinstance(finish, str) else None,
        )


class ChatRoute(JSONRoute):
    """The OpenAI chat-completions route (`POST /v1/chat/completions`; TGI, vLLM, SGLang,
    llama.cpp, OpenAI): a completion prompt goes as one user message."""

    name = "chat"
    path = "/v1/chat/completions"

    def check(self, request: LLMRequest) -> None:
        return None  # messages or a prompt

    def payload(self, request: LLMRequest, config: ServerConfig) -> dict[str, Any]:
        params = request.params
        body = {
            "model": config.served_model or config.model,
            "messages": _messages(request),
            "max_tokens": params.max_new_tokens,
            "seed": params.seed,
            "stop": list(params.stop) or None,
            "stream": False,
            "temperature": params.temperature,
            "top_p": _top_p(params.top_p),
            # top_k is not an OpenAI field; TGI, vLLM, SGLang and llama.cpp read it from the body.
            "top_k": config.top_k(params),
        }
        return _present(body)

    def parse(self, reply: dict[str, Any], url: str, request: LLMRequest, config: ServerConfig) -> Completion:
        choice = _first_choice(reply, url)
        message = choice.get("message")
        if not isinstance(message, dict):
            raise RetryableError(f"{url}: malformed reply: choices[0].message is {type(message).__name__}")
        text = message.get("content") or ""  # a null content (only a refusal, a tool call) is an empty text
        require_text(text, "choices[0].message.content")
        check_reply_size(text, request, config)
        return _openai_completion(text, reply, choice, request)


class CompletionsRoute(JSONRoute):
    """The OpenAI text-completions route (`POST /v1/completions`): the raw prompt, no chat
    template (vLLM, SGLang, llama.cpp; base models)."""

    name = "completions"
    path = "/v1/completions"

    def payload(self, request: LLMRequest, config: ServerConfig) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {
            "model": config.served_model or config.model,
            "prompt": request.prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,  # 0: greedy on vLLM, SGLang and llama.cpp
            "top_p": _top_p(params.top_p),
            "seed": params.seed,
            "stop": list(params.stop) or None,
            # not an OpenAI field; vLLM, SGLang and llama.cpp read it from the body (config.top_k)
            "top_k": config.top_k(params),
        }
        return _present(body)

    def parse(self, reply: dict[str, Any], url: str, request: LLMRequest, config: ServerConfig) -> Completion:
        choice = _first_choice(reply, url)
        text = choice.get("text")
        if not isinstance(text, str):
            raise RetryableError(f"{url}: malformed reply: choices[0].text is {type(text).__name__}")
        check_reply_size(text, request, config)
        return _openai_completion(text, reply, choice, request)


def _first_choice(reply: dict[str, Any], url: str) -> dict[str, Any]:
    choices = reply.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise RetryableError(f"{url}: malformed reply: no choices")
    return choices[0]


def _openai_completion(text: str, reply: dict[str, Any], choice: dict[str, Any], request: LLMRequest) -> Completion:
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    finish = choice.get("finish_reason")
    return _completion(
        text, request, prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")), finish_reason=finish if isinstance(finish, str) else None,
    )


def _present(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


Route = GenerateRoute | ChatRoute | CompletionsRoute
ROUTE_CLASSES: dict[str, type[Route]] = {"generate": GenerateRoute, "chat": ChatRoute, "completions": CompletionsRoute}


def max_reply_bytes(request: LLMRequest, config: ServerConfig) -> int:
    """The most UTF-8 bytes a reply to `request` may have."""
    return config.max_reply_bytes_per_token * max(1, request.params.max_new_tokens) + REPLY_BYTES_MARGIN


def require_text(text: Any, field: str) -> None:
    """A reply whose text is not a string (a number, a null) is malformed: retried like any
    other, not a TypeError from the size check that stops the call for good."""
    if not isinstance(text, str):
        raise RetryableError(f"malformed reply: {field} is {type(text).__name__}, not a string")


def check_reply_size(text: str, request: LLMRequest, config: ServerConfig) -> None:
    """Raise a (non-retryable) BackendError `reply_too_large: ...` for a reply over
    `max_reply_bytes`; its message quotes only the reply's first REPLY_PREFIX_CHARS characters,
    so the failure recorded for the call stays small.

    Checked on the parsed text; the body it came in was already capped while it was read
    (`JSONRoute.send`), so no oversized body is held whole."""
    cap = max_reply_bytes(request, config)
    if len(text) * 4 <= cap:  # at most 4 UTF-8 bytes a character: surely within the cap
        return
    size = len(text.encode("utf-8", errors="replace"))
    if size > cap:
        raise BackendError(
            f"reply_too_large: {size} bytes > {cap} ({config.max_reply_bytes_per_token} bytes x "
            f"{request.params.max_new_tokens} max_new_tokens + {REPLY_BYTES_MARGIN}); "
            f"starts {text[:REPLY_PREFIX_CHARS]!r}"
        )


def _top_p(top_p: float) -> float | None:
    """`top_p` for the OpenAI routes: none at 1 (the OpenAI default, so the same sampling), as
    TGI answers 422 to `top_p >= 1` on these routes too."""
    return top_p if top_p < 1 else None


def _messages(request: LLMRequest) -> list[dict[str, str]]:
    if request.messages is not None:
        return [{"role": role, "content": content} for role, content in request.messages]
    return [{"role": "user", "content": request.prompt or ""}]


def _completion(
    text: str, request: LLMRequest, *, prompt_tokens: int | None, completion_tokens: int | None, finish_reason: str | None
) -> Completion:
    """Servers differ on whether the stop string ends the text (TGI keeps it): never keep it.
    A reply the call cache could not store (a lone surrogate from a JSON escape...) is malformed:
    tried again, never cached (calls.py checks once more for every backend)."""
    text, stopped = cut_at_stop(text, request.params.stop)
    completion = Completion(text, prompt_tokens, completion_tokens, "stop_sequence" if stopped else finish_reason)
    problem = unstorable(completion)
    if problem is not None:
        raise RetryableError(f"malformed reply: {problem}")
    return completion


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
