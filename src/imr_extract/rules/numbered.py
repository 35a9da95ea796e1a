"""Numbered decision sentences and the items they decide (the 2013 notice).

The notice states each decision as a numbered sentence ("1. MAXIMUS Federal Services, Inc. has
determined the request for <request> is not medically necessary and appropriate.", "is medically
necessary and appropriate" for an overturn, "notmedically" as some extractions print it), a list
a letter may print twice; and it sets each item out again under "1. Regarding the request for
<request>:" with its two guideline lines and "Rationale for the Decision:", closed by "The reviewer
has determined that the request for <request> is ... . The Utilization Review decision is upheld."

Invariant: each item number yields one item, however often the letter prints it. Its decision is
the numbered sentence's (where no such sentence is printed, the closing sentences'); its request,
guideline lines and rationale come from its detailed section (the sentence's request where it has
none). Where two printings of one item disagree, a warning names the item; nothing is merged
silently. A decision sentence after the decisions section, or an item heading with no guideline
lines after it, is not read (a warning names it): a case summary cannot add an item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..forms import (
    CA_LABEL_RX,
    IMR_LABEL_RX,
    NOTICE_CLOSING_OPENING_RX,
    NOTICE_DECISION_OPENING,
    NOTICE_ITEM_HEADING_RX,
    NOTICE_NUMBER,
    NOTICE_UR_DECISION_RX,
    RATIONALE_LABEL_RX,
)
from ..schema import Decision
from ..text import Found, fold, found_text
from .guidelines import GuidelineFound, parse_guideline
from .items import ItemFound

#: A request longer than this is taken as a sentence that never reached its conclusion.
MAX_REQUEST_CHARS = 600

# "is not medically necessary and appropriate", "is notmedically necessary", "is medically
# necessary and appropriate" (an overturn).
_CONCLUSION = (
    r"\s+(?P<phrase>is\s+(?:(?P<negation>not)\s*)?medically\s+necessary"
    r"(?:\s+(?:and|or)\s+appropriate)?)"
)
_REQUEST = rf"(?P<request>.{{1,{MAX_REQUEST_CHARS}}}?)"
DECISION_SENTENCE_RX = re.compile(
    NOTICE_NUMBER + NOTICE_DECISION_OPENING + _REQUEST + _CONCLUSION,
    re.MULTILINE | re.DOTALL | re.IGNORECASE,
)
_CLOSING_SENTENCE_RX = re.compile(
    NOTICE_CLOSING_OPENING_RX.pattern + _REQUEST + _CONCLUSION, re.DOTALL | re.IGNORECASE
)
_UR_WORD_RX = re.compile(
    NOTICE_UR_DECISION_RX.pattern + r"(?P<word>upheld|overturned)\b", re.IGNORECASE
)
_OPENING_RX = re.compile(NOTICE_DECISION_OPENING, re.IGNORECASE)
_LINE_END_COLON_RX = re.compile(r":[ \t]*(?:\n|$)")


@dataclass(frozen=True)
class DecisionSentence:
    """One numbered decision sentence: its number, request and decision."""

    number: int
    request: Found[str]
    decision: Found[Decision]  # spans the "is (not) medically necessary" phrase
    start: int
    end: int


@dataclass(frozen=True)
class ItemSection:
    """One item's detailed section, from "N. Regarding the request for" to the next."""

    number: int
    request: Found[str]
    claims_administrator_guideline: GuidelineFound | None
    imr_guideline: GuidelineFound | None
    rationale: Found[str] | None
    decision: Found[Decision] | None  # from its closing sentences, if printed
    start: int
    end: int


def _conclusion(m: re.Match[str], rule: str) -> Found[Decision]:
    value = Decision.UPHELD if m.group("negation") else Decision.OVERTURNED
    return Found(value, m.start("phrase"), m.end("phrase"), rule)


