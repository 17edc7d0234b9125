"""Dataset cards that maintain themselves: rendered from Jinja2 templates in `cards/`.

A card has three kinds of content:

- generated: the YAML metadata, the statistics table, the method summary, the LLM calls and tokens
  its curation paid ("How this dataset was made", from the figures export put into the Parquet
  files' metadata: making.py), the citations. They are recomputed from the data in the folder on
  every render, so they never go stale;
- the changelog, one line per published version: `xinstruction publish` adds the entry of the
  version it publishes, and every other render carries the existing entries over;
- hand-written sections, between markers:

      <!-- hand-written:usage start -->
      ...anything...
      <!-- hand-written:usage end -->

  A render keeps the text of every hand-written section found in the existing README.md; a new
  card starts them from `cards/<dataset>/sections/<name>.md`. A section the template no longer
  has is kept at the end of the card, never dropped.

Templates live in the repository's `cards/` folder (or `$XINSTRUCTION_CARDS_DIR`):
`cards/<dataset>/README.md.j2`, `cards/<dataset>/card.yaml` (static metadata and field
descriptions), `cards/<dataset>/sections/*.md`, and shared `cards/_partials/`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jinja2
import pyarrow.parquet as pq
import yaml

from ..errors import UsageError
from ..languages import LANGUAGES, language_name
from ..storage import write_text
from .layout import CARD_FILE, FolderLayout, scan_folder
from .making import format_money, making_section
from .metadata import card_metadata, metadata_yaml
from .stats import METHOD_FIELDS, ConfigStats, folder_stats

CARDS_DIR_ENV = "XINSTRUCTION_CARDS_DIR"
TEMPLATE_FILE = "README.md.j2"
PROFILE_FILE = "card.yaml"
DATASETS = ("x-instruction", "x-alpacaeval")

HAND_WRITTEN = re.compile(
    r"<!-- hand-written:(?P<name>[\w-]+) start -->\n(?P<body>.*?)<!-- hand-written:(?P=name) end -->", re.S
)
CHANGELOG_BLOCK = re.compile(r"<!-- generated:changelog start -->\n(?P<body>.*?)<!-- generated:changelog end -->", re.S)
# The generated usage line (templates' "## Loading"), and the shape of a Hub repo id (ORG/NAME).
LOADING_LINE = re.compile(r'^ds = load_dataset\("(?P<id>[^"\n]+)", ', re.M)
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
CHANGELOG_LINE = re.compile(r"^- \*\*v(?P<version>\d+\.\d+\.\d+)\*\*: (?P<summary>.+)$", re.M)

METHOD_LABELS = {
    "source_dataset": "Source datasets",
    "generator_model": "Instruction generator",
    "judge_model": "Judge",
    "prompt_version": "Prompt versions",
}


@dataclass(frozen=True, order=True)
class ChangelogEntry:
    """One published version: `1.1.0`, and a one-line summary of what it holds."""

    version: str
    summary: str

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))


@dataclass(frozen=True)
class CardProfile:
    """What a card template needs besides the data: its folder and `card.yaml`."""

    dataset: str
    directory: Path
    static: dict[str, Any]

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.static.get("fields") or {})


def default_cards_dir() -> Path:
    """`$XINSTRUCTION_CARDS_DIR`, else the `cards/` folder of this repository checkout, else the
    copy a non-editable install puts in `<prefix>/share/xinstruction/cards` (setup.cfg data_files)."""
    configured = os.environ.get(CARDS_DIR_ENV)
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = [Path(__file__).resolve().parents[2] / "cards", Path(sys.prefix) / "share" / "xinstruction" / "cards"]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"card templates not found at {' or '.join(map(str, candidates))}: reinstall the package, "
        f"or set {CARDS_DIR_ENV} to the repository's cards/ folder"
    )


def load_profile(dataset: str, cards_dir: str | Path | None = None) -> CardProfile:
    """Read `cards/<dataset>/card.yaml`; raise a ValueError naming the known datasets otherwise."""
    directory = Path(cards_dir or default_cards_dir()) / dataset
    profile_path = directory / PROFILE_FILE
    if not profile_path.exists():
        known = sorted(p.parent.name for p in Path(cards_dir or default_cards_dir()).glob(f"*/{PROFILE_FILE}"))
        raise UsageError(f"no card template for dataset {dataset!r} ({profile_path} missing); known: {', '.join(known)}")
    return CardProfile(dataset, directory, yaml.safe_load(profile_path.read_text(encoding="utf-8")) or {})


def detect_dataset(folder: str | Path, layout: FolderLayout | None = None) -> str:
    """Which dataset a folder holds, from its data's columns (`output`: X-Instruction; `dataset`: X-AlpacaEval)."""
    layout = layout or scan_folder(folder)
    for splits in layout.configs.values():
        first = next(iter(splits.values())).files[0]
        names = pq.read_schema(Path(folder) / first).names
        if "output" in names:
            return "x-instruction"
        if "dataset" in names:  # X-AlpacaEval keeps its source's `dataset` column
            return "x-alpacaeval"
    raise UsageError(f"{folder}: cannot tell which dataset it holds (no data/<config>/*.parquet with known columns); pass --dataset")


