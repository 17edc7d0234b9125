"""The one shape of an LLM stage, the registry of stages, and the work item that moves a
document through them.

A stage is a plug-in (registry.py): one package beside its prompts, with its config model and
its `Stage` subclass, registered together:

    class CheckConfig(ConfigModel):                    # the recipe's `curation.check:` block
        stage: StageKind[Literal["check"]] = "check"   # the stage's kind: its key under `curation:`
        ...

    @STAGES.register(CheckConfig)
    class Check(Stage):
        role = "checker"                               # the `models:` entry that serves its calls
        role_fallback = "judge"                        # ... or, left out, the model of this role
        outcomes = ("ok", "wrong")                     # the labels `read` gives a document
        routes = {("judge", "good"): Go("check"), ...}  # its place in the flow (flow.py)

        def requests(self, item) -> [LLMRequest]       # the calls this step of the document needs
        def read(self, item, results) -> Work | Reject # what the replies mean for the document

plus the import of the package in `curation/__init__.py`. The recipe's `curation:` block and
its `models:` mapping are built from the registered stages (config.py), so a new stage's block
and role are recipe keys with nothing else to edit.

`read` gets one `CallResult` per request, in request order, and returns the document labelled
with one of the stage's `outcomes` (`item.labelled(...)`), or a `Reject` with its reason when the
stage itself failed it (every call failed, every reply unusable). Where a labelled document goes
next is not the stage's business: `accept` hands it to the flow's routing table (flow.py).
Stages are pure functions of the item and the stored replies, so a document's outcome does not
depend on when its calls finish, and a resumed run rebuilds it from the cache. The engine
(`engine.py`) drives every document on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Annotated, Any, Callable, ClassVar, Mapping, TypeVar

from pydantic import Field

from ..documents import Document
from ..llm.backends.base import GenerationParams, LLMRequest
from ..llm.calls import CallResult
from ..options import ConfigModel, NotFingerprinted
from ..registry import Registry
from .pairs import Pair, Reject

DONE = "done"  # the `next` of a document whose best pair goes to the pool

# The LLM stages by kind: a kind is the stage's key under the recipe's `curation:` (so its
# config's discriminator is implied by where the block is written, and never dumped).
STAGES: Registry = Registry("curation stage", key="stage")


_Kind = TypeVar("_Kind")
# `stage: StageKind[Literal["judge"]] = "judge"`: a stage config's kind, the one-value Literal the
# registry reads. It is left out of the dumped config (config.yaml, summaries) and of the
# fingerprint, and is no key a recipe writes: a stage block reads and records as it always did.
StageKind = Annotated[_Kind, NotFingerprinted("the stage's kind: its key under curation"), Field(exclude=True)]


class Sampling(ConfigModel):
    """Sampling settings of one stage; the defaults are the X-Instruction scripts' sampling
    (temperature 0.7, top_p 0.9, top_k 50)."""

    max_new_tokens: Annotated[int, Field(ge=1, le=131072)]
    temperature: Annotated[float, Field(ge=0.0)] = 0.7  # 0: greedy
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    top_k: Annotated[int, Field(ge=0)] = 50  # 0: off

    def params(self, seed: int, stop: tuple[str, ...] = ()) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=stop,
            seed=seed,
        )


@dataclass(frozen=True)
class Work:
    """A document in flight: the pairs it carries, the outcome of its last stage (until the flow
    routes it) and where it goes next."""

    doc: Document
    language: str
    next: str
    pairs: tuple[Pair, ...] = ()  # candidates being judged, or the one pair being refined/kept
    attempt: int = 0  # judge attempts on the unlabelled pairs (malformed replies are retried)
    failures: tuple[tuple[int, str, Any], ...] = ()  # (candidate, reason, detail) of dropped pairs
    replies: tuple[tuple[int, str], ...] = ()  # (candidate, reply) of malformed judge replies so far
    events: tuple[str, ...] = ()  # counters this document adds to its language's summary
    judged: tuple[dict[str, Any], ...] = ()  # every judge reply so far, for the judge_replies side file
    outcome: str = ""  # the label the last stage gave it; the flow's routing table reads it

    def labelled(self, outcome: str, pairs: tuple[Pair, ...], *events: str, **changes: Any) -> "Work":
        """What a stage's `read` returns: the document with `outcome`, not yet routed."""
        return replace(self, outcome=outcome, pairs=pairs, events=self.events + events, **changes)

    def then(self, next: str, pairs: tuple[Pair, ...], *events: str, **changes: Any) -> "Work":
        """The routed document: on to stage `next` (or DONE)."""
        return replace(self, next=next, outcome="", pairs=pairs, events=self.events + events, **changes)

    def reject(self, reason: str, *events: str, **detail: Any) -> Reject:
        return replace(Reject.of(self.doc, self.language, reason, **detail), events=self.events + events, judged=self.judged)


