"""X-Instruction: build, load and publish cross-lingual instruction-tuning data."""

__version__ = "0.1.0"
