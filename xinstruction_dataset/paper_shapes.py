"""The X-Instruction paper's released files, read streaming whatever shape they take.

The release (`James-WYang/X-Instruction`, one `<code>.json` per language, 42-121 MB each) does not
document its record fields, so every shape such files take is accepted:

    containers: a JSON array, JSON lines, or a top-level object {"data": [...]}
    records:    Alpaca        {"instruction", "input"?, "output"}
                prompt pairs  {"prompt", "response"}
                ShareGPT      {"conversations": [{"from": "human", "value"}, {"from": "gpt", "value"}, ...]}
                              (also {"role": "user"|"assistant", "content"})

Arrays are decoded one element at a time from a buffered reader, so memory holds one record, not
the file. The shape is decided on the first record; a record of no known shape (first or later)
stops the read with one error naming its keys and the shapes expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from .errors import UsageError

CHUNK_CHARS = 1 << 20
EXPECTED = "instruction + output (Alpaca, optional input), prompt + response, or conversations (ShareGPT)"
_DECODER = json.JSONDecoder()
_USER_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "assistant", "bot", "model"}


class PaperShapeError(UsageError):
    """A released file of a shape this reader does not know: names the keys found and expected."""


def read_pairs(path: str) -> Iterator[tuple[int, str, str]]:
    """(index, instruction, output) of every record of `path`, in file order. An instruction or
    output may be empty (the caller decides what to do with those)."""
    shape = None
    for index, item in enumerate(iter_items(path)):
        if not isinstance(item, dict):
            raise PaperShapeError(f"{path}: item {index} is a {type(item).__name__}, not an object; expected objects with {EXPECTED}")
        shape = shape or detect_shape(item, path, index)
        yield (index, *_SHAPES[shape](item, path, index))


def detect_shape(item: dict[str, Any], path: str, index: int) -> str:
    for name, keys in (("alpaca", {"instruction", "output"}), ("prompt", {"prompt", "response"}), ("sharegpt", {"conversations"})):
        if keys <= set(item):
            return name
    found = ", ".join(sorted(item)) or "none"
    raise PaperShapeError(f"{path}: item {index} has keys {found}; expected {EXPECTED}: not a shape of the paper's release this reader knows")


def _alpaca(item: dict[str, Any], path: str, index: int) -> tuple[str, str]:
    _require(item, ("instruction", "output"), path, index)
    instruction = " ".join(part for part in (_text(item.get("instruction")), _text(item.get("input"))) if part)
    return instruction.strip(), _text(item.get("output")).strip()


def _prompt(item: dict[str, Any], path: str, index: int) -> tuple[str, str]:
    _require(item, ("prompt", "response"), path, index)
    return _text(item["prompt"]).strip(), _text(item["response"]).strip()


def _sharegpt(item: dict[str, Any], path: str, index: int) -> tuple[str, str]:
    _require(item, ("conversations",), path, index)
    turns = item["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise PaperShapeError(f"{path}: item {index}: `conversations` is not a list of turns ({{from, value}} or {{role, content}})")
    roles = [str(t.get("from", t.get("role", ""))).lower() for t in turns]
    texts = [_text(t.get("value", t.get("content"))) for t in turns]
    for at in range(len(turns) - 1):  # the first user turn and the assistant turn answering it
        if roles[at] in _USER_ROLES and roles[at + 1] in _ASSISTANT_ROLES:
            return texts[at].strip(), texts[at + 1].strip()
    return "", ""


_SHAPES = {"alpaca": _alpaca, "prompt": _prompt, "sharegpt": _sharegpt}


def _require(item: dict[str, Any], keys: tuple[str, ...], path: str, index: int) -> None:
    if not set(keys) <= set(item):
        raise PaperShapeError(f"{path}: item {index} has keys {', '.join(sorted(item)) or 'none'}; the items before it have {' + '.join(keys)}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- streaming containers -----------------------------------------------------------------------


def iter_items(path: str) -> Iterator[Any]:
    """The records of a JSON array, a {"data": [...]} object or JSON lines, one at a time."""
    with open(path, encoding="utf-8") as f:
        stream = _Stream(f)
        head = stream.peek()
        if head == "[":
            yield from stream.array_items(path)
            return
        if head == "{" and _is_one_object(path):
            yield from stream.data_items(path)
            return
        f.seek(0)
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise PaperShapeError(f"{path}:{number}: not a JSON line ({error.msg}); expected a JSON array, JSON lines or {{\"data\": [...]}}") from None


def _is_one_object(path: str) -> bool:
    """Whether a file starting with `{` is one object ({"data": [...]}) rather than JSON lines:
    its first line (read up to one chunk) is not a whole record, or is {"data": [...]} itself."""
    with open(path, encoding="utf-8") as f:
        first = f.readline(CHUNK_CHARS)
    try:
        value = json.loads(first)
    except json.JSONDecodeError:
        return True
    return isinstance(value, dict) and set(value) == {"data"}


class _Stream:
    """A buffered text reader that decodes one JSON value at a time."""

    def __init__(self, f: IO[str]) -> None:
        self.f, self.buffer, self.at, self.eof = f, "", 0, False

    def _fill(self) -> bool:
        chunk = self.f.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.buffer = self.buffer[self.at:] + chunk
        self.at = 0
        return True

    def peek(self) -> str:
        """The next non-space character ("" at the end), not consumed."""
        while True:
            while self.at < len(self.buffer) and self.buffer[self.at].isspace():
                self.at += 1
            if self.at < len(self.buffer) or not self._fill():
                return self.buffer[self.at:self.at + 1]

    def expect(self, char: str, where: str) -> None:
        if self.peek() != char:
            raise PaperShapeError(f"{where}: expected {char!r}, found {self.peek()!r}: the file is cut short or not JSON")
        self.at += 1

    def value(self, where: str) -> Any:
        """Decode the next value; read more while it runs past the buffer."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, self.at)
            except json.JSONDecodeError as error:
                if self._fill():
                    continue
                raise PaperShapeError(f"{where}: not valid JSON ({error.msg}); the file may be cut short") from None
            if end == len(self.buffer) and not self.eof and self._fill():
                continue  # a number may go on in the next chunk: decode again with more text
            self.at = end
            return value

    def array_items(self, where: str = "") -> Iterator[Any]:
        where = where or getattr(self.f, "name", "file")
        self.expect("[", where)
        if self.peek() == "]":
            self.at += 1
            return
        while True:
            yield self.value(where)
            if self.peek() == ",":
                self.at += 1
                continue
            self.expect("]", where)
            return

    def data_items(self, path: str) -> Iterator[Any]:
        self.expect("{", path)
        keys = []
        while self.peek() not in ("}", ""):
            key = self.value(path)
            keys.append(str(key))
            self.expect(":", path)
            if key == "data" and self.peek() == "[":
                yield from self.array_items(path)
                return
            self.value(path)  # another top-level key: skipped
            if self.peek() == ",":
                self.at += 1
        raise PaperShapeError(f"{path}: a top-level object with keys {', '.join(keys) or 'none'}; expected {{\"data\": [...]}} holding records with {EXPECTED}")
