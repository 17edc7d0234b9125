"""Filter throughput and language-ID accuracy on the shared corpora.

    python benchmarks/bench_filters.py [--corpora ../shared/corpora] [--repeat 3]

Prints, for one process on one core:
  * docs/s of the `language` block with langdetect, fasttext and the cascade (fastText where
    confident, else langdetect), of the detectors alone, of every other block, and of the full
    default chain with each detector;
  * per-language accuracy of each detector on the clean paragraphs (top label == language) and
    the share kept by the `language` block at its default threshold;
  * how the noise `wrong_language` records fare: flagged by the detector alone, and rejected by
    the block (script check + detector + threshold).
Throughput is CPU time of this process (time.process_time), so other work on a shared machine
does not count against it; wall-clock figures are printed beside it. The best of `--repeat`
runs is shown, so imports and one-off tables (script classes, LSH band layout) are left out.
The first-run column is each row's first run: what no earlier row loaded yet (the datasketch
import for the dedup block, say) counts there. Best and first runs read the same documents again
and again, which flatters any cache of per-text work; the held-out column does not: a child
process forked before any row ran warms up on the even-indexed documents of each language and
times the odd-indexed ones once, documents it has never seen (best of `--repeat` children).
The cascade detector alone has no target language, so it reads no sample: the block's row is
the cascade as filtering runs it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy (MinHash) must not fan out

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xinstruction_dataset.filtering.filters import build_filter  # noqa: E402
from xinstruction_dataset.filtering.filters.langid import get_detector  # noqa: E402
from xinstruction_dataset.documents import Document  # noqa: E402
from xinstruction_dataset.languages import LANGUAGE_CODES  # noqa: E402

DETECTORS = ("langdetect", "fasttext")
# Throughput rows also for the cascade (fastText where confident, else langdetect): its decisions
# are langdetect's (tests/test_filters.py), so the accuracy tables need no row of their own.
TIMED_DETECTORS = (*DETECTORS, "cascade")
BLOCKS = ("length", "mojibake", "markup", "boilerplate", "repetition", "dedup")
DEFAULT_CHAIN = ["length", "mojibake", "markup", "boilerplate", "repetition", "language", "dedup"]
# Where each kind of wrong-language noise record would turn up (see corpora/SOURCES.md).
NOISE_TARGET = {"eng": "sw", "fra": "sw", "amh": "sw", "hau": "sw", "ur": "hi", "thgov_en": "th"}


def default_corpora() -> Path:
    return Path(os.environ.get("XINSTRUCTION_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def timed(work: Callable[[], int], repeat: int) -> tuple[float, float, float]:
    """Best (CPU docs/s, wall docs/s) over `repeat` runs of `work`, which returns its doc count,
    and the CPU docs/s of the first run."""
    rates: list[tuple[float, float]] = []
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        count = work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rates.append((count / cpu, count / wall))
    return max(cpu for cpu, _ in rates), max(wall for _, wall in rates), rates[0][0]


Work = Callable[[dict[str, list[dict]]], int]  # runs a row over some corpora, returns docs seen


def halves(corpora: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(even-indexed, odd-indexed) documents of each language."""
    return {code: rows[0::2] for code, rows in corpora.items()}, {code: rows[1::2] for code, rows in corpora.items()}


def held_out(work: Work, corpora: dict[str, list[dict]], repeat: int) -> float:
    """Best CPU docs/s of `work` on documents it has never seen, over `repeat` forked children."""
    return max(_held_out_once(work, corpora) for _ in range(repeat))


def _held_out_once(work: Work, corpora: dict[str, list[dict]]) -> float:
    """CPU docs/s of `work` in a forked child (this process's caches as they are, none of them
    warmed on the timed documents if no row ran yet): one run over the even half, then the odd
    half timed once."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_held_out_child, args=(work, corpora, writer))
    child.start()
    writer.close()  # the child's copy stays open: recv() ends in EOFError if the child dies
    try:
        rate = reader.recv()
    except EOFError:
        raise RuntimeError(f"held-out run died (exit code {child.exitcode}); run the row alone to see why") from None
    finally:
        child.join()
    return rate


def _held_out_child(work: Work, corpora: dict[str, list[dict]], writer) -> None:
    warm_up, timed_half = halves(corpora)
    work(warm_up)
    cpu = time.process_time()
    count = work(timed_half)
    writer.send(count / (time.process_time() - cpu))


def run_blocks(corpora: dict[str, list[dict]], specs: list[dict]) -> int:
    """Every language's documents through fresh blocks built from `specs`; returns docs seen."""
    seen = 0
    for code, rows in corpora.items():
        chain = [build_filter(spec, code) for spec in specs]
        for row in rows:
            doc = Document.from_dict(row)
            seen += 1
            for block in chain:
                if block(doc) is not None:
                    break
    return seen


def detect_all(detector_name: str, corpora: dict[str, list[dict]]) -> int:
    detector = get_detector(detector_name)
    for rows in corpora.values():
        for row in rows:
            detector.detect(row["text"])
    return sum(map(len, corpora.values()))


