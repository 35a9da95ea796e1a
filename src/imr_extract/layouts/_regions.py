"""Where the printed sections of a determination letter sit, found by their headings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..rules.items import find_section

HOW_MADE_RX = re.compile(r"HOW\s+THE\s+IMR\s+FINAL\s+DETERMINATION\s+WAS\s+MADE")
SUMMARY_RX = re.compile(r"(?:CLINICAL\s+)?CASE\s+SUMMARY")
QUALIFICATIONS_RX = re.compile(r"MEDICAL\s+REVIEWER\s+QUALIFICATIONS|REVIEWER\s+QUALIFICATIONS")


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
    summary = SUMMARY_RX.search(text)
    header_end = how.start() if how else min(n, 1500, decisions)
    cred_start = how.end() if how else 0
    cred_end = (
        summary.start() if summary and cred_start <= summary.start() < decisions else decisions
    )
    quals = QUALIFICATIONS_RX.search(text)
    if quals and not how:
        # A form that puts the reviewer's qualifications in their own (late) section.
        cred_start, cred_end = quals.end(), n
    if summary:
        summary_span = (summary.end(), decisions if decisions > summary.end() else n)
    else:
        summary_span = (cred_end, decisions)
    return Regions(header_end, (cred_start, cred_end), summary_span, decisions)
