"""`datasets.Features` of every published config."""

from __future__ import annotations

import datasets

PROVENANCE_FEATURES = {
    "source_dataset": datasets.Value("string"),
    "source_id": datasets.Value("string"),
    "source_url": datasets.Value("string"),
    "generator_model": datasets.Value("string"),
    "judge_model": datasets.Value("string"),
    "prompt_version": datasets.Value("string"),
    "label": datasets.Value("string"),
    "score": datasets.Value("float32"),
    "refinement_round": datasets.Value("int32"),
    "cluster_id": datasets.Value("int32"),
}

XINSTRUCTION_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "instruction": datasets.Value("string"),
        "output": datasets.Value("string"),
        "language": datasets.Value("string"),
        "provenance": PROVENANCE_FEATURES,
    }
)

# The source's own names and types (`id` an integer, `dataset` the AlpacaEval source set), which
# PLUG's scoring script reads (with a `category` the release lacks: `eval judge --export plug` adds it).
XALPACAEVAL_FEATURES = datasets.Features(
    {
        "id": datasets.Value("int64"),
        "dataset": datasets.Value("string"),
        "instruction": datasets.Value("string"),
        "language": datasets.Value("string"),
    }
)
