"""Refinement: rewrite needs_refinement pairs (instruction or response, per recipe)."""

from .parsing import parse_response
from .stage import Refine

__all__ = ["Refine", "parse_response"]
