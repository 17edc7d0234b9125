"""Read the judge's answer out of its free-text reply: a label (good / needs_refinement / bad) or a
1-5 score. Never raises: a reply that commits to no answer is None (malformed), and the stage
retries or rejects it.

Parser versions. A run folder records the one its labels were made with (curation/versions.py),
so resuming a folder never relabels its pairs under a new rule unless asked (`--force`):

- `v1`, the parser of folders that record none: the first label word, or the first 1-5 number,
  anywhere in the reply. It read "This pair is not good. Label: bad" as good, and "On a scale of
  1 to 5, I would rate this pair 5." as 1.
- `v2`: the answer the reply commits to.
  1. An explicit field (`Label: bad`, `**Verdict:** good`, `Score: 4/5`, `Rating (1-5): 3`,
     `a score of 4`); the last one when there are several (a reply that corrects itself). A
     score field holding an off-scale number (`Score: 8/10`, `Score: 4.5`) is malformed: the
     judge answered on another scale, and guessing would mislabel the pair.
  2. Else the last standalone label or score of the text.
  Never a word or number inside a phrase: negated ("not good", "not a 5", "does not need
  refinement"), one of a list of choices ("good, needs_refinement or bad", "4 or 5"), a range or
  scale ("1 to 5", "1-5", "between 1 and 5", "out of 5", "a 5-point scale"), a numbered list or an
  echoed rubric (two or more "1. ..." / "5: ..." keys), a count or a reference ("3 of the 4
  points", "2 steps", "step 3"), a set phrase ("Bad Gateway"). A score is 1-5, alone or over 5
  ("4/5", "4 out of 5"). A reply that is a server's error page is malformed.
  Markdown emphasis, case, quotes, brackets and punctuation around the answer do not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from .config import JudgeConfig
from ..generate.checks import looks_like_error_page

Parsed = Optional[tuple[str, Optional[float]]]

LEGACY = "v1"  # the parser of a folder that records no version
CURRENT = "v2"  # the parser a new folder records

# -- v1 -----------------------------------------------------------------------------------------

_V1_LABEL_WORDS = re.compile(r"needs?[\s_\-]*refine(?:ment)?|\bgood\b|\bbad\b", re.IGNORECASE)
_V1_SCORE = re.compile(r"(?<![\d.])([1-5])(?:\s*/\s*5)?(?![\d]|\.\d)")


def _parse_v1(reply: str, config: JudgeConfig) -> Parsed:
    if config.scale == "five_point":
        match = _V1_SCORE.search(reply or "")
        return None if match is None else _scored(int(match.group(1)), config)
    match = _V1_LABEL_WORDS.search(reply or "")
    if match is None:
        return None
    return _label_of(match.group(0)), None


# -- v2: the pieces of text an answer can be ----------------------------------------------------

_NOT_ALNUM_BEFORE = r"(?<![^\W_])"  # `_` is no letter: `__bad__` and `needs_refinement` count
_NOT_ALNUM_AFTER = r"(?![^\W_])"
_REFINE = (
    r"(?:needs?|requires?|required)[\s_\-]*(?:(?:some|more|further|minor|a\s+little|a\s+bit\s+of)[\s_\-]+)?(?:refine(?:ment|d)?|refining)"
    r"|refinement[\s_\-]+(?:is[\s_\-]+)?(?:needed|required)"
)
_LABEL = re.compile(rf"{_NOT_ALNUM_BEFORE}(?:good|bad|{_REFINE}){_NOT_ALNUM_AFTER}", re.IGNORECASE)
# Set phrases whose label word is no verdict (an error page quoted back, a greeting).
_SET_PHRASE_AFTER = re.compile(r"\s+(?:gateway|request|luck|question|morning|afternoon|evening)\b", re.IGNORECASE)

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10}
_NUM = r"\d+(?:\.\d+)?|one|two|three|four|five|ten"
_NUMBER = re.compile(
    rf"(?<![\w.])(?<![^\W\d_]-)(?P<n>{_NUM})(?:\s*(?:/|out\s+of|of)\s*(?P<d>{_NUM}))?(?!\w|[.:/]\d)",
    re.IGNORECASE,
)


def _field(names: str, separators: str = "") -> re.Pattern[str]:
    """A field name, an optional parenthesis (the choices or the scale), then a separator."""
    return re.compile(
        _NOT_ALNUM_BEFORE + rf"(?:final\s+|overall\s+|my\s+|total\s+)?(?:{names})s?(?![^\W_])\s*(?:\([^)\n]{{0,80}}\)\s*)?"
        + rf"(?:[:=]|-|–|—|\bis\b|\bwould\s+be\b{separators})\s*",
        re.IGNORECASE,
    )


# `Label: bad`, `**Final verdict** - good`, `Label (good, needs_refinement or bad):\nbad`,
# `My answer is bad`, `a score of 4`. The value must follow, decorated at most with quotes and
# brackets.
_LABEL_FIELD = _field("label|verdict|judge?ment|classification|category|rating|answer|decision|assessment|evaluation|result")
_SCORE_FIELD = _field("score|rating|grade|verdict|answer", r"|\bof\b")
_DECORATION = re.compile(r"[\s\"'“”‘’«»\[\](){}<>_~#|]*")

# A clause ends at punctuation or at a turn ("good, but..."): a negation does not reach past it.
_CLAUSE_BREAK = re.compile(r"[.;:!?,()\[\]\n]|\b(?:but|however|although|though|yet|while|whereas)\b", re.IGNORECASE)
_NEGATED = re.compile(
    r"(?:\b(?:not|never|no(?!\s+doubt)|neither|nor|hardly|barely|without|instead\s+of|rather\s+than|far\s+from|"
    r"isnt|wasnt|dont|doesnt|wouldnt|cannot)\b|n['’]t\b)(?:\W+[\w'’]+){0,3}\W*$",
    re.IGNORECASE,
)
# The gap between two choices of a list: separators only ("good, needs_refinement or bad", "4 or 5").
_LIST_GAP = re.compile(r"^[\s\"'“”‘’*`_\[\]]*(?:[,/|]|\bor\b|\band\b|\bnor\b|\bvs\b\.?|,\s*or\b|,\s*and\b)[\s\"'“”‘’*`_\[\]]*$", re.IGNORECASE)

_RANGE_AFTER = re.compile(r"^\s*(?:-|–|—|to|through|and)\s*\d", re.IGNORECASE)
_RANGE_BEFORE = re.compile(r"(?:\d\s*(?:-|–|—|to|through)|\bbetween\s+\d+\s+and|\bfrom)\s*$", re.IGNORECASE)
_SCALE_BEFORE = re.compile(r"(?:\bout\s+of|\bscale\s+of|/)\s*$", re.IGNORECASE)
_SCALE_AFTER = re.compile(r"^\s*-\s*(?:point|level)s?\b|^(?:\s*-\s*|\s+)(?:point|level|star)s?\s+scale\b", re.IGNORECASE)
_COUNT_AFTER = re.compile(
    r"^\s*(?:%|percent\b|times\b|x\b|of\b|(?:(?:more|other|different|main|key|separate|new|short)\s+)?"
    r"(?:words?|sentences?|steps?|facts?|examples?|items?|paragraphs?|lines?|parts?|reasons?|ways?|things?|ideas?|tips?|"
    r"questions?|minutes?|hours?|days?|weeks?|months?|years?|people|persons?|cups?|pages?|languages?|aspects?|issues?|errors?)\b)",
    re.IGNORECASE,
)
_REFERENCE_BEFORE = re.compile(
    r"\b(?:step|item|point|line|paragraph|example|number|no\.|part|section|chapter|question|version|option|rule|page|"
    r"the|these|those|first|last|all|top)\s*$|#\s*$",
    re.IGNORECASE,
)
# A key of a numbered list or of an echoed rubric: "1. The instruction...", "5: a clear...".
_KEY_AFTER = re.compile(r"^\s*(?:[.)]\s+(?=\S)|[:=]\s*(?=[^\W\d_]))")
_LINE_START_BEFORE = re.compile(r"(?:^|\n)[\s>*\-#]*$")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    value: str  # the label, or the score's text


def parse_label(reply: str, config: JudgeConfig, version: str = CURRENT) -> Parsed:
    """(label, score) from `reply` with parser `version`, or None when it commits to no answer on
    the configured scale."""
    return PARSERS[version](reply or "", config)


def _parse_v2(reply: str, config: JudgeConfig) -> Parsed:
    if looks_like_error_page(reply) is not None:
        return None
    text = re.sub(r"[*`]", " ", reply)  # markdown emphasis and code marks (a space each: offsets stay)
    if config.scale == "five_point":
        return _score_v2(text, config)
    return _label_v2(text)


def _label_v2(text: str) -> Parsed:
    spans = [_Span(m.start(), m.end(), _label_of(m.group(0))) for m in _LABEL.finditer(text)]
    spans = [s for s in spans if not _negated(text, s.start) and not _SET_PHRASE_AFTER.match(text, s.end)]
    listed = _in_lists(text, spans)
    usable = [s for s in spans if s not in listed]
    fields = [field.end() for field in _LABEL_FIELD.finditer(text)]
    for at in reversed(fields):
        value = _value_at(text, at, usable)
        if value is not None:
            return value.value, None
    return (usable[-1].value, None) if usable else None


def _score_v2(text: str, config: JudgeConfig) -> Parsed:
    spans = [_Span(m.start(), m.end(), m.group(0)) for m in _NUMBER.finditer(text)]
    keys = [s for s in spans if _is_key(text, s)]
    excluded = set(_in_lists(text, spans))
    if len({_number(s.value)[0] for s in keys}) >= 2:
        excluded.update(keys)  # a numbered list or a rubric, not an answer
    usable = [s for s in spans if s not in excluded and not _in_phrase(text, s)]
    for field in reversed(list(_SCORE_FIELD.finditer(text))):
        value = _value_at(text, field.end(), spans)
        if value is None or value not in usable:
            continue
        score = _on_scale(value.value)
        return None if score is None else _scored(score, config)
    for span in reversed(usable):
        n, denominator = _number(span.value)
        if denominator is None and not span.value[:1].isdigit():
            continue  # "one", "two" in running text are counts, not scores
        score = _on_scale(span.value)
        if score is not None:
            return _scored(score, config)
    return None


def _value_at(text: str, at: int, spans: list[_Span]) -> _Span | None:
    """The span that starts right after a field's separator (past quotes and brackets), if any."""
    start = _DECORATION.match(text, at).end()
    return next((s for s in spans if s.start == start), None)


