"""Instruction back-generation: the English instruction a target-language document answers."""

from .checks import copy_overlap, instruction_problem
from .parsing import parse_instruction
from .stage import Generate

__all__ = ["Generate", "copy_overlap", "instruction_problem", "parse_instruction"]
