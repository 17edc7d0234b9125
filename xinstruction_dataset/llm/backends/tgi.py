"""`backend: tgi`: a model served by Hugging Face's text-generation-inference.

    {"backend": "tgi", "model": "org/name", "endpoints": ["http://h1:8080", "http://h2:8080"],
     "route": "generate", "max_concurrency": 64}

Default route `generate` (TGI's native route, raw prompts); `chat` and `completions` are TGI's
OpenAI-compatible routes. Limits from `GET /info` (`max_concurrent_requests`, `max_input_tokens`,
`max_total_tokens`); failing that `/props` and `/v1/models`, as before the server kinds existed,
when `backend: tgi` was how vLLM and llama.cpp were reached. TGI's native route refuses
`temperature: 0` and `top_k`/`top_p` with greedy decoding: they are sent only when sampling.

TGI is archived (maintenance mode since 2025-12, archived since 2026-03). A recipe with `backend:
tgi` and route `completions` or `chat` is most likely talking to another server: it keeps
loading, and one warning line at load names the kind to use instead.
"""

from __future__ import annotations

import logging
from typing import Annotated, ClassVar, Literal

from pydantic import model_validator

from .base import BACKENDS
from .server_config import ROUTES, SERVER_BACKEND, SERVER_KIND, ServerConfig

logger = logging.getLogger(__name__)

SERVER_KINDS_NOW = "vllm | sglang | llamacpp | openai"


class TGIConfig(ServerConfig):
    """A `{"backend": "tgi", ...}` recipe entry (see the module docstring and ServerConfig)."""

    LIMIT_SOURCES: ClassVar[tuple[str, ...]] = ("/info", "/props", "/v1/models")

    backend: Annotated[Literal["tgi"], SERVER_KIND] = "tgi"
    route: Annotated[Literal[ROUTES], SERVER_KIND] = "generate"

    @model_validator(mode="after")
    def _archived(self) -> "TGIConfig":
        if self.route != "generate":
            logger.warning(
                "model %r: `backend: tgi, route: %s` reaches an OpenAI-compatible server; TGI is archived (since "
                "2026-03): name the server instead (`backend: %s`, same `model`: the run folder resumes)",
                self.model, self.route, SERVER_KINDS_NOW,
            )
        return self


BACKENDS.register(TGIConfig, SERVER_BACKEND)
