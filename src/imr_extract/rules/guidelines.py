"""One guideline line -> cited / outside_mtus / citations, each value with its span.

The three forms of a line:
  * "The Claims Administrator did not cite any medical evidence for its decision."
  * "... based their decision on recommendation(s) outside of the MTUS Guidelines. Decision based
    on Non-MTUS Citation <source>."
  * "Decision based on MTUS <part>[, Section(s): <sections>][, and <part>...]. Decision based on
    Non-MTUS Citation <source>."
MTUS parts are either dated ("Chronic Pain Medical Treatment 2016", "... Guidelines (2009)") or,
in older letters, named "... Guidelines" with sections and pages after the name ("Chronic Pain
Treatment Guidelines Epidural steroid injections ESIs Page(s): 46"). Labels inside a list are
labels ("Page(s): 67, Section(s): NSAIDs"); a Non-MTUS source's closing page list ("..., pg. 607")
is its pages; a section title the guideline vocabulary knows is kept whole, commas included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..schema import CitationKind
from ..text import Found, found_text, soft_phrase, split_top_level, trim_span
from ..vocabulary import is_known_section, vocabulary

NOT_CITED_RX = re.compile(r"did\s+not\s+cite\s+any\s+(?:medical\s+)?evidence", re.IGNORECASE)
OUTSIDE_MTUS_RX = re.compile(r"outside\s+(?:of\s+)?the\s+MTUS", re.IGNORECASE)
# Also with "Decision" hyphenated across a line ("Deci-" / "sion based on").
DECISION_BASED_RX = re.compile(soft_phrase("Decision based on") + r"\s+", re.IGNORECASE)
# "Non-MTUS Citation <source>", and the shorter "Non-MTUS <source>" some letters print.
# "Non-MTUS", also "Non -MTUS" and "Non- MTUS" (a hyphen a tool padded apart).
NON_MTUS_RX = re.compile(r"Non\s*-\s*MTUS(?:\s+Citations?)?:?\s*", re.IGNORECASE)
MTUS_RX = re.compile(r"(?:CA\s+)?MTUS:?\s+")

_PAGE_LABEL = r"(?:Page\(s\)|Pages?|pgs?\.?|pp?\.?)"
_PAGE_LIST = r"\d+(?:\s*[-–]\s*\d+)?(?:\s*(?:,|and|&)\s*\d+(?:\s*[-–]\s*\d+)?)*"
_YEAR = r"\b(?:19|20)\d{2}\b"
# A dated MTUS part, its optional sections, up to the ", and <next dated part>" or the end.
_NEXT_PART = r",\s+and\s+[A-Z][^:]*?" + _YEAR + r"(?:,|\s*$)"
DATED_PART_RX = re.compile(
    r"(?:,\s+and\s+)?(?P<source>[A-Z0-9][^:]*?" + _YEAR + r"\)?)"
    r"(?:,?\s*(?P<sections>(?=(?i:Sections?\(?s?\)?\s*:|" + _PAGE_LABEL + r"\s*:?\s*\d)).*?))?"
    r"(?=" + _NEXT_PART + r"|\s*$)",
    re.DOTALL,
)
# An undated part: the name runs to its first "Guidelines" (plus a parenthesised qualifier).
NAMED_PART_RX = re.compile(
    r"(?P<source>.*?\bGuidelines\b(?:\s*\([^)]*\))?)(?P<rest>.*)$", re.DOTALL | re.IGNORECASE
)
#: A page list closing a text ("..., pg. 607", "Page(s): 46-47", "p 301").
PAGES_RX = re.compile(
    r"(?:^|[,;]\s*|\s+)" + _PAGE_LABEL + r"\s*:?\s*(?P<pages>" + _PAGE_LIST + r")\s*$",
    re.IGNORECASE,
)
#: A label inside a citation's list: "Section(s):", or a page label followed by its numbers.
_LIST_LABEL_RX = re.compile(
    r"(?<![^\s,;(])(?:(?P<section>Sections?\(?s?\)?\s*:)"
    r"|" + _PAGE_LABEL + r"\s*:?\s*(?P<pages>" + _PAGE_LIST + r")(?![\d/.]\d))",
    re.IGNORECASE,
)
_NUMBERED_SECTION_RX = re.compile(r"\d+(?:\.\d+)*\.?\s")
_PAGE_TOKEN_RX = re.compile(r"(\d+)(?:\s*[-–]\s*(\d+))?")

#: A page range wider than this is taken as a misprint, not expanded.
MAX_PAGE_RANGE = 50


@dataclass
class CitationFound:
    kind: Found[CitationKind]
    source: Found[str]
    sections: list[Found[str]] = field(default_factory=list)
    pages: list[Found[int]] = field(default_factory=list)


@dataclass
class GuidelineFound:
    cited: Found[bool]
    outside_mtus: Found[bool]
    citations: list[CitationFound] = field(default_factory=list)
    #: Text in the line that no rule accounted for (a sign of a form the rules do not know).
    leftovers: list[Found[str]] = field(default_factory=list)


def find_pages(text: str, start: int, end: int) -> list[Found[int]]:
    """Pages in a page list ("46-47", "46, 48", "607"), ranges expanded."""
    pages: list[Found[int]] = []
    for m in _PAGE_TOKEN_RX.finditer(text, start, end):
        first = int(m.group(1))
        if m.group(2) is None:
            pages.append(Found(first, m.start(1), m.end(1), "guideline.page"))
            continue
        last = int(m.group(2))
        if not 0 <= last - first <= MAX_PAGE_RANGE:
            pages.append(Found(first, m.start(1), m.end(1), "guideline.page"))
            pages.append(Found(last, m.start(2), m.end(2), "guideline.page"))
            continue
        for n in range(first, last + 1):
            if n == first:
                pages.append(Found(n, m.start(1), m.end(1), "guideline.page_range"))
            elif n == last:
                pages.append(Found(n, m.start(2), m.end(2), "guideline.page_range"))
            else:
                pages.append(Found(n, m.start(), m.end(), "guideline.page_range"))
    return [p for p in pages if p.value >= 1]


_ACRONYM_HEAD_RX = re.compile(r"[A-Z]{2,}s?\s+[a-z]")


def _is_single_word(text: str, start: int, end: int) -> bool:
    return not any(c.isspace() for c in text[start:end])


def _known_run(text: str, pieces: list[tuple[int, int]], i: int) -> int | None:
    """The last piece of the longest run from ``pieces[i]`` that is one known section title
    (commas included), or None if no run from there is."""
    most = vocabulary().max_section_commas
    for j in range(min(len(pieces) - 1, i + most), i - 1, -1):
        if is_known_section(text[pieces[i][0] : pieces[j][1]]):
            return j
    return None


def find_sections(text: str, start: int, end: int) -> list[Found[str]]:
    """Split a sections list at top-level commas, keeping names that contain commas whole.

    A run of pieces the guideline vocabulary knows as one section is one section ("NSAIDs, GI
    symptoms & cardiovascular risk"). Otherwise: "Muscle relaxants (for pain), Cyclobenzaprine
    (Flexeril)" is two sections; "TENS, chronic pain (...)" and "Ultrasound, therapeutic" are
    one (the piece after the comma is lower case); a one-word topic followed by an acronym-led
    subtopic is one (the MTUS naming pattern); "Forearm, Wrist, & Hand" is one (a serial list
    closed by "&"/"and"); in a numbered list ("3.3.9 Opioids ...: ..."), a piece without its
    own number continues the previous section.
    """
    pieces = [trim_span(text, s, e) for s, e in split_top_level(text, start, end)]
    pieces = [(s, e) for s, e in pieces if s < e]
    numbered = bool(pieces) and _NUMBERED_SECTION_RX.match(text, *pieces[0]) is not None
    merged: list[tuple[int, int]] = []
    i = 0
    while i < len(pieces):
        j = _known_run(text, pieces, i)
        if j is not None:
            merged.append((pieces[i][0], pieces[j][1]))
            i = j + 1
            continue
        s, e = pieces[i]
        i += 1
        head = text[s:e]
        if merged and (
            head[0].islower()
            or head.startswith(("&", "and "))
            or (_is_single_word(text, *merged[-1]) and _ACRONYM_HEAD_RX.match(head))
            or (numbered and _NUMBERED_SECTION_RX.match(head) is None)
        ):
            if head.startswith(("&", "and ")):
                # A serial list: fold back every single-word piece before this one.
                while len(merged) >= 2 and _is_single_word(text, *merged[-1]):
                    prev = merged.pop()
                    merged[-1] = (merged[-1][0], prev[1])
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    out = []
    for s, e in merged:
        f = found_text(text, s, e, "guideline.section")
        if f:
            out.append(f)
    return out


def _sections_and_pages(
    text: str, start: int, end: int
) -> tuple[list[Found[str]], list[Found[int]]]:
    """The sections and pages of one citation's list, ``text[start:end]``.

    Every label in the list is read as a label, wherever it stands: "Section(s):" opens
    sections, a page label ("Page(s):", "pages", "pg.", "p") with its numbers gives pages, and
    text before any label (the older forms' "Guidelines <section> Page(s): 46") is a section.
    """
    sections: list[Found[str]] = []
    pages: list[Found[int]] = []
    pos = start
    for m in _LIST_LABEL_RX.finditer(text, start, end):
        sections.extend(find_sections(text, pos, m.start()))
        if m.group("pages") is not None:
            pages.extend(find_pages(text, m.start("pages"), m.end("pages")))
        pos = m.end()
    sections.extend(find_sections(text, pos, end))
    return sections, pages


def _mtus_parts(text: str, start: int, end: int, kind_at: int) -> list[CitationFound] | None:
    """Dated parts covering all of ``[start, end)``, or None if the text is not of that form."""
    parts: list[CitationFound] = []
    pos = start
    while pos < end:
        m = DATED_PART_RX.match(text, pos, end)
        if not m or m.end() == pos:
            return None
        source = found_text(text, m.start("source"), m.end("source"), "guideline.mtus_part")
        if source is None:
            return None
        sections: list[Found[str]] = []
        pages: list[Found[int]] = []
        if m.group("sections") is not None:
            sections, pages = _sections_and_pages(text, m.start("sections"), m.end("sections"))
        kind = Found(CitationKind.MTUS, kind_at, kind_at + 4, "guideline.mtus_part")
        parts.append(CitationFound(kind, source, sections, pages))
        pos = m.end()
    return parts


def _mtus_citations(text: str, start: int, end: int, kind_at: int) -> list[CitationFound]:
    start, end = trim_span(text, start, end)
    parts = _mtus_parts(text, start, end, kind_at)
    if parts is not None:
        return parts
    m = NAMED_PART_RX.match(text, start, end)
    if m:
        source = found_text(text, m.start("source"), m.end("source"), "guideline.mtus_named")
        if source:
            sections, pages = _sections_and_pages(text, m.start("rest"), m.end("rest"))
            kind = Found(CitationKind.MTUS, kind_at, kind_at + 4, "guideline.mtus_named")
            return [CitationFound(kind, source, sections, pages)]
    # Unknown shape: keep the whole text as the source, and any trailing page list.
    pages = []
    m = PAGES_RX.search(text, start, end)
    if m:
        pages = find_pages(text, m.start("pages"), m.end("pages"))
        end = m.start()
    source = found_text(text, start, end, "guideline.mtus_whole")
    if not source:
        return []
    kind = Found(CitationKind.MTUS, kind_at, kind_at + 4, "guideline.mtus_whole")
    return [CitationFound(kind, source, [], pages)]


def parse_guideline(text: str, start: int, end: int) -> GuidelineFound:
    """Parse the value of one guideline line, ``text[start:end]``."""
    start, end = trim_span(text, start, end)
    not_cited = NOT_CITED_RX.search(text, start, end)
    outside = OUTSIDE_MTUS_RX.search(text, start, end)
    citations: list[CitationFound] = []
    leftovers: list[Found[str]] = []

    sentences = list(DECISION_BASED_RX.finditer(text, start, end))
    # Text before the first "Decision based on" that is not one of the known statements.
    head_end = sentences[0].start() if sentences else end
    if not (not_cited or outside) and head_end > start:
        f = found_text(text, start, head_end, "guideline.unrecognised")
        if f:
            leftovers.append(f)
    for i, m in enumerate(sentences):
        s_end = sentences[i + 1].start() if i + 1 < len(sentences) else end
        body_start = m.end()
        non = NON_MTUS_RX.match(text, body_start, s_end)
        if non:
            src_start, src_end = trim_span(text, non.end(), s_end)
            pages: list[Found[int]] = []
            pm = PAGES_RX.search(text, src_start, src_end)
            if pm and pm.start() > src_start:
                # "..., Low Back Disorders, pg. 607": the pages are the citation's, not its name.
                pages = find_pages(text, pm.start("pages"), pm.end("pages"))
                src_end = pm.start()
            source = found_text(text, src_start, src_end, "guideline.non_mtus")
            if source:
                span = trim_span(text, non.start(), non.end())
                kind = Found(CitationKind.NON_MTUS, *span, "guideline.non_mtus")
                citations.append(CitationFound(kind, source, [], pages))
            continue
        mt = MTUS_RX.match(text, body_start, s_end)
        if mt:
            # The kind is read from the word "MTUS" (not from a "CA " before it).
            kind_at = text.index("MTUS", mt.start(), mt.end())
            citations.extend(_mtus_citations(text, mt.end(), s_end, kind_at))
            continue
        # "Decision based on <something else>": keep it, as a non-MTUS source.
        source = found_text(text, body_start, s_end, "guideline.other_source")
        if source:
            kind = Found(CitationKind.NON_MTUS, m.start(), m.end(), "guideline.other_source")
            citations.append(CitationFound(kind, source))

    if not_cited:
        cited = Found(False, not_cited.start(), not_cited.end(), "guideline.not_cited")
    elif citations:
        first = sentences[0]
        cited = Found(True, *trim_span(text, first.start(), first.end()), "guideline.cited")
    elif outside:
        cited = Found(True, outside.start(), outside.end(), "guideline.cited_outside")
    else:
        # Nothing recognisable: no evidence that anything was cited.
        cited = Found(False, start, end, "guideline.cited_none_found")
    if outside:
        outside_f = Found(True, outside.start(), outside.end(), "guideline.outside_mtus")
    else:
        outside_f = Found(False, start, end, "guideline.within_mtus")
    return GuidelineFound(cited, outside_f, citations, leftovers)
