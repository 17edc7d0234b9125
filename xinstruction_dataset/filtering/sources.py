"""Streamed document sources: JSONL / JSONL.gz, Parquet and hub datasets (`hf:<repo>[:<config>]`).

A hub source is split into its data files by `hub_files.py`; each is one task whose path is the
file's `hf://datasets/<repo>@<commit>/<file>` URL, downloaded into the Hugging Face cache and read
by the same Parquet / JSONL readers as a local file. A hub source that cannot be split (a
loading script, files that cannot be listed or are in another format, a local folder) is read
through `datasets` streaming, as one task.

Sources never hold a whole file in memory. They yield `Document`s and, for input they cannot
read, `BadInput` items (file, line, reason, raw excerpt) so the runner can quarantine them and go
on. A whole file that cannot be read (truncated or fake gzip, corrupt Parquet, permission denied)
becomes one `unreadable_file:` BadInput after the records read from it so far, and the next file
is read. Sharding (`shard=(i, n)`) keeps every n-th raw record starting at i, counted across all files
of the source in sorted order: the shards of one corpus are disjoint and their union is the corpus.
An unreadable file's BadInput counts as one raw record, so exactly one shard reports it.

Files are checked before they are opened: a symlink whose target lies outside the glob's base
folder (`glob_base`) is refused (`symlink_outside_source`) unless the source sets
`follow_symlinks: true`, and anything but a regular file (a FIFO would block the run forever, a
folder, a device) is `unreadable_file:not_a_regular_file`. A string field with a lone surrogate
(`"\\ud800"` is valid JSON but no UTF-8 writer can write it) is `invalid_unicode`.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import itertools
import json
import os
import re
import stat
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

from pydantic import Field, model_validator

from ..documents import Document
from ..errors import UsageError
from ..options import ConfigModel, FingerprintedWhenSet, LanguageCode, fingerprint_skips
from ..storage import open_parquet_stream

NonEmpty = Annotated[str, Field(min_length=1)]

# Sources yield thunks that parse one raw record: a shard calls only the thunks it keeps.
RawRecord = Callable[[], "Document | BadInput"]


class SourceSpec(ConfigModel):
    """Where documents come from: a JSONL(.gz)/Parquet file or glob, or `hf:<repo>[:<config>]`."""

    path: str  # a missing file is reported by the source reader, with the fix
    language: LanguageCode
    name: str = ""
    text_field: NonEmpty = "text"
    id_field: NonEmpty = "id"
    url_field: NonEmpty = "url"
    split: NonEmpty = "train"
    # Off: a link planted among the input files cannot make a run read (and quarantine, with its
    # content) a file from elsewhere, such as a token file.
    follow_symlinks: Annotated[bool, FingerprintedWhenSet()] = False
    # A hub source's branch, tag or commit; empty: the default branch, pinned at first listing
    # (the run folder records the commit, see hub_files.py).
    revision: Annotated[str, FingerprintedWhenSet()] = ""

    @model_validator(mode="after")
    def _revision_of_a_hub_source(self) -> "SourceSpec":
        if self.revision and not self.path.startswith("hf:"):
            raise ValueError(f"`revision` is for hub sources (`hf:<repo>[:<config>]`); remove it from source {self.path!r}")
        return self

    def task_fields(self) -> dict[str, Any]:
        """The fields a filter task carries (its key hashes them): those added later
        (`follow_symlinks`, `revision`) only when set, so tasks finished before they existed stay
        finished."""
        fields = type(self).model_fields
        return {name: value for name, value in self.model_dump().items() if not fingerprint_skips(fields[name], value)}

# A JSONL line longer than this is quarantined, not parsed: it is never a real document.
MAX_LINE_BYTES = 8 * 1024 * 1024
RAW_EXCERPT_CHARS = 300


@dataclass
class BadInput:
    file: str
    line: int
    reason: str
    raw: str = ""
    detail: str = ""  # for a reason that is a fixed key (`invalid_unicode`): where and what

    def to_dict(self) -> dict[str, Any]:
        data = {"file": self.file, "line": self.line, "reason": self.reason, "raw": self.raw}
        if self.detail:
            data["detail"] = self.detail
        return data


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `--shard i/n` (0-based i) into (i, n), with an error that says what is expected."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like I/N with 0 <= I < N (e.g. 3/16), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N and N >= 1")
    return index, count


def iter_source(spec: SourceSpec, path: str, shard: tuple[int, int] = (0, 1), base: str | None = None) -> Iterator[Document | BadInput]:
    """Stream one recipe source; `path` is the spec's path already resolved by the recipe, or one
    file of it, with `base` the glob's base folder (default: `glob_base(path)`)."""
    if path.startswith(HUB_FILE_PREFIX):
        yield from _sharded(_iter_hub_file(spec, path), shard)
        return
    if path.startswith("hf:"):
        yield from _sharded(_iter_hub(spec, path), shard)
        return
    files = expand_source(path)
    yield from _sharded(_iter_files(spec, files, glob_base(path) if base is None else base), shard)


