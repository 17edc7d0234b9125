"""The run report at scale: a synthetic 50k-sample run (Thai and Tamil, texts assembled from the
shared corpora's sentences, about 1,100 characters each), its report written by the real
`write_report`, then opened in headless chromium. Prints the run's size, the report's time and
size, and the browser's times (targets: report < 30 s, page ready < 5 s).

    python benchmarks/bench_report.py [--languages th ta] [--curated 30000 20000] [--keep DIR] [--screenshot PNG]

docs/report.png: `--languages sw id --curated 3000 2000 --screenshot docs/report.png` (this
machine's chromium has no Thai or Tamil font).

The synthetic run has every file a real build writes (filter and curation summaries, kept
documents, filter rejects, pool pairs, curation rejects, curated shards, the resolved config, and a
call cache with one row per generate, judge and refine call, prompts rendered from the run's
templates) with the ratios of a plausible run: 80% of documents kept by the filters, 15% of
pairs judged bad, 25% sent to refinement, 10% of the pool not selected by diversify.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import CORPORA

from xinstruction_dataset.curation.prompts import load_prompt
from xinstruction_dataset.languages import get_language
from xinstruction_dataset.layout import RunLayout
from xinstruction_dataset.llm.cache import CallCache
from xinstruction_dataset.records import stable_id
from xinstruction_dataset.report import write_report
from xinstruction_dataset.storage import write_json, write_text

PROMPTS = {"generate": "instruction_v1", "judge": "judge_five_point_v1", "refine": "refine_instruction_v1"}
TOPICS = ["the harvest", "a football match", "the election", "the flood", "school fees", "a new hospital", "a concert", "fish prices"]


def sentences(language: str) -> list[str]:
    found = []
    with open(CORPORA / f"{language}.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            found += [part.strip() for part in text.replace("\n", " ").split(" ") if part.strip()]
    return found


def document_text(words: list[str], rng: random.Random) -> str:
    target = max(200, int(rng.gauss(1100, 450)))
    parts, size = [], 0
    while size < target:
        word = rng.choice(words)
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)


class SyntheticLanguage:
    """Every file of one language of a finished run, written as a build would."""

    def __init__(self, layout: RunLayout, language: str, curated: int, rng: random.Random) -> None:
        self.layout, self.language, self.rng = layout, language, rng
        self.curated = curated
        self.not_selected = curated // 9
        self.pool = curated + self.not_selected
        self.bad = int(self.pool * 0.18)
        self.no_instruction = int(self.pool * 0.05)
        self.exhausted = int(self.pool * 0.03)
        self.documents = self.pool + self.bad + self.no_instruction + self.exhausted
        self.words = sentences(language)
        self.calls: list[tuple[str, str, str]] = []  # (stage, prompt, reply)

    def write(self) -> None:
        docs = [self._document(i) for i in range(self.documents)]
        self._filtered(docs)
        outcomes = ["pool"] * self.pool + ["judge:bad"] * self.bad + ["generate:not_english"] * self.no_instruction + ["refine:rounds_exhausted"] * self.exhausted
        self.rng.shuffle(outcomes)
        picked = set(self.rng.sample([i for i, o in enumerate(outcomes) if o == "pool"], self.curated))
        pairs, rejects, records, counts = [], [], [], Counter(documents=self.documents)
        for i, (doc, outcome) in enumerate(zip(docs, outcomes)):
            instruction = f"Write a short report in {get_language(self.language).name} about {self.rng.choice(TOPICS)}, story {i}."
            self._calls(doc, instruction, outcome, counts)
            if outcome == "pool":
                round_ = 1 if self.rng.random() < 0.25 else 0
                score = float(self.rng.choice((4, 5)))
                pair = {"doc": doc, "instruction": instruction, "response": doc["text"], "candidate": 0, "label": "good", "score": score, "round": round_, "prompts": ["generate:instruction_v1", "judge:judge_five_point_v1"]}
                pairs.append(pair)
                cluster = len(records) if i in picked else self.rng.randrange(self.curated)
                if i in picked:
                    records.append(self._record(pair, cluster))
                else:
                    rejects.append(self._reject(doc, "diversify:not_selected", cluster_id=cluster, instruction=instruction))
            elif outcome == "judge:bad":
                rejects.append(self._reject(doc, "judge:bad", instruction=instruction, round=0, score=float(self.rng.choice((1, 2)))))
            elif outcome == "generate:not_english":
                rejects.append(self._reject(doc, "generate:not_english:en", candidates=[{"instruction": doc["text"][:80], "reason": "not_english", "raw": doc["text"][:80]}]))
            else:
                rejects.append(self._reject(doc, "refine:rounds_exhausted", instruction=instruction, round=2))
        counts.update(pool=self.pool, clusters=self.curated, candidates_usable=self.documents - self.no_instruction)
        self._curation(pairs, rejects, records, counts)

    def _document(self, i: int) -> dict:
        prob = 1.0 - abs(self.rng.gauss(0, 0.00002)) if self.rng.random() < 0.97 else self.rng.uniform(0.9, 0.999)
        return {"id": f"{self.language}-doc-{i:07d}", "text": document_text(self.words, self.rng), "url": f"https://example.org/{self.language}/{i}",
                "source": "synthetic", "metadata": {"lang": self.language, "lang_prob": prob, "lang_detector": "langdetect"}}

    def _filtered(self, docs: list[dict]) -> None:
        folder = self.layout.filtered(self.language)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "kept.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)
        reasons = Counter({"language:wrong_language:en": len(docs) // 10, "length:too_short_chars": len(docs) // 20, "dedup:exact_duplicate_of": len(docs) // 40})
        with open(folder / "rejects.jsonl", "w", encoding="utf-8") as f:
            for reason, n in reasons.items():
                for j in range(min(n, 50)):
                    f.write(json.dumps({"id": f"{self.language}-rej-{reason}-{j}", "text": document_text(self.words, self.rng)[:300], "reason": f"{reason}:{j}"}, ensure_ascii=False) + "\n")
        rejected = {f"{reason}:{j % 5}": n // 5 for reason, n in reasons.items() for j in range(5)}
        documents_in = len(docs) + sum(rejected.values()) + 12
        write_json(folder / "summary.json", {"documents_in": documents_in, "kept": len(docs), "rejected": rejected, "quarantined": {"invalid_json": 12}, "block_stats": {}, "elapsed_s": 1.0})

    def _calls(self, doc: dict, instruction: str, outcome: str, counts: Counter) -> None:
        name = get_language(self.language).name
        self.calls.append(("generate", doc["text"], " " + instruction))
        if outcome == "generate:not_english":
            return
        label = {"judge:bad": "bad", "refine:rounds_exhausted": "needs_refinement"}.get(outcome, "good")
        counts[f"judge_round_0_{label}"] += 1
        self.calls.append(("judge", json.dumps([name, instruction, doc["text"]]), " 5"))
        if outcome == "refine:rounds_exhausted":
            for round_ in (1, 2):
                counts[f"refine_round_{round_}"] += 1
                counts[f"judge_round_{round_}_needs_refinement"] += 1
                self.calls.append(("refine", json.dumps([name, instruction + f" (round {round_})", doc["text"]]), " " + instruction))
                self.calls.append(("judge", json.dumps([name, instruction + f" (round {round_})", doc["text"]]), " 3"))

    def _record(self, pair: dict, cluster: int) -> dict:
        doc = pair["doc"]
        return {"id": stable_id(self.language, pair["instruction"], pair["response"]), "instruction": pair["instruction"], "output": pair["response"], "language": self.language,
                "provenance": {"source_dataset": doc["source"], "source_id": doc["id"], "source_url": doc["url"], "generator_model": "synthetic/model", "judge_model": "synthetic/model",
                               "prompt_version": "+".join(pair["prompts"]), "label": "good", "score": pair["score"], "refinement_round": pair["round"], "cluster_id": cluster}}

    def _reject(self, doc: dict, reason: str, **detail) -> dict:
        return {"detail": detail, "doc_id": doc["id"], "language": self.language, "reason": reason, "source": doc["source"], "url": doc["url"]}

    def _curation(self, pairs: list[dict], rejects: list[dict], records: list[dict], counts: Counter) -> None:
        work = self.layout.work(self.language, "pairs", (0, 1))
        work.parent.mkdir(parents=True, exist_ok=True)
        with open(work, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in sorted(pairs, key=lambda p: p["doc"]["id"]))
        write_json(self.layout.work(self.language, "meta", (0, 1)), {"models": {}, "counts": dict(counts)})
        with open(self.layout.rejects(self.language), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in sorted(rejects, key=lambda r: r["doc_id"]))
        folder = self.layout.curated(self.language)
        folder.mkdir(parents=True, exist_ok=True)
        shards = -(-len(records) // 10_000)
        for s in range(shards):
            with open(folder / f"train-{s:05d}-of-{shards:05d}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records[s * 10_000:(s + 1) * 10_000])
        rejected = Counter(r["reason"] for r in rejects)
        write_json(self.layout.summary(self.language), {"language": self.language, "shards": 1, "models": {}, "counts": dict(counts), "curated": len(records), "rejected": dict(rejected)})


def write_cache(layout: RunLayout, calls: list[tuple[str, str, str]]) -> None:
    """One cache row per call, its prompt rendered from the stage's template (as the run's)."""
    templates = {stage: load_prompt(stage, name) for stage, name in PROMPTS.items()}
    CallCache(layout.default_cache()).close()  # the real schema
    connection = sqlite3.connect(layout.default_cache())
    rows, now = [], time.time()
    for i, (stage, payload, reply) in enumerate(calls):
        if stage == "generate":
            prompt = templates[stage].render(text=payload)
        else:
            language, instruction, response = json.loads(payload)
            prompt = templates[stage].render(language=language, instruction=instruction, response=response)
        request = {"prompt": prompt, "messages": None, "params": {"max_new_tokens": 64, "seed": 0}}
        completion = {"text": reply, "prompt_tokens": len(prompt.encode()) // 3, "completion_tokens": max(1, len(reply) // 4), "finish_reason": "stop"}
        rows.append((f"k{i}", "synthetic/model", json.dumps(request, ensure_ascii=False), json.dumps(completion), now - (len(calls) - i) * 0.01))
    connection.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?)", rows)
    connection.commit()
    connection.close()


def make_run(root: Path, languages: list[str], curated: list[int], seed: int) -> None:
    layout = RunLayout(root)
    rng = random.Random(seed)
    calls = []
    for language, count in zip(languages, curated):
        synthetic = SyntheticLanguage(layout, language, count, rng)
        synthetic.write()
        calls += synthetic.calls
    config = {"curation": {"generate": {"prompt": PROMPTS["generate"], "candidates": 1}, "judge": {"scale": "five_point", "prompt": PROMPTS["judge"]},
                           "refine": {"prompt": PROMPTS["refine"], "rounds": 2}, "models": {"generator": {"backend": "tgi", "model": "synthetic/model", "endpoints": ["http://gpu1:8080", "http://gpu2:8080"]}}}}
    write_text(layout.config_file, json.dumps(config))  # JSON is YAML
    write_cache(layout, calls)


def search_query(root: Path) -> str:
    """The last words of one curated record's instruction: a search that must find it."""
    with open(next(next((root / "curated").iterdir()).glob("*.jsonl")), encoding="utf-8") as f:
        return json.loads(f.readline())["instruction"].rsplit(",", 1)[-1].strip()


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def open_in_browser(index: Path, query: str, screenshot: Path | None) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1400", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    figures = {}
    try:
        started = time.perf_counter()
        driver.get(index.as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        figures["page ready (index loaded, first 50 rows shown)"] = time.perf_counter() - started
        started = time.perf_counter()
        Select(driver.find_element(By.CSS_SELECTOR, "#filters [name=reason]")).select_by_value("judge:bad")
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "status").text.endswith("samples") and "of" in d.find_element(By.ID, "status").text
                                        and all(r.get_attribute("data-reason") == "judge:bad" for r in d.find_elements(By.CSS_SELECTOR, "#sample-table tbody tr")))
        figures["filter by a reject reason"] = time.perf_counter() - started
        driver.execute_script("XReport.showReason('', '')")
        WebDriverWait(driver, 60).until(lambda d: re.match(r"^([\d,]+) of \1 samples", d.find_element(By.ID, "status").text))
        started = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#filters [name=q]").send_keys(query)
        WebDriverWait(driver, 120).until(lambda d: re.match(r"^[\d,]+ of", d.find_element(By.ID, "status").text))
        figures[f"text search over every sample's preview ({driver.find_element(By.ID, 'status').text} match {query!r})"] = time.perf_counter() - started
        if screenshot:
            driver.execute_script("XReport.showReason('', '')")
            driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.5)
            driver.save_screenshot(str(screenshot))
            save_small_png(screenshot)
    finally:
        driver.quit()
    return figures


