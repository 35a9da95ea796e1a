"""The rationale's conclusion: is the treatment medically necessary, by the letter's own words?

Invariant: a conclusion is read clause by clause on case-, whitespace- and hyphenation-blind
words, with the negations letters use ("is not", "is determined to not be", "cannot be",
"has not been established", "notmedically", "was/are not", "isn't"); a clause that mixes a
negation with a hedge ("unless", "until", "however") is not read at all (the answer is
``None``: unsure), so a check built on it answers not_applicable rather than cry wolf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Clause boundaries: a sentence's end, a semicolon or colon, a comma (never a blank line: double-
# spaced text has one after every printed line).
_CLAUSE_END_RX = re.compile(r"[.;:,!?](?=\s)")
_NEGATORS = frozenset(
    {"not", "cannot", "cant", "isnt", "arent", "wasnt", "werent", "wont", "never", "no"}
)
_GLUED_NOT_RX = re.compile(r"^not(?:medically|necessary|been|be|established)")
_HEDGES = frozenset({"unless", "until", "however", "but", "although", "though", "except"})
_BEING = frozenset(
    {
        "is", "are", "was", "were", "be", "been", "being", "considered", "deemed", "found",
        "determined", "established", "remains", "remain", "appears", "appear", "seems",
        "isnt", "arent", "wasnt", "werent", "cannot",
    }
)  # fmt: skip
#: Words a conclusion's verb phrase is made of, between its subject and "necessary".
_VERB_PHRASE = frozenset(
    {
        "is", "are", "was", "were", "be", "been", "being", "considered", "deemed", "found",
        "determined", "established", "remains", "remain", "appears", "appear", "seems", "seem",
        "to", "as", "medically", "clinically", "reasonably", "reasonable", "and", "or",
        "appropriate", "therefore", "thus", "hence", "also", "still", "currently", "presently",
        "at", "this", "time", "point", "fully", "shown", "proven", "would", "will", "can",
        "could", "may", "might", "has", "have", "had", "yet", "otherwise", "necessarily",
    }
)  # fmt: skip
_ARTICLE = frozenset({"a", "an", "medical"})
_SUPPORTED = frozenset({"established", "supported", "demonstrated", "substantiated", "met"})
_WORD_RX = re.compile(r"[^\W_]+")
_HYPHEN_BREAK_RX = re.compile(r"(?<=\w)[-\u00ad]\s*\n\s*(?=\w)")
_NECESS_RX = re.compile(r"necess(?:ary|ity)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Conclusion:
    necessary: bool
    start: int
    end: int
    words: str  # the clause as read


def _words(s: str) -> list[str]:
    s = _HYPHEN_BREAK_RX.sub("", s).replace("\u2019", "'").replace("n't", "nt")
    return _WORD_RX.findall(s.casefold())


def _negated(words: list[str]) -> bool:
    return any(w in _NEGATORS or _GLUED_NOT_RX.match(w) for w in words)


def _clause_start(text: str, lower: int, at: int) -> int:
    last = lower
    for m in _CLAUSE_END_RX.finditer(text, lower, at):
        last = m.end()
    return last


def _verb_phrase_before(words: list[str], extra: frozenset[str] = frozenset()) -> list[str]:
    """The words of the verb phrase that ends at "necessary", walking back to its subject."""
    span: list[str] = []
    for w in reversed(words):
        if w in _VERB_PHRASE or w in extra or w in _NEGATORS or _GLUED_NOT_RX.match(w):
            span.append(w)
        else:
            break
    return span


def _read(text: str, lower: int, upper: int, m: re.Match[str]) -> Conclusion | bool | None:
    """The conclusion at one "necessary"/"necessity", ``None`` when unsure, ``False`` when the
    word concludes nothing ("as necessary", "the necessity of")."""
    start = _clause_start(text, lower, m.start())
    end_m = _CLAUSE_END_RX.search(text, m.end(), upper)
    end = end_m.start() if end_m else upper
    before = _words(text[start : m.start()])
    after = _words(text[m.end() : end])
    clause = " ".join([*before, m.group().lower(), *after])
    if m.group().lower() == "necessity":
        # "Medical necessity (for X) has (not) been established / cannot be supported".
        # Or "... is not a medical necessity".
        hit = next((k for k, w in enumerate(after) if w in _SUPPORTED), None)
        if hit is not None:
            span = after[max(0, hit - 4) : hit]
        else:
            span = _verb_phrase_before(before, _ARTICLE)
            if not any(w in _BEING for w in span):
                return False
    else:
        span = _verb_phrase_before(before)
        if not any(w in _BEING or _GLUED_NOT_RX.match(w) for w in span):
            return False
    if any(w in _HEDGES for w in [*before, *after]):
        return None
    return Conclusion(not _negated(span), start, end, clause)


def last_conclusion(text: str, start: int, end: int) -> Conclusion | bool | None:
    """The last conclusion about medical necessity in ``text[start:end]``.

    ``None`` when the last one cannot be read with confidence, ``False`` when there is none.
    Read from the end: the conclusion closes the rationale.
    """
    matches = list(_NECESS_RX.finditer(text, start, end))
    for m in reversed(matches):
        got = _read(text, start, end, m)
        if got is False:
            continue
        return got
    return False