def row_work() -> list[tuple[str, Work]]:
    """(label, work) of every throughput row."""
    rows: list[tuple[str, Work]] = []
    for name in TIMED_DETECTORS:
        rows.append((f"{name} detector alone", lambda corpora, name=name: detect_all(name, corpora)))
        block = [{"type": "language", "detector": name}]
        rows.append((f"language block ({name})", lambda corpora, block=block: run_blocks(corpora, block)))
    for block in BLOCKS:
        rows.append((f"{block} block", lambda corpora, specs=[{"type": block}]: run_blocks(corpora, specs)))
    for name in TIMED_DETECTORS:
        chain = [{"type": t, **({"detector": name} if t == "language" else {})} for t in DEFAULT_CHAIN]
        rows.append((f"default chain ({name})", lambda corpora, chain=chain: run_blocks(corpora, chain)))
    return rows


def throughput_rows(corpora: dict[str, list[dict]], repeat: int) -> Iterable[tuple[str, float, float, float, float]]:
    """(label, best CPU docs/s, best wall docs/s, first-run CPU docs/s, held-out CPU docs/s)."""
    for name in TIMED_DETECTORS:
        get_detector(name).detect("warm up: load the profiles or the model before timing")
    rows = row_work()
    # Every held-out child is forked before this process runs a row: none sees the timed half early.
    unseen = {label: held_out(work, corpora, repeat) for label, work in tqdm(rows, desc="held-out runs", leave=False)}
    for label, work in rows:
        yield label, *timed(lambda: work(corpora), repeat), unseen[label]


def accuracy_rows(corpora: dict[str, list[dict]]) -> Iterable[list[str]]:
    for code, rows in corpora.items():
        cells = [code, str(len(rows))]
        for name in DETECTORS:
            detector = get_detector(name)
            correct = sum(detector.detect(row["text"])[0] == code for row in rows)
            block = build_filter({"type": "language", "detector": name}, code)
            kept = sum(block(Document.from_dict(row)) is None for row in rows)
            cells += [f"{correct / len(rows):.1%}", f"{kept / len(rows):.1%}"]
        yield cells


def noise_rows(noise: list[dict]) -> Iterable[list[str]]:
    by_kind: dict[str, list[dict]] = {}
    for row in noise:
        if row["expect"].startswith("wrong_language"):
            by_kind.setdefault(row["id"].split("-")[1], []).append(row)
    for kind, rows in by_kind.items():
        target = NOISE_TARGET[kind]
        cells = [f"{kind} as {target}", str(len(rows))]
        for name in DETECTORS:
            detector = get_detector(name)
            flagged = sum(detector.detect(row["text"])[0] != target for row in rows)
            block = build_filter({"type": "language", "detector": name}, target)
            rejected = sum(block(Document.from_dict(row)) is not None for row in rows)
            cells += [f"{flagged}/{len(rows)}", f"{rejected}/{len(rows)}"]
        yield cells


def print_table(header: list[str], rows: Iterable[list[str]]) -> None:
    rows = list(rows)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join("{:<%d}" % w for w in widths) + " |"
    print(line.format(*header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line.format(*row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=default_corpora(), help="folder with <code>.jsonl and noise.jsonl")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per row; the best is printed (default 3)")
    parser.add_argument("--truncate", type=int, default=0, help="cut texts to N chars for the throughput table (e.g. 500)")
    args = parser.parse_args(argv)
    missing = [code for code in LANGUAGE_CODES if not (args.corpora / f"{code}.jsonl").exists()]
    if missing or not (args.corpora / "noise.jsonl").exists():
        parser.error(f"{args.corpora} lacks {', '.join(missing) or 'noise'}.jsonl; pass --corpora or set XINSTRUCTION_CORPORA")
    corpora = {code: read_jsonl(args.corpora / f"{code}.jsonl") for code in LANGUAGE_CODES}
    noise = read_jsonl(args.corpora / "noise.jsonl")
    n_docs = sum(map(len, corpora.values()))
    mean_chars = sum(len(r["text"]) for rows in corpora.values() for r in rows) / n_docs

    timing_corpora = corpora
    if args.truncate:
        timing_corpora = {code: [{**row, "text": row["text"][: args.truncate]} for row in rows] for code, rows in corpora.items()}
        mean_chars = sum(len(r["text"]) for rows in timing_corpora.values() for r in rows) / n_docs
    print(f"## Throughput: {n_docs} documents of the 10 languages, mean {mean_chars:.0f} chars; one process, best of {args.repeat}\n")
    print_table(
        ["what", "docs/s per core (CPU time)", "docs/s (wall)", "first run (CPU)", "held-out (CPU)"],
        (
            [what, f"{cpu:,.0f}", f"{wall:,.0f}", f"{first:,.0f}", f"{unseen:,.0f}"]
            for what, cpu, wall, first, unseen in throughput_rows(timing_corpora, args.repeat)
        ),
    )
    print("\n## Language ID on the clean corpora: top label correct / kept by the `language` block (default thresholds)\n")
    print_table(
        ["lang", "docs", "langdetect correct", "langdetect kept", "fasttext correct", "fasttext kept"],
        accuracy_rows(corpora),
    )
    print("\n## noise.jsonl wrong_language: flagged by the detector alone / rejected by the block\n")
    print_table(
        ["records", "n", "langdetect flagged", "langdetect rejected", "fasttext flagged", "fasttext rejected"],
        noise_rows(noise),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
