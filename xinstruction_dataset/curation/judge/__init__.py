"""Judging: label (instruction, response) pairs good / needs_refinement / bad (or score 1-5)."""

from .parsing import parse_label
from .stage import JudgeOutcome, judge, judge_request

__all__ = ["JudgeOutcome", "judge", "judge_request", "parse_label"]
