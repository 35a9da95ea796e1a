"""The decisions section -> one ``ItemFound`` per disputed item.

Each item is printed as: the request (wrapped over lines, possibly across a page break), a colon
and the decision word ("...: Upheld", "... is: Overturned", or the word alone on a line below,
after any blank lines: text extracted double-spaced puts one between),
then the two guideline lines and "Decision rationale:" running up to the next item's request.

The hard part is where a request starts, since it follows the previous rationale with no label.
Walking back from the decision line, a request extends over every line until one that ends a
sentence (".", ":"), or a blank line in single-spaced text; a colon that leaves only a date below
it is a label inside the request ("..., DOS:" / "11/11/2016: Upheld"), not its end. A partly
authorised request spans sentences ("X was the original request. Y was authorized by the Claims
Administrator. The remaining IMR eligible portion of the original request, Z is: Upheld"), so the
walk goes on until the sentence that names the original request is included.

Invariant: items are read only from the decisions section, and only where the form's item
structure stands: a decision line is an item when one of the item's labels (a guideline line or
its rationale) follows it within ``LABEL_REACH`` characters with no sentence between. A line
shaped like an item anywhere else (in the case summary, inside a rationale, under a second
copy of the decisions heading) is not obeyed: it is left out, and a warning names it. (Where no
decision line of a letter has such a label, the form prints none and every one is read.)
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..forms import (
    CA_LABEL_RX,
    DECISIONS_HEADING_RX,
    IMR_LABEL_RX,
    ITEM_LABELS_UNSPACED,
    NOTICE_DECISION_OPENING,
    RATIONALE_LABEL_RX,
    SECTION_INTRO_RX,
    SECTION_RX,
)
from ..schema import Decision
from ..text import Found, found_text, soft_phrase, trim_span
from .guidelines import GuidelineFound, parse_guideline

# The word may stand on the colon's line or alone on a line below, after blank lines (text
# extracted double-spaced puts one between, or three where the letter itself had one).
DECISION_RX = re.compile(r":(?:[ \t\f]*\n)*[ \t\f]*(?P<word>Upheld|Overturned)\b[ \t]*(?=\n|$)")
DECISION_ANYCASE_RX = re.compile(
    r":(?:[ \t\f]*\n)*[ \t\f]*(?P<word>Upheld|Overturned)\b[ \t.]*(?=\n|$)", re.IGNORECASE
)
# A form's labels around a request: "Item 1: X" before it, "Determination" on the line after it
# (its colon is the decision's: "X\nDetermination: Upheld").
_ITEM_LABEL_RX = re.compile(r"(?:Item|Issue|Request)\s*#?\s*\d{1,3}\s*[:.)][ \t]*")
_DETERMINATION_LABEL_RX = re.compile(r"\n[ \t]*(?:Determination|Decision)[ \t]*\Z")

_BARE_DATE_RX = re.compile(r"\s*\d{1,2}[/-]\d{1,2}[/-]\d{2,4}(?:\s+is)?\s*")
_TRAILING_IS_RX = re.compile(r"\s+is\s*$")
_WAS_ORIGINAL_RX = re.compile(soft_phrase("was the original request"), re.IGNORECASE)
_MENTIONS_ORIGINAL_RX = re.compile(soft_phrase("original request"), re.IGNORECASE)
PARTIAL_REMAINING_RX = re.compile(
    r"(?P<orig>.+?)\s+"
    + soft_phrase("was the original request.")
    + r"\s+(?P<auth>.+?)\s+"
    + soft_phrase("was authorized by the Claims Administrator.")
    + r"\s+"
    + soft_phrase("The remaining IMR eligible portion of the original request,")
    + r"\s+(?P<req>.+?)\s*$",
    re.DOTALL | re.IGNORECASE,
)
PARTIAL_LEAVING_RX = re.compile(
    r"(?P<orig>.+?)\s+"
    + soft_phrase("was the original request.")
    + r"\s+"
    + soft_phrase("The Claims Administrator authorized")
    + r"\s+(?P<auth>.+?),\s+"
    + soft_phrase("leaving the original request IMR eligible.")
    + r"\s+"
    + soft_phrase("The original request,")
    + r"\s+(?P<req>.+?)\s*$",
    re.DOTALL | re.IGNORECASE,
)


#: How far after an item's decision word its first label may start.
LABEL_REACH = 400
# A sentence ending between a decision line and a label: the label is not that item's.
_SENTENCE_END_RX = re.compile(r"\w[)\"']?\.(?=\s)")
_ITEM_LABELS = (CA_LABEL_RX, IMR_LABEL_RX, RATIONALE_LABEL_RX)
_DECISION_OPENING_RX = re.compile(NOTICE_DECISION_OPENING, re.IGNORECASE)
# The rest of a decision line, blank lines, then the next line of text.
_NEXT_LINE_RX = re.compile(r"[^\n]*\n(?:[ \t\f]*\n)*([^\n]*)")


@dataclass
class ItemFound:
    request: Found[str]
    decision: Found[Decision]
    original_request: Found[str] | None
    authorized: Found[str] | None
    claims_administrator_guideline: GuidelineFound | None
    imr_guideline: GuidelineFound | None
    rationale: Found[str] | None
    start: int  # where the item's request begins
    end: int  # where the next item begins (or the text ends)


def is_double_spaced(text: str) -> bool:
    """True for the older letters where every printed line is followed by a blank line."""
    lines = text.count("\n") + 1
    blank = len(re.findall(r"\n[ \t\f]*(?=\n)", text))
    return lines > 20 and blank / lines > 0.35


def _line_start(text: str, pos: int, lower: int) -> int:
    return max(text.rfind("\n", lower, pos) + 1, lower)


def _ends_block(line: str, double_spaced: bool) -> bool | None:
    """Whether the line above a request ends it: True, False, or None to skip (blank)."""
    stripped = line.strip()
    if not stripped:
        return None if double_spaced else True
    return stripped.endswith((".", ":"))


def request_block_start(text: str, lower: int, colon: int, double_spaced: bool) -> int:
    """Where the request that ends at ``colon`` begins (never before ``lower``)."""
    pos = _line_start(text, colon, lower)

    def walk(pos: int, force: bool) -> int:
        while pos > lower:
            prev_start = _line_start(text, pos - 1, lower)
            verdict = _ends_block(text[prev_start : pos - 1], double_spaced)
            if verdict and not force:
                break
            pos = prev_start
            if force and _WAS_ORIGINAL_RX.search(text, pos, colon):
                break
        return pos

    pos = walk(pos, force=False)
    # A request is never a bare date: the colon that ended the line above was a label inside
    # the request ("... #1 box, DOS:" / "11/11/2016: Upheld"), so the request goes on above it.
    while pos > lower and _BARE_DATE_RX.fullmatch(text, pos, colon):
        above = _line_start(text, pos - 1, lower)
        while double_spaced and above > lower and not text[above : pos - 1].strip():
            pos, above = above, _line_start(text, above - 1, lower)
        pos = walk(above, force=False)
    block = text[pos:colon]
    if _MENTIONS_ORIGINAL_RX.search(block) and not _WAS_ORIGINAL_RX.search(block):
        extended = walk(pos, force=True)
        if _WAS_ORIGINAL_RX.search(text, extended, colon):
            pos = walk(extended, force=False)
    return pos


def parse_request(
    text: str, start: int, end: int
) -> tuple[Found[str] | None, Found[str] | None, Found[str] | None]:
    """(request, original_request, authorized) from the text before the decision's colon."""
    m = _DETERMINATION_LABEL_RX.search(text, start, end) or _TRAILING_IS_RX.search(text, start, end)
    if m:
        end = m.start()
    start, end = trim_span(text, start, end)
    label = _ITEM_LABEL_RX.match(text, start, end)
    if label:
        start = label.end()
    for rx, rule in (
        (PARTIAL_REMAINING_RX, "item.partial_remaining"),
        (PARTIAL_LEAVING_RX, "item.partial_leaving"),
    ):
        pm = rx.match(text, start, end)
        if pm:
            return (
                found_text(text, pm.start("req"), pm.end("req"), rule),
                found_text(text, pm.start("orig"), pm.end("orig"), rule),
                found_text(text, pm.start("auth"), pm.end("auth"), rule),
            )
    return found_text(text, start, end, "item.request"), None, None