def expand_source(path: str) -> list[str]:
    """The files of a source path or glob, sorted; a path that matches nothing is an error with the fix."""
    files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not files or not os.path.lexists(files[0]):
        raise FileNotFoundError(f"source {path!r} matches no file; check the `path` of this source in the recipe")
    return files


def glob_base(path: str) -> str:
    """The folder a source is rooted at: the leading components of its glob without wildcards
    (`data/*/x.jsonl` -> `data`); a plain file path's own folder."""
    parts = Path(path).parts
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts))
    if len(fixed) == len(parts):
        fixed = fixed[:-1]
    return str(Path(*fixed)) if fixed else "."


def _iter_files(spec: SourceSpec, files: list[str], base: str) -> Iterator[RawRecord]:
    for file in files:
        refused = _refusal(spec, file, base)
        if refused is not None:
            yield partial(_given, refused)
        elif file.endswith(".parquet"):
            yield from _iter_parquet_rows(spec, file)
        elif file.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
            yield from _iter_jsonl_lines(spec, file)
        else:
            raise UsageError(f"source file {file!r} has an unsupported type; use .jsonl, .jsonl.gz or .parquet")


def _refusal(spec: SourceSpec, file: str, base: str) -> BadInput | None:
    """Why `file` is not read at all, or None: a link out of `base` (unless the source follows
    links) or something that is not a regular file."""
    shown = shown_path(file)
    if not spec.follow_symlinks and leaves_folder(file, base):
        return BadInput(shown, 1, "symlink_outside_source", detail=(
            f"a symlink leads to {shown_path(os.path.realpath(file))}, outside the source's folder "
            f"{shown_path(os.path.realpath(base))}: not read; set `follow_symlinks: true` on this source to read it"))
    try:
        mode = os.stat(file).st_mode
    except OSError:
        return None  # the reader reports it (a broken link, permission denied) as unreadable_file
    if stat.S_ISREG(mode):
        return None
    return BadInput(shown, 1, NOT_REGULAR, detail=f"{_kind(mode)}, not a regular file: not read")


NOT_REGULAR = "unreadable_file:not_a_regular_file"


def leaves_folder(file: str, base: str) -> bool:
    """Whether `file`, links resolved, lies outside `base` (links resolved too)."""
    target, root = os.path.realpath(file), os.path.realpath(base)
    return os.path.commonpath([target, root]) != root


def _given(item: BadInput) -> BadInput:
    return item


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def shown_path(path: str) -> str:
    """`path` as it can be written to a UTF-8 file: undecodable bytes of a file name (which
    Python keeps as lone surrogates) shown as `\\xNN` escapes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", errors="backslashreplace")


class _NotRegularFile(OSError):
    pass


def _open_regular(path: str, flags: int) -> int:
    """`open`'s opener: never blocks opening a FIFO that replaced the file after `_refusal`."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _NotRegularFile(_kind(mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sharded(raw: Iterator[RawRecord], shard: tuple[int, int]) -> Iterator[Document | BadInput]:
    """Keep raw records index % n == i, then parse only those (a shard skips others' JSON work)."""
    index, count = shard
    for position, parse in enumerate(raw):
        if position % count == index:
            yield parse()


def _iter_jsonl_lines(spec: SourceSpec, file: str, shown: str | None = None, naming: tuple[str, str] | None = None) -> Iterator[RawRecord]:
    parser = _JsonlParser(spec, naming)
    shown = shown_path(file) if shown is None else shown
    line_number = 0
    try:
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(open(file, "rb", opener=_open_regular))
            if file.endswith(".gz"):
                f = stack.enter_context(gzip.GzipFile(fileobj=f, mode="rb"))
            while True:
                line = f.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                line_number += 1
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    _skip_rest_of_line(f)
                    yield partial(_bad, shown, line_number, f"line longer than {MAX_LINE_BYTES} bytes", line)
                    continue
                if line.strip():
                    yield partial(parser, shown, line_number, line)
    except _NotRegularFile as e:
        yield partial(BadInput, shown, line_number + 1, NOT_REGULAR, "", f"{e}, not a regular file: not read")
    except (OSError, EOFError, zlib.error) as e:
        yield partial(_unreadable, shown, line_number, _describe_read_error(e))


