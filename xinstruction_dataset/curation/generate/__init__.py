"""Instruction back-generation: the English instruction a target-language document answers
(the `generate` stage: config.py, its checks and reply parsing, prompts/)."""

from .checks import copy_overlap, instruction_problem, text_problem
from .config import GenerateConfig
from .parsing import instruction_block, parse_instruction
from .stage import Generate

__all__ = ["Generate", "GenerateConfig", "copy_overlap", "instruction_block", "instruction_problem", "parse_instruction", "text_problem"]