def read_hand_written(card_text: str) -> dict[str, str]:
    """The hand-written sections of a card: name -> text between its markers.

    Raises a ValueError when a section is not closed: regenerating then would lose its text.
    """
    sections = {m.group("name"): m.group("body") for m in HAND_WRITTEN.finditer(card_text)}
    starts = re.findall(r"<!-- hand-written:([\w-]+) start -->", card_text)
    unclosed = [name for name in starts if name not in sections]
    if unclosed:
        raise UsageError(
            f"hand-written section(s) {', '.join(unclosed)} not closed by `<!-- hand-written:NAME end -->`: "
            "fix the markers first (`xinstruction card check` shows where), so that no hand-written text is lost"
        )
    return sections


def read_changelog(card_text: str) -> list[ChangelogEntry]:
    """The changelog entries of a card, oldest version first."""
    block = CHANGELOG_BLOCK.search(card_text)
    if not block:
        return []
    entries = [ChangelogEntry(m.group("version"), m.group("summary").strip()) for m in CHANGELOG_LINE.finditer(block.group("body"))]
    return sorted(entries, key=lambda e: e.version_key)


def render_card(
    folder: str | Path,
    dataset: str = "x-instruction",
    *,
    existing: str | None = None,
    changelog: list[ChangelogEntry] | None = None,
    cards_dir: str | Path | None = None,
    repo_id: str | None = None,
    folder_name: str | None = None,
    layout: FolderLayout | None = None,
) -> str:
    """Render the README.md of `folder` from its data, without writing it.

    Args:
        folder: the hub-ready folder (`data/<config>/<split>-*.parquet`).
        dataset: the card template to use (`x-instruction` or `x-alpacaeval`).
        existing: the current card text; defaults to the folder's README.md. Its hand-written
            sections and (unless `changelog` is given) its changelog are kept.
        changelog: the changelog entries to show instead of the existing ones.
        cards_dir: the templates folder; defaults to `default_cards_dir()`.
        repo_id, folder_name: what the card's `load_dataset(...)` line names (`dataset_id`): see
            `card_dataset_id`. A staging copy passes the name of the folder it will replace.
        layout: the folder's scan when the caller has one.
    """
    folder = Path(folder)
    if existing is None:
        card_path = folder / CARD_FILE
        existing = card_path.read_text(encoding="utf-8") if card_path.exists() else ""
    profile = load_profile(dataset, cards_dir)
    layout = layout or scan_folder(folder)
    stats = folder_stats(layout)
    kept_sections = read_hand_written(existing)
    entries = sorted(changelog if changelog is not None else read_changelog(existing), key=lambda e: e.version_key)
    context = _template_context(profile, layout, stats, entries, card_dataset_id(existing, repo_id, folder_name or folder.resolve().name))
    blocks: dict[str, str] = {}
    context["section"] = _section_renderer(profile, kept_sections, blocks)
    text = _normalise(_environment(profile.directory.parent).get_template(f"{dataset}/{TEMPLATE_FILE}").render(**context))
    # Hand-written text goes in after normalising: it is kept byte for byte.
    for placeholder, block in blocks.items():
        text = text.replace(placeholder, block)
    return text + _orphan_sections(kept_sections, blocks)


def update_card(
    folder: str | Path,
    dataset: str = "x-instruction",
    *,
    changelog: list[ChangelogEntry] | None = None,
    cards_dir: str | Path | None = None,
    repo_id: str | None = None,
    folder_name: str | None = None,
) -> Path:
    """Regenerate `folder/README.md` from the data in the folder, keeping hand-written sections.

    Returns the path of the card. See `render_card` for the arguments.
    """
    text = render_card(folder, dataset, changelog=changelog, cards_dir=cards_dir, repo_id=repo_id, folder_name=folder_name)
    return write_card(folder, text)