# A route (flow.py): what happens to a document a stage labelled with an outcome.
Route = Callable[[Work, Any], "Work | Reject"]  # (the labelled document, the CurationConfig)


@dataclass(frozen=True)
class StageContext:
    """What every stage is built with besides its own config block (see flow.build_stages)."""

    curation: Any  # the whole CurationConfig (config.py builds it from the stages; not imported here)
    versions: Any  # the run folder's rules (versions.Versions): judge parser, instruction checks
    route: Callable[[str, "Work | Reject"], "Work | Reject"]  # the flow's table: (stage, outcome) -> next

    @property
    def seed(self) -> int:
        return self.curation.seed


class Stage(ABC):
    """One LLM step. Its kind (`name`) is its config's; `role` names the `models:` entry that
    serves its calls, `role_fallback` the role whose model serves it when the recipe leaves
    that entry out (None: the embedded local model; see config.ModelsConfig)."""

    role: ClassVar[str]
    role_fallback: ClassVar[str | None] = None
    outcomes: ClassVar[tuple[str, ...]]
    # Edges a plug-in stage adds to the flow's table, to splice itself in (flow.py). The stages
    # shipped with the toolkit are routed in flow.ROUTES instead, where the whole flow reads at once.
    routes: ClassVar[Mapping[tuple[str, str], Route]] = {}

    def __init__(self, config: Any, context: StageContext) -> None:
        self.config = config
        self.context = context
        self.name: str = STAGES.kind_of(type(config))
        self.seed = context.seed

    def request(self, prompt: str, params: GenerationParams) -> LLMRequest:
        """One call of this stage. Every stage builds its requests here, so what a call carries
        besides its prompt and parameters is added in one place."""
        return LLMRequest(prompt=prompt, params=params)

    @abstractmethod
    def requests(self, item: Work) -> list[LLMRequest]:
        """The calls `item` needs now (at least one), each made with `request`."""

    @abstractmethod
    def read(self, item: Work, results: list[CallResult]) -> Work | Reject:
        """What one result per request of `requests(item)` means: `item.labelled(outcome, ...)`
        with one of `outcomes`, or a Reject naming why the stage dropped the document."""

    def prepare(self) -> None:
        """Load what `read` needs, once per process, before the engine sends its first call. A
        lazy load inside `read` runs on the event loop and idles every endpoint's slots while it
        lasts (langdetect's profiles take ~1 s). Most stages need nothing."""
        return None

    def describe(self) -> str:
        """What `curate --dry-run` says of this stage (plan.py)."""
        return f"served by the {self.role} model"

    def accept(self, item: Work, results: list[CallResult]) -> Work | Reject:
        """The document's next step: `read`, routed by the flow's table."""
        return self.context.route(self.name, self.read(item, results))

    def call_rounds(self, item: Work, count: int) -> list[tuple[int, int]]:
        """(round, candidate) of each of the `count` requests of `requests(item)`, for the call
        ledger only: no pairs yet, candidate i of round 0; one request per unlabelled pair, that
        pair's; else a labelled pair being rewritten, its next round. A stage may say otherwise."""
        if not item.pairs:
            return [(0, c) for c in range(count)]
        unlabelled = [pair for pair in item.pairs if not pair.label]
        if len(unlabelled) == count:
            return [(pair.round, pair.candidate) for pair in unlabelled]
        return [(item.pairs[i % len(item.pairs)].round + 1, item.pairs[i % len(item.pairs)].candidate) for i in range(count)]


def stage_roles() -> dict[str, str | None]:
    """Every model role the registered stages declare -> the role it falls back to, in the
    order the stages were registered (the order of the recipe's `models:` as it is dumped).

    The fallback chain of the toolkit's stages is refiner -> judge -> generator -> the embedded
    local model: a role left out of `models:` is served by its fallback's model, recursively."""
    roles: dict[str, str | None] = {}
    for kind in STAGES.kinds():
        stage = STAGES.implementation(kind)
        if stage.role in roles and roles[stage.role] != stage.role_fallback:
            raise RuntimeError(f"stages disagree on the fallback of role {stage.role!r}: {roles[stage.role]!r}, {stage.role_fallback!r} ({kind})")
        roles.setdefault(stage.role, stage.role_fallback)
    for role in roles:
        seen = [role]
        while (fallback := roles[seen[-1]]) is not None:
            if fallback not in roles:
                raise RuntimeError(f"role {seen[-1]!r} falls back to {fallback!r}, which no registered stage declares")
            if fallback in seen:
                raise RuntimeError(f"the role fallbacks loop: {' -> '.join(seen + [fallback])}")
            seen.append(fallback)
    return roles
