"""The language-step plug-in point: decisions taken over a whole language, across every task.

A filter block judges one document; a language step judges a document against the rest of its
language (is it a copy of another?). A step works in two halves, as datatrove's dedup does:

    signer()        in each filter task, beside the task's outputs: what the step needs of every
                    document the task kept (a digest, a MinHash signature), saved as arrays
    decide(tasks)   once per language, after its tasks: reads only those arrays and the kept
                    ids (`LanguageTasks`), never the text, and answers a list of `Removal`s

A removal names a kept row (task, row and id), the step and reason, and the kept document it
duplicates. The removal list is not a rewrite of the text: the task files stay as they are and
readers skip the removed rows (filtering/kept.py). Counts travel as data (`Removal.step`,
`Removal.reason`), never parsed back out of a reason string.

A step kind is registered on `LANGUAGE_STEPS` with its recipe spec (a `filters:` entry):

    @LANGUAGE_STEPS.register(ExactDedupOptions)
    def exact_dedup(options: ExactDedupOptions) -> LanguageStep: ...

The implementation builds the step from its spec. Steps of one `family` run as one: the chain's
dedup entries (`exact_dedup` and `near_dedup` together) share one clustering, so `merged()`
folds them into one config.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Protocol

import numpy as np

from ...documents import Document
from ...registry import Registry

LANGUAGE_STEPS: Registry = Registry("language step")


@dataclass(frozen=True)
class Removal:
    """One kept row that a whole-language decision removes.

    `step` is what decided (`duplicate_id`, or the dedup block the recipe named); `reason` why
    (`duplicate_id`, `exact_duplicate_of`, `near_duplicate_of`); `kept_*` the document that stays
    in its place (the first of a repeated id, or the kept copy of a cluster)."""

    task: int
    row: int
    id: str
    step: str
    reason: str
    kept_task: int
    kept_row: int
    kept_id: str

    @property
    def counted_as(self) -> str:
        """The key of this removal in a summary's `rejected` counts."""
        return self.reason if self.step == self.reason else f"{self.step}:{self.reason}"

    def reject_reason(self) -> str:
        """The `reason` of this document in a rejects file."""
        return self.reason if self.step == self.reason else f"{self.step}:{self.reason}:{self.kept_id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Removal":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


class Signer(Protocol):
    """The task half of a step: sees each kept document, then saves what it saw in the task folder."""

    def add(self, doc: Document) -> None: ...

    def save(self, folder: Path) -> None: ...

    def saved(self, folder: Path) -> bool:
        """Whether `folder` holds what this signer saves (a finished task's arrays may have been
        dropped after its language's manifest: see `LanguageStep.transient_files`)."""
        ...


class LanguageTasks:
    """The kept rows of a language's tasks, numbered across tasks in task order (the global row),
    and their ids, read from each task's `ids.json` only when one of its rows is asked for."""

    def __init__(self, folders: list[Path], counts: list[int] | None = None):
        from .signatures import task_ids

        self.folders = folders
        self._task_ids = task_ids
        self._loaded: dict[int, list[str]] = {}
        if counts is None:
            counts = [len(self.ids_of(task)) for task in range(len(folders))]
        self.offsets = np.cumsum([0] + list(counts)).astype(np.int64)

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def ids_of(self, task: int) -> list[str]:
        if task not in self._loaded:
            self._loaded = {task: self._task_ids(self.folders[task])}  # one task's ids at a time
        return self._loaded[task]

    def locate(self, index: int) -> tuple[int, int]:
        """(task, row) of a global row."""
        task = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return task, index - int(self.offsets[task])

    def ids_at(self, indices: Iterable[int]) -> dict[int, str]:
        """{global row: id} of `indices`, each task's ids read once."""
        found: dict[int, str] = {}
        for index in sorted(set(indices)):
            task, row = self.locate(index)
            found[index] = self.ids_of(task)[row]
        return found

    def removal(self, index: int, step: str, reason: str, kept: int, ids: dict[int, str]) -> Removal:
        task, row = self.locate(index)
        kept_task, kept_row = self.locate(kept)
        return Removal(task, row, ids[index], step, reason, kept_task, kept_row, ids[kept])


class InMemoryTasks(LanguageTasks):
    """One task's ids held in memory (a stream checked by hand, not a filter run)."""

    def __init__(self, ids: list[str]):
        self.folders = []
        self._ids = ids
        self.offsets = np.asarray([0, len(ids)], dtype=np.int64)

    def ids_of(self, task: int) -> list[str]:
        return self._ids


class LanguageStep(ABC):
    """One decision over a whole language (see the module docstring)."""

    family: ClassVar[str]
    # Where the step's `task_key()` sits in a filter task's key (tasks.py): what a task's saved
    # arrays depend on, so a changed step makes finished tasks stale.
    key_field: ClassVar[str]
    # Files of a task's folder only the reduce reads: dropped once the manifest is written (a
    # later reduce has the finished tasks sign their kept documents again).
    transient_files: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def merged(self, other: "LanguageStep") -> "LanguageStep":
        """This step and another of its family as one (a UsageError when they cannot be)."""

    @abstractmethod
    def signer(self) -> Signer: ...

    @abstractmethod
    def decide(self, tasks: LanguageTasks, excluded: np.ndarray) -> list[Removal]:
        """The rows this step removes; rows where `excluded` is true were removed before and
        take no part."""

    @abstractmethod
    def task_key(self) -> Any: ...

    @abstractmethod
    def describe(self) -> str:
        """One line for `build --dry-run`."""

    @abstractmethod
    def stats(self, documents_in: int, removals: list[Removal]) -> tuple[str, dict[str, int]]:
        """(block name, its counters) for the summary's `block_stats`."""


def is_language_step(spec: Any) -> bool:
    """Whether a chain entry is a language step (its kind is registered here), not a filter block."""
    return getattr(spec, "type", None) in LANGUAGE_STEPS.kinds()


def plan_steps(chain: Iterable[Any]) -> tuple[list[Any], tuple[LanguageStep, ...]]:
    """A chain's filter entries (in order) and its language steps, one per family (in the order
    the chain first names them)."""
    filters, steps = [], {}
    for spec in chain:
        if not is_language_step(spec):
            filters.append(spec)
            continue
        step = LANGUAGE_STEPS.implementation(spec.type)(spec)
        steps[step.family] = steps[step.family].merged(step) if step.family in steps else step
    return filters, tuple(steps.values())
