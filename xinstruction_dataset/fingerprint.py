"""The run fingerprint: the recipe values that shape a run folder's outputs, flattened into
`{"dotted.key.path": value}` and kept in `<output_dir>/run/fingerprint.json`.

A run folder is resumable: filtered files, curation work and the call cache are reused by the
next run. Resuming with another model or threshold would silently mix outputs of two settings,
so every `filter`, `curate` and `build` compares the recipe with the folder's fingerprint right
after loading it and, when they differ, stops before any work, naming each changed key. `--force`
goes on anyway (and records the new fingerprint); a new output_dir starts clean.

In it: every recipe field but those marked `NotFingerprinted` (options.py): output paths
(`output_dir`, `curation.cache`), throughput knobs (endpoints, max_concurrency, timeout, retries,
ramp, embedding batch size), the `languages` selection, `name`, `version`, `publish`, and
credentials (and any key whose name says it holds a secret: redact.is_secret_name). Model
entries are recorded resolved (a role left out is its fallback's model, defaults filled in),
so spelling out a default does not change the fingerprint. A field marked
`FingerprintedWhenSet` (one added later, such as a source's `follow_symlinks`) is in it only
when set, so folders made before it existed keep resuming.

A config may add values derived from its fields (`fingerprint_derived()`, a {name: value}
mapping, recorded beside its fields). A served model entry (llm/backends/server_config.py) records
what its model is and sees, not how it is reached: `model`, the prompt shaping fields and
`prompt_format` ("raw" for routes generate and completions, "chat" for chat), never its
`backend` kind or `route` spelling. So `backend: tgi, route: completions` moved to `backend: vllm`
on the same model resumes the same folder (its call-cache keys, from `model`, do not change
either); the `local` backend records its fields as it always did.

Legacy folders: a fingerprint stored before the server kinds existed records a served entry as
`<entry>.backend: "tgi"` and `<entry>.route: <route>`. `upgrade_legacy` rewrites such a pair as
`<entry>.prompt_format` (the route's format) before comparing, so those folders keep resuming;
the stored file is left as it is until a run records a new fingerprint (a new folder, --force).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .curation.config import ModelsConfig
from .errors import CorruptFile, UsageError
from .options import fingerprint_skips, is_fingerprinted
from .redact import is_secret_name
from .storage import write_json

if TYPE_CHECKING:
    from .layout import RunLayout
    from .recipe import Recipe

logger = logging.getLogger(__name__)

FORMAT = 1
_ABSENT = object()


def fingerprint(recipe: "Recipe") -> dict[str, Any]:
    """The recipe's fingerprint, as it reads back from the file (JSON types, string keys)."""
    values: dict[str, Any] = {}
    _flatten(recipe, "", values)
    return json.loads(json.dumps(values, sort_keys=True))


def check_fingerprint(recipe: "Recipe", layout: "RunLayout", *, force: bool, write: bool = True) -> None:
    """Record the recipe's fingerprint in a new run folder; in a used one, refuse a different
    recipe (ValueError naming each changed key) unless `force`, which records the new one.
    `write=False` (a dry run) checks without recording."""
    current = fingerprint(recipe)
    path = layout.fingerprint_file
    stored = _read(path, force)
    changes = {} if stored is None else changed_keys(upgrade_legacy(stored), current)
    if stored is not None and not changes:
        return
    if changes and not force:
        raise UsageError(_refusal(layout.root, path, changes))
    if changes:
        logger.warning("--force: %s was made with a different recipe (%s); its outputs may mix both", layout.root, ", ".join(changes))
    if write:
        write_json(path, {"format": FORMAT, "recipe": recipe.name, "fingerprint": current})


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    """{key: "old → new"} for every key whose value differs, secrets redacted."""
    changes = {}
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before != after:
            changes[key] = f"{_show(key, before)} → {_show(key, after)}"
    return changes


# A served entry's kind and route as fingerprints stored before the server kinds recorded them
# (the one server kind then was tgi), and the prompt format each route stands for now.
LEGACY_SERVER_KIND = "tgi"
LEGACY_PROMPT_FORMATS = {"generate": "raw", "completions": "raw", "chat": "chat"}


def upgrade_legacy(stored: dict[str, Any]) -> dict[str, Any]:
    """`stored` with every legacy served entry (`<entry>.backend: "tgi"` beside `<entry>.route`)
    rewritten as today's fingerprint records it: `<entry>.prompt_format`, kind and route gone
    (see the module docstring). Anything else, a stored `local` entry included, is kept as it is."""
    upgraded = dict(stored)
    for key, value in stored.items():
        entry, _, name = key.rpartition(".")
        route_key = f"{entry}.route" if entry else "route"
        if name == "backend" and value == LEGACY_SERVER_KIND and stored.get(route_key) in LEGACY_PROMPT_FORMATS:
            upgraded.pop(key)
            upgraded[f"{entry}.prompt_format" if entry else "prompt_format"] = LEGACY_PROMPT_FORMATS[upgraded.pop(route_key)]
    return upgraded


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, ModelsConfig):
        value = value.resolved()  # each role's typed config, defaults applied
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            item = getattr(value, name)
            if is_fingerprinted(field) and not is_secret_name(name) and not fingerprint_skips(field, item):
                _flatten(item, f"{path}.{name}" if path else name, out)
        derived = getattr(value, "fingerprint_derived", None)
        for name, item in (derived() if callable(derived) else {}).items():
            _flatten(item, f"{path}.{name}" if path else name, out)
    elif isinstance(value, dict) and value:
        for key, item in value.items():
            if not is_secret_name(str(key)):
                _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, (list, tuple)) and value:
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out)
    else:
        out[path] = value


def _read(path: Path, force: bool) -> dict[str, Any] | None:
    """The stored fingerprint, None when there is none (or, with force, when it is unreadable)."""
    if not path.exists():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["fingerprint"])
    except (ValueError, KeyError, TypeError) as error:
        if force:
            logger.warning("--force: replacing the unreadable fingerprint %s (%s)", path, error)
            return None
        raise CorruptFile(f"{path} is unreadable ({error}): pass --force to replace it, or use a new output_dir") from error


def _show(key: str, value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if is_secret_name(key.rsplit(".", 1)[-1]):
        return "<redacted>"
    return json.dumps(value, ensure_ascii=False)


def _refusal(root: Path, path: Path, changes: dict[str, str]) -> str:
    lines = [f"{root} holds outputs of a different recipe; changed since {path.name} was written:"]
    lines += [f"  {key}: {change}" for key, change in changes.items()]
    lines.append("Resuming would mix outputs of both settings. Pass --force to go on anyway, or use a new output_dir.")
    return "\n".join(lines)