def write_card(folder: str | Path, text: str) -> Path:
    """Write `text` as `folder/README.md` unless it already says that; returns the card's path."""
    path = Path(folder) / CARD_FILE
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)  # atomic: readers never see a half-written card
    return path


def card_dataset_id(existing: str, repo_id: str | None, folder_name: str) -> str:
    """The dataset id a card's `load_dataset(...)` line names: the repo it is published to
    (`repo_id`); else the Hub repo the existing card already names (a published folder's card
    keeps naming its repo through later updates); else the folder's own name."""
    if repo_id:
        return repo_id
    named = named_dataset_id(existing)
    return named if named and HUB_REPO_ID.fullmatch(named) else folder_name


def named_dataset_id(card_text: str) -> str | None:
    """The dataset id a card's generated `load_dataset(...)` line names, if it has one."""
    loading = card_text.find("## Loading")
    named = LOADING_LINE.search(card_text, loading) if loading >= 0 else None
    return named.group("id") if named else None


def _template_context(
    profile: CardProfile, layout: FolderLayout, stats: dict[str, ConfigStats], changelog: list[ChangelogEntry], folder_name: str
) -> dict[str, Any]:
    from ..citations import BY_KEY as citations

    configs = list(stats.values())
    return {
        "metadata_yaml": metadata_yaml(card_metadata(layout, stats, profile.static)),
        "pretty_name": profile.static["pretty_name"],
        "license": profile.static["license"],
        "dataset_id": folder_name,
        "configs": configs,
        "total_examples": sum(c.num_examples for c in configs),
        "length_columns": [column for column in ("instruction", "output") if any(column in c.lengths for c in configs)],
        "has_labels": any(c.labels for c in configs),
        "reviewed_configs": [c for c in configs if c.review is not None],
        "language_header": "Answer language" if profile.dataset == "x-alpacaeval" else "Language",
        "method_rows": _method_rows(configs),
        "making": making_section({c.name: c.making for c in configs}),
        "answer_suffix_example": LANGUAGES["sw"].answer_suffix,
        "fields": list(profile.fields.items()),
        "changelog": changelog,
        "citations": [citations[key] for key in profile.static.get("citations", ())],
    }


def _method_rows(configs: list[ConfigStats]) -> list[dict[str, str]]:
    rows = []
    for name in METHOD_FIELDS:
        values = sorted({value for c in configs for value in c.method_values.get(name, {})})
        rows.append({"label": METHOD_LABELS[name], "value": ", ".join(f"`{v}`" for v in values) if values else "not recorded"})
    rounds = max((c.max_refinement_round for c in configs), default=0)
    rows.append({"label": "Refinement rounds", "value": f"up to {rounds}" if rounds else "none recorded"})
    clusters = ", ".join(f"{c.name} {c.clusters}" for c in configs if c.clusters)
    rows.append({"label": "Diversity clusters sampled", "value": clusters or "none recorded"})
    return rows


def _section_renderer(profile: CardProfile, kept: dict[str, str], blocks: dict[str, str]) -> Callable[[str], str]:
    """`section(name)` for templates: a placeholder, later replaced by the marked block."""

    def section(name: str) -> str:
        if name in kept:
            body = kept[name]
        else:
            default = profile.directory / "sections" / f"{name}.md"
            body = default.read_text(encoding="utf-8") if default.exists() else ""
        body = body if body.endswith("\n") or not body else body + "\n"
        placeholder = f"\x00hand-written:{name}\x00"
        blocks[placeholder] = f"<!-- hand-written:{name} start -->\n{body}<!-- hand-written:{name} end -->"
        return placeholder

    return section


def _orphan_sections(kept: dict[str, str], blocks: dict[str, str]) -> str:
    # A section the template dropped still holds someone's writing: keep it, visibly.
    orphans = [name for name in kept if f"\x00hand-written:{name}\x00" not in blocks]
    return "".join(f"\n<!-- hand-written:{name} start -->\n{kept[name]}<!-- hand-written:{name} end -->\n" for name in orphans)


def _environment(cards_dir: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(cards_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    )
    environment.filters["language_name"] = language_name
    environment.filters["thousands"] = lambda n: f"{n:,}"
    environment.filters["money"] = format_money
    return environment


def _normalise(text: str) -> str:
    """At most one blank line in a row, one final newline."""
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"
