"""The task and reduce function types; groups of tasks with a reduce task each (a language's
filter tasks and its merge), and the bookkeeping that says which reduces may start once some
tasks are done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

TaskFunction = Callable[[Any], Any]  # a module-level function of one picklable task
ReduceFunction = Callable[[Any, list], Any]  # module-level: (reduce task, its tasks' results)


@dataclass(frozen=True)
class Group:
    """A reduce task and the indices of the tasks whose results it takes (in that order)."""

    task: Any
    members: tuple[int, ...]


class GroupTracker:
    """Which groups have all their members done (each group reported once)."""

    def __init__(self, groups: Sequence[Group]):
        self.missing = [set(group.members) for group in groups]
        self.groups_of: dict[int, list[int]] = {}
        for number, group in enumerate(groups):
            for member in group.members:
                self.groups_of.setdefault(member, []).append(number)

    def ready_from_start(self) -> list[int]:
        """Groups with no member at all (nothing to wait for)."""
        return [number for number, missing in enumerate(self.missing) if not missing]

    def done(self, index: int) -> list[int]:
        """Record task `index` as done; the groups it completes."""
        ready = []
        for number in self.groups_of.get(index, ()):
            self.missing[number].discard(index)
            if not self.missing[number]:
                ready.append(number)
        return ready

