"""Evaluate models on X-AlpacaEval with PLUG's or X-Instruction's judge protocol: a model answers
a config (`answer.py`), a judge compares two models' answers in both orders (`protocols.py`,
`judge.py`), on answer files checked first (`inputs.py`); the two orders are combined
(`aggregate.py`: PLUG's rule, or for X-Instruction, whose release aggregates nothing, one of our
two readings) and reported per language and AlpacaEval source set (`report.py`), also in the
papers' own file formats. `--strict` runs a paper's script exactly; the default adds our
improvements, named as ours. Every call goes through `llm/` (one backend, the call cache): a
killed run resumes where it stopped."""