def _in_lists(text: str, spans: list[_Span]) -> list[_Span]:
    """Spans that are choices of a list: next to another answer with only separators between
    ("bad, bad pair" repeats one answer: no choice)."""
    listed = []
    for a, b in zip(spans, spans[1:]):
        if a.value != b.value and _LIST_GAP.match(text[a.end : b.start]):
            listed += [a, b]
    return listed


def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - 120) : start]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    clause = before[breaks[-1].end() :] if breaks else before
    return _NEGATED.search(clause) is not None


def _in_phrase(text: str, span: _Span) -> bool:
    before, after = text[max(0, span.start - 40) : span.start], text[span.end : span.end + 60]
    return bool(
        _RANGE_AFTER.match(after)
        or _RANGE_BEFORE.search(before)
        or _SCALE_BEFORE.search(before)
        or _SCALE_AFTER.match(after)
        or _COUNT_AFTER.match(after)
        or _REFERENCE_BEFORE.search(before)
        or _negated(text, span.start)
    )


def _is_key(text: str, span: _Span) -> bool:
    after = text[span.end : span.end + 4]
    if not _KEY_AFTER.match(after):
        return False
    return after.lstrip()[:1] in ":=" or _LINE_START_BEFORE.search(text[max(0, span.start - 20) : span.start]) is not None


def _number(value: str) -> tuple[float | None, float | None]:
    """(number, denominator) of a score's text: "4 out of 5" -> (4, 5); "4" -> (4, None)."""
    match = _NUMBER.fullmatch(value)
    if match is None:
        return None, None
    return _to_float(match.group("n")), _to_float(match.group("d")) if match.group("d") else None


def _to_float(text: str) -> float:
    return float(_WORDS.get(text.lower(), text))


def _on_scale(value: str) -> int | None:
    """The 1-5 score a score's text gives, or None when it is off that scale."""
    n, denominator = _number(value)
    if n is None or denominator not in (None, 5.0) or n != int(n) or not 1 <= n <= 5:
        return None
    return int(n)


# -- shared ---------------------------------------------------------------------------------------


def _label_of(word: str) -> str:
    word = word.lower()
    return word if word in ("good", "bad") else "needs_refinement"


def _scored(score: int, config: JudgeConfig) -> tuple[str, float]:
    if score >= config.good_min_score:
        return "good", float(score)
    return ("needs_refinement" if score >= config.refine_min_score else "bad"), float(score)


PARSERS: dict[str, Callable[[str, JudgeConfig], Parsed]] = {LEGACY: _parse_v1, CURRENT: _parse_v2}
