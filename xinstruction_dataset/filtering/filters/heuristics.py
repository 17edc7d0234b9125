"""Web-text heuristics, one small block each: `boilerplate`, `repetition`, `markup`, `mojibake`.

Thresholds are each block's options (its options model, beside it); the defaults were checked
against ../shared/corpora (clean paragraphs in the 10 languages keep >= 99%) and its noise.jsonl
(each bad category is caught).
Ratios in reasons are rounded *up* to two decimals (`markup_ratio:0.24`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Iterable, Literal, Sequence

from pydantic import Field

from ...documents import Document
from ...options import ConfigModel
from .base import FILTERS, BaseFilter, FilterResult
from .text import ceil2, nonblank_lines, paragraphs

# ---------------------------------------------------------------------------------------------
# boilerplate

# Separators of menus and breadcrumbs ("Home | News | Sport", "Habari • Michezo").
_MENU_SEPARATOR = re.compile(r"\s*[|•·›»]\s*")
# Arrows that start "related link" items ("» Headline"); plain "-"/"*" bullets are left alone:
# they also start real lists (recipes, steps), which are good responses.
_LINK_ARROW = re.compile(r"^[»›▶►→]")
# Notices that are never content when they make up a short line: copyright, cookies, sharing,
# "read more"/"related" in English and in the X-Instruction languages.
_NOTICE = re.compile(
    r"©|\bcopyright\b|all rights reserved|\bcookies?\b|privacy policy|terms (?:of (?:use|service)|and conditions)"
    r"|\bread more\b|\brelated (?:articles|links|posts|stories|news)\b|\bshare (?:this|on)\b|\bfollow us\b"
    r"|\bsubscribe\b|\bsign (?:in|up)\b|\blog ?in\b|skip to (?:main )?content|back to top|\bURL source\b"
    r"|kaikki oikeudet pidätetään|\beväste"  # fi
    r"|\bhak cipta\b|\bbaca juga\b|\bberita terkait\b|kebijakan privasi"  # id
    r"|tüm hakları saklıdır|\bçerez|gizlilik politikası|ilgili haberler"  # tr
    r"|\bbản quyền\b|\btin liên quan\b|\bxem thêm\b|chính sách bảo mật"  # vi
    r"|haki zote zimehifadhiwa|shiriki habari hii|habari zinazohusiana"  # sw
    r"|สงวนลิขสิทธิ์|ข่าวที่เกี่ยวข้อง|อ่านเพิ่มเติม"  # th
    r"|सर्वाधिकार सुरक्षित|गोपनीयता नीति|यह भी पढ़ें|संबंधित खबरें"  # hi
    r"|সর্বস্বত্ব সংরক্ষিত|আরও পড়ুন|সম্পর্কিত খবর"  # bn
    r"|அனைத்து உரிமைகளும்|தொடர்புடைய செய்திகள்"  # ta
    r"|جملہ حقوق محفوظ|مزید پڑھیں",  # ur
    re.IGNORECASE,
)
_SOCIAL = re.compile(r"\b(?:facebook|twitter|whatsapp|instagram|youtube|telegram|linkedin|pinterest|tiktok)\b", re.IGNORECASE)
# A full stop in the scripts we serve (Latin/Arabic-script ".", Devanagari/Bengali danda, Urdu
# full stop, ellipsis). Headlines end in "?"/"!" or nothing; hard-wrapped prose (Thai news wraps
# at ~100 characters, and Thai has no full stop) also ends in nothing, hence the rule below.
_SENTENCE_END = re.compile(r"[.।॥۔…]['\"”’»)\]]*$")


Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
Chars = Annotated[int, Field(ge=1)]


class BoilerplateOptions(ConfigModel):
    """`{type: boilerplate, ...}`: BoilerplateFilter's options, checked when the recipe loads."""

    type: Literal["boilerplate"] = "boilerplate"
    max_boilerplate_ratio: Ratio = 0.5
    min_menu_items: Annotated[int, Field(ge=2)] = 3
    max_menu_item_chars: Chars = 80
    max_notice_chars: Chars = 200
    max_item_chars: Chars = 120


