"""Offline checks of a dataset card against the Hub's rules and against the data in its folder.

The Hub validates metadata in `/api/validate-yaml`, which is not reachable everywhere; these
checks need only the folder. Each problem carries the card's line number and a fix:

    README.md:7: [license] unknown licence 'cc-by-nc' (fix: use a Hub licence id, e.g. cc-by-nc-4.0)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .cards import CHANGELOG_BLOCK
from .layout import CARD_FILE, FolderLayout
from .repo_files import scan_local
from .vocabulary import (
    KNOWN_METADATA_KEYS,
    LICENSES,
    MULTILINGUALITY,
    SIZE_CATEGORIES,
    STRING_KEYS,
    STRING_OR_LIST_KEYS,
    TASK_CATEGORIES,
    is_language_code,
    size_category,
)

UPDATE_FIX = "run `xinstruction card update <folder>` to regenerate it from the data"
FRONT_MATTER = re.compile(r"\A---\n(?P<yaml>.*?\n)---\n", re.S)
STATS_BLOCK = re.compile(r"<!-- generated:statistics start -->\n(?P<body>.*?)<!-- generated:statistics end -->", re.S)
MARKER = re.compile(r"<!-- hand-written:(?P<name>[\w-]+) (?P<edge>start|end) -->")


@dataclass(frozen=True, order=True)
class CardProblem:
    """One problem of a card: where (1-based line), what kind (`code`), what is wrong, how to fix it."""

    line: int
    code: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{CARD_FILE}:{self.line}: [{self.code}] {self.message} (fix: {self.fix})"


@dataclass(frozen=True)
class _Entry:
    """A metadata key, its value as plain data, and the YAML nodes (for line numbers)."""

    key: str
    key_node: Node
    value_node: Node
    value: Any


def check_card(folder: str | Path, card_text: str | None = None, *, layout: FolderLayout | None = None) -> list[CardProblem]:
    """All problems of `folder`'s card (or of `card_text`, checked against `folder`'s data), by line.

    `layout`: the folder's scan when the caller has one (`repo_files.scan_local`); otherwise the
    folder is scanned here, which raises `SymlinkOutOfFolder` for a symlink leaving the folder: a
    card describing files from elsewhere is not a card of this folder.
    """
    folder = Path(folder)
    if layout is None:
        layout = scan_local(folder).layout
    if card_text is None:
        card_path = folder / CARD_FILE
        if not card_path.exists():
            return [CardProblem(1, "no-card", f"{card_path} does not exist", UPDATE_FIX)]
        card_text = card_path.read_text(encoding="utf-8")
    match = FRONT_MATTER.match(card_text)
    if not match:
        return [CardProblem(1, "front-matter", "the card does not start with a `---` YAML block closed by `---`", UPDATE_FIX)]
    try:
        root = yaml.compose(match.group("yaml"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return [CardProblem(_line(mark.line) if mark else 2, "yaml-syntax", f"metadata is not valid YAML: {getattr(e, 'problem', e)}", "fix the YAML syntax, or " + UPDATE_FIX)]
    if not isinstance(root, MappingNode):
        return [CardProblem(2, "value-shape", "metadata must be a mapping of keys to values", UPDATE_FIX)]
    entries = {entry.key: entry for entry in _entries(root)}
    problems = [
        *_check_keys(entries.values()),
        *_check_values(entries),
        *_check_configs(entries, layout),
        *_check_dataset_info(entries, layout),
        *_check_size(entries, layout),
        *_check_body(card_text, layout),
    ]
    return sorted(problems)


def _line(yaml_line: int) -> int:
    # YAML line 0 is the card's line 2 (line 1 is the opening `---`).
    return yaml_line + 2


def _at(node: Node) -> int:
    return _line(node.start_mark.line)


def _entries(mapping: MappingNode) -> Iterator[_Entry]:
    for key_node, value_node in mapping.value:
        yield _Entry(str(key_node.value), key_node, value_node, yaml.safe_load(yaml.serialize(value_node)))


def _check_keys(entries: Any) -> Iterator[CardProblem]:
    for entry in entries:
        if entry.key not in KNOWN_METADATA_KEYS:
            close = difflib.get_close_matches(entry.key, KNOWN_METADATA_KEYS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else "remove it"
            yield CardProblem(_at(entry.key_node), "unknown-key", f"`{entry.key}` is not a dataset card metadata key", hint)


def _check_values(entries: dict[str, _Entry]) -> Iterator[CardProblem]:
    for key in STRING_KEYS & entries.keys():
        if not isinstance(entries[key].value, str):
            yield CardProblem(_at(entries[key].value_node), "value-shape", f"`{key}` must be a string", f"write `{key}: <text>`")
    for key in STRING_OR_LIST_KEYS & entries.keys():
        entry = entries[key]
        if not _is_string_or_strings(entry.value):
            yield CardProblem(_at(entry.value_node), "value-shape", f"`{key}` must be a string or a list of strings", f"write `{key}:` followed by `- value` lines")
            continue
        yield from _check_vocabulary(entry)


def _check_vocabulary(entry: _Entry) -> Iterator[CardProblem]:
    """Each value of a vocabulary key (language, license, task_categories, ...) must be known."""
    rules = {
        "language": (is_language_code, "language-code", "use an ISO 639-1 code such as `sw`, or ISO 639-3 such as `swh`"),
        "license": (LICENSES.__contains__, "license", "use a Hub licence id such as `cc-by-nc-4.0` or `apache-2.0` (or `other` with `license_name`)"),
        "task_categories": (TASK_CATEGORIES.__contains__, "task-category", "use a Hub task category such as `text-generation`"),
        "multilinguality": (MULTILINGUALITY.__contains__, "value-shape", f"use one of {', '.join(sorted(MULTILINGUALITY))}"),
        "size_categories": ({name for _, name in SIZE_CATEGORIES}.__contains__, "size-category", f"use one of {', '.join(name for _, name in SIZE_CATEGORIES)}"),
    }
    if entry.key not in rules:
        return
    is_valid, code, fix = rules[entry.key]
    for value, node in _string_items(entry):
        if not is_valid(value):
            yield CardProblem(_at(node), code, f"`{entry.key}` value {value!r} is not valid", fix)


def _check_configs(entries: dict[str, _Entry], layout: FolderLayout) -> Iterator[CardProblem]:
    entry = entries.get("configs")
    if entry is None:
        yield CardProblem(1, "configs-missing", "no `configs:`: `load_dataset(<repo>, <config>)` cannot find the configs", UPDATE_FIX)
        return
    if not isinstance(entry.value_node, SequenceNode):
        yield CardProblem(_at(entry.value_node), "value-shape", "`configs` must be a list of {config_name, data_files}", UPDATE_FIX)
        return
    declared: dict[str, Node] = {}
    for node in entry.value_node.value:
        fields = {k.value: v for k, v in node.value} if isinstance(node, MappingNode) else {}
        name_node = fields.get("config_name")
        if name_node is None or "data_files" not in fields:
            yield CardProblem(_at(node), "value-shape", "each config needs `config_name` and `data_files`", UPDATE_FIX)
            continue
        name = str(name_node.value)
        if name in declared:
            yield CardProblem(_at(name_node), "config-duplicate", f"config `{name}` is declared twice (also line {_at(declared[name])})", "remove one of them")
            continue
        declared[name] = name_node
        for pattern, pattern_node in _data_file_patterns(fields["data_files"]):
            outside = _outside_problem(pattern)
            if outside is not None:
                yield CardProblem(_at(pattern_node), "config-files", f"config `{name}`: data_files `{pattern}` {outside}", f"point it at data/{name}/<split>-*.parquet, or {UPDATE_FIX}")
            elif not _matches_a_file(layout, pattern):
                yield CardProblem(_at(pattern_node), "config-files", f"config `{name}`: data_files `{pattern}` matches no file in the folder", f"point it at data/{name}/<split>-*.parquet, or {UPDATE_FIX}")
    for name in layout.configs:
        if name not in declared:
            yield CardProblem(_at(entry.key_node), "config-undeclared", f"data/{name}/ holds data but `configs` does not declare `{name}`", UPDATE_FIX)


def _outside_problem(pattern: str) -> str | None:
    """Why a `data_files` pattern cannot name files of the repo (checked before any glob: a glob
    of `/etc/*` raises, one of `../x/*` reads another folder), or None."""
    if not pattern.strip():
        return "is empty"
    path = PurePosixPath(pattern)
    if path.is_absolute() or PureWindowsPath(pattern).drive:
        return "is an absolute path, not a path inside the repo"
    if ".." in path.parts:
        return "leaves the folder (`..`), and a repo has nothing above its root"
    return None


def _matches_a_file(layout: FolderLayout, pattern: str) -> bool:
    """Whether a `data_files` pattern matches a file: first among the scanned data files (no new
    listing of the folder), then on disk, for a pattern naming files outside the shard layout."""
    depth = len(PurePosixPath(pattern).parts)  # `match` is anchored at the right end only
    scanned = (PurePosixPath(file) for splits in layout.configs.values() for split in splits.values() for file in split.files)
    if any(len(file.parts) == depth and file.match(pattern) for file in scanned):
        return True
    try:
        return any(layout.root.glob(pattern))
    except ValueError:  # a pattern pathlib refuses (`a**b`): it matches nothing here
        return False


def _check_dataset_info(entries: dict[str, _Entry], layout: FolderLayout) -> Iterator[CardProblem]:
    entry = entries.get("dataset_info")
    if entry is None:
        return
    infos = entry.value_node.value if isinstance(entry.value_node, SequenceNode) else [entry.value_node]
    for info in infos:
        fields = {k.value: v for k, v in info.value} if isinstance(info, MappingNode) else {}
        name = str(fields["config_name"].value) if "config_name" in fields else "default"
        splits = fields.get("splits")
        for split in splits.value if isinstance(splits, SequenceNode) else []:
            split_fields = {k.value: v for k, v in split.value} if isinstance(split, MappingNode) else {}
            count_node, split_name = split_fields.get("num_examples"), str(getattr(split_fields.get("name"), "value", ""))
            actual = layout.configs.get(name, {}).get(split_name)
            if count_node is not None and actual is not None and str(count_node.value) != str(actual.num_examples):
                yield CardProblem(_at(count_node), "num-examples", f"`{name}/{split_name}` declares {count_node.value} examples, the files hold {actual.num_examples}", UPDATE_FIX)


def _check_size(entries: dict[str, _Entry], layout: FolderLayout) -> Iterator[CardProblem]:
    entry = entries.get("size_categories")
    total = sum(layout.num_examples(name) for name in layout.configs)
    expected = size_category(total)
    if entry is None:
        yield CardProblem(1, "size-category", "no `size_categories`", f"add `size_categories: [{expected}]`")
    elif _is_string_or_strings(entry.value) and expected not in ([entry.value] if isinstance(entry.value, str) else entry.value):
        yield CardProblem(_at(entry.value_node), "size-category", f"`size_categories` says {entry.value}, the folder holds {total:,} examples", f"use `{expected}`")


def _check_body(card_text: str, layout: FolderLayout) -> Iterator[CardProblem]:
    yield from _check_markers(card_text)
    stats = STATS_BLOCK.search(card_text)
    if stats is None:
        yield CardProblem(1, "stats-table", "no statistics table between `<!-- generated:statistics start/end -->`", UPDATE_FIX)
    else:
        rows = set(re.findall(r"^\| `([^`]+)` \|", stats.group("body"), re.M))
        end_line = card_text[: stats.end()].count("\n") + 1
        for name in layout.configs:
            if name not in rows:
                yield CardProblem(end_line, "stats-row", f"the statistics table has no row for config `{name}`", UPDATE_FIX)
    if CHANGELOG_BLOCK.search(card_text) is None:
        yield CardProblem(1, "changelog", "no changelog between `<!-- generated:changelog start/end -->`", UPDATE_FIX)


def _check_markers(card_text: str) -> Iterator[CardProblem]:
    """Hand-written markers come in start/end pairs, not nested: otherwise `update` could lose text."""
    open_name, open_line = None, 0
    for match in MARKER.finditer(card_text):
        line = card_text[: match.start()].count("\n") + 1
        name, edge = match.group("name"), match.group("edge")
        if edge == "start":
            if open_name is not None:
                yield _unclosed(open_name, open_line)
            open_name, open_line = name, line
        elif name == open_name:
            open_name = None
        else:
            yield CardProblem(line, "markers", f"`hand-written:{name} end` marker without its start", f"add `<!-- hand-written:{name} start -->` before the section's text, or remove this marker")
    if open_name is not None:
        yield _unclosed(open_name, open_line)


def _unclosed(name: str, line: int) -> CardProblem:
    return CardProblem(line, "markers", f"`hand-written:{name}` section is never closed", f"add `<!-- hand-written:{name} end -->` after its text")


def _is_string_or_strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _string_items(entry: _Entry) -> Iterator[tuple[str, Node]]:
    if isinstance(entry.value_node, SequenceNode):
        yield from ((str(node.value), node) for node in entry.value_node.value)
    else:
        yield str(entry.value_node.value), entry.value_node


def _data_file_patterns(node: Node) -> Iterator[tuple[str, Node]]:
    """`data_files` in any of its shapes: a string, a list of strings or of {split, path}, a mapping."""
    if isinstance(node, ScalarNode):
        yield str(node.value), node
    elif isinstance(node, SequenceNode):
        for item in node.value:
            if isinstance(item, MappingNode):
                path = {k.value: v for k, v in item.value}.get("path")
                yield from _data_file_patterns(path) if path is not None else ()
            else:
                yield from _data_file_patterns(item)
    elif isinstance(node, MappingNode):
        for _, value in node.value:
            yield from _data_file_patterns(value)
