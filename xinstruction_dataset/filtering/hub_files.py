"""Hub sources split into tasks: `hf:<repo>[:<config>]` resolved to the data files of the
config's split at one commit, as `datasets` resolves them (the card's `configs:` entry, its
`data_files` patterns or `data_dir`, else datasets' default split patterns), listed through
huggingface_hub. Each file becomes one filter task (sources.py reads it).

    task_inputs         what `plan_tasks` makes tasks of: a local source's files, a hub source's
                        file URLs (`hf://datasets/<repo>@<commit>/<file>`), or the `hf:` id
                        itself when that source is streamed
    HubListings         `<output_dir>/run/sources/<lang>.json`: each hub source's commit and
                        files, written at its first listing (sorted, no timestamps). A later run
                        reads them from there and asks the Hub nothing, so a head that moved
                        changes neither the tasks nor their keys: the resume goes on
    list_hub_source     one listing (network): the commit of `revision` (default branch when
                        unset), then the files

One streaming task, with a warning that says why, for a dataset with a loading script, one whose
files cannot be listed (the Hub answers the listing with an error, HF_HUB_OFFLINE is set), data
files in a format only `datasets` reads (`.json`, which may be one JSON array, `.csv`...), or a
local folder given as `hf:`. A repo, revision, config or split that does not exist is a usage
error naming it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from glob import has_magic
from pathlib import Path
from typing import Any

from ..errors import CorruptFile, EnvironmentFault, UsageError
from ..storage import write_json
from .hub_access import describe, status, unreachable, with_retries
from .sources import HUB_READABLE_SUFFIXES, SourceSpec, expand_source, hub_file_url

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class HubListing:
    commit: str
    files: tuple[str, ...]  # paths in the repo, in the order `datasets` reads them


class Unsplittable(Exception):
    """Why a hub source is read as one stream instead of file by file."""


def task_inputs(spec: SourceSpec, path: str, listings: "HubListings") -> list[str]:
    """The inputs of one source, one task each, in input order (`path`: the spec's, resolved)."""
    if not path.startswith("hf:"):
        return expand_source(path)
    listing = listings.get(spec, path)
    if listing is None:
        try:
            listing = list_hub_source(spec, path)
        except Unsplittable as reason:
            log.warning("%s is read as one streaming task, not split into tasks by data file: %s", path, reason)
            return [path]
        listings.record(spec, path, listing)
        log.info("%s: %d data file(s) at commit %s, recorded in %s", path, len(listing.files), listing.commit, listings.path)
    repo = _repo_and_config(path)[0]
    return [hub_file_url(repo, listing.commit, file) for file in listing.files]


class HubListings:
    """The hub listings of one language's sources, kept in the run folder (see module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries: dict[tuple[str, str, str], dict[str, Any]] | None = None

    def get(self, spec: SourceSpec, path: str) -> HubListing | None:
        entry = self._read().get(_key(spec, path))
        return None if entry is None else HubListing(entry["commit"], tuple(entry["files"]))

    def record(self, spec: SourceSpec, path: str, listing: HubListing) -> None:
        entries = self._read()
        entries[_key(spec, path)] = {
            "source": path, "split": spec.split, "revision": spec.revision, "commit": listing.commit, "files": list(listing.files),
        }
        write_json(self.path, {"format": FORMAT, "listings": [entries[key] for key in sorted(entries)]})

    def _read(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path.exists():
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    for entry in data["listings"]:
                        if not isinstance(entry["commit"], str) or not all(isinstance(f, str) for f in entry["files"]):
                            raise TypeError("commit and files must be strings")
                        self._entries[(entry["source"], entry["split"], entry["revision"])] = entry
                except (ValueError, KeyError, TypeError) as error:
                    raise CorruptFile(
                        f"{self.path} is unreadable ({error}): delete it to list the hub sources again "
                        "(a source whose files changed on the Hub since then is then filtered again)"
                    ) from None
        return self._entries


def _key(spec: SourceSpec, path: str) -> tuple[str, str, str]:
    return (path, spec.split, spec.revision)


def _repo_and_config(path: str) -> tuple[str, str]:
    repo, _, config = path[len("hf:"):].partition(":")
    return repo, config


def list_hub_source(spec: SourceSpec, path: str) -> HubListing:
    """The commit and data files of a hub source now (network); `Unsplittable` when it is to be
    streamed instead."""
    repo, config = _repo_and_config(path)
    if os.path.exists(repo):
        raise Unsplittable(f"{repo} is a local folder, not a Hub repo; give its files as the source's `path` (a glob) to split it")
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        return with_retries(lambda: _list(spec, path, repo, config), f"listing {path}")
    except (UsageError, Unsplittable):
        raise
    except OfflineModeIsEnabled:
        raise Unsplittable("HF_HUB_OFFLINE is set, so its files cannot be listed") from None
    except Exception as error:
        if status(error) is not None:
            raise Unsplittable(f"its files cannot be listed (the Hub answered {describe(error)})") from None
        if unreachable(error):
            raise EnvironmentFault(f"{path}: the Hub cannot be reached to list its files ({describe(error)}); check the network and HF_ENDPOINT") from None
        raise


def _list(spec: SourceSpec, path: str, repo: str, config: str) -> HubListing:
    from huggingface_hub import DatasetCard, DatasetCardData, HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    try:
        info = api.dataset_info(repo, revision=spec.revision or None)
    except GatedRepoError:
        raise EnvironmentFault(f"{path}: the dataset is gated; accept its conditions on the Hub and set HF_TOKEN (or `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise UsageError(f"{path}: no dataset {repo!r} on the Hub (or it is private: set HF_TOKEN); check the source's `path`") from None
    except RevisionNotFoundError:
        raise UsageError(f"{path}: the dataset has no revision {spec.revision!r}; check the source's `revision`") from None
    commit = info.sha
    siblings = {sibling.rfilename for sibling in info.siblings or ()}
    script = f"{repo.rsplit('/', 1)[-1]}.py"
    if script in siblings:
        raise Unsplittable(f"it has a loading script ({script}), which only `datasets` runs")
    card = DatasetCardData()
    if "README.md" in siblings:
        card = DatasetCard.load(hf_hub_download(repo, "README.md", repo_type="dataset", revision=commit)).data
    if ".huggingface.yaml" in siblings:  # a card's YAML kept apart, merged over it as `datasets` does
        import yaml

        with open(hf_hub_download(repo, ".huggingface.yaml", repo_type="dataset", revision=commit), encoding="utf-8") as f:
            extra = yaml.safe_load(f) or {}
        card = DatasetCardData(**{**card.to_dict(), **extra})
    base = f"hf://datasets/{repo}@{commit}"
    patterns, config_base = _split_patterns(path, card, config, base)
    if spec.split not in patterns:
        raise UsageError(f"{path}: the dataset has no split {spec.split!r} (splits: {', '.join(patterns)}); set the source's `split`")
    files = _resolve(path, patterns[spec.split], config_base)
    prefix = base + "/"
    if not files:
        raise UsageError(f"{path}: no data file of split {spec.split!r} at commit {commit}; check the source's `path` and `split`")
    if not all(file.startswith(prefix) for file in files):
        raise Unsplittable(f"its data files are not all in the repo ({files[0]}...)")
    others = sorted({_suffix(file) for file in files if not file.endswith(HUB_READABLE_SUFFIXES)})
    if others:
        raise Unsplittable(f"its data files include {', '.join(others)} files; split into tasks are {', '.join(HUB_READABLE_SUFFIXES)} files only")
    return HubListing(commit, tuple(file[len(prefix):] for file in files))


def _split_patterns(path: str, card: Any, config: str, base: str) -> tuple[dict[str, list[str]], str]:
    """The data_files patterns per split of the source's config, and the folder they are
    relative to (`datasets`' rules: the card's config, its data_dir, or the default patterns)."""
    from datasets.data_files import EmptyDatasetError, get_data_patterns, sanitize_patterns
    from datasets.utils.metadata import MetadataConfigs

    try:
        configs = MetadataConfigs.from_dataset_card_data(card)
    except ValueError as error:
        raise Unsplittable(f"its card's `configs:` cannot be read ({str(error).strip().splitlines()[0]})") from None
    if configs:
        try:
            name = config or configs.get_default_config_name()
        except ValueError as error:
            raise UsageError(f"{path}: {error} Name one: hf:<repo>:<config>") from None
        if name is None or name not in configs:
            asked = f"no config {config!r}" if config else "several configs and no default"
            raise UsageError(f"{path}: the dataset has {asked} (configs: {', '.join(configs)}); fix the source's `path`")
        params = configs[name]
    elif config and config != "default":
        raise UsageError(f"{path}: the dataset's card lists no configs, so there is no config {config!r}; use hf:{_repo_and_config(path)[0]}")
    else:
        params = {}
    data_dir = params.get("data_dir")
    config_base = f"{base}/{data_dir.strip('/')}" if data_dir else base
    if params.get("data_files") is not None:
        return sanitize_patterns(params["data_files"]), config_base
    try:
        return get_data_patterns(config_base), config_base
    except EmptyDatasetError:
        raise UsageError(f"{path}: the dataset has no data files{f' under {data_dir}' if data_dir else ''}; check the source's `path`") from None


def _resolve(path: str, patterns: list[str], base: str) -> list[str]:
    """The files of the patterns, in `datasets`' order (pattern by pattern, each sorted); a
    pattern without wildcards must name a file, a glob may match none."""
    from datasets.data_files import resolve_pattern

    files: list[str] = []
    for pattern in patterns:
        try:
            files.extend(resolve_pattern(pattern, base_path=base))
        except FileNotFoundError:
            if not has_magic(pattern):
                raise UsageError(f"{path}: the card names data file {pattern!r}, which is not in the repo") from None
    return files


def _suffix(file: str) -> str:
    name = file.rsplit("/", 1)[-1]
    return "." + name.split(".", 1)[1] if "." in name else f"{name} (no extension)"
