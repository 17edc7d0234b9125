"""A non-editable install carries everything the code reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from xinstruction_dataset import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_prompts_samples_and_card_templates(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    names = set(zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist())
    prompts = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("xinstruction_dataset/curation/*/prompts/*.txt")}
    samples = {p.relative_to(ROOT).as_posix() for p in (ROOT / "xinstruction_dataset" / "samples").iterdir()}
    cards = {f"xinstruction_dataset-{__version__}.data/data/share/xinstruction/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "cards").rglob("*") if p.is_file()}
    assert prompts and samples and cards
    assert prompts | samples | cards <= names, sorted((prompts | samples | cards) - names)
