"""The older final determination letter: no header block, credentials stated in prose.

"HOW THE IMR FINAL DETERMINATION WAS MADE ... The physician reviewer is Board Certified in X, has a
subspecialty in Y, and is licensed to practice in Z." Published as double-spaced text.
"""

from __future__ import annotations

import re

from . import Layout, register
from ._readers import read_prose_form

_HOW_RX = re.compile(r"HOW\s+THE\s+IMR\s+FINAL\s+DETERMINATION\s+WAS\s+MADE")
_PROSE_RX = re.compile(r"Board\s+Certified\s+in\s", re.IGNORECASE)
_HEADER_RX = re.compile(r"Case\s+Number:|State\(s\)\s+of\s+Licensure:")


def detect(text: str) -> float:
    if not _HOW_RX.search(text) or _HEADER_RX.search(text):
        return 0.0
    return 0.9 if _PROSE_RX.search(text) else 0.6


LAYOUT = register(
    Layout(
        name="final_determination_prose",
        description="older final determination: no header block, credentials in prose",
        detect=detect,
        read=read_prose_form,
        # No header block: no case number or dates; the case summary may not state age or sex.
        expected_fields=("reviewer.licensure", "reviewer.specialty"),
    )
)
