"""`backend: sglang`: a model served by SGLang (`python -m sglang.launch_server`), over its
OpenAI-compatible routes.

    {"backend": "sglang", "model": "Qwen/Qwen2.5-72B-Instruct", "endpoints": ["http://h1:30000"]}

Default route `completions`. Limits from its server-info route `GET /server_info` (`GET
/get_server_info` before SGLang renamed it, now a deprecated alias; the server arguments and the
scheduler's info in one object: `max_running_requests` the slots when set, `max_req_input_len`
the longest input, `context_length` the context when set; sglang
python/sglang/srt/entrypoints/http_server.py), else `/v1/models` (`max_model_len`). SGLang takes
`top_k` in the body (an extension of its OpenAI CompletionRequest) and `temperature: 0` as greedy.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from .base import BACKENDS
from .server_config import OPENAI_ROUTES, SERVER_BACKEND, SERVER_KIND, ServerConfig


class SGLangConfig(ServerConfig):
    """A `{"backend": "sglang", ...}` recipe entry (see the module docstring and ServerConfig)."""

    LIMIT_SOURCES: ClassVar[tuple[str, ...]] = ("/server_info", "/get_server_info", "/v1/models")

    backend: Annotated[Literal["sglang"], SERVER_KIND] = "sglang"
    route: Annotated[Literal[OPENAI_ROUTES], SERVER_KIND] = "completions"


BACKENDS.register(SGLangConfig, SERVER_BACKEND)
