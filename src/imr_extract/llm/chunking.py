"""Split a long letter into regions a small model can take, along item boundaries.

Letters of 20+ items exceed a small model's context. The first region holds the header, the
credentials and the case summary with as many whole items as fit; each further region holds whole
items. Regions are document offsets, so whatever the model finds in one is located in the letter.
Without item boundaries (a form the rules cannot split), regions end at paragraph breaks.
"""

from __future__ import annotations

import re

from ..rules.items import find_items

_BREAK_RX = re.compile(r"\.\s*\n|\n\s*\n")


def plan_regions(text: str, max_chars: int) -> list[tuple[int, int]]:
    n = len(text)
    if n <= max_chars:
        return [(0, n)]
    cuts = [item.start for item in find_items(text, any_case=True)]
    if not cuts:
        cuts = [m.end() for m in _BREAK_RX.finditer(text)]
    regions: list[tuple[int, int]] = []
    start = 0
    last_cut = 0
    for cut in [*cuts, n]:
        if cut - start > max_chars and last_cut > start:
            regions.append((start, last_cut))
            start = last_cut
        last_cut = cut
    regions.append((start, n))
    # A single item longer than max_chars stays whole: splitting it would lose its decision.
    return [(s, e) for s, e in regions if e > s]
