"""The rules a run folder's labels were made with besides its recipe: the judge's reply parser
(judge/parsing.py) and the instruction checks (generate/checks.py).

They change with the code, not with the recipe, so they are not in the run fingerprint (which
stays byte-identical for every folder made before). A folder records them instead, in
`curation/versions.json`, the first time curation runs in it, and every shard's meta file and each
language's summary.json carry them. A folder that curated before versions were recorded (it has
curation files but no versions.json) keeps the legacy rules, `v1`: labels are rebuilt from the
cached replies on every run, so a newer rule would relabel its pairs and change its curated files
on resume. `--force` moves a folder to the current rules (its pairs are relabelled from the cache;
no call is repeated). The legacy rules are never written into meta or summary files: there,
absent means `v1`, and a legacy folder keeps the bytes it had.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import CorruptFile, UsageError
from ..storage import write_json
from .generate import checks
from .judge import parsing

if TYPE_CHECKING:
    from ..layout import RunLayout

logger = logging.getLogger(__name__)

KNOWN = {"judge_parser": tuple(parsing.PARSERS), "instruction_checks": (checks.LEGACY, checks.CURRENT)}


@dataclass(frozen=True)
class Versions:
    judge_parser: str = parsing.CURRENT
    instruction_checks: str = checks.CURRENT

    def record(self) -> dict[str, Any]:
        """What meta and summary files carry: nothing for the legacy rules (absent means v1)."""
        return {} if self == LEGACY else {"versions": asdict(self)}

    def describe(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in asdict(self).items())

    @classmethod
    def from_record(cls, data: dict[str, Any] | None, where: str) -> "Versions":
        """The versions of a meta file's or versions.json's mapping; a key left out is `v1`."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(KNOWN))
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
        values = {}
        for field in fields(cls):
            value = data.get(field.name, getattr(LEGACY, field.name))
            if value not in KNOWN[field.name]:
                raise UsageError(f"{where}: {field.name} {value!r} is not one this toolkit knows ({', '.join(KNOWN[field.name])}); use a newer version of it")
            values[field.name] = value
        return cls(**values)


CURRENT = Versions()
LEGACY = Versions(judge_parser=parsing.LEGACY, instruction_checks=checks.LEGACY)


def folder_versions(layout: "RunLayout", *, force: bool, write: bool = True) -> Versions:
    """The rules to label with in `layout`'s folder (recorded there unless `write` is False)."""
    path = layout.versions_file
    recorded = None
    if path.exists():
        try:
            recorded = _read(path)
        except ValueError as error:
            if not force:
                raise
            logger.warning("--force: replacing %s (%s)", path, error)
    if recorded is not None and not force:
        if recorded != CURRENT:
            logger.warning("%s keeps %s (%s); pass --force to relabel it with %s", layout.root, recorded.describe(), path.name, CURRENT.describe())
        return recorded
    if recorded == CURRENT:
        return recorded
    made_before = recorded is None and ((layout.root / "curation").exists() or layout.curated_root.exists())
    if force:
        before = recorded or (LEGACY if made_before else None)
        if before is not None and before != CURRENT:
            logger.warning("--force: %s was labelled with %s; relabelling with %s", layout.root, before.describe(), CURRENT.describe())
        versions = CURRENT
    elif made_before:
        logger.warning(
            "%s was curated before rule versions were recorded: it keeps %s, so its labels do not change on resume; "
            "pass --force to relabel it with %s (from the cached replies)", layout.root, LEGACY.describe(), CURRENT.describe(),
        )
        versions = LEGACY
    else:
        versions = CURRENT
    if write:
        write_json(path, asdict(versions))
    return versions


def _read(path) -> Versions:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CorruptFile(f"{path} is unreadable ({error}): pass --force to relabel with the current rules") from error
    if not isinstance(data, dict):
        raise CorruptFile(f"{path} is not a JSON object: pass --force to relabel with the current rules")
    return Versions.from_record(data, str(path))
