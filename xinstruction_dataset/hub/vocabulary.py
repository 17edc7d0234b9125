"""The Hub's dataset-card vocabulary, for checking cards offline.

The Hub validates card metadata in `/api/validate-yaml`; that route is not reachable from every
machine that builds cards, so the values a check needs are kept here. Sources: the dataset card
specification (huggingface.co/docs/hub/datasets-cards), the Hub's licence list
(huggingface.co/docs/hub/repositories-licenses), its task categories, and ISO 639-1.
"""

from __future__ import annotations

# Top-level metadata keys of a dataset card; anything else is a typo or a key the Hub ignores.
KNOWN_METADATA_KEYS = frozenset(
    {
        "annotations_creators", "language_creators", "language", "language_details", "license",
        "license_name", "license_link", "license_details", "multilinguality", "pretty_name",
        "size_categories", "source_datasets", "task_categories", "task_ids", "paperswithcode_id",
        "tags", "configs", "dataset_info", "train-eval-index", "viewer", "thumbnail",
        "extra_gated_prompt", "extra_gated_fields", "extra_gated_heading", "extra_gated_description",
        "extra_gated_button_content", "base_model", "datasets",
    }
)

# Keys whose value is a string, or a list of strings (the Hub accepts both).
STRING_OR_LIST_KEYS = frozenset(
    {"language", "license", "multilinguality", "size_categories", "task_categories", "task_ids",
     "annotations_creators", "language_creators", "source_datasets", "tags"}
)
STRING_KEYS = frozenset({"pretty_name", "license_name", "license_link", "paperswithcode_id", "language_details"})

LICENSES = frozenset(
    {
        "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0",
        "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0",
        "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
        "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0",
        "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl",
        "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research", "intel-research",
        "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openmdw-1.0",
        "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl",
        "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license", "llama2",
        "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other",
    }
)

TASK_CATEGORIES = frozenset(
    {
        "text-classification", "token-classification", "table-question-answering", "question-answering",
        "zero-shot-classification", "translation", "summarization", "feature-extraction",
        "text-generation", "fill-mask", "sentence-similarity", "text-to-speech", "text-to-audio",
        "automatic-speech-recognition", "audio-to-audio", "audio-classification", "voice-activity-detection",
        "depth-estimation", "image-classification", "object-detection", "image-segmentation",
        "text-to-image", "image-to-text", "image-to-image", "image-to-video", "unconditional-image-generation",
        "video-classification", "reinforcement-learning", "robotics", "tabular-classification",
        "tabular-regression", "tabular-to-text", "table-to-text", "multiple-choice", "text-ranking",
        "text-retrieval", "time-series-forecasting", "text-to-video", "image-text-to-text",
        "visual-question-answering", "document-question-answering", "zero-shot-image-classification",
        "graph-ml", "mask-generation", "zero-shot-object-detection", "text-to-3d", "image-to-3d",
        "image-feature-extraction", "video-text-to-text", "keypoint-detection", "visual-document-retrieval",
        "any-to-any", "video-to-video", "other",
    }
)

MULTILINGUALITY = frozenset({"monolingual", "multilingual", "translation", "other"})

# (upper bound exclusive, name): the Hub's size buckets, by total number of examples.
SIZE_CATEGORIES: tuple[tuple[float, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
    (float("inf"), "n>1T"),
)

ISO_639_1 = frozenset(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy
    hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li
    ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa
    pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th
    ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split()
)


def size_category(num_examples: int) -> str:
    """The Hub size bucket of a dataset with `num_examples` records in all."""
    return next(name for bound, name in SIZE_CATEGORIES if num_examples < bound)


def is_language_code(code: object) -> bool:
    """ISO 639-1 (`sw`), ISO 639-3 (`swh`) shaped, optionally with a region/script (`zh-Hant`)."""
    if not isinstance(code, str):
        return False
    base = code.split("-")[0]
    return base in ISO_639_1 or (len(base) == 3 and base.isalpha() and base.islower())
