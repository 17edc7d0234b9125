"""The report's data files: JSON, gzip-compressed, base64-encoded, wrapped in a script call.

A page opened from disk (`file://`) may not `fetch()` its neighbours, but it may load scripts:
`data/<name>.js` holds `XReport.receive("<name>", "<base64 gzip JSON>")`, which the page's
script decodes with the browser's own `DecompressionStream`. Compressed, the text of a 50k-sample
Thai or Tamil run is a fraction of its size on disk, and the page loads only the files it shows.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

DATA_FOLDER = "data"
COMPRESS_LEVEL = 1  # text pages: 3-4x smaller than raw, at several times the speed of level 6


def encode(name: str, payload: Any) -> str:
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    packed = base64.b64encode(gzip.compress(raw, compresslevel=COMPRESS_LEVEL, mtime=0)).decode("ascii")
    return f"XReport.receive({json.dumps(name)},\"{packed}\");\n"


def decode(script: str) -> tuple[str, Any]:
    """(name, payload) of a data file's text: what the page's script does, for tests and tools."""
    head, _, rest = script.partition("(")
    if head.strip() != "XReport.receive":
        raise ValueError("not a report data file")
    name, packed = json.loads("[" + rest.rsplit(")", 1)[0] + "]")
    return name, json.loads(gzip.decompress(base64.b64decode(packed)))


def write_data_file(folder: Path, name: str, payload: Any) -> Path:
    """Write `data/<name>.js` under the report folder being built (its staging copy)."""
    path = folder / DATA_FOLDER / f"{name}.js"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(encode(name, payload), encoding="utf-8")
    return path


def read_data_file(folder: Path, name: str) -> Any:
    return decode((folder / DATA_FOLDER / f"{name}.js").read_text(encoding="utf-8"))[1]
