"""The Hub's card-metadata vocabulary as the test Hub (tests/hub_server.py) enforces it, kept
apart from the project's own copy (`xinstruction_dataset/hub/vocabulary.py`) on purpose: a test
compares the two, so the project's checker falling behind the Hub (or accepting a value the Hub
refuses) fails a test instead of a real publish. Written from the Hub's documentation
(hub-docs: repositories-licenses, datasets-cards, the task list of @huggingface/tasks)."""

from __future__ import annotations

import re
from typing import Any

HUB_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear
c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0
cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0
cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl
ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0
odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2
llama3.3 llama4 gemma unknown other
""".split())

HUB_TASK_CATEGORIES = frozenset("""
text-classification token-classification table-question-answering question-answering
zero-shot-classification translation summarization feature-extraction text-generation
text2text-generation fill-mask sentence-similarity text-to-speech text-to-audio
automatic-speech-recognition audio-to-audio audio-classification audio-text-to-text
voice-activity-detection depth-estimation image-classification object-detection
image-segmentation text-to-image image-to-text image-to-image image-to-video
unconditional-image-generation video-classification reinforcement-learning robotics
tabular-classification tabular-regression tabular-to-text table-to-text multiple-choice
text-ranking text-retrieval time-series-forecasting text-to-video image-text-to-text
visual-question-answering document-question-answering zero-shot-image-classification graph-ml
mask-generation zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction
video-text-to-text keypoint-detection visual-document-retrieval any-to-any video-to-video other
""".split())

HUB_SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M",
                       "100M<n<1B", "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T")
HUB_MULTILINGUALITY = frozenset({"monolingual", "multilingual", "translation", "other"})
# ISO 639-1 (2 letters) or 639-2/3 (3 letters), optionally with a BCP-47 region or script.
HUB_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")

CHECKS: dict[str, Any] = {
    "license": HUB_LICENSES.__contains__,
    "task_categories": HUB_TASK_CATEGORIES.__contains__,
    "size_categories": set(HUB_SIZE_CATEGORIES).__contains__,
    "multilinguality": HUB_MULTILINGUALITY.__contains__,
    "language": lambda value: isinstance(value, str) and bool(HUB_LANGUAGE.match(value)),
}


def metadata_errors(readme: str) -> list[str]:
    """What the Hub refuses in a README.md's metadata (empty: accepted), one message each."""
    import yaml

    match = re.match(r"^---\n(.*?)\n---", readme, re.S)
    if not match:
        return []
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        return [f"invalid YAML: {error}"]
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return ["metadata must be a mapping"]
    errors = []
    for key, check in CHECKS.items():
        if key not in metadata:
            continue
        values = metadata[key] if isinstance(metadata[key], list) else [metadata[key]]
        errors += [f'"{key}" must be one of the Hub\'s {key} values, got "{value}"' for value in values if not check(value)]
    return errors