def find_decision_sentences(
    text: str, start: int = 0, end: int | None = None
) -> list[DecisionSentence]:
    """Every numbered decision sentence in ``text[start:end]``, in printed order."""
    out: list[DecisionSentence] = []
    stop = len(text) if end is None else end
    pos = start
    while (m := DECISION_SENTENCE_RX.search(text, pos, stop)) is not None:
        pos = m.end()
        inner = _OPENING_RX.search(text, m.start("request"), m.end("request"))
        if inner is not None:
            # Ran on into the next sentence: this one states no conclusion; the next is read
            # from its own number.
            pos = max(text.rfind("\n", m.start(), inner.start()) + 1, m.start() + 1)
            continue
        request = found_text(text, m.start("request"), m.end("request"), "notice.decision_sentence")
        if request is None:
            continue
        decision = _conclusion(m, "notice.decision_sentence")
        out.append(DecisionSentence(int(m.group("number")), request, decision, m.start(), m.end()))
    return out


def _closing_decision(text: str, start: int, end: int) -> tuple[Found[Decision] | None, int]:
    """The decision the section's closing sentences state, and where they begin (``end`` if
    none is printed). The Utilization Review sentence prints the decision word itself."""
    closing = list(_CLOSING_SENTENCE_RX.finditer(text, start, end))
    ur = list(_UR_WORD_RX.finditer(text, start, end))
    begins = [ms[-1].start() for ms in (closing, ur) if ms]
    if ur:
        word = ur[-1]
        value = Decision(word.group("word").lower())
        decision = Found(value, word.start("word"), word.end("word"), "notice.ur_decision")
    elif closing:
        decision = _conclusion(closing[-1], "notice.closing_sentence")
    else:
        decision = None
    return decision, min(begins) if begins else end


def _request_end(text: str, start: int, labels_at: int, end: int) -> int | None:
    """The colon that ends a section's request: the last before its first label, else the
    first that ends a line."""
    colon = text.rfind(":", start, labels_at)
    if colon >= 0:
        return colon
    m = _LINE_END_COLON_RX.search(text, start, end)
    return m.start() if m else None


def find_item_sections(
    text: str, start: int = 0, end: int | None = None, warnings: list[str] | None = None
) -> list[ItemSection]:
    """Every item's detailed section in ``text[start:end]``, in printed order.

    A section is one where the item's labels stand (a guideline line or its rationale); where
    the letter prints such sections, an item heading with none after it ("3. Regarding the
    request for X:" alone in a case summary) is not a section, and ``warnings`` names it.
    """
    stop = len(text) if end is None else end
    heads = list(NOTICE_ITEM_HEADING_RX.finditer(text, start, stop))
    labelled = []
    for k, h in enumerate(heads):
        sec_end = heads[k + 1].start() if k + 1 < len(heads) else stop
        labelled.append(
            any(rx.search(text, h.end(), sec_end) for rx in (CA_LABEL_RX, IMR_LABEL_RX))
        )
    if any(labelled):
        for h, ok in zip(heads, labelled, strict=True):
            if not ok and warnings is not None:
                line = " ".join(text[h.start() : text.find("\n", h.end())].split())[:80]
                warnings.append(
                    f"an item heading at offset {h.start()} ({line!r}) has no guideline lines "
                    "after it: not read as an item"
                )
        heads = [h for h, ok in zip(heads, labelled, strict=True) if ok]
    out: list[ItemSection] = []
    for k, h in enumerate(heads):
        sec_end = heads[k + 1].start() if k + 1 < len(heads) else stop
        ca = CA_LABEL_RX.search(text, h.end(), sec_end)
        imr = IMR_LABEL_RX.search(text, ca.end() if ca else h.end(), sec_end)
        rat = RATIONALE_LABEL_RX.search(text, (imr or ca or h).end(), sec_end)
        first_label = min((m.start() for m in (ca, imr, rat) if m), default=sec_end)
        colon = _request_end(text, h.end(), first_label, sec_end)
        if colon is None:
            continue
        request = found_text(text, h.end(), colon, "notice.item_heading")
        if request is None:
            continue
        rat_start = rat.start() if rat else sec_end
        ca_end = imr.start() if imr else rat_start
        ca_found = parse_guideline(text, ca.end(), ca_end) if ca else None
        imr_found = parse_guideline(text, imr.end(), rat_start) if imr else None
        decision, closing_at = _closing_decision(text, (rat or imr or ca or h).end(), sec_end)
        rationale = found_text(text, rat.end(), closing_at, "notice.rationale") if rat else None
        out.append(
            ItemSection(
                int(h.group("number")),
                request,
                ca_found,
                imr_found,
                rationale,
                decision,
                h.start(),
                sec_end,
            )
        )
    return out


