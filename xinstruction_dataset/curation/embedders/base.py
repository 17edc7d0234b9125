"""The interface every instruction embedder implements, the registry of embedder kinds, and the
check every fresh vector passes before anything stores it.

`EMBEDDERS` is the plug-in point (registry.py): a kind's file defines its spec (a `PluginSpec`
whose `backend` is a one-value Literal) and registers the `Embedder` built from it. A
`diversify.embedding` entry without `backend` is `local`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ...registry import Registry

# The widest vector accepted (embedding models have at most a few thousand dimensions).
MAX_WIDTH = 65_536

# A recipe's `diversify.embedding` entry -> the Embedder its kind builds from it.
EMBEDDERS: Registry = Registry("embedding backend", key="backend", default="local")


class Embedder(ABC):
    model_id: str
    # The width every vector must have, once known: `embed_texts` sets it from the vectors
    # already stored, the TEI embedder from its first good reply (and retries a reply of another).
    dim: int | None = None

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""


def vector_problem(vectors: Any, count: int, dim: int | None) -> str | None:
    """Why `vectors` are not embeddings of `count` texts (one row each, `dim` finite numbers
    each when `dim` is given, else one width), or None. Checked before a vector is stored.

    A reply as JSON gives lists: each value must be a JSON number (a string or a boolean is not,
    though numpy would convert it)."""
    if isinstance(vectors, list):
        for row, values in enumerate(vectors):
            if not isinstance(values, list):
                return f"vector {row} of {count} is a {type(values).__name__}, not a list of numbers"
            odd = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))][:1]
            if odd:
                return f"vector {row} of {count} holds {type(odd[0]).__name__} {str(odd[0])[:20]!r}, not only numbers"
            if any(isinstance(v, int) and not -(2**128) < v < 2**128 for v in values):
                return f"vector {row} of {count} holds a number past float32's range"
        widths = sorted({len(values) for values in vectors})
        if len(widths) > 1:
            return f"vectors of unequal widths ({', '.join(map(str, widths[:5]))})"
    try:
        array = np.asarray(vectors)
    except ValueError as error:  # ragged nesting numpy cannot make an array of
        return f"not one list of numbers per text ({error})"
    if array.dtype == object or array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        return f"the values are {array.dtype}, not numbers"
    if array.ndim != 2:
        return f"an array of shape {array.shape}, not one vector per text"
    if array.shape[0] != count:
        return f"{array.shape[0]} vectors for {count} texts"
    if array.shape[1] == 0:
        return "empty vectors"
    if array.shape[1] > MAX_WIDTH:
        return f"vectors of {array.shape[1]} values, more than any embedding model's {MAX_WIDTH}"
    if dim is not None and array.shape[1] != dim:
        return f"vectors of {array.shape[1]} values, not {dim} (the width of the other vectors)"
    finite = np.isfinite(array.astype(np.float32))  # a float64 past float32's range is inf once stored
    if not finite.all():
        row = int(np.argmin(finite.all(axis=1)))
        return f"vector {row} of {count} has a NaN or infinite value"
    return None
