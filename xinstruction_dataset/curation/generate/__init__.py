"""Instruction back-generation: the English instruction a target-language document answers."""

from .checks import copy_overlap, instruction_problem, text_problem
from .parsing import instruction_block, parse_instruction
from .stage import Generate

__all__ = ["Generate", "copy_overlap", "instruction_block", "instruction_problem", "parse_instruction", "text_problem"]
