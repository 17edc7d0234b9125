"""Judging: label (instruction, response) pairs good / needs_refinement / bad (or score 1-5)
(the `judge` stage: config.py, its reply parsers, prompts/)."""

from .parsing import parse_label
from .config import JudgeConfig
from .stage import Judge

__all__ = ["Judge", "JudgeConfig", "parse_label"]
