"""Curation: filtered documents -> generate -> judge -> (refine -> judge)* -> diversify -> curated
shards. `stage.py` is the one shape of an LLM stage and their registry, each stage a package
beside its config and prompts (generate/, judge/, refine/); `flow.py` is the routing table
between them; `config.py` the recipe's `curation:` block, built from the registered stages;
`engine.py` drives every document on its own through the LLM client (`llm/`); `labelling.py`
and `merge.py` (with diversify/) are the two phases of a run, `curate.py` puts them together.

The stages register here, in flow order, before anything reads the registry (a new stage
package is one more name on this line)."""

from . import generate, judge, refine  # noqa: F401 (registers the stages)
