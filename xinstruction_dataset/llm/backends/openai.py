"""`backend: openai`: any OpenAI-compatible server (OpenAI's own API, a gateway, a server with
no kind of its own here), spoken with only the OpenAI request fields.

    {"backend": "openai", "model": "gpt-4o-mini", "endpoints": ["https://api.openai.com"], "token_env": "OPENAI_API_KEY"}

Default route `completions`. Limits from `GET /v1/models` where the server says `max_model_len`
(OpenAI's own does not: then the recipe's `max_concurrency`, `max_input_tokens` and
`max_total_tokens` apply). `top_k` is no OpenAI field (OpenAI answers 400 to it): it is never
sent, and building the backend says so in one log line (the recipe's top_k is not honoured).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from .base import BACKENDS
from .server_config import OPENAI_ROUTES, SERVER_BACKEND, SERVER_KIND, ServerConfig


class OpenAIConfig(ServerConfig):
    """A `{"backend": "openai", ...}` recipe entry (see the module docstring and ServerConfig)."""

    LIMIT_SOURCES: ClassVar[tuple[str, ...]] = ("/v1/models",)
    SENDS_TOP_K: ClassVar[bool] = False

    backend: Annotated[Literal["openai"], SERVER_KIND] = "openai"
    route: Annotated[Literal[OPENAI_ROUTES], SERVER_KIND] = "completions"


BACKENDS.register(OpenAIConfig, SERVER_BACKEND)
