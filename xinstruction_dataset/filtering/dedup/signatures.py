"""What a filter task saves for the language's steps, beside its outputs (task-NNNNN/):

    ids.json         the ids of the documents the task kept, in order (every task)
    digests.npy      16 bytes a kept document: the digest of its normalised text (dedup)
    signatures.npy   num_perm uint32 a kept document: its MinHash signature (near dedup; with no
                     near block, zero columns). Only the language's reduce reads it: it is dropped
                     once the language's manifest is written, and made again from kept.jsonl by
                     the task when a later reduce needs it

Each file is complete or absent (written to a temporary name, then renamed); the task's
completion marker is written after them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...documents import Document
from ...storage import AtomicFile
from .minhash import MinHasher, exact_digest, normalise
from .options import MinHashOptions

IDS_FILE = "ids.json"


class IdWriter:
    """The ids of the documents a task keeps, in order (`ids.json`)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, doc: Document) -> None:
        self.ids.append(doc.id)

    def save(self, folder: Path) -> None:
        with AtomicFile(folder / IDS_FILE) as sink:
            sink.write(json.dumps(self.ids, ensure_ascii=False))

    def saved(self, folder: Path) -> bool:
        return True  # a task finished before ids.json: its ids are read from kept.jsonl (task_ids)


class SignatureWriter:
    """The digest (and, with `near`, the MinHash signature) of each document a task keeps."""

    def __init__(self, near: MinHashOptions | None):
        self.hasher = MinHasher(near) if near is not None else None
        self.digests: list[bytes] = []
        self.signatures: list[np.ndarray] = []

    def add(self, doc: Document) -> None:
        normalised = normalise(doc.text)
        self.digests.append(exact_digest(normalised))
        if self.hasher is not None:
            self.signatures.append(self.hasher.signature(normalised))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(digests: N x 2 uint64, signatures: N x num_perm uint32, or N x 0 without near)."""
        digests = np.frombuffer(b"".join(self.digests), dtype=np.uint64).reshape(-1, 2)
        width = self.hasher.options.num_perm if self.hasher else 0
        signatures = np.stack(self.signatures) if self.signatures else np.zeros((len(self.digests), width), dtype=np.uint32)
        return digests, signatures

    def save(self, folder: Path) -> None:
        digests, signatures = self.arrays()
        _save_array(folder / "digests.npy", digests)
        _save_array(folder / "signatures.npy", signatures)

    def saved(self, folder: Path) -> bool:
        return (folder / "digests.npy").is_file() and (folder / "signatures.npy").is_file()


def task_ids(folder: Path) -> list[str]:
    """The ids of a task's kept documents, in order; from kept.jsonl for a task finished before
    tasks wrote ids.json without a dedup block."""
    ids = folder / IDS_FILE
    if ids.is_file():
        return json.loads(ids.read_text(encoding="utf-8"))
    with open(folder / "kept.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["id"] for line in f if line.strip()]


def load_digests(folder: Path) -> np.ndarray:
    return np.load(folder / "digests.npy")


def load_signatures(folder: Path) -> np.ndarray:
    """Memory-mapped: only bucket members' rows are ever read."""
    return np.load(folder / "signatures.npy", mmap_mode="r")


def _save_array(path: Path, array: np.ndarray) -> None:
    """np.save, complete or absent (the task's completion marker is written after it)."""
    with AtomicFile(path, binary=True) as f:
        np.save(f.file, array)