@functools.lru_cache(maxsize=4)  # the letter at hand; a larger cache would pin large texts
def find_section(text: str) -> tuple[int, int] | None:
    """(heading start, where items may start) of the decisions section, if it has a heading.

    Cached: the rules and then the checks ask it of the same text several times (a string's
    hash is computed once and kept by the string, so a hit costs no scan).
    """
    m = SECTION_RX.search(text)
    if not m:
        return None
    intro = SECTION_INTRO_RX.search(text, m.end(), m.end() + 400)
    return m.start(), (intro.end() if intro else m.end())


def _last_label_end(text: str, start: int, end: int) -> int:
    """End of the last item label (rationale, else guideline lines) in ``[start, end)``."""
    for label in (RATIONALE_LABEL_RX, IMR_LABEL_RX, CA_LABEL_RX):
        m = label.search(text, start, end)
        if m:
            return m.end()
    return start


def find_items(text: str, *, any_case: bool = False, start: int | None = None) -> list[ItemFound]:
    """Every decided item, in the letter's order (``find_decided_items`` without warnings)."""
    return find_decided_items(text, any_case=any_case, start=start)[0]


def _labelled(text: str, word_end: int, limit: int) -> bool:
    """Whether an item label follows the decision word ending at ``word_end`` (before
    ``limit``, the next decision line), close and with no sentence between."""
    stop = min(limit, word_end + LABEL_REACH)
    first = min(
        (m.start() for rx in _ITEM_LABELS if (m := rx.search(text, word_end, stop))), default=None
    )
    if first is not None and _SENTENCE_END_RX.search(text, word_end, first) is None:
        return True
    # A label whose words a tool split ("gui deline:") on the first line of text below.
    m = _NEXT_LINE_RX.match(text, word_end, stop)
    squeezed = re.sub(r"\s+", "", m.group(1)) if m else ""
    return any(rx.match(squeezed) for rx in ITEM_LABELS_UNSPACED)