def _describe_read_error(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "truncated gzip stream"
    if isinstance(e, gzip.BadGzipFile):
        return f"not valid gzip: {e}"
    if isinstance(e, zlib.error):
        return f"corrupt gzip data ({e})"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def _unreadable(file: str, lines_read: int, problem: str) -> BadInput:
    """One quarantine entry for a file that could not be read (past `lines_read` records)."""
    where = f" after line {lines_read}" if lines_read else ""
    return BadInput(file, lines_read + 1, f"unreadable_file: {problem}{where}")


def _skip_rest_of_line(f) -> None:
    while True:
        chunk = f.readline(MAX_LINE_BYTES)
        if not chunk or chunk.endswith(b"\n"):
            return


def _bad(file: str, line: int, reason: str, raw: bytes | str) -> BadInput:
    if isinstance(raw, bytes):
        raw = raw[: RAW_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return BadInput(file, line, reason, raw[:RAW_EXCERPT_CHARS])


class _DuplicateKeys(dict):
    """An object that had a key twice (json.loads would keep the last value without notice)."""

    duplicate = ""


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) == len(pairs):
        return data
    seen: set[str] = set()
    marked = _DuplicateKeys(data)
    marked.duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
    return marked


# A prebuilt decoder with the hook costs about the same as json.loads (measured: +1% on the corpora).
# Only the top-level object's duplicates are quarantined; nested ones stay ordinary dicts to readers.
_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs)


class _JsonlParser:
    """Turns one raw line into a Document or a BadInput, naming the field settings to fix."""

    def __init__(self, spec: SourceSpec, naming: tuple[str, str] | None = None):
        self.spec = spec
        self.naming = naming

    def __call__(self, file: str, line_number: int, line: bytes) -> Document | BadInput:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            return _bad(file, line_number, f"undecodable bytes: not UTF-8 at byte {e.start}", line)
        try:
            data = _DECODER.decode(text.lstrip("\ufeff"))
        except json.JSONDecodeError as e:
            return _bad(file, line_number, f"invalid JSON: {e.msg} at column {e.colno}", text)
        if not isinstance(data, dict):
            return _bad(file, line_number, f"expected a JSON object, got {type(data).__name__}", text)
        if type(data) is _DuplicateKeys:
            return _bad(file, line_number, f"duplicate_key:{data.duplicate}", text)
        # Only a `\uD800`-`\uDFFF` escape makes a surrogate (UTF-8 input bytes cannot): skip the check otherwise.
        return to_document(self.spec, data, file, line_number, raw=text, check_unicode=b"\\ud" in line or b"\\uD" in line, naming=self.naming)


# What is left of a surrogate pair after JSON decoding: a pair (an escaped emoji) is one character.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def to_document(
    spec: SourceSpec, data: dict[str, Any], file: str, position: int, raw: str | None = None, check_unicode: bool = True,
    naming: tuple[str, str] | None = None,
) -> Document | BadInput:
    """Map one row onto a Document using the source's field names, or say which field is wrong.
    `file` is the name to show (`shown_path`); `raw` the line as read (default: the row as JSON);
    `naming`: what a document without an id is named after (`<name>:<position>`) and its default
    `source` (default: the file's name, for both)."""
    text = data.get(spec.text_field)
    if text is None:
        return _bad(file, position, f"missing text field {spec.text_field!r} (set `text_field` of this source)", _raw(data, raw))
    if not isinstance(text, str):
        return _bad(file, position, f"text field {spec.text_field!r} is {type(text).__name__}, expected a string", _raw(data, raw))
    doc_id = data.get(spec.id_field)
    url = data.get(spec.url_field)
    name = os.path.basename(file)  # as Path(file).name, at a tenth of its cost per document
    id_prefix, source = naming or (name, name)
    doc_id = str(doc_id) if doc_id not in (None, "") else f"{id_prefix}:{position}"
    url = url if isinstance(url, str) else ""
    if check_unicode:
        for field, value in ((spec.text_field, text), (spec.id_field, doc_id), (spec.url_field, url)):
            found = _LONE_SURROGATE.search(value)
            if found:
                detail = f"lone surrogate U+{ord(found.group()):04X} in field {field!r} at character {found.start()}: no UTF-8 file can hold it"
                return BadInput(file, position, "invalid_unicode", _raw(data, raw)[:RAW_EXCERPT_CHARS], detail)
    return Document(
        id=doc_id,
        text=text,
        url=url,
        source=spec.name or source,
        metadata={"origin": f"{file}:{position}"},
    )


def _raw(data: dict[str, Any], raw: str | None) -> str:
    # default=str: a Parquet or hub row may hold bytes or dates, which JSON cannot
    return raw if raw is not None else json.dumps(data, ensure_ascii=False, default=str)


