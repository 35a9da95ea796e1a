"""Small, pure helpers on letter text shared by every extractor and by verification.

The folding rule here *is* the gold convention: "values are as printed, with line breaks and runs
of spaces folded to one space, and surrounding punctuation (trailing ``.``, ``:``, ``,``) dropped".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Characters dropped from the end of a value (the gold convention), besides whitespace.
TRAILING_PUNCT = ".:,;"


def fold(s: str) -> str:
    """Collapse every run of whitespace (line breaks and form feeds too) to one space."""
    return " ".join(s.split())


def clean(s: str) -> str:
    """``fold`` and drop trailing punctuation: the printed value as the gold files hold it."""
    return fold(s).rstrip(TRAILING_PUNCT + " ")


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` past surrounding whitespace and trailing punctuation."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in TRAILING_PUNCT):
        end -= 1
    return start, end


def phrase(words: str) -> str:
    """A regex for a literal phrase whose words may be split by any whitespace (line breaks)."""
    return r"\s+".join(re.escape(w) for w in words.split())


#: A word may be broken by a hyphen at a line end ("orig-" / "inal request", "subspeci-" / "alty").
_SOFT_BREAK = r"(?:-[ \t]*\n[ \t\f]*)?"


def soft_phrase(words: str) -> str:
    """``phrase``, and each word may also be broken inside by a line-end hyphen, as a typesetter
    wraps a sentence (for the fixed wordings of a form, never for a value)."""
    return r"\s+".join(_SOFT_BREAK.join(re.escape(c) for c in word) for word in words.split())


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    """A value a rule found, with the half-open span of text that supports it."""

    value: T
    start: int
    end: int
    rule: str


def found_text(text: str, start: int, end: int, rule: str) -> Found[str] | None:
    """A string value for ``text[start:end]``, trimmed and folded; None if nothing is left."""
    s, e = trim_span(text, start, end)
    if s >= e:
        return None
    return Found(fold(text[s:e]), s, e, rule)


def split_top_level(text: str, start: int, end: int, sep: str = ",") -> Iterator[tuple[int, int]]:
    """Spans of ``text[start:end]`` split at ``sep`` outside parentheses and brackets."""
    depth = 0
    piece = start
    for i in range(start, end):
        c = text[i]
        if c in "([":
            depth += 1
        elif c in ")]" and depth:
            depth -= 1
        elif c == sep and depth == 0:
            yield piece, i
            piece = i + 1
    yield piece, end