@FILTERS.register(BoilerplateOptions)
class BoilerplateFilter(BaseFilter):
    """Reject pages made of navigation: menus, related-link lists, copyright/cookie/share lines.

    A line is *boilerplate* when it is a menu (>= `min_menu_items` short items between `|`, `•`,
    `·`, `›`, `»`), a related-link item (starts with an arrow such as `»`), or a short notice
    (copyright, cookies, share buttons, "read more"...; at most `max_notice_chars`). Once a
    page has one such line, its short lines without a full stop (<= `max_item_chars`) count too:
    they are the headlines of the link list. Without one they do not, so a headline above an
    article or hard-wrapped Thai prose is never mistaken for navigation.

    Reject when boilerplate lines hold more than `max_boilerplate_ratio` (0.5) of the
    characters: `boilerplate_ratio:0.97`. Clean paragraphs of the 10 languages score <= 0.28.
    Metadata: `boilerplate_ratio`.
    """

    options: BoilerplateOptions

    def is_menu(self, line: str) -> bool:
        items = [item for item in _MENU_SEPARATOR.split(line) if item]
        return len(items) >= self.options.min_menu_items and len(line) / len(items) <= self.options.max_menu_item_chars

    def is_notice(self, line: str) -> bool:
        return len(line) <= self.options.max_notice_chars and (_NOTICE.search(line) is not None or len(_SOCIAL.findall(line)) >= 2)

    def is_navigation(self, line: str) -> bool:
        return _LINK_ARROW.match(line) is not None or self.is_menu(line) or self.is_notice(line)

    def is_list_item(self, line: str) -> bool:
        return len(line) <= self.options.max_item_chars and _SENTENCE_END.search(line) is None

    def boilerplate_ratio(self, text: str) -> float:
        lines = nonblank_lines(text)
        navigation = [self.is_navigation(line) for line in lines]
        if not any(navigation):
            return 0.0
        boilerplate = sum(len(line) for line, nav in zip(lines, navigation) if nav or self.is_list_item(line))
        return boilerplate / sum(map(len, lines))

    def filter(self, doc: Document) -> FilterResult:
        ratio = self.boilerplate_ratio(doc.text)
        doc.metadata["boilerplate_ratio"] = round(ratio, 4)
        if ratio > self.options.max_boilerplate_ratio:
            return False, f"boilerplate_ratio:{ceil2(ratio)}"
        return True


# ---------------------------------------------------------------------------------------------
# repetition