def save_small_png(path: Path) -> None:
    """The screenshot in 64 colours (a page of text and flat charts loses nothing visible)."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=["th", "ta"], help="languages of the synthetic run (texts from the shared corpora)")
    parser.add_argument("--curated", type=int, nargs="+", default=[30_000, 20_000], help="curated samples per language (one number per language)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic run")
    parser.add_argument("--keep", type=Path, help="write the run here and keep it (default: a temporary folder, removed)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the page's top here")
    parser.add_argument("--no-browser", action="store_true", help="only write the report")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        started = time.perf_counter()
        if len(args.curated) != len(args.languages):
            parser.error("--curated needs one number per language")
        make_run(root, args.languages, args.curated, args.seed)
        print(f"synthetic run: {sum(args.curated):,} curated samples, {folder_mb(root):,.0f} MB on disk, written in {time.perf_counter() - started:.1f} s")
        result = write_report(root, progress=False)
        print(f"report: {result.samples:,} samples (curated and rejected) in {result.seconds:.1f} s (target < 30 s); {folder_mb(result.folder):,.1f} MB; {result.index}")
        print(f"  index.html {result.index.stat().st_size / 1e3:,.0f} kB, data/index.js {(result.folder / 'data' / 'index.js').stat().st_size / 1e3:,.0f} kB")
        if not args.no_browser:
            for name, seconds in open_in_browser(result.index, search_query(root), args.screenshot).items():
                print(f"browser: {name}: {seconds:.2f} s" + (" (target < 5 s)" if name.startswith("page ready") else ""))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