def _iter_parquet_rows(spec: SourceSpec, file: str, shown: str | None = None, naming: tuple[str, str] | None = None) -> Iterator[RawRecord]:
    import pyarrow as pa

    shown = shown_path(file) if shown is None else shown
    try:
        parquet = open_parquet_stream(file)
        names = set(parquet.schema_arrow.names)
    except (OSError, pa.ArrowException) as e:
        yield partial(_unreadable, shown, 0, _describe_parquet_error(e))
        return
    if spec.text_field not in names:
        raise UsageError(f"{shown}: no column {spec.text_field!r} (columns: {', '.join(sorted(names))}); set `text_field` of this source")
    columns = [c for c in (spec.text_field, spec.id_field, spec.url_field) if c in names]
    row_number = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024, columns=columns):
            for row in _parquet_rows(batch):
                row_number += 1
                if isinstance(row, _NotUtf8):
                    yield partial(BadInput, shown, row_number, "invalid_unicode", _raw(row.values, None)[:RAW_EXCERPT_CHARS], row.detail)
                else:
                    yield partial(to_document, spec, row, shown, row_number, naming=naming)
    except (OSError, pa.ArrowException) as e:
        yield partial(_unreadable, shown, row_number, _describe_parquet_error(e))


@dataclass
class _NotUtf8:
    """A Parquet row with a string value that is not UTF-8 (a writer that did not check, or
    surrogates written as CESU-8 bytes): its values with such bytes escaped, and where."""

    values: dict[str, Any]
    detail: str


def _parquet_rows(batch) -> list[dict[str, Any] | _NotUtf8]:
    """The batch's rows; a string that is not UTF-8 spoils only its own row, not the batch."""
    import pyarrow as pa

    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        pass
    rows: list[dict[str, Any] | _NotUtf8] = []
    for index in range(batch.num_rows):
        values, broken = {}, ""
        for name, column in zip(batch.schema.names, batch.slice(index, 1).columns):
            try:
                values[name] = column.to_pylist()[0]
            except UnicodeDecodeError as e:
                raw = column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()).to_pylist()[0]
                values[name] = raw.decode("utf-8", errors="backslashreplace")
                broken = broken or f"column {name!r} is not UTF-8 at byte {e.start} (a surrogate written as bytes?)"
        rows.append(_NotUtf8(values, broken) if broken else values)
    return rows


def _describe_parquet_error(e: BaseException) -> str:
    if isinstance(e, (PermissionError, IsADirectoryError)):
        return _describe_read_error(e)
    return f"corrupt Parquet file ({e})"


def _iter_hub(spec: SourceSpec, path: str) -> Iterator[RawRecord]:
    import datasets

    import pyarrow as pa

    repo, _, config = path[len("hf:"):].partition(":")
    stream = datasets.load_dataset(repo, config or None, split=spec.split, streaming=True, revision=spec.revision or None)
    row_number = 0
    try:
        for row_number, row in enumerate(stream, start=1):
            yield partial(to_document, spec, row, path, row_number)
    except (pa.ArrowException, UnicodeDecodeError) as e:
        # A data file datasets cannot parse (a lone surrogate fails its JSON reader) ends the
        # stream; network errors are not caught: a run must not pass on half a dataset unsaid.
        yield partial(_unreadable, path, row_number, f"the hub stream stopped on data it cannot read ({e})")


# One data file of a hub source at one commit, as `datasets` names it (`hf://datasets/...`).
HUB_FILE_PREFIX = "hf://datasets/"
_HUB_FILE = re.compile(r"hf://datasets/(?P<repo>[^@]+)@(?P<commit>[0-9a-f]{40})/(?P<file>.+)")
# The suffixes a hub data file is read with the local readers by; `.json` is not one of them:
# `datasets` reads a `.json` file holding one JSON array too, the local reader only JSON lines.
HUB_READABLE_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson")


def hub_file_url(repo: str, commit: str, file: str) -> str:
    return f"{HUB_FILE_PREFIX}{repo}@{commit}/{file}"


def _iter_hub_file(spec: SourceSpec, url: str) -> Iterator[RawRecord]:
    """One hub data file: downloaded into the Hugging Face cache at its commit (Parquet needs
    random access to its footer; the cache makes a re-run or a retry on the same machine read
    it without fetching it again), then read as a local file, shown by its URL."""
    match = _HUB_FILE.fullmatch(url)
    if match is None or not url.endswith(HUB_READABLE_SUFFIXES):
        raise UsageError(f"{url!r} is not a hub data file this toolkit reads (hf://datasets/<repo>@<commit>/<file>.parquet|.jsonl)")
    from .hub_access import download

    local = download(match["repo"], match["commit"], match["file"], url)
    # Named as the source's stream was (`source`: `CulturaX:sw` of `hf:uonlp/CulturaX:sw`, the
    # dataset in provenance); a document without an id by the file in the repo as well.
    source = os.path.basename(spec.path) if spec.path.startswith("hf:") else match["repo"].rsplit("/", 1)[-1]
    naming = (f"{source}/{match['file']}", source)
    if url.endswith(".parquet"):
        yield from _iter_parquet_rows(spec, local, url, naming)
    else:
        yield from _iter_jsonl_lines(spec, local, url, naming)
