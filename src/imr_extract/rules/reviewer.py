"""The expert reviewer's credentials, in either printed form.

Lines form (2016-17): "State(s) of Licensure: California,Arizona" and
"Certification(s)/Specialty: Physical Medicine & Rehabilitation" (which may wrap).
Prose form (older letters): "The expert reviewer is Board Certified in X, has a subspecialty in Y
and is licensed to practice in Z."
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..text import Found, found_text, soft_phrase, split_top_level

LICENSURE_RX = re.compile(r"State\(s\)\s+of\s+Licensure:[ \t]*")
SPECIALTY_RX = re.compile(r"Certification\(s\)\s*/\s*Specialty:[ \t]*")
SUBSPECIALTY_RX = re.compile(r"Sub-?specialty:[ \t]*", re.IGNORECASE)
# A credentials value runs to the next label or heading: it may wrap, but never into these.
_VALUE_END_RX = re.compile(
    r"\n(?=\s*(?:State\(s\)|Certification\(s\)|Sub-?specialty:|CLINICAL CASE SUMMARY"
    r"|IMR ISSUES|[A-Z][A-Z ,()/&]{12,}\n))"
)

# The sentence's own words may be hyphenated across a line break ("subspeci-" / "alty").
PROSE_RX = re.compile(
    r"(?:is|are)\s+"
    + soft_phrase("Board Certified in")
    + r"\s+(?P<spec>[^.]+?)(?:,?\s+(?:has|with)\s+a\s+sub(?:-[ \t]*\n?[ \t\f]*)?"
    + soft_phrase("specialty in")
    + r"\s+(?P<sub>[^.]+?))?,?\s+and\s+(?:is\s+)?"
    + soft_phrase("licensed to practice in")
    + r"\s+(?P<states>[^.]+?)\s*\.",
    re.IGNORECASE,
)
_AND_RX = re.compile(r",?\s+and\s+")


@dataclass
class ReviewerFound:
    licensure: list[Found[str]] = field(default_factory=list)
    specialty: Found[str] | None = None
    subspecialty: Found[str] | None = None

    def empty(self) -> bool:
        return not (self.licensure or self.specialty or self.subspecialty)


def _value_end(text: str, start: int, limit: int) -> int:
    m = _VALUE_END_RX.search(text, start, limit)
    return m.start() if m else limit


def split_states(text: str, start: int, end: int, rule: str) -> list[Found[str]]:
    """Split a list of states on commas and "and" (``California, Texas and Ohio``)."""
    out: list[Found[str]] = []
    for s, e in split_top_level(text, start, end):
        pos = s
        for m in _AND_RX.finditer(text, s, e):
            f = found_text(text, pos, m.start(), rule)
            if f:
                out.append(f)
            pos = m.end()
        f = found_text(text, pos, e, rule)
        if f:
            out.append(f)
    return out


def find_credential_lines(text: str, start: int, end: int) -> ReviewerFound:
    """The labelled credentials lines of the 2016-17 form, within ``[start, end)``."""
    found = ReviewerFound()
    m = LICENSURE_RX.search(text, start, end)
    if m:
        stop = _value_end(text, m.end(), end)
        found.licensure = split_states(text, m.end(), stop, "reviewer.licensure_line")
    m = SPECIALTY_RX.search(text, start, end)
    if m:
        stop = _value_end(text, m.end(), end)
        found.specialty = found_text(text, m.end(), stop, "reviewer.specialty_line")
    m = SUBSPECIALTY_RX.search(text, start, end)
    if m:
        stop = _value_end(text, m.end(), end)
        found.subspecialty = found_text(text, m.end(), stop, "reviewer.subspecialty_line")
    return found


def find_credential_prose(text: str, start: int, end: int) -> ReviewerFound:
    """Credentials stated in a sentence (the older, double-spaced form)."""
    found = ReviewerFound()
    m = PROSE_RX.search(text, start, end)
    if not m:
        return found
    found.specialty = found_text(text, m.start("spec"), m.end("spec"), "reviewer.specialty_prose")
    if m.group("sub"):
        found.subspecialty = found_text(
            text, m.start("sub"), m.end("sub"), "reviewer.subspecialty_prose"
        )
    found.licensure = split_states(
        text, m.start("states"), m.end("states"), "reviewer.licensure_prose"
    )
    return found
