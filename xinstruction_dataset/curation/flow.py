"""The route of a document through the LLM stages, in one table keyed by (stage, outcome):

    generate  candidates        -> judge
    judge     unreadable        -> judge                   (a malformed reply is asked again)
    judge     good              -> done
    judge     bad               -> reject `judge:bad`
    judge     needs_refinement  -> refine                  while the pair has `refine.rounds` left,
                                -> done                    after the last one with `refine.keep_exhausted`,
                                -> reject `refine:rounds_exhausted` otherwise
    refine    rewritten         -> judge

A stage labels a document with one of its `outcomes` (stage.py) and this table says where it
goes; a stage's own failures (failed calls, replies it cannot use) are its rejects, with its
reasons. A plug-in stage brings its edges in its class's `routes` (say a translation check
taking over `("judge", "good")`, and its own `("check", "ok") -> done`); `Flow` merges them
into the table and checks, when the stages are built, that every outcome of every stage has a
route and that every route leads to a stage or to done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .pairs import Reject
from .stage import DONE, STAGES, Route, Stage, StageContext, Work
from .versions import CURRENT, Versions

FIRST = "generate"


@dataclass(frozen=True)
class Go:
    """On to stage `to` (or DONE) with the document's pairs."""

    to: str

    def __call__(self, item: Work, config: Any) -> Work | Reject:
        return item.then(self.to, item.pairs)

    @property
    def leads_to(self) -> tuple[str, ...]:
        return (self.to,)


@dataclass(frozen=True)
class Drop:
    """Rejected with `reason`; the detail names these fields of the document's one pair."""

    reason: str
    detail: tuple[str, ...] = ("instruction", "round")

    def __call__(self, item: Work, config: Any) -> Work | Reject:
        (pair,) = item.pairs
        return item.reject(self.reason, **{name: getattr(pair, name) for name in self.detail})

    @property
    def leads_to(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class RefineWhileRoundsLeft:
    """To `to` while the pair has had fewer than `refine.rounds` refinements; after the last,
    kept (done) when `refine.keep_exhausted`, else `exhausted`."""

    to: str = "refine"
    exhausted: Drop = Drop("refine:rounds_exhausted")

    def __call__(self, item: Work, config: Any) -> Work | Reject:
        (pair,) = item.pairs
        if pair.round < config.refine.rounds:
            return item.then(self.to, item.pairs, f"refine_round_{pair.round + 1}")
        if config.refine.keep_exhausted:
            return item.then(DONE, item.pairs)
        return self.exhausted(item, config)

    @property
    def leads_to(self) -> tuple[str, ...]:
        return (self.to, DONE)


ROUTES: dict[tuple[str, str], Route] = {
    ("generate", "candidates"): Go("judge"),
    ("judge", "unreadable"): Go("judge"),
    ("judge", "good"): Go(DONE),
    ("judge", "bad"): Drop("judge:bad", ("instruction", "round", "score")),
    ("judge", "needs_refinement"): RefineWhileRoundsLeft(),
    ("refine", "rewritten"): Go("judge"),
}


class Flow:
    """The routing table of a run: ROUTES with every stage's own `routes` merged in."""

    def __init__(self, config: Any, stages: Mapping[str, type[Stage]]) -> None:
        self.config = config
        table = dict(ROUTES)
        spliced: dict[tuple[str, str], str] = {}
        for name, stage in stages.items():
            for edge, route in stage.routes.items():
                if edge in spliced:
                    raise RuntimeError(f"stages {spliced[edge]!r} and {name!r} both route {edge}")
                spliced[edge] = name
                table[edge] = route
        self.table = table
        self._check(stages)

    def _check(self, stages: Mapping[str, type[Stage]]) -> None:
        """Every outcome of every stage is routed, every route starts at a stage's outcome and
        leads to a stage or to done: a stage left out of the registry fails here, at build time."""
        if FIRST not in stages:
            raise RuntimeError(f"the first stage {FIRST!r} is not registered; registered: {', '.join(stages)}")
        declared = {(name, outcome) for name, stage in stages.items() for outcome in stage.outcomes}
        unrouted = sorted(declared - set(self.table))
        if unrouted:
            raise RuntimeError(f"outcomes the flow does not route: {unrouted}")
        for edge, route in self.table.items():
            if edge not in declared:
                raise RuntimeError(f"route {edge} starts at no registered stage's outcome; registered stages: {', '.join(stages)}")
            unknown = [to for to in getattr(route, "leads_to", ()) if to != DONE and to not in stages]
            if unknown:
                raise RuntimeError(f"route {edge} leads to {unknown}, which no registered stage is")

    def route(self, stage: str, outcome: Work | Reject) -> Work | Reject:
        """Where a document goes after `stage` labelled it (a Reject stays a Reject)."""
        if isinstance(outcome, Reject):
            return outcome
        route = self.table.get((stage, outcome.outcome))
        if route is None:
            raise RuntimeError(f"stage {stage!r} gave outcome {outcome.outcome!r}, which is not one of its declared outcomes")
        return route(outcome, self.config)


def build_stages(config: Any, versions: Versions = CURRENT) -> dict[str, Stage]:
    """Every registered stage, built with its block of `config` (a CurationConfig) and routed
    by one `Flow`. `versions`: the judge parser and instruction checks of the run folder
    (versions.py). (config.py is not imported here: it builds the curation config from the
    registered stages, so a plug-in stage that imports this module for `Go` must be registered
    first.)"""
    classes = {kind: STAGES.implementation(kind) for kind in STAGES.kinds()}
    flow = Flow(config, classes)
    context = StageContext(curation=config, versions=versions, route=flow.route)
    return {kind: stage(getattr(config, kind), context) for kind, stage in classes.items()}
