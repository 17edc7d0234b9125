"""Curation: filtered documents -> generate -> judge -> (refine -> judge)* -> diversify -> curated
shards. `stage.py` is the one shape of an LLM stage, `flow.py` the route between the stages,
`engine.py` drives every document on its own through the LLM client (`llm/`), `labelling.py`
and `merge.py` are the two phases of a run, `curate.py` puts them together."""
