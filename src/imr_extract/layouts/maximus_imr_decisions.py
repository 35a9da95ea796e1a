"""The "MAXIMUS FEDERAL SERVICES, INC. / Independent Medical Review" form.

Recognised by its letterhead, "DOCUMENTS REVIEWED" and "IMR DECISION(S) AND RATIONALE(S)"; read by
the generic rules until it has a reader of its own (the LLM path covers what they miss).
"""

from __future__ import annotations

import re

from . import Layout, register
from ._readers import read_generic

# Matched against the lower-cased head (see notice_2013: a literal start is searched fast).
_HEAD_RX = re.compile(r"maximus\s+federal\s+services,?\s+inc")
_IMR_RX = re.compile(r"independent\s+medical\s+review")
_MARKS_RX = re.compile(r"DOCUMENTS\s+REVIEWED|IMR\s+DECISION\(S\)\s+AND\s+RATIONALE\(S\)")


def detect(text: str) -> float:
    head = text[:1500].lower()
    if not _HEAD_RX.search(head):
        return 0.0
    score = 0.5 + (0.2 if _IMR_RX.search(head) else 0.0)
    return score + (0.3 if _MARKS_RX.search(text) else 0.0)


LAYOUT = register(
    Layout(
        name="maximus_imr_decisions",
        description="MAXIMUS letterhead, DOCUMENTS REVIEWED, IMR DECISION(S) AND RATIONALE(S)",
        detect=detect,
        read=read_generic,
        dedicated_reader=False,
    )
)
