"""The route of a document through the LLM stages, in one place:

    generate -> judge -> done                      (good)
                      -> refine -> judge -> ...    (needs_refinement, up to `refine.rounds` times)
                      -> reject                    (bad, failed calls, malformed replies...)

Adding a stage (say, a translation check before `done`) is one new module with a `Stage`
subclass, plus its place in `build_stages` below.
"""

from __future__ import annotations

from .config import CurationConfig
from .generate import Generate
from .judge import Judge
from .refine import Refine
from .stage import DONE, Stage
from .versions import CURRENT, Versions

FIRST = "generate"


def build_stages(config: CurationConfig, versions: Versions = CURRENT) -> dict[str, Stage]:
    """The stages by name; each knows the name of the stage its documents go to next. `versions`:
    the judge parser and instruction checks of the run folder (versions.py)."""
    checks = versions.instruction_checks
    stages: list[Stage] = [
        Generate(config.generate, config.seed, then="judge", checks=checks),
        Judge(config.judge, config.refine, config.seed, good=DONE, refine_stage="refine", parser=versions.judge_parser),
        Refine(config.refine, config.generate, config.seed, then="judge", checks_version=checks),
    ]
    return {stage.name: stage for stage in stages}
