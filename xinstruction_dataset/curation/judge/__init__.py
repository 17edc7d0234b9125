"""Judging: label (instruction, response) pairs good / needs_refinement / bad (or score 1-5)."""

from .parsing import parse_label
from .stage import Judge

__all__ = ["Judge", "parse_label"]
