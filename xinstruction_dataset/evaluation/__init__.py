"""Evaluate models on X-AlpacaEval as PLUG and X-Instruction do: a model answers a config
(`answer.py`), a judge compares two models' answers in both orders under one of the papers'
protocols (`protocols.py`, `judge.py`), the two orders are combined with PLUG's rules
(`aggregate.py`) and reported per language and AlpacaEval source set (`report.py`). Every call
goes through `llm/` (one backend, the call cache): a killed run resumes where it stopped."""
