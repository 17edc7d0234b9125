"""Which torch device an in-process model runs on: `auto` picks CUDA when torch sees a GPU.

The embedded generator and the local embedder both read this, so one recipe runs unchanged on a
laptop and on a GPU machine. The device changes speed only, not which requests are sent; floats
may differ in the last bits between devices, and every result is stored before it is used, so a
re-run on another device reads the same answers from the cache.
"""

from __future__ import annotations

from typing import Literal

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
Device = Literal[DEVICES]


def resolve_device(device: str = "auto") -> str:
    """`cpu` or `cuda` for `device`; asking for `cuda` on a machine without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device: cuda was asked for, but torch sees no CUDA GPU (use device: auto or cpu)")
    return device
