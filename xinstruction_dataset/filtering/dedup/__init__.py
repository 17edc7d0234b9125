"""Whole-language steps, dedup first among them (datatrove's shape: signature -> buckets ->
clusters -> a removal list, not a rewrite of the text).

    steps.py          the plug-in point: `LANGUAGE_STEPS`, `LanguageStep`, `Removal`, `plan_steps`
    options.py        the dedup kinds' recipe options (`exact_dedup`, `near_dedup`, `dedup`)
    minhash.py        normalisation, exact digests, MinHash signatures, the LSH band layout
    signatures.py     what a filter task saves for the steps (ids, digests, signatures)
    repeated_ids.py   `duplicate_id`: a repeated id is removed before any step
    clusters.py       buckets -> clusters -> removals, over every task of a language
    dedup_step.py     the dedup kinds, registered as language steps

A new step kind is one file with its options model and a function registered with
`@LANGUAGE_STEPS.register(Options)`, plus its import line below; its options join the recipe's
`filters:` union by themselves (filtering/filters/spec.py takes this registry's union).
"""

from . import dedup_step  # noqa: F401 - registers exact_dedup, near_dedup, dedup
from .options import DedupOptions, ExactDedupOptions, MinHashOptions, NearDedupOptions
from .repeated_ids import DUPLICATE_ID, find_repeated_ids
from .steps import LANGUAGE_STEPS, LanguageStep, LanguageTasks, Removal, is_language_step, plan_steps

__all__ = [
    "DUPLICATE_ID",
    "LANGUAGE_STEPS",
    "DedupOptions",
    "ExactDedupOptions",
    "LanguageStep",
    "LanguageTasks",
    "MinHashOptions",
    "NearDedupOptions",
    "Removal",
    "find_repeated_ids",
    "is_language_step",
    "plan_steps",
]
