"""The 2013 "Notice of Independent Medical Review Determination" with numbered decisions.

Recognised; read by the generic rules until it has a reader of its own.
"""

from __future__ import annotations

import re

from . import Layout, register
from ._readers import read_generic

# Matched against the lower-cased head: a literal first word is found by a fast substring search,
# where a case-insensitive pattern is tried at every offset.
_TITLE_RX = re.compile(r"notice\s+of\s+independent\s+medical\s+review\s+determination")


def detect(text: str) -> float:
    return 0.9 if _TITLE_RX.search(text[:3000].lower()) else 0.0


LAYOUT = register(
    Layout(
        name="notice_2013",
        description="2013 Notice of Independent Medical Review Determination, numbered decisions",
        detect=detect,
        read=read_generic,
        dedicated_reader=False,
    )
)
