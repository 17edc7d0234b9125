"""Instruction back-generation: the English instruction a target-language document answers."""

from .checks import copy_overlap, instruction_problem
from .parsing import parse_instruction
from .stage import GenerateOutcome, generate, generate_requests

__all__ = ["GenerateOutcome", "copy_overlap", "generate", "generate_requests", "instruction_problem", "parse_instruction"]