def _excerpt(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    return " ".join(text[max(line_start, start - 60) : end].split())[-80:]


def find_decided_items(
    text: str, *, any_case: bool = False, start: int | None = None
) -> tuple[list[ItemFound], list[str]]:
    """Every decided item in the decisions section (from ``start``, else after its heading),
    in the letter's order, and a warning for each item-shaped line not read as an item."""
    warnings: list[str] = []
    section = find_section(text)
    lower = start if start is not None else section[1] if section else 0
    rx = DECISION_ANYCASE_RX if any_case else DECISION_RX
    headings = [m.start() for m in DECISIONS_HEADING_RX.finditer(text)]
    if len(headings) > 1:
        warnings.append(
            f"the decisions heading is printed {len(headings)} times (at offsets "
            f"{', '.join(map(str, headings[:5]))}): a letter prints it once; items are read "
            "only where an item's guideline and rationale lines follow them"
        )
    if section is not None or start is not None:
        for m in rx.finditer(text, 0, lower):
            warnings.append(
                f"an item-shaped line at offset {m.start()} "
                f"({_excerpt(text, m.start(), m.end())!r}) lies outside the decisions section: "
                "not read as an item"
            )
    found = list(rx.finditer(text, lower))
    limits = [n.start() for n in found[1:]] + [len(text)] if found else []
    labelled = [_labelled(text, m.end(), limit) for m, limit in zip(found, limits, strict=True)]
    if any(labelled):
        markers = []
        for m, ok in zip(found, labelled, strict=True):
            if ok:
                markers.append(m)
                continue
            warnings.append(
                f"an item-shaped line at offset {m.start()} "
                f"({_excerpt(text, m.start(), m.end())!r}) has no guideline or rationale line "
                "after it: not read as an item"
            )
    else:
        markers = found
    if not markers:
        return [], warnings
    # A form that lists its decisions as items states none in a sentence: one printed anyway
    # ("MAXIMUS Federal Services, Inc. has determined the request for X is ...") is named.
    for m in _DECISION_OPENING_RX.finditer(text):
        warnings.append(
            f"a decision sentence at offset {m.start()} "
            f"({_excerpt(text, m.start(), m.end() + 40)!r}) where this form lists its decisions "
            "as items: not read"
        )
    double_spaced = is_double_spaced(text)

    # First pass: where each item's request starts. An item cannot start before the previous
    # item's guideline lines and rationale label, which is what the lower bound protects.
    starts: list[int] = []
    bound = lower
    for i, m in enumerate(markers):
        starts.append(request_block_start(text, bound, m.start(), double_spaced))
        next_marker = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        bound = _last_label_end(text, m.end(), next_marker)

    items: list[ItemFound] = []
    for i, m in enumerate(markers):
        end = starts[i + 1] if i + 1 < len(markers) else len(text)
        request, original, authorized = parse_request(text, starts[i], m.start())
        if request is None:
            continue
        decision = Found(
            Decision(m.group("word").lower()), m.start("word"), m.end("word"), "item.decision"
        )
        ca = CA_LABEL_RX.search(text, m.end(), end)
        imr = IMR_LABEL_RX.search(text, ca.end() if ca else m.end(), end)
        rat = RATIONALE_LABEL_RX.search(text, (imr or ca or m).end(), end)
        rat_start = rat.start() if rat else end
        ca_end = imr.start() if imr else rat_start
        ca_found = parse_guideline(text, ca.end(), ca_end) if ca else None
        imr_found = parse_guideline(text, imr.end(), rat_start) if imr else None
        rationale = found_text(text, rat.end(), end, "item.rationale") if rat else None
        items.append(
            ItemFound(
                request=request,
                decision=decision,
                original_request=original,
                authorized=authorized,
                claims_administrator_guideline=ca_found,
                imr_guideline=imr_found,
                rationale=rationale,
                start=starts[i],
                end=end,
            )
        )
    return items, warnings