def duplicate_fractions(items: Sequence[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats)."""
    seen: set[str] = set()
    repeats = repeated_chars = 0
    for item in items:
        if item in seen:
            repeats += 1
            repeated_chars += len(item)
        seen.add(item)
    total_chars = sum(map(len, items))
    return (repeats / len(items), repeated_chars / total_chars) if items and total_chars else (0.0, 0.0)


class RepeatedNgrams:
    """Where the word n-grams of a text repeat, for n = 1, 2, ... as asked.

    An n-gram occurs twice only where its (n-1)-gram prefix does, so each n looks only at the
    start positions of the repeated (n-1)-grams: on clean text few remain past n = 3, and the
    ten n-gram measures of the repetition block cost about what one full pass did."""

    def __init__(self, words: Sequence[str]):
        self.words = words
        self.total_chars = sum(map(len, words))
        self._groups: dict[int, list[list[int]]] = {}

    def groups(self, n: int) -> list[list[int]]:
        """Start positions of each n-gram seen more than once (ascending), the n-grams in order
        of first occurrence."""
        if n not in self._groups:
            words = self.words
            if n == 1:
                counts = Counter(words)
                starts: Iterable[int] = (i for i, word in enumerate(words) if counts[word] > 1)
            else:
                starts = sorted(i for group in self.groups(n - 1) for i in group if i + n <= len(words))
            by_gram: dict[tuple[str, ...], list[int]] = {}
            for i in starts:
                by_gram.setdefault(tuple(words[i : i + n]), []).append(i)
            self._groups[n] = [group for group in by_gram.values() if len(group) > 1]
        return self._groups[n]

    def top_char_fraction(self, n: int) -> float:
        """Characters covered by the most frequent n-gram (the first seen among equals), over all
        word characters; 0 when no n-gram repeats."""
        groups = self.groups(n)
        if not groups:
            return 0.0
        top = max(groups, key=len)  # max keeps the first of equals, as Counter.most_common does
        return len(top) * sum(map(len, self.words[top[0] : top[0] + n])) / self.total_chars

    def duplicated_char_fraction(self, n: int) -> float:
        """Characters inside n-grams seen earlier in the text (each word counted once)."""
        covered: set[int] = set()
        for group in self.groups(n):
            for start in group[1:]:
                covered.update(range(start, start + n))
        return sum(len(self.words[i]) for i in covered) / self.total_chars if self.total_chars else 0.0


def top_ngram_char_fraction(words: Sequence[str], n: int) -> float:
    """Characters covered by the most frequent word n-gram, over all word characters."""
    return RepeatedNgrams(words).top_char_fraction(n)


def duplicated_ngram_char_fraction(words: Sequence[str], n: int) -> float:
    """Characters inside word n-grams seen earlier in the text (each word counted once)."""
    return RepeatedNgrams(words).duplicated_char_fraction(n)


# The n-gram limits a block uses when the recipe leaves them out (or empty); see RepetitionFilter.
# Not the fields' defaults: the recipe's None is what the run fingerprint has always recorded.
DEFAULT_TOP_NGRAM_CHARS: dict[int, float] = {2: 0.25, 3: 0.22, 4: 0.20}
DEFAULT_DUPLICATED_NGRAM_CHARS: dict[int, float] = {5: 0.40, 6: 0.39, 7: 0.38, 8: 0.37, 9: 0.36, 10: 0.35}


class RepetitionOptions(ConfigModel):
    """`{type: repetition, ...}`: RepetitionFilter's options; n-gram limits map n (>= 1) to a ratio
    (None: DEFAULT_TOP_NGRAM_CHARS, DEFAULT_DUPLICATED_NGRAM_CHARS)."""

    type: Literal["repetition"] = "repetition"
    max_duplicate_line_fraction: Ratio = 0.3
    max_duplicate_line_chars: Ratio = 0.2
    max_duplicate_paragraph_fraction: Ratio = 0.3
    max_duplicate_paragraph_chars: Ratio = 0.2
    max_top_ngram_chars: dict[Annotated[int, Field(ge=1)], Ratio] | None = None
    max_duplicated_ngram_chars: dict[Annotated[int, Field(ge=1)], Ratio] | None = None


@FILTERS.register(RepetitionOptions)
class RepetitionFilter(BaseFilter):
    """Repeated lines, paragraphs and word n-grams: Gopher's rules (Rae et al. 2021, table A1)
    with n-gram limits lifted for these languages. Words are whitespace tokens, i.e. Vietnamese
    syllables and Thai phrases (Thai has no spaces between words), and news ledes restate their
    headline: Gopher's English limits rejected 16% of the clean Thai paragraphs in
    ../shared/corpora and 1% elsewhere, while a sentence repeated 8 times scores 0.88.

    Options (reject when a measure exceeds its limit):
        max_duplicate_line_fraction 0.3, max_duplicate_line_chars 0.2: lines that repeat an
            earlier line, by count and by characters;
        max_duplicate_paragraph_fraction 0.3, max_duplicate_paragraph_chars 0.2: the same for
            blank-line-separated paragraphs;
        max_top_ngram_chars {2: 0.25, 3: 0.22, 4: 0.20}: characters covered by the most
            frequent n-gram (Gopher: 0.20/0.18/0.16; clean paragraphs here reach 0.19);
        max_duplicated_ngram_chars {5: 0.40 ... 10: 0.35}: characters inside repeated n-grams
            (Gopher: 0.15 ... 0.10; clean Thai reaches 0.39); this catches a sentence repeated
            inside one line, which the line rules cannot see.
    Reasons: `duplicate_lines:0.45`, `duplicate_line_chars:0.31`, `duplicate_paragraphs:...`,
    `duplicate_paragraph_chars:...`, `top_2gram_chars:0.26`, `duplicated_5gram_chars:0.88`.
    """

    options: RepetitionOptions

    def __init__(self, options: RepetitionOptions | None = None):
        super().__init__(options)
        # Resolved once: the block's options name the limits it applies (and config() shows them).
        self.options = self.options.model_copy(
            update={
                "max_top_ngram_chars": dict(self.options.max_top_ngram_chars or DEFAULT_TOP_NGRAM_CHARS),
                "max_duplicated_ngram_chars": dict(self.options.max_duplicated_ngram_chars or DEFAULT_DUPLICATED_NGRAM_CHARS),
            }
        )

    def filter(self, doc: Document) -> FilterResult:
        for unit, items in (("line", nonblank_lines(doc.text)), ("paragraph", paragraphs(doc.text))):
            fraction, chars = duplicate_fractions(items)
            if fraction > getattr(self.options, f"max_duplicate_{unit}_fraction"):
                return False, f"duplicate_{unit}s:{ceil2(fraction)}"
            if chars > getattr(self.options, f"max_duplicate_{unit}_chars"):
                return False, f"duplicate_{unit}_chars:{ceil2(chars)}"
        repeats = RepeatedNgrams(doc.text.split())
        for n, limit in self.options.max_top_ngram_chars.items():
            share = repeats.top_char_fraction(n)
            if share > limit:
                return False, f"top_{n}gram_chars:{ceil2(share)}"
        for n, limit in self.options.max_duplicated_ngram_chars.items():
            share = repeats.duplicated_char_fraction(n)
            if share > limit:
                return False, f"duplicated_{n}gram_chars:{ceil2(share)}"
        return True


# ---------------------------------------------------------------------------------------------
# markup

_SCRIPT_OR_STYLE = re.compile(r"<(?:script|style)\b", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,500}>|<!--.*?-->|<![A-Za-z][^<>]{0,200}>", re.DOTALL)
_ENTITY = re.compile(r"&(?:[A-Za-z]{2,8}|#\d{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def covered_ratio(pattern: re.Pattern, text: str) -> float:
    """Share of the characters of `text` inside matches of `pattern`."""
    return sum(len(m) for m in pattern.findall(text)) / len(text) if text else 0.0


class MarkupOptions(ConfigModel):
    """`{type: markup, ...}`: MarkupFilter's options, checked when the recipe loads."""

    type: Literal["markup"] = "markup"
    reject_script_style: bool = True
    max_markup_ratio: Ratio = 0.05
    max_url_ratio: Ratio = 0.2


@FILTERS.register(MarkupOptions)
class MarkupFilter(BaseFilter):
    """Reject text still carrying its HTML, or made of links.

    Options:
        reject_script_style: True: any `<script`/`<style` means the extraction failed
            (reason `script_or_style`).
        max_markup_ratio: 0.05 of the characters in tags and entities (`markup_ratio:0.24`).
            Clean paragraphs score <= 0.003, HTML-wrapped ones >= 0.1.
        max_url_ratio: 0.2 of the characters in URLs (`url_ratio:0.35`); Thai government news
            that ends with its source URL scores up to 0.13.
    Metadata: `markup_ratio`, `url_ratio`.
    """

    options: MarkupOptions

    def filter(self, doc: Document) -> FilterResult:
        text = doc.text
        if self.options.reject_script_style and _SCRIPT_OR_STYLE.search(text):
            return False, "script_or_style"
        markup = covered_ratio(_TAG, text) + covered_ratio(_ENTITY, text)
        urls = covered_ratio(_URL, text)
        doc.metadata.update(markup_ratio=round(markup, 4), url_ratio=round(urls, 4))
        if markup > self.options.max_markup_ratio:
            return False, f"markup_ratio:{ceil2(markup)}"
        if urls > self.options.max_url_ratio:
            return False, f"url_ratio:{ceil2(urls)}"
        return True


# ---------------------------------------------------------------------------------------------
# mojibake

# UTF-8 read as cp1252 (or latin-1): each multi-byte character becomes a lead character
# (Â-ß for 2 bytes, à-ï for 3, ð-ô for 4) followed by continuation characters, i.e. bytes
# 0x80-0xBF as cp1252 shows them (€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ and U+00A0-U+00BF; undefined cp1252
# bytes appear as C1 controls or U+FFFD). Requiring the full sequence keeps Finnish `ä”` and
# French `à «` out: a 3-byte lead needs two continuation characters.
_CONTINUATION = "\u00a0-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u017e\u0178\u0080-\u009f\ufffd"
_MOJIBAKE = re.compile(f"[\u00c2-\u00df][{_CONTINUATION}]|[\u00e0-\u00ef][{_CONTINUATION}]{{2}}|[\u00f0-\u00f4][{_CONTINUATION}]{{3}}")
_REPLACEMENT = re.compile("\ufffd")
# C0 controls except tab/newline/carriage return/form feed, DEL, and C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


class MojibakeOptions(ConfigModel):
    """`{type: mojibake, ...}`: MojibakeFilter's options, checked when the recipe loads."""

    type: Literal["mojibake"] = "mojibake"
    max_mojibake_ratio: Ratio = 0.01
    max_replacement_ratio: Ratio = 0.002
    max_control_ratio: Ratio = 0.0


@FILTERS.register(MojibakeOptions)
class MojibakeFilter(BaseFilter):
    """Reject text damaged by a wrong decoding.

    Options (shares of the non-space characters; reject above):
        max_mojibake_ratio: 0.01 in UTF-8-read-as-cp1252 sequences (`Ã¤`, `à¤•`, `Ø§`).
            A stray sequence in a long page passes; a decoded-wrong page scores 0.1-1.0.
        max_replacement_ratio: 0.002 U+FFFD characters (bytes that could not be decoded).
        max_control_ratio: 0.0: any control character (binary junk, C1 codes).
    Reasons: `mojibake:0.21`, `replacement_chars:0.03`, `control_chars:0.01`.
    """

    options: MojibakeOptions

    def __init__(self, options: MojibakeOptions | None = None):
        super().__init__(options)
        self.limits = {
            "mojibake": (_MOJIBAKE, self.options.max_mojibake_ratio),
            "replacement_chars": (_REPLACEMENT, self.options.max_replacement_ratio),
            "control_chars": (_CONTROL, self.options.max_control_ratio),
        }

    def filter(self, doc: Document) -> FilterResult:
        visible = len(doc.text) - sum(map(doc.text.count, " \t\n\r"))
        if not visible:
            return True  # nothing to damage; emptiness is the length block's call
        for reason, (pattern, limit) in self.limits.items():
            ratio = sum(len(m) for m in pattern.findall(doc.text)) / visible
            if ratio > limit:
                return False, f"{reason}:{ceil2(ratio)}"
        return True
