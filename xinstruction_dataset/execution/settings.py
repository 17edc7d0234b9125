"""The recipe's `executor:` block: where CPU-heavy steps run, as the spec of an executor kind
(`ExecutorSpec`, the union of the kinds registered in `executor.EXECUTORS`; no `kind`: local).
Throughput knobs only: they never change what a run writes, so they are left out of the run
fingerprint."""

from __future__ import annotations

from ..registry import PluginSpec
from .executor import EXECUTORS

ExecutorSpec = EXECUTORS.union()


def default_executor() -> PluginSpec:
    """The spec of an `executor:` block left out: every core of this machine."""
    return EXECUTORS.parse({})
