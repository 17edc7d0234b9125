"""Dataset cards: render from the data, hand-written sections survive updates, offline checks."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import pyarrow.parquet as pq
import yaml
from hub_folders import write_xinstruction_config, xinstruction_folder
from xinstruction_dataset.hub import check as check_module
from xinstruction_dataset.cli import main
from xinstruction_dataset.hub.cards import ChangelogEntry, read_changelog, read_hand_written, render_card, update_card
from xinstruction_dataset.hub.check import check_card

HAND_EDIT = "We built this release from MasakhaNEWS and UD treebanks.\n\nAsk questions on the forum.\n\n\n(three blank lines above, kept as written)\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return xinstruction_folder(tmp_path, {"sw": 6, "fi": 4})


def stats_row(card: str, config: str) -> str:
    return next(line for line in card.splitlines() if line.startswith(f"| `{config}` |"))


def card_cli(argv: list[str]) -> int:
    """`xinstruction card ...` through the real entry point (cli.main)."""
    return main(argv)


def test_rendered_card_is_generated_from_the_data(folder):
    card = (folder / "README.md").read_text()  # written by the export
    # Counted from the Parquet files here, not by the card code: the metadata must say the same.
    parquet = {d.name: list(d.glob("*.parquet")) for d in (folder / "data").iterdir()}
    rows = {c: sum(pq.ParquetFile(f).metadata.num_rows for f in files) for c, files in parquet.items() if files}
    metadata = yaml.safe_load(card.split("---\n", 2)[1])
    declared = {info["config_name"]: sum(s["num_examples"] for s in info["splits"]) for info in metadata["dataset_info"]}
    assert declared == rows and rows["sw"] == 6
    assert "size_categories:\n- n<1K" in card and "language:\n- en\n- fi\n- sw\n" in card
    assert "  - split: train\n    path: data/sw/train-*" in card
    assert re.match(r"\| `sw` \| Swahili \| 6 \| \d+ ± \d+ \| \d+ ± \d+ \| good 67% · needs_refinement 33% \|", stats_row(card, "sw"))
    assert "- Judge: `test/judge`" in card and "- Refinement rounds: up to 2" in card
    assert "X-Instruction: Aligning Language Model" in card and "{PLUG}: Leveraging Pivot Language" in card
    assert check_card(folder) == []


def test_hand_edit_survives_an_update_after_a_data_change(folder):
    card = (folder / "README.md").read_text()
    sw_row_before = stats_row(card, "sw")
    edited = re.sub(r"(<!-- hand-written:overview start -->\n).*?(<!-- hand-written:overview end -->)", lambda m: m.group(1) + HAND_EDIT + m.group(2), card, flags=re.S)
    (folder / "README.md").write_text(edited)

    write_xinstruction_config(folder, "sw", 9, offset=6)  # Swahili changes
    write_xinstruction_config(folder, "tr", 3)  # Turkish is new
    update_card(folder)

    updated = (folder / "README.md").read_text()
    assert read_hand_written(updated)["overview"] == HAND_EDIT
    assert stats_row(updated, "sw") != sw_row_before and "| 9 |" in stats_row(updated, "sw")
    assert "| `tr` | Turkish | 3 |" in stats_row(updated, "tr")
    assert "**16**" in updated  # the total row
    assert "num_examples: 9" in updated and "- tr\n" in updated
    assert check_card(folder) == []
    assert render_card(folder) == updated, "an update of an up-to-date card changes nothing"


def test_changelog_is_carried_over_and_a_dropped_section_is_kept(folder):
    update_card(folder, changelog=[ChangelogEntry("1.0.0", "first release")])
    card = (folder / "README.md").read_text()
    (folder / "README.md").write_text(card + "\n<!-- hand-written:thanks start -->\nThanks to the annotators.\n<!-- hand-written:thanks end -->\n")
    update_card(folder)
    updated = (folder / "README.md").read_text()
    assert read_changelog(updated) == [ChangelogEntry("1.0.0", "first release")]
    assert read_hand_written(updated)["thanks"] == "Thanks to the annotators.\n"


def test_card_commands(folder, capsys):
    assert card_cli(["card", "check", str(folder)]) == 0
    assert "card OK" in capsys.readouterr().out
    assert card_cli(["card", "render", str(folder)]) == 0
    assert capsys.readouterr().out == (folder / "README.md").read_text()
    (folder / "README.md").write_text((folder / "README.md").read_text().replace("license: apache-2.0", "license: apache"))
    assert card_cli(["card", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "README.md:3: [license] `license` value 'apache' is not valid (fix: use a Hub licence id" in out
    assert card_cli(["card", "update", str(folder)]) == 0
    assert card_cli(["card", "check", str(folder)]) == 0


def _replace_line(old: str, new: str):
    def plant(card: str) -> tuple[str, str]:
        assert old in card, old
        return card.replace(old, new, 1), new.splitlines()[0]
    return plant


def _drop_config(card: str) -> tuple[str, str]:
    block = "- config_name: sw\n  data_files:\n  - split: train\n    path: data/sw/train-*\n"
    assert block in card
    return card.replace(block, ""), "configs:"


def _drop_stats_row(card: str) -> tuple[str, str]:
    return re.sub(r"^\| `sw` \|.*\n", "", card, count=1, flags=re.M), "<!-- generated:statistics end -->"


def _duplicate_config(card: str) -> tuple[str, str]:
    block = "- config_name: fi\n  data_files:\n  - split: train\n    path: data/fi/train-*\n"
    return card.replace(block, block + block.replace("config_name: fi", "config_name: fi  # again"), 1), "config_name: fi  # again"


def _unclosed_marker(card: str) -> tuple[str, str]:
    return card.replace("<!-- hand-written:usage end -->", "", 1), "<!-- hand-written:usage start -->"


def _wrong_count(card: str) -> tuple[str, str]:
    return card.replace("num_examples: 6", "num_examples: 60", 1), "num_examples: 60"


# (defect, how to plant it: card -> (planted card, text on the line the problem must point at), code)
DEFECTS = [
    ("unknown key", _replace_line("license: apache-2.0", "licence: apache-2.0"), "unknown-key"),
    ("unknown licence", _replace_line("license: apache-2.0", "license: cc-by-nc"), "license"),
    ("invalid language code", _replace_line("- en\n- fi", "- english\n- fi"), "language-code"),
    ("wrong size category", _replace_line("- n<1K", "- 1M<n<10M"), "size-category"),
    ("unknown task category", _replace_line("- text-generation", "- text-gen"), "task-category"),
    ("value of the wrong shape", _replace_line("pretty_name: X-Instruction", "pretty_name: [X-Instruction]"), "value-shape"),
    ("data_files matching nothing", _replace_line("path: data/fi/train-*", "path: data/fi/validation-*"), "config-files"),
    ("config on disk not declared", _drop_config, "config-undeclared"),
    ("duplicate config", _duplicate_config, "config-duplicate"),
    ("num_examples not the file count", _wrong_count, "num-examples"),
    ("config without a statistics row", _drop_stats_row, "stats-row"),
    ("unclosed hand-written section", _unclosed_marker, "markers"),
    ("invalid YAML", _replace_line("multilinguality: multilingual", "multilinguality: [multilingual"), "yaml-syntax"),
]


@pytest.mark.parametrize("plant, code", [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS])
def test_check_catches_each_planted_defect_with_its_line_and_a_fix(folder, plant, code):
    planted, marker = plant((folder / "README.md").read_text())
    (folder / "README.md").write_text(planted)
    problems = check_card(folder)
    assert [p.code for p in problems] == [code], [str(p) for p in problems]
    problem = problems[0]
    expected_line = next(i for i, line in enumerate(planted.splitlines(), start=1) if marker in line)
    if code == "yaml-syntax":
        assert expected_line <= problem.line <= expected_line + 1  # YAML reports where it noticed
    else:
        assert problem.line == expected_line, str(problem)
    assert problem.fix and str(problem).startswith(f"README.md:{problem.line}: [{code}] ")
    if code == "markers":  # `update` would lose the unclosed section's text: it refuses
        with pytest.raises(ValueError, match="hand-written section.*not closed"):
            update_card(folder)
    else:  # `update` regenerates the metadata and tables: the defect is gone
        update_card(folder)
        assert check_card(folder) == []


# Codes for a card missing a whole part (no per-line defect to plant): tested below.
WHOLE_CARD_CODES = {"no-card", "front-matter", "configs-missing", "stats-table", "changelog"}


def test_every_code_the_checker_emits_has_a_planted_defect():
    """Read from check.py itself: a new check without a planted defect here fails this test."""
    source = (Path(check_module.__file__)).read_text()
    emitted = set(re.findall(r'CardProblem\([^,]+, "([a-z-]+)"', source))  # CardProblem(line, code, ...)
    emitted |= set(re.findall(r'(?:__contains__|is_language_code), "([a-z-]+)"', source))  # the vocabulary table
    assert len(emitted) >= 15, emitted  # the pattern still finds the checker's codes
    assert emitted - WHOLE_CARD_CODES == {code for _, _, code in DEFECTS}


@pytest.mark.parametrize("code, damage", [
    ("no-card", lambda card: None),
    ("front-matter", lambda card: card.split("---\n", 2)[2]),
    ("configs-missing", lambda card: re.sub(r"configs:\n(?:[ -].*\n)+", "", card, count=1)),
    ("stats-table", lambda card: card.replace("<!-- generated:statistics start -->", "")),
    ("changelog", lambda card: card.replace("<!-- generated:changelog start -->", "")),
])
def test_check_catches_a_card_missing_a_whole_part(folder, code, damage):
    damaged = damage((folder / "README.md").read_text())
    if damaged is None:
        (folder / "README.md").unlink()
    else:
        (folder / "README.md").write_text(damaged)
    assert code in [p.code for p in check_card(folder)]


def test_regenerate_cards_script_updates_and_checks(folder, capsys):
    spec = importlib.util.spec_from_file_location("regenerate_cards", Path(__file__).resolve().parents[1] / "scripts" / "regenerate_cards.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (folder / "README.md").write_text((folder / "README.md").read_text().replace("num_examples: 6", "num_examples: 7"))
    assert script.main([str(folder)]) == 0
    assert "README.md: OK" in capsys.readouterr().out
    assert "num_examples: 6" in (folder / "README.md").read_text()
    (folder / "README.md").write_text((folder / "README.md").read_text().replace("<!-- hand-written:usage end -->", ""))
    assert script.main([str(folder)]) == 2
    assert "not closed" in capsys.readouterr().err
