"""Shared pieces of the ledger tests: a TGI-protocol server that keeps the token counts it
reported, and curation recipes over real documents of the shared corpora."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from corpora import read_corpus
from tgi_server import TGIServer, curation_reply
from xinstruction_dataset.recipe import Recipe

MODEL = "test/curation-model"


class CountingServer(TGIServer):
    """The protocol server, keeping (prompt tokens, generated tokens) of every answer it wrote."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reported: list[tuple[int, int]] = []
        self._reported_lock = threading.Lock()

    def generate(self, prompt: str, parameters: dict[str, Any], **options: Any):
        status, body = super().generate(prompt, parameters, **options)
        if status == 200 and "generated_tokens" in body:
            with self._reported_lock:
                self.reported.append((body["prompt_tokens"], body["generated_tokens"]))
        return status, body


def start_server() -> CountingServer:
    return CountingServer(
        reply=curation_reply(needs_refinement=0.3, bad=0.2), slots=4, max_input_tokens=2048, max_total_tokens=4096,
    ).start()


def write_documents(root: Path, languages: dict[str, int], chars: int = 500) -> None:
    """The filtered documents of each language (real text, cut to `chars`), where curate reads them."""
    for language, count in languages.items():
        rows = read_corpus(language, count)
        kept = root / "filtered" / language / "kept.jsonl"
        kept.parent.mkdir(parents=True, exist_ok=True)
        docs = [{"id": r["id"], "text": r["text"][:chars], "url": r["url"], "source": r["source"], "metadata": {}} for r in rows]
        kept.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


def recipe_data(
    root: Path, server_url: str, languages: list[str], route: str = "completions", slots: int | None = None, **curation: Any,
) -> dict[str, Any]:
    """The OpenAI completions route by default: its replies carry the server's prompt and
    completion token counts (TGI's native route reports generated tokens only)."""
    model = {"backend": "tgi", "model": MODEL, "endpoints": [server_url], "route": route, "timeout": 10.0, "retries": 3, "backoff": 0.05}
    if slots is not None:
        model["max_concurrency"] = slots
    block = {
        "models": {"generator": model},
        "generate": {"candidates": 2},
        "judge": {"scale": "five_point"},
        "refine": {"rounds": 1},
        "diversify": {"target_size": 4},
        **curation,
    }
    return {"name": "ledger-test", "languages": languages, "output_dir": str(root), "curation": block}


def recipe_for(root: Path, server_url: str, languages: list[str], route: str = "completions", **curation: Any) -> Recipe:
    return Recipe.from_dict(recipe_data(root, server_url, languages, route, **curation))


def write_recipe(root: Path, server_url: str, languages: list[str], name: str = "recipe.yaml", slots: int | None = None, **curation: Any) -> Path:
    import yaml

    path = root / name
    path.write_text(yaml.safe_dump(recipe_data(root / "run", server_url, languages, slots=slots, **curation)), encoding="utf-8")
    return path


def outputs(root: Path, languages: list[str]) -> dict[str, bytes]:
    """The curated shards, rejects and summaries of a run (what must not depend on the ledger)."""
    found = {}
    for language in languages:
        for path in sorted((root / "curated" / language).glob("*.jsonl")):
            found[f"curated/{language}/{path.name}"] = path.read_bytes()
        for name in ("summary.json", "rejects.jsonl", "judge_replies.jsonl"):
            path = root / "curation" / language / name
            found[f"curation/{language}/{name}"] = path.read_bytes() if path.exists() else b""
    return found
