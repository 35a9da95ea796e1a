"""Find where a value stands in a letter: exact, then whitespace-normalised, then case-folded.

Used to ground values that did not come with offsets (LLM output, values read from another
result file). A value that cannot be found is reported as not found, never placed by guesswork.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .schema import MatchKind


@dataclass(frozen=True, slots=True)
class Location:
    start: int
    end: int
    match: MatchKind


@lru_cache(maxsize=4096)
def _words_rx(value: str, flags: int) -> re.Pattern[str] | None:
    words = value.split()
    if not words:
        return None
    # Words may be split by any whitespace (line breaks, page breaks); a printed end-of-line
    # hyphen folds to "- " in values, so "re- examination" matches "re-\nexamination".
    body = r"\s+".join(re.escape(w) for w in words)
    # A value never starts or ends inside a word: "male" is not in "female", "MTUS" not in
    # "Non-MTUS", page "46" not in "2046".
    head = r"(?<![\w-])" if re.match(r"\w", words[0]) else ""
    tail = r"(?!\w)" if re.search(r"\w$", words[-1]) else ""
    return re.compile(head + body + tail, flags)


def _search(text: str, value: str, start: int, end: int, flags: int) -> Location | None:
    rx = _words_rx(value, flags)
    m = rx.search(text, start, end) if rx is not None else None
    if m is None:
        return None
    if flags:
        kind = MatchKind.FUZZY  # same words, other case: close, but not what is printed
    else:
        kind = MatchKind.EXACT if m.group() == value else MatchKind.NORMALISED
    return Location(m.start(), m.end(), kind)


def locate(
    text: str, value: str, start: int = 0, end: int | None = None, *, fuzzy: bool = True
) -> Location | None:
    """The first place in ``text[start:end]`` that holds ``value``, or None.

    Exact and whitespace-normalised matches first; with ``fuzzy``, a case-insensitive match.
    """
    end = len(text) if end is None else end
    value = value.strip()
    if not value:
        return None
    for flags in (0, re.IGNORECASE) if fuzzy else (0,):
        loc = _search(text, value, start, end, flags)
        if loc:
            return loc
    return None


def locate_near(
    text: str, value: str, regions: list[tuple[int, int]], *, fuzzy: bool = True
) -> Location | None:
    """``locate`` in each region in turn (most specific first), then in the whole text.

    Every region is searched for the printed form before any is searched case-insensitively, so
    a value is never placed on a lower-case echo of it in a rationale when the letter prints it.
    """
    value = value.strip()
    if not value:
        return None
    spans = [(s, e) for s, e in regions if 0 <= s < e] + [(0, len(text))]
    for flags in (0, re.IGNORECASE) if fuzzy else (0,):
        for s, e in spans:
            loc = _search(text, value, s, e, flags)
            if loc:
                return loc
    return None
