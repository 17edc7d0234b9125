"""The `serve:` block of a served model entry (`backend: vllm | sglang | llamacpp | tgi | openai`):
the toolkit starts the servers itself instead of being pointed at running ones.

    generator:
      backend: vllm
      model: meta-llama/Llama-3.1-70B-Instruct     # the identity: provenance, cache keys, fingerprint
      serve:
        model: /models/llama-3.1-70b-instruct      # what the server loads (a path or a hub id)
        replicas: 2
        gpus_per_replica: 4                        # tensor parallelism 4: one placement group per replica
        args: [--max-num-seqs, "256"]

`command` is a launch template (a list of arguments, or one string split like a shell); the
kind's own template is used when it is left out (llm/serving/launch.py). Placeholders:
`{model}` (serve.model), `{host}`, `{port}` (a free port the tool picks, unless `port` is
given), `{gpus}` (gpus_per_replica), `{served_model}` (the name requests use: the entry's
`served_model`, else its `model`). `args` are appended.

Nothing here shapes what a run writes (only how fast, and where the servers run): the whole
block is out of the run fingerprint. The GPU count per replica lives here; the call ledger reads
it from here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ...options import ConfigModel


class ServeConfig(ConfigModel):
    """A model entry's `serve:` block (see the module docstring)."""

    model: Annotated[str, Field(min_length=1)]  # the weights the server loads: a path or a hub id
    command: str | list[str] | None = None  # launch template; None: the backend kind's own
    args: list[str] = Field(default_factory=list)  # appended to the command
    replicas: Annotated[int, Field(ge=1, le=1024)] = 1
    gpus_per_replica: Annotated[int, Field(ge=0, le=64)] = 1
    host: str = "127.0.0.1"
    port: Annotated[int | None, Field(ge=1, le=65535)] = None  # replica i listens on port + i; None: free ports
    start_timeout: Annotated[float, Field(gt=0)] = 900.0  # seconds until a replica must be healthy
    restarts: Annotated[int, Field(ge=0, le=100)] = 3  # restarts per replica after it died, with backoff
    env: dict[str, str] = Field(default_factory=dict)  # extra environment of the server processes
