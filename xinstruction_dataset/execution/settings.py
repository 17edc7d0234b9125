"""The recipe's `executor:` block: where CPU-heavy steps run. Throughput knobs only: they never
change what a run writes, so they are left out of the run fingerprint."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..options import ConfigModel


class ExecutorSettings(ConfigModel):
    """`executor: {kind: local|ray, workers: N, ray_address: ADDR, retries: N}`."""

    # local: worker processes on this machine; ray: tasks on a Ray cluster (pip install -e ".[ray]").
    kind: Literal["local", "ray"] = "local"
    # Local worker processes; default: every core of the machine. 1 runs tasks in this process.
    workers: Annotated[int, Field(ge=1)] | None = None
    # A running cluster (`ray start --head` prints it; `auto` finds the local one); empty: a
    # Ray instance of this machine, started for the run and stopped after it.
    ray_address: str | None = None
    # How many times a task whose worker (process or node) died is run again.
    retries: Annotated[int, Field(ge=0, le=100)] = 3
