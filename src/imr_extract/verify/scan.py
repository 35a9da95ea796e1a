"""Fast scans for patterns that do not start with a literal: search only near an anchor word.

Invariant: ``near`` finds exactly the matches ``rx.finditer`` would find whose span contains the
anchor word (found case-insensitively), as long as every match of ``rx`` contains the anchor and
is no longer than ``reach`` characters on either side of it. A pattern that opens with an
alternation or a case-insensitive word is tried at every offset of a letter by the regex engine
(tens of microseconds a scan); a substring search for its anchor word is not.
"""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=4)  # the letter at hand; a string's hash is computed once
def lowered(text: str) -> str:
    """``text`` in lower case, offsets unchanged (only ASCII-safe case mapping is relied on)."""
    low = text.lower()
    return low if len(low) == len(text) else text  # a rare mapping that changes length


def near(
    rx: re.Pattern[str], text: str, anchor: str, reach: int = 200, then: str = ""
) -> list[re.Match[str]]:
    """The non-overlapping matches of ``rx`` in ``text`` that hold ``anchor`` (lower case).

    ``then``: a string every match holds after its anchor (a label's colon): an anchor with no
    ``then`` within ``reach`` after it is not tried.
    """
    low = lowered(text)
    out: list[re.Match[str]] = []
    last_end = 0
    pos = low.find(anchor)
    while pos >= 0:
        if then and low.find(then, pos, pos + len(anchor) + reach) < 0:
            pos = low.find(anchor, pos + 1)
            continue
        start = max(last_end, pos - reach)
        m = rx.search(text, start, min(len(text), pos + len(anchor) + reach))
        while m is not None and m.end() <= pos:
            m = rx.search(text, m.end(), min(len(text), pos + len(anchor) + reach))
        if m is not None and m.start() <= pos:
            out.append(m)
            last_end = m.end()
            pos = low.find(anchor, max(m.end(), pos + 1))
        else:
            pos = low.find(anchor, pos + 1)
    return out


@functools.lru_cache(maxsize=32)
def _ending(rx: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(f"(?:{rx.pattern})\\Z", rx.flags)


def labels_at_colons(
    rx: re.Pattern[str], text: str, last_words: frozenset[str], reach: int = 120
) -> list[tuple[int, int]]:
    """Spans of the matches of ``rx`` (a label that ends with a colon) in ``text``: tried only
    at colons whose preceding word (lower case) is in ``last_words``."""
    end_rx = _ending(rx)
    out: list[tuple[int, int]] = []
    last_end = 0
    colon = text.find(":")
    while colon >= 0:
        head = text[max(last_end, colon - 30) : colon].split()
        if head and head[-1].lower() in last_words:
            m = end_rx.search(text, max(last_end, colon - reach), colon + 1)
            if m is not None:
                out.append(m.span())
                last_end = m.end()
        colon = text.find(":", colon + 1)
    return out
