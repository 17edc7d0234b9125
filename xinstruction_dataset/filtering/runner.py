"""Run a filter chain over a document stream; every document ends kept, rejected or quarantined.

Outputs in the given folder, a filter task's (each written to a temporary name and renamed when
complete, so a killed run leaves either the previous complete output or none, never a truncated
file; the language's readers go through filtering/kept.py):

    kept.jsonl        documents that passed every block (with what the blocks learned in metadata)
    rejects.jsonl     documents a block rejected, whole, with `reason` (`<block>:<why>`)
    quarantine.jsonl  input that could not be read as a document: file, line, reason, raw excerpt
    summary.json      counts: in, kept, rejected per reason, quarantined per reason, per-block stats

Every text of a quarantine entry (its raw excerpt too: a token file read as input is one invalid
JSON line) and every reject reason goes through the secret scrubber (redact.py); a rejected
document itself is written as read.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tqdm.auto import tqdm

from ..documents import Document
from ..errors import CorruptFile
from ..redact import Scrubber
from ..storage import AtomicFile, write_json
from .filters.base import BaseFilter
from .sources import BadInput

OUTPUT_FILES = ("kept.jsonl", "rejects.jsonl", "quarantine.jsonl")


@dataclass
class FilterSummary:
    documents_in: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    block_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents_in": self.documents_in,
            "kept": self.kept,
            "rejected": dict(self.rejected.most_common()),
            "quarantined": dict(self.quarantined.most_common()),
            "block_stats": self.block_stats,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FilterSummary":
        return cls(
            documents_in=data["documents_in"], kept=data["kept"], rejected=Counter(data["rejected"]),
            quarantined=Counter(data["quarantined"]), block_stats=data["block_stats"], elapsed_s=data["elapsed_s"],
        )

    def add(self, other: "FilterSummary") -> None:
        """Add another task's counts to these (elapsed time is the caller's to set)."""
        self.documents_in += other.documents_in
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.quarantined.update(other.quarantined)
        for block, stats in other.block_stats.items():
            mine = self.block_stats.setdefault(block, {})
            for key, count in stats.items():
                mine[key] = mine.get(key, 0) + count

    def format(self) -> str:
        lines = [
            f"documents in: {self.documents_in}",
            f"kept:         {self.kept}",
            f"rejected:     {sum(self.rejected.values())}",
        ]
        lines += [f"  {count:>8}  {reason}" for reason, count in group_reasons(self.rejected).most_common()]
        lines.append(f"quarantined:  {sum(self.quarantined.values())}")
        lines += [f"  {count:>8}  {reason}" for reason, count in self.quarantined.most_common()]
        rate = self.documents_in / self.elapsed_s if self.elapsed_s else 0.0
        lines.append(f"elapsed:      {self.elapsed_s:.1f} s ({rate:.0f} docs/s)")
        return "\n".join(lines)


def group_reasons(reasons: Counter) -> Counter:
    """Group `block:why:detail` reasons by `block:why` so a summary stays a few lines long."""
    grouped: Counter = Counter()
    for reason, count in reasons.items():
        grouped[":".join(reason.split(":")[:2])] += count
    return grouped


def apply_filters(doc: Document, filters: list[BaseFilter]) -> str | None:
    """Run `doc` through the chain in order; return the first reject reason, or None if kept."""
    for block in filters:
        reason = block(doc)
        if reason is not None:
            return reason
    return None


def filter_documents(
    items: Iterable[Document | BadInput],
    filters: list[BaseFilter],
    out_dir: str | Path,
    *,
    progress: bool = True,
    desc: str = "filter",
    on_kept: Callable[[Document], None] | None = None,
) -> FilterSummary:
    """Filter a stream into `out_dir` (see the module docstring for the files written);
    `on_kept` sees each kept document (the pipeline's dedup signatures)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sinks = {name: AtomicFile(out_dir / name) for name in OUTPUT_FILES}
    summary = FilterSummary()
    scrub = Scrubber()
    start = time.perf_counter()
    try:
        with tqdm(items, desc=desc, unit="doc", disable=not progress, mininterval=0.5) as bar:
            for item in bar:
                if _route(item, filters, sinks, summary, scrub) and on_kept is not None:
                    on_kept(item)
                if summary.documents_in % 256 == 0:
                    bar.set_postfix(kept=summary.kept, rejected=sum(summary.rejected.values()), refresh=False)
        summary.elapsed_s = time.perf_counter() - start
        summary.block_stats = {block.name: dict(block.stats) for block in filters}
        for sink in sinks.values():
            sink.commit()
    except BaseException:
        for sink in sinks.values():
            sink.discard()  # the first error (e.g. which file hit a full disk) is the one raised
        raise
    write_json(out_dir / "summary.json", summary.to_dict())
    return summary


def _route(item: Document | BadInput, filters: list[BaseFilter], sinks: dict[str, AtomicFile], summary: FilterSummary, scrub: Scrubber) -> bool:
    """Write `item` where it belongs; True when it was kept."""
    summary.documents_in += 1
    if isinstance(item, BadInput):
        summary.quarantined[item.reason.split(":")[0]] += 1
        sinks["quarantine.jsonl"].write_json_line(quarantine_entry(item, scrub))
        return False
    reason = apply_filters(item, filters)
    if reason is None:
        summary.kept += 1
        sinks["kept.jsonl"].write_json_line(item.to_dict())
        return True
    reason = scrub(reason)
    summary.rejected[reason] += 1
    sinks["rejects.jsonl"].write_json_line({**item.to_dict(), "reason": reason})
    return False


def quarantine_entry(item: BadInput, scrub: Scrubber) -> dict[str, Any]:
    """The quarantine line of `item`: every text scrubbed of secrets and writable as UTF-8 (a
    lone surrogate in a raw excerpt is shown as its `\\udXXX` escape)."""
    return {key: writable(scrub(value)) if isinstance(value, str) else value for key, value in item.to_dict().items()}


def writable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def read_documents(path: str | Path) -> Iterator[Document]:
    """Read a `kept.jsonl` written by `filter_documents` back as Documents (streamed).

    A line that is not a document (the file was edited or damaged after the run) raises a
    ValueError naming the file and line, with the fix: re-run `xinstruction filter`."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    line_number = 0
    try:
        with opener(path, "rb") as f:  # bytes, decoded per line, so an error names its line
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.decode("utf-8"))
                    if not isinstance(row, dict):
                        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                    doc = Document.from_dict(row)
                except UnicodeDecodeError as e:
                    raise _corrupt(path, line_number, f"not UTF-8 at byte {e.start}") from None
                except json.JSONDecodeError as e:
                    raise _corrupt(path, line_number, f"invalid JSON: {e.msg} at column {e.colno}") from None
                except (ValueError, KeyError, TypeError) as e:
                    raise _corrupt(path, line_number, f"not a document ({type(e).__name__}: {e})") from None
                yield doc
    except (EOFError, gzip.BadGzipFile) as e:
        raise _corrupt(path, line_number + 1, f"unreadable ({e})") from None


def _corrupt(path: Path, line: int, problem: str) -> CorruptFile:
    return CorruptFile(f"{path}, line {line}: {problem}; the file is damaged: re-run `xinstruction filter` to write it again")