def _same(a: str, b: str) -> bool:
    return fold(a).casefold() == fold(b).casefold()


def find_numbered_items(
    text: str, sentences_end: int | None = None
) -> tuple[list[ItemFound], list[str]]:
    """One item per number the letter prints, and warnings where two printings disagree.

    Decision sentences are read before ``sentences_end`` only (the notice's decisions section
    ends where the reviewer's qualifications begin): one printed after it, in the case summary
    or a rationale, is named in a warning and not read.
    """
    warnings: list[str] = []
    sentences: dict[int, DecisionSentence] = {}
    stop = len(text) if sentences_end is None else sentences_end
    for s in find_decision_sentences(text, stop):
        line = " ".join(text[s.start : s.end].split())[:80]
        warnings.append(
            f"a numbered decision sentence at offset {s.start} ({line!r}) lies outside the "
            "decisions section: not read"
        )
    for s in find_decision_sentences(text, 0, stop):
        first = sentences.setdefault(s.number, s)
        if first is not s and (
            first.decision.value is not s.decision.value
            or not _same(first.request.value, s.request.value)
        ):
            warnings.append(
                f"item {s.number}: its decision sentence is printed twice and the two differ"
            )
    sections: dict[int, ItemSection] = {}
    for found in find_item_sections(text, warnings=warnings):
        if sections.setdefault(found.number, found) is not found:
            warnings.append(f"item {found.number}: its detailed section is printed twice")

    items: list[ItemFound] = []
    for number in sorted(sentences.keys() | sections.keys()):
        sent, sec = sentences.get(number), sections.get(number)
        decision = _decision(number, sent, sec, warnings)
        if decision is None:
            warnings.append(f"item {number}: no decision is printed for it")
            continue
        if sec is None:
            assert sent is not None
            warnings.append(f"item {number}: no detailed section (guideline lines, rationale)")
            items.append(_item(sent.request, decision, None, sent.start, sent.end))
            continue
        if sent is not None and not _same(sent.request.value, sec.request.value):
            warnings.append(
                f"item {number}: the decision sentence names {sent.request.value[:60]!r}, "
                f"its section {sec.request.value[:60]!r}"
            )
        items.append(_item(sec.request, decision, sec, sec.start, sec.end))
    return items, warnings


def _item(
    request: Found[str], decision: Found[Decision], sec: ItemSection | None, start: int, end: int
) -> ItemFound:
    return ItemFound(
        request=request,
        decision=decision,
        original_request=None,
        authorized=None,
        claims_administrator_guideline=sec.claims_administrator_guideline if sec else None,
        imr_guideline=sec.imr_guideline if sec else None,
        rationale=sec.rationale if sec else None,
        start=start,
        end=end,
    )


def _decision(
    number: int, sent: DecisionSentence | None, sec: ItemSection | None, warnings: list[str]
) -> Found[Decision] | None:
    """The numbered sentence's decision; placed on the decision word of the section's closing
    sentence where that word is printed and says the same."""
    closing = sec.decision if sec is not None else None
    if sent is None:
        return closing
    if closing is None:
        return sent.decision
    if closing.value is not sent.decision.value:
        warnings.append(
            f"item {number}: its decision sentence says {sent.decision.value.value}, "
            f"its section closes with {closing.value.value}"
        )
        return sent.decision
    return closing if closing.rule == "notice.ur_decision" else sent.decision
