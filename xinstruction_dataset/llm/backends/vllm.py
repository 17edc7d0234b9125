"""`backend: vllm`: a model served by vLLM (`vllm serve`), over its OpenAI-compatible routes.

    {"backend": "vllm", "model": "meta-llama/Llama-3.3-70B-Instruct", "endpoints": ["http://h1:8000"]}

Default route `completions` (the raw prompt; `chat` applies the server's chat template). vLLM
reports no slot count: `max_concurrency` is each endpoint's limit (set it to the server's
`--max-num-seqs`). Its context is `/v1/models`' `data[0].max_model_len`; its `/metrics` gauges
`vllm:num_requests_running` and `vllm:num_requests_waiting` are read with it (logged, and kept in
the endpoint's stats: a server busy with other clients shows there). vLLM takes `top_k` in the
body (its SamplingParams extension of the OpenAI request) and `temperature: 0` as greedy.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from .base import BACKENDS
from .server_config import OPENAI_ROUTES, SERVER_BACKEND, SERVER_KIND, ServerConfig


class VLLMConfig(ServerConfig):
    """A `{"backend": "vllm", ...}` recipe entry (see the module docstring and ServerConfig)."""

    LIMIT_SOURCES: ClassVar[tuple[str, ...]] = ("/v1/models",)
    LOAD_METRICS: ClassVar[tuple[str, str] | None] = ("vllm:num_requests_running", "vllm:num_requests_waiting")

    backend: Annotated[Literal["vllm"], SERVER_KIND] = "vllm"
    route: Annotated[Literal[OPENAI_ROUTES], SERVER_KIND] = "completions"


BACKENDS.register(VLLMConfig, SERVER_BACKEND)
