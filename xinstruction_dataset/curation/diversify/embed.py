"""Instruction embeddings, cached: the embedders themselves are `curation.embedders` (one kind
per file: a local sentence-transformers model, a TEI endpoint).

Every vector is stored in the call cache under a hash of (embedding model, text) before it is
used, and checked before it is stored (one finite vector per text, all of one width): a bad reply
is a failed, retried request, never a cache row that every rerun would serve. Texts are embedded in fixed batches of the sorted distinct texts: a batch is a function of
the text set alone, so a resumed run recomputes an unfinished batch exactly as an uninterrupted
run computed it (padding, and so the floats, depend on what is batched together).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...errors import EnvironmentFault
from ...llm.backends.base import content_key
from ..embedders import Embedder, vector_problem



def embedding_key(model_id: str, text: str) -> str:
    return "embed:" + content_key({"embedding_model": model_id, "text": text})


def encode_vector(vector: np.ndarray) -> dict[str, Any]:
    return {"dtype": "float32", "b64": base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")}


def decode_vector(value: Any) -> np.ndarray | None:
    """A stored vector, or None for a value that is not one (a row an older version stored
    unchecked: a NaN or empty vector is embedded again, not served)."""
    try:
        vector = np.frombuffer(base64.b64decode(value["b64"], validate=True), dtype="<f4")
    except (TypeError, KeyError, ValueError):
        return None
    return vector if len(vector) and np.isfinite(vector).all() else None


def embed_texts(texts: list[str], embedder: Embedder, cache, batch_size: int, *, desc: str = "embed", progress: bool = True) -> np.ndarray:
    """Vectors for `texts` (row i for texts[i]), from the cache or the embedder (then cached).

    Each distinct text is embedded once and its vector written straight into its rows of one
    preallocated array: peak memory is that array plus one batch, not a second copy of it.
    Fresh vectors are checked (one per text, finite, the width of the others: `vector_problem`)
    before they are stored, so a bad reply never becomes a cache row that every rerun serves."""
    rows: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        rows.setdefault(text, []).append(i)
    distinct = sorted(rows)
    out: np.ndarray | None = None
    hits = 0
    with tqdm(total=len(distinct), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(distinct), batch_size):
            batch = distinct[start : start + batch_size]
            keys = [embedding_key(embedder.model_id, text) for text in batch]
            vectors = [_stored(cache.get_json(key), out) for key in keys]
            if all(vector is not None for vector in vectors) and len({len(v) for v in vectors}) == 1:
                hits += len(batch)
            else:
                dim = out.shape[1] if out is not None else None
                if dim is not None:
                    embedder.dim = dim
                fresh = embedder.embed(batch)
                problem = vector_problem(fresh, len(batch), dim)
                if problem is not None:  # the TEI embedder retried such replies already
                    raise EnvironmentFault(
                        f"embedding model {embedder.model_id}: {problem}; nothing was stored for them: check the "
                        "model, then run the same command again (embeddings stored so far are kept)"
                    )
                vectors = list(np.asarray(fresh, dtype=np.float32))
                cache.put_many_json({key: encode_vector(vector) for key, vector in zip(keys, vectors)})
            for text, vector in zip(batch, vectors):
                if out is None:
                    out = np.empty((len(texts), len(vector)), dtype=np.float32)
                out[rows[text]] = vector
            bar.update(len(batch))
            bar.set_postfix(cached=hits, refresh=False)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _stored(value: Any, out: np.ndarray | None) -> np.ndarray | None:
    """A cached vector fit to use (finite, the width of those read before it), else None."""
    if value is None:
        return None
    vector = decode_vector(value)
    if vector is None or (out is not None and len(vector) != out.shape[1]):
        return None
    return vector
