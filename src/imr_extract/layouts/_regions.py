"""Where the printed sections of a determination letter sit, found by their headings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..rules.items import find_section

HOW_MADE_RX = re.compile(r"HOW\s+THE\s+IMR\s+FINAL\s+DETERMINATION\s+WAS\s+MADE")
# A heading is searched from its literal words, then widened back to its optional first word: a
# pattern that starts with an optional group is tried at every offset of the letter (40 us a
# scan), one that starts with a literal is found by a fast substring search.
SUMMARY_RX = re.compile(r"CASE\s+SUMMARY")
QUALIFICATIONS_RX = re.compile(r"REVIEWER\s+QUALIFICATIONS")
_CLINICAL_BEFORE_RX = re.compile(r"CLINICAL\s+$")


def _heading(text: str, rx: re.Pattern[str], head: re.Pattern[str]) -> tuple[int, int] | None:
    """The span of ``rx``'s first match, widened to the optional ``head`` word printed before."""
    m = rx.search(text)
    if m is None:
        return None
    before = head.search(text, max(0, m.start() - 40), m.start())
    return (before.start() if before else m.start()), m.end()


@dataclass(frozen=True)
class Regions:
    header_end: int  # the header block is [0, header_end)
    credentials: tuple[int, int]
    summary: tuple[int, int]
    decisions: int  # where the decisions section starts (len(text) if it has no heading)


def find_regions(text: str) -> Regions:
    n = len(text)
    section = find_section(text)
    decisions = section[0] if section else n
    how = HOW_MADE_RX.search(text, 0, decisions)
    # Some forms list the items at dispute first and the case summary after them.
    summary = _heading(text, SUMMARY_RX, _CLINICAL_BEFORE_RX)
    header_end = how.start() if how else min(n, 1500, decisions)
    cred_start = how.end() if how else 0
    cred_end = summary[0] if summary and cred_start <= summary[0] < decisions else decisions
    quals = QUALIFICATIONS_RX.search(text)  # "(MEDICAL) REVIEWER QUALIFICATIONS"
    if quals and not how:
        # A form that puts the reviewer's qualifications in their own (late) section.
        cred_start, cred_end = quals.end(), n
    if summary:
        summary_span = (summary[1], decisions if decisions > summary[1] else n)
    else:
        summary_span = (cred_end, decisions)
    return Regions(header_end, (cred_start, cred_end), summary_span, decisions)
