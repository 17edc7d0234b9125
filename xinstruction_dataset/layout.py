"""`RunLayout`: the one owner of every path under a recipe's `output_dir` (nothing else spells
them out). Every file is written through `storage.AtomicFile`: complete or absent, never torn.

    <output_dir>/run/fingerprint.json                        what shaped this folder's outputs
    <output_dir>/run/lock.json                               the run holding this folder (runlock)
    <output_dir>/run/sources/<lang>.json                     each hub source's commit and data files, at first listing
    <output_dir>/run/ledger.json                             calls, tokens, time (and money) of every run
    <output_dir>/run/estimate.json                           the last `curate --estimate` projection
    <output_dir>/run/drivers/<run id>/driver-<k>.done        a labelling driver finished (curation/drivers.py);
                                   driver-<k>.progress       its documents labelled so far (removed after the run)
    <output_dir>/run/servers/<name>-<replica>.log            a managed server's output (llm/serving/), every start appended
    <output_dir>/run/servers/<name>.endpoints.json           the healthy replicas of served model <name> (llm/endpoints.py)
    <output_dir>/filtered/<lang>/[shard-IIIII-of-NNNNN/]     one language's filter output (filtering/kept.py):
        tasks/task-NNNNN/                                    a task's kept.jsonl, rejects.jsonl, quarantine.jsonl,
                                                             summary.json, ids.json, digests.npy, signatures.npy,
                                                             done.json (its key, file sizes and checksums)
        removals.jsonl                                       whole-language removals (repeated ids, duplicates)
        quarantine.jsonl, summary.json                       the tasks' unreadable input; the language's counts
        manifest.json                                        written last: task files, sizes, checksums, removals
        kept.jsonl, rejects.jsonl                            only with `filter --consolidate` (and in older runs)
    <output_dir>/cache/calls.sqlite                          every LLM call and embedding (resume)
    <output_dir>/cache/calls.sqlite.d/driver-<k>.sqlite      the calls driver k of a multi-driver run made
    <output_dir>/cache/datasets/                             the `datasets` cache of export
    <output_dir>/curation/config.yaml                        the resolved curation config
    <output_dir>/curation/versions.json                      the judge parser's and checks' versions
    <output_dir>/curation/<lang>/rejects.jsonl               every document not curated, with reason
    <output_dir>/curation/<lang>/summary.json                counts per stage and reason
    <output_dir>/curation/<lang>/judge_replies.jsonl         the judge's raw reply to every judged pair
    <output_dir>/curation/<lang>/ledger.json                 the ledger's figures of the language
    <output_dir>/curation/<lang>/work/                       per-shard results before diversify:
        pairs-IIIII-of-NNNNN.jsonl, rejects-IIIII-of-NNNNN.jsonl, judge_replies-IIIII-of-NNNNN.jsonl,
        meta-IIIII-of-NNNNN.json
        <kind>-IIIII-of-NNNNN.driver-kkkkk-of-KKKKK.<ext>    driver k of K's part of a shard (combined
                                                             into the shard's files, then removed)
    <output_dir>/curation/<lang>/work/spill-*/               sorted runs of a labelling or merge run
    <output_dir>/curated/<lang>/train-00000-of-0000N.jsonl   curated shards (the builder's input)
    <output_dir>/x-instruction/                              the hub-ready folder `build` exports
    <output_dir>/report/                                     the run report (`xinstruction report`)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EXPORT_FOLDER = "x-instruction"
REPORT_FOLDER = "report"
_WORK_FILE = re.compile(r"^pairs-(\d{5})-of-(\d{5})\.jsonl$")


def shard_suffix(shard: tuple[int, int]) -> str:
    return f"{shard[0]:05d}-of-{shard[1]:05d}"


@dataclass(frozen=True)
class RunLayout:
    root: Path  # the recipe's output_dir

    # --- the run as a whole ---------------------------------------------------------------------

    @property
    def fingerprint_file(self) -> Path:
        return self.root / "run" / "fingerprint.json"

    def lock_file(self, shard: tuple[int, int] | None = None) -> Path:
        """Held by the one run that writes this folder now (`runlock.RunLock`). Shard `i/n` runs
        write only their own files (the call cache is safe to share), so shards of one folder may
        run side by side on one machine: each has a lock of its own."""
        if shard is None or shard[1] == 1:
            return self.root / "run" / "lock.json"
        return self.root / "run" / f"lock-{shard_suffix(shard)}.json"

    def drivers_folder(self, run_id: str) -> Path:
        """The done markers of one multi-driver run's labelling drivers (curation/drivers.py)."""
        return self.root / "run" / "drivers" / run_id

    @property
    def ledger_file(self) -> Path:
        return self.root / "run" / "ledger.json"

    @property
    def estimate_file(self) -> Path:
        return self.root / "run" / "estimate.json"

    @property
    def servers_folder(self) -> Path:
        return self.root / "run" / "servers"

    def server_log(self, name: str, replica: int) -> Path:
        """The output of replica `replica` of the managed server `name` (llm/serving/)."""
        return self.servers_folder / f"{name}-{replica}.log"

    def server_endpoints(self, name: str) -> Path:
        """The published endpoints of the managed server `name` (llm/endpoints.PublishedEndpoints)."""
        return self.servers_folder / f"{name}.endpoints.json"

    @property
    def export_folder(self) -> Path:
        return self.root / EXPORT_FOLDER

    @property
    def report_folder(self) -> Path:
        return self.root / REPORT_FOLDER

    @property
    def datasets_cache(self) -> Path:
        return self.root / "cache" / "datasets"

    # --- filtering ------------------------------------------------------------------------------

    def source_listings(self, language: str) -> Path:
        """The commit and data files each hub source of `language` was listed at (hub_files.py)."""
        return self.root / "run" / "sources" / f"{language}.json"

    def filtered(self, language: str, shard: tuple[int, int] = (0, 1)) -> Path:
        base = self.root / "filtered" / language
        return base if shard[1] == 1 else base / f"shard-{shard_suffix(shard)}"

    # --- curation -------------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / "curation" / "config.yaml"

    @property
    def versions_file(self) -> Path:
        return self.root / "curation" / "versions.json"

    def default_cache(self) -> Path:
        return self.root / "cache" / "calls.sqlite"

    def default_input(self, language: str) -> Path:
        return self.filtered(language)

    @property
    def curated_root(self) -> Path:
        return self.root / "curated"

    def curated(self, language: str) -> Path:
        return self.curated_root / language

    def language_dir(self, language: str) -> Path:
        return self.root / "curation" / language

    def rejects(self, language: str) -> Path:
        return self.language_dir(language) / "rejects.jsonl"

    def summary(self, language: str) -> Path:
        return self.language_dir(language) / "summary.json"

    def judge_replies(self, language: str) -> Path:
        return self.language_dir(language) / "judge_replies.jsonl"

    def ledger(self, language: str) -> Path:
        return self.language_dir(language) / "ledger.json"

    def work(self, language: str, kind: str, shard: tuple[int, int]) -> Path:
        extension = "json" if kind == "meta" else "jsonl"
        return self.language_dir(language) / "work" / f"{kind}-{shard_suffix(shard)}.{extension}"

    def spill(self, language: str, shard: tuple[int, int]) -> Path:
        return self.language_dir(language) / "work" / f"spill-{shard_suffix(shard)}"

    def driver_work(self, language: str, kind: str, shard: tuple[int, int], driver: tuple[int, int]) -> Path:
        """Driver k of K's part of a shard's work file (`work()` names the combined file)."""
        extension = "json" if kind == "meta" else "jsonl"
        return self.language_dir(language) / "work" / f"{kind}-{shard_suffix(shard)}.driver-{shard_suffix(driver)}.{extension}"

    def driver_spill(self, language: str, shard: tuple[int, int], driver: tuple[int, int]) -> Path:
        return self.language_dir(language) / "work" / f"spill-{shard_suffix(shard)}.driver-{shard_suffix(driver)}"

    def driver_parts(self, language: str, shard: tuple[int, int]) -> list[Path]:
        """Every driver part file and spill folder of a shard, of any driver count."""
        folder = self.language_dir(language) / "work"
        return sorted(folder.glob(f"*-{shard_suffix(shard)}.driver-*")) if folder.is_dir() else []

    def merge_spill(self, language: str) -> Path:
        return self.language_dir(language) / "work" / "spill-merge"

    def finished_shards(self, language: str) -> dict[int, set[int]]:
        """{shard count: {indices with results}} found in the language's work folder."""
        found: dict[int, set[int]] = {}
        folder = self.language_dir(language) / "work"
        for path in folder.glob("pairs-*.jsonl") if folder.is_dir() else ():
            match = _WORK_FILE.match(path.name)
            if match and self.work(language, "meta", (int(match[1]), int(match[2]))).exists():
                found.setdefault(int(match[2]), set()).add(int(match[1]))
        return found
