"""The embedders' plug-in point (curation/embedders/): each kind a spec and an embedder in one
file, a `diversify.embedding` entry checked as the spec of its kind when the recipe is loaded."""

from __future__ import annotations

import pytest

import xinstruction_dataset.curation.embedders as embedders
from plugin_checks import kinds_of_annotation, point_problems
from xinstruction_dataset.curation.config import CurationConfig, DiversifyConfig
from xinstruction_dataset.curation.embedders import EMBEDDERS, LocalEmbedding, TEIEmbedding, build_embedder


def test_every_embedder_kind_is_registered_built_and_a_diversify_embedding():
    """A new embedder is one file in curation/embedders/ (its spec and its Embedder registered in
    EMBEDDERS) and its name on the package __init__'s import line: forgetting either fails here,
    as does a `diversify.embedding` field that does not offer it."""
    offered = kinds_of_annotation(EMBEDDERS, DiversifyConfig.model_fields["embedding"].annotation)
    assert point_problems(EMBEDDERS, embedders, offered) == []
    assert {"local", "tei"} <= set(EMBEDDERS.kinds())  # a new embedder needs no change here


def test_an_embedding_entry_is_the_spec_of_its_kind():
    config = CurationConfig.from_dict({"diversify": {"embedding": {"batch_size": 8}}})  # no backend: local
    assert config.diversify.embedding == LocalEmbedding(batch_size=8)
    tei = CurationConfig.from_dict({"diversify": {"embedding": {"backend": "tei", "url": "http://h:1", "model": "m"}}})
    assert tei.diversify.embedding == TEIEmbedding(url="http://h:1", model="m")
    assert build_embedder(tei.diversify.embedding).url == "http://h:1"
    with pytest.raises(ValueError, match="curation.diversify.embedding.backend: unknown backend 'openai'; one of: local, tei"):
        CurationConfig.from_dict({"diversify": {"embedding": {"backend": "openai"}}})
    with pytest.raises(ValueError, match="unknown key curation.diversify.embedding.url"):  # local has no endpoint
        CurationConfig.from_dict({"diversify": {"embedding": {"url": "http://h:1"}}})
    with pytest.raises(ValueError, match="backend 'tei' needs `url`"):
        CurationConfig.from_dict({"diversify": {"embedding": {"backend": "tei"}}})


def test_a_tei_run_folder_keeps_its_fingerprint():
    """Both kinds shared one config before they had specs of their own: a TEI entry's fingerprint
    held `path: ""`, and still does, so those folders resume."""
    from xinstruction_dataset.fingerprint import _flatten

    values: dict = {}
    _flatten(TEIEmbedding(url="http://h:1", model="m"), "embedding", values)
    assert values == {"embedding.backend": "tei", "embedding.model": "m", "embedding.path": ""}
    with pytest.raises(ValueError, match="backend 'tei' has no `path`"):
        TEIEmbedding(url="http://h:1", path="/models/minilm")
