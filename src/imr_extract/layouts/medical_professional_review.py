"""The "MEDICAL PROFESSIONAL REVIEW" form.

Sections ISSUE AT DISPUTE / CASE SUMMARY / MEDICAL REVIEWER QUALIFICATIONS. Recognised; read by the
generic rules until it has a reader of its own.
"""

from __future__ import annotations

import re

from . import Layout, register
from ._readers import read_generic

_TITLE_RX = re.compile(r"MEDICAL\s+PROFESSIONAL\s+REVIEW")
_SECTIONS = [
    re.compile(r"ISSUES?\s+AT\s+DISPUTE"),
    re.compile(r"CASE\s+SUMMARY"),
    re.compile(r"MEDICAL\s+REVIEWER\s+QUALIFICATIONS"),
]


def detect(text: str) -> float:
    if not _TITLE_RX.search(text[:3000]):
        return 0.0
    return 0.4 + 0.2 * sum(1 for rx in _SECTIONS if rx.search(text))


LAYOUT = register(
    Layout(
        name="medical_professional_review",
        description="MEDICAL PROFESSIONAL REVIEW: ISSUE AT DISPUTE / CASE SUMMARY / QUALIFICATIONS",
        detect=detect,
        read=read_generic,
        dedicated_reader=False,
    )
)
