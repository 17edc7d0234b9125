"""Session-wide test settings: no test reaches a real hub; hub and datasets caches live in a
temporary folder. Set before `huggingface_hub` / `datasets` are imported: they read these once."""

from __future__ import annotations

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="xinstruction-tests-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
# Test server fixtures: the Hub-protocol server (conftest_hub.py, which also sets HF_ENDPOINT, so it
# comes first) and the TGI-protocol server (conftest_tgi.py).
pytest_plugins = ["conftest_hub", "conftest_tgi"]
