"""The census: an independent count of every place a letter states a decision.

Invariant: this module reads the letter with other eyes than the rules. It imports no pattern or
parser from ``imr_extract.rules``; it works line by line and token by token, ignores case and
whitespace, skips blank lines, page breaks, page numbers and running headers, and folds words
hyphenated across a line break. What it finds is compared with a record's items
(``account``): a decision the letter states that no item holds, or an item that no stated
decision backs, is reported, so a record can never look complete when the letter decides more
than it holds.

The statements it counts:

- ``colon``: the decision word closing a line after a colon, on the same line (``X: Upheld``,
  ``X is: Overturned``, ``Determination: Upheld``) or alone on one of the next lines
  (``X:`` / blank / ``Upheld``), whatever lies between is blank or page furniture;
- ``sentence``: a numbered decision sentence (``1) MAXIMUS Federal Services, Inc. has
  determined the request for X is not medically necessary and appropriate``; ``notmedically``
  and other glued negations included);
- ``restatement``: ``The Utilization Review decision is upheld``, which restates the decision
  of the item before it.

A letter holding several letters (two "HOW THE IMR FINAL DETERMINATION WAS MADE" headings, or
two case numbers printed after their label) is reported by ``letters``.

Structure a letter cannot fake (``stray``, ``headings``, ``ambiguous_headings``): a statement is
*stray*, and backs no item, where the form never states a decision:

- a ``colon`` statement that no item label follows (the next line past blanks and page
  furniture holds no guideline or rationale label), where the letter's other decision lines
  have one: an item-shaped line in a summary or a rationale;
- a ``colon`` or ``sentence`` statement in the case summary (after its heading, before the first
  item that has its labels);
- a decision-list sentence (numbered, or "MAXIMUS ... has determined") after the first item
  has opened: the list stands before the items.

The decisions heading is printed once; where it is printed more than once and more than one
copy opens a decision, the items those copies open cannot be told from one another.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass, field

from ..forms import (
    CA_LABEL_RX,
    DECISIONS_HEADING_RX,
    IMR_LABEL_RX,
    ITEM_LABELS_UNSPACED,
    ONE_PER_LETTER_HEADINGS,
    ORIGINAL_FOLLOWED_BY,
    RATIONALE_LABEL_RX,
    REGARDING_RX,
    SUMMARY_HEADING_RX,
)
from ..schema import Decision
from .scan import labels_at_colons, lowered, near

#: Lines between a request's colon and its decision word that may be page furniture or blank.
MAX_GAP_LINES = 6
#: A running header or footer is short: a line of more words is the letter's own text.
MAX_FURNITURE_WORDS = 8
#: How far back a restatement looks for the item it restates.
RESTATEMENT_REACH = 6000

_WORDS = {"upheld": Decision.UPHELD, "overturned": Decision.OVERTURNED}
# The decision word at the end of a line (trailing dots and spaces allowed).
_LINE_END_WORD_RX = re.compile(r"(?<![A-Za-z])(upheld|overturned)[\s.]*$", re.IGNORECASE)
_DIGITS_RX = re.compile(r"\d+")
_TRAILING_PAGE_RX = re.compile(r"\bpage\s*\d{1,3}(?:\s*(?:of|/)\s*\d{1,3})?$", re.IGNORECASE)
_PAGE_NUMBER_RX = re.compile(r"^(?:page\s*)?\d{1,3}(?:\s*(?:of|/)\s*\d{1,3})?$", re.IGNORECASE)
_SENTENCE_RX = re.compile(
    r"has\s+determined\s+(?:that\s+)?the\s+request\s+for\s+(?P<subject>.{1,800}?)"
    r"\s+(?:is|are|was|were)\s*(?P<neg>not\s*)?medically\s+necessary",
    re.IGNORECASE | re.DOTALL,
)
_RESTATEMENT_RX = re.compile(
    r"\bdecision\s+(?:is|was)\s+(?:hereby\s+)?(upheld|overturned)\b", re.IGNORECASE
)
# The case number after its label: two different ones mean two letters.
_CASE_NUMBER_RX = re.compile(r"Case\s+(?:Number|No\.?)\s*:?\s*(?P<number>CM\d{2}-\d{5,8})\b")
#: The last word of every guideline label (each ends with a colon).
_GUIDELINE_LABEL_ENDS = frozenset({"guideline", "guidelines", "administrator", "reviewer"})
_TOKEN_RX = re.compile(r"[^\W_]+")
_HYPHEN_BREAK_RX = re.compile(r"(?<=\w)[-\u00ad]\s*\n\s*(?=\w)")


def tokens(s: str) -> list[str]:
    """Case-, whitespace- and hyphenation-blind words of ``s`` ("Non-\\nMTUS" -> ["nonmtus"])."""
    s = _HYPHEN_BREAK_RX.sub("", s).replace("-", "").replace("\u00ad", "")
    return _TOKEN_RX.findall(s.casefold())


@dataclass(frozen=True)
class Statement:
    """One place where the letter states a decision."""

    kind: str  # "colon", "sentence" or "restatement"
    decision: Decision
    word: tuple[int, int]  # the decision word (or the "is (not) medically necessary" phrase)
    #: Where the decided subject ends ("colon": the colon; "sentence": the end of the subject).
    anchor: int
    #: The subject as printed, where the statement names it ("sentence" only).
    subject: tuple[int, int] | None = None

    def describe(self, text: str) -> str:
        start = max(0, self.anchor - 60)
        lead = " ".join(text[start : self.anchor].split())
        return f"'…{lead[-50:]}: {self.decision.value}' at {self.word[0]}-{self.word[1]}"


@dataclass
class Census:
    statements: list[Statement] = field(default_factory=list)
    #: Start offsets of the letters the text holds, when it holds more than one.
    letters: list[int] = field(default_factory=list)
    #: Subjects the letter names without deciding them ("Regarding the request for X:").
    mentions: list[tuple[int, int]] = field(default_factory=list)
    #: Lines a page break brings (page numbers, running headers and footers): (start, end).
    furniture: list[tuple[int, int]] = field(default_factory=list)
    #: Guideline lines that open after no item: (label span) of each line printed with no
    #: decision statement (or named subject) since the previous line of its kind, a sign of
    #: an item whose decision the letter does not state where a reader would find it.
    orphan_lines: list[tuple[int, int]] = field(default_factory=list)
    #: Statements (by index) that stand where the form states no decision, and why: they are
    #: left out of the accounting, so an item that rests on one alone is backed by nothing.
    stray: dict[int, str] = field(default_factory=dict)
    #: Item headings ("3. Regarding the request for X:") with no guideline line after them.
    stray_mentions: list[tuple[int, int]] = field(default_factory=list)
    #: Every printing of the decisions heading: (start, end).
    headings: list[tuple[int, int]] = field(default_factory=list)
    #: Where the heading is printed more than once and more than one copy opens a decision:
    #: those copies' offsets, and the statements (by index) they open.
    ambiguous_headings: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Line:
    start: int
    end: int
    content: str  # stripped


def _lines(text: str) -> list[_Line]:
    out = []
    pos = 0
    for raw in text.split("\n"):
        end = pos + len(raw)
        out.append(_Line(pos, end, raw.strip(" \t\r\f\v\u00a0")))
        pos = end + 1
    return out


def _shape(content: str) -> str:
    """A line with its numbers blanked: "Page 2 of 5" and "Page 3 of 5" are one running line."""
    return _DIGITS_RX.sub("#", content)


def _furniture(lines: list[_Line], text: str) -> set[str]:
    """Lines a page break brings: short lines of one shape repeated down the letter (running
    headers and footers, numbers aside) that end no sentence and open no item, printed three
    times or more with a number or in capitals, or twice with one of them beside a page break
    (a form feed or a page number); and a line that ends with a page number ("Case Number:
    CM16-0228949  Page 2"). A short line a letter repeats of its own (three items citing the
    same guideline, wrapped alike) has neither."""
    # Only short lines can be furniture: the rest is not looked at again.
    short = [
        (k, ln)
        for k, ln in enumerate(lines)
        if ln.content and len(ln.content) <= 80 and ln.content.count(" ") < 3 * MAX_FURNITURE_WORDS
    ]
    out = {
        ln.content
        for _k, ln in short
        if ("age" in ln.content or "AGE" in ln.content) and _TRAILING_PAGE_RX.search(ln.content)
    }
    shapes = {k: _shape(ln.content) for k, ln in short}
    counts = Counter(shapes.values())
    repeated = {
        c
        for c, n in counts.items()
        if n >= 2
        and len(c.split()) <= MAX_FURNITURE_WORDS
        and not c.endswith((":", "."))
        and not _LINE_END_WORD_RX.search(c)
    }
    if not repeated:
        return out
    for k, ln in short:
        shape = shapes[k]
        # A page's header or footer carries its number, the case's, or a title in capitals.
        if shape not in repeated or not ("#" in shape or ln.content.isupper()):
            continue
        if counts[shape] >= 3:
            out.add(ln.content)
            continue
        near_lines = lines[max(0, k - 2) : k + 3]
        if "\f" in text[ln.start : ln.end + 1] or any(
            "\f" in text[x.start : x.end + 1] or _PAGE_NUMBER_RX.match(x.content)
            for x in near_lines
            if x is not ln
        ):
            out.add(ln.content)
    return out


def _is_gap(content: str, furniture: set[str]) -> bool:
    return not content or content in furniture or bool(_PAGE_NUMBER_RX.match(content))


def _colon_statements(text: str, lines: list[_Line], furniture: set[str]) -> list[Statement]:
    out: list[Statement] = []
    low = lowered(text)
    starts = [ln.start for ln in lines]
    candidates: set[int] = set()
    for word in _WORDS:
        pos = low.find(word)
        while pos >= 0:
            candidates.add(bisect.bisect_right(starts, pos) - 1)
            pos = low.find(word, pos + 1)
    for k in sorted(candidates):
        ln = lines[k]
        m = _LINE_END_WORD_RX.search(ln.content)
        if m is None:
            continue
        offset = ln.start + text[ln.start : ln.end].find(ln.content)
        span = (offset + m.start(1), offset + m.end(1))
        before = ln.content[: m.start()].rstrip()
        decision = _WORDS[m.group(1).lower()]
        if before:
            if before.endswith(":"):
                out.append(Statement("colon", decision, span, offset + len(before) - 1))
            continue
        # The word alone on its line: the colon ends an earlier line, past blanks and furniture.
        j = k - 1
        while j >= 0 and k - j <= MAX_GAP_LINES and _is_gap(lines[j].content, furniture):
            j -= 1
        if j >= 0 and k - j <= MAX_GAP_LINES and lines[j].content.endswith(":"):
            prev = lines[j]
            colon = text.rfind(":", prev.start, prev.end + 1)
            out.append(Statement("colon", decision, span, colon))
    return out


def _sentence_statements(text: str) -> list[Statement]:
    out = []
    for m in near(_SENTENCE_RX, text, "determined", 900):
        subject = m.group("subject")
        if re.search(r"has\s+determined", subject, re.IGNORECASE):
            continue
        decision = Decision.UPHELD if m.group("neg") else Decision.OVERTURNED
        out.append(
            Statement(
                "sentence",
                decision,
                (m.end("subject"), m.end()),
                m.end("subject"),
                (m.start("subject"), m.end("subject")),
            )
        )
    return out


def _restatements(text: str) -> list[Statement]:
    return [
        Statement("restatement", _WORDS[m.group(1).lower()], m.span(1), m.start())
        for rx in (_RESTATEMENT_RX,)
        for word in ("upheld", "overturned")
        for m in near(rx, text, word, 40)
    ]


def letter_starts(text: str) -> list[int]:
    """Where each letter starts, when the text holds more than one: two different case numbers
    after their label, or two once-per-letter headings each printed more than once (one
    heading printed twice is a defect of one letter, not a second letter). Empty otherwise."""
    numbers: dict[str, int] = {}
    for m in _CASE_NUMBER_RX.finditer(text):
        numbers.setdefault(m.group("number"), m.start())
    if len(numbers) > 1:
        return sorted(numbers.values())
    repeated = [
        found
        for rx in ONE_PER_LETTER_HEADINGS
        if len(
            found := [m.start() for m in near(rx, text, "notice", 80)]
            if rx.flags & re.IGNORECASE
            else [m.start() for m in rx.finditer(text)]
        )
        > 1
    ]
    if len(repeated) < 2:
        return []
    return max(repeated, key=len)


def take_census(text: str) -> Census:
    """Every decision statement of ``text``, in text order, and where its letters start."""
    lines = _lines(text)
    furniture = _furniture(lines, text)
    statements = _colon_statements(text, lines, furniture)
    covered = [s.word for s in statements]
    for s in _sentence_statements(text) + _restatements(text):
        if not any(a < s.word[1] and s.word[0] < b for a, b in covered):
            statements.append(s)
    statements.sort(key=lambda s: s.word[0])
    mentions = [m.span("subject") for m in near(REGARDING_RX, text, "regarding", 700)]
    census = Census(statements, letter_starts(text), mentions)
    census.furniture = [
        (ln.start, ln.end) for ln in lines if ln.content and _is_gap(ln.content, furniture)
    ]
    census.orphan_lines = _orphan_lines(text, census)
    _structure(text, lines, furniture, census)
    return census


# --- structure -----------------------------------------------------------------------------------

#: Item labels: the first line after an item's decision (or its heading) holds one.
_ITEM_LABELS = (CA_LABEL_RX, IMR_LABEL_RX, RATIONALE_LABEL_RX)
#: A line that ends a sentence (a word, then a full stop).
_SENTENCE_LINE_RX = re.compile(r"[^\W\d_]{2}[)\"']?\.$")
#: A decision-list sentence: numbered at its line's start, or stated by MAXIMUS.
_LIST_SENTENCE_RX = re.compile(
    r"(?:^|\n)[ \t]*\d{1,2}[ \t]*[.)][ \t]+MAXIMUS\b"
    r"|MAXIMUS\s+Federal\s+Services,?\s+Inc\.?,?\s+has\s+determined",
    re.IGNORECASE,
)
_ORIGINAL_RX = re.compile(r"\s+".join(ORIGINAL_FOLLOWED_BY.split()), re.IGNORECASE)
#: A heading opens a decision that follows it within this many characters.
HEADING_OPENS_REACH = 800


def _line_index(lines: list[_Line], pos: int) -> int:
    return bisect.bisect_right([ln.start for ln in lines], pos) - 1


def _label_follows(text: str, lines: list[_Line], k: int, furniture: set[str]) -> bool:
    """Whether the first line after line ``k`` that holds anything (past blanks and page
    furniture) opens with an item label, or holds one."""
    j, furniture_lines = k + 1, 0
    while j < len(lines) and _is_gap(lines[j].content, furniture):
        furniture_lines += bool(lines[j].content)  # blank lines, however many, are no text
        if furniture_lines > MAX_GAP_LINES:
            return False
        j += 1
    if j >= len(lines):
        return False
    ln = lines[j]
    squeezed = re.sub(r"\s+", "", ln.content)  # a label whose words a tool split
    if any(rx.match(squeezed) for rx in ITEM_LABELS_UNSPACED):
        return True
    window = text[ln.start : ln.end + 120]  # a label may wrap onto the next line
    return any(
        (m := rx.search(window)) is not None and m.start() < ln.end - ln.start
        for rx in _ITEM_LABELS
    )


def _structure(text: str, lines: list[_Line], furniture: set[str], census: Census) -> None:
    statements = census.statements
    colon = [k for k, st in enumerate(statements) if st.kind == "colon"]
    labelled = {
        k: _label_follows(text, lines, _line_index(lines, statements[k].word[0]), furniture)
        for k in colon
    }
    stray: dict[int, str] = {}
    # An item-shaped line: judged only where the letter's decision lines carry labels at all.
    if any(labelled.values()):
        for k, ok in labelled.items():
            if not ok:
                stray[k] = "no guideline or rationale line follows it"
    mention_ok = [
        (span, _label_follows(text, lines, _line_index(lines, text.find(":", span[1])), furniture))
        for span in census.mentions
    ]
    if any(ok for _span, ok in mention_ok):
        census.stray_mentions = [span for span, ok in mention_ok if not ok]
    # Where the items open: the first decision line or item heading that has its labels.
    openers = sorted(
        [statements[k].word[0] for k, ok in labelled.items() if ok and k not in stray]
        + [span[0] for span, ok in mention_ok if ok]
    )
    first_opener = openers[0] if openers else len(text)
    headings = [m.span() for m in DECISIONS_HEADING_RX.finditer(text)]
    for head in SUMMARY_HEADING_RX.finditer(text):
        ends = bisect.bisect_right(openers, head.end())
        if ends < len(openers):
            until = openers[ends]
        else:  # no item with its labels after it: the summary ends at the decisions heading
            later = [a for a, _b in headings if a > head.end()]
            if not later:
                continue
            until = later[-1]
        for k, st in enumerate(statements):
            if st.kind != "restatement" and head.end() <= st.word[0] < until:
                stray.setdefault(k, "it stands in the case summary")
    for k, st in enumerate(statements):
        if st.kind != "sentence" or st.word[0] < first_opener or k in stray:
            continue
        # The sentence's opening: the line that says "determined" and the line above it.
        at = _line_index(lines, lowered(text).rfind("determined", 0, st.anchor))
        lead = text[lines[max(0, at - 1)].start : st.subject[0] if st.subject else st.anchor]
        if _LIST_SENTENCE_RX.search(lead):
            stray[k] = "a decision-list sentence after the items have opened"
    census.stray = stray
    census.headings = headings
    if len(census.headings) > 1:
        census.ambiguous_headings = _headings_that_open(text, census)


def _headings_that_open(text: str, census: Census) -> dict[int, int]:
    """Heading offset -> the statement it opens: the first statement after it that is not
    stray, within reach, with no other heading between and nothing but the section's
    opening words (or the item's own request) before it. Returned only when two or more
    headings open one."""
    opens: dict[int, int] = {}
    starts = [h[0] for h in census.headings] + [
        m.start() for m in SUMMARY_HEADING_RX.finditer(text)
    ]
    for h_start, h_end in census.headings:
        k = next(
            (
                k
                for k, st in enumerate(census.statements)
                if st.word[0] > h_end and k not in census.stray and st.kind != "restatement"
            ),
            None,
        )
        if k is None:
            continue
        st = census.statements[k]
        if st.anchor - h_end > HEADING_OPENS_REACH or any(h_end < s < st.anchor for s in starts):
            continue
        gap = [ln.strip() for ln in text[h_end : st.anchor].split("\n")]
        last_intro = max((i for i, ln in enumerate(gap) if ln.endswith(":")), default=-1)
        block = "\n".join(gap[last_intro + 1 :])
        # The request's own sentences (a partial authorisation's) are no text between.
        partial = _ORIGINAL_RX.search(block)
        if partial is not None:
            block = block[: partial.start()]
        if any(_SENTENCE_LINE_RX.search(ln) for ln in block.split("\n")):
            continue
        opens[h_start] = k
    return opens if len(opens) > 1 else {}


def _orphan_lines(text: str, census: Census) -> list[tuple[int, int]]:
    """Guideline lines of one kind with no item opened since the last line of that kind."""
    openers = sorted(
        [s.word[0] for s in census.statements if s.kind == "colon"]
        + [m[0] for m in census.mentions]
    )
    if not openers:
        return []
    orphans = []
    for rx in (CA_LABEL_RX, IMR_LABEL_RX):
        previous = -1
        for span in labels_at_colons(rx, text, _GUIDELINE_LABEL_ENDS):
            if not any(previous < o < span[0] for o in openers):
                orphans.append(span)
            previous = span[0]
    return sorted(set(orphans))


# --- accounting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemAnchor:
    """What the checker knows of one record item: its request and where its decision stands."""

    index: int
    request: str
    decision: Decision
    #: The start of the decision word printed right after its request, where one was found.
    decision_word: int | None


@dataclass
class Accounting:
    #: statement index -> the item that accounts for it
    by_statement: dict[int, int] = field(default_factory=dict)
    #: item index -> the statements it accounts for
    by_item: dict[int, list[int]] = field(default_factory=dict)
    unaccounted: list[Statement] = field(default_factory=list)
    #: items that no statement backs (only judged when the census found statements)
    unbacked: list[int] = field(default_factory=list)
    #: statements held by an item whose decision differs: (statement, item)
    disagreeing: list[tuple[Statement, int]] = field(default_factory=list)


def _same_subject(request: str, text: str, span: tuple[int, int]) -> bool:
    return tokens(request) == tokens(text[span[0] : span[1]])


def _restated(
    census: Census,
    items: list[ItemAnchor],
    text: str,
    st: Statement,
    last_item: int | None,
    last_at: int,
) -> ItemAnchor | None:
    """The item a restatement restates: the one named last before it ("Regarding the request
    for X:"), else the item of the statement before it."""
    named = [m for m in census.mentions if last_at <= m[1] <= st.word[0]]
    if named:
        span = named[-1]
        return next((a for a in items if _same_subject(a.request, text, span)), None)
    if last_item is not None and st.word[0] - last_at <= RESTATEMENT_REACH:
        return next(a for a in items if a.index == last_item)
    return None


def account(census: Census, items: list[ItemAnchor], text: str) -> Accounting:
    """Pair the census's statements with the record's items.

    A ``colon`` statement is held by the item whose decision word is that statement's word; a
    ``sentence`` by the item whose request is its subject, word for word; a ``restatement`` by
    the item of the nearest statement before it. An item may hold several statements (a form
    that prints its decisions twice); a statement is held by one item at most.
    """
    acc = Accounting(by_item={a.index: [] for a in items})
    by_word = {a.decision_word: a for a in items if a.decision_word is not None}
    last_item: int | None = None
    last_at = -(10**9)
    for k, st in enumerate(census.statements):
        if k in census.stray:
            continue  # stands where the form states no decision: it backs no item
        holder: ItemAnchor | None = None
        if st.kind == "colon":
            holder = by_word.get(st.word[0])
        elif st.kind == "sentence" and st.subject is not None:
            subject = st.subject
            holder = next(
                (
                    a
                    for a in items
                    if k not in acc.by_statement and _same_subject(a.request, text, subject)
                ),
                None,
            )
        else:
            holder = _restated(census, items, text, st, last_item, last_at)
        if holder is None:
            acc.unaccounted.append(st)
            continue
        acc.by_statement[k] = holder.index
        acc.by_item[holder.index].append(k)
        if holder.decision is not st.decision:
            acc.disagreeing.append((st, holder.index))
        if st.kind != "restatement":
            last_item, last_at = holder.index, st.word[1]
    if census.statements:
        acc.unbacked = [a.index for a in items if not acc.by_item[a.index]]
    return acc
