"""Refinement: rewrite needs_refinement pairs (instruction or response, per recipe)
(the `refine` stage: config.py, its reply parsing, prompts/)."""

from .parsing import parse_response
from .config import RefineConfig
from .stage import Refine

__all__ = ["Refine", "RefineConfig", "parse_response"]
