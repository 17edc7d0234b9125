"""Refinement: rewrite needs_refinement pairs (instruction or response, per recipe)."""

from .parsing import parse_response
from .stage import RefineOutcome, refine, refine_request

__all__ = ["RefineOutcome", "parse_response", "refine", "refine_request"]
