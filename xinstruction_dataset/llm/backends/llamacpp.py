"""`backend: llamacpp`: a model served by llama.cpp's `llama-server`, over its OpenAI-compatible
routes.

    {"backend": "llamacpp", "model": "gemma3-270m", "endpoints": ["http://h1:8080"]}

Default route `completions`. Limits from `GET /props`: `total_slots` (the server's `--parallel`)
the slots, `default_generation_settings.n_ctx` the context of one slot (input and output
together). llama-server takes `top_k` in the body and `temperature: 0` as greedy.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from .base import BACKENDS
from .server_config import OPENAI_ROUTES, SERVER_BACKEND, SERVER_KIND, ServerConfig


class LlamaCppConfig(ServerConfig):
    """A `{"backend": "llamacpp", ...}` recipe entry (see the module docstring and ServerConfig)."""

    LIMIT_SOURCES: ClassVar[tuple[str, ...]] = ("/props",)

    backend: Annotated[Literal["llamacpp"], SERVER_KIND] = "llamacpp"
    route: Annotated[Literal[OPENAI_ROUTES], SERVER_KIND] = "completions"


BACKENDS.register(LlamaCppConfig, SERVER_BACKEND)
