"""Verification's own reading of one guideline line into citation slots, and verdicts on values.

Invariant: this module reads a guideline line by its words and separators, written apart from
``imr_extract.rules`` (it imports nothing from there), so that a misreading of the rules is not
repeated by the check that judges it. A value is judged only at its own place in the line:

* a citation's **kind** by the words that mark it ("MTUS", "Non-MTUS" -- also hyphenated across
  a line break -- after "Decision based on");
* its **source** only as the whole of its own source slot (the dated or named MTUS guideline, or
  the Non-MTUS text less a closing page list): a section, a truncated source or one that keeps
  "Non-MTUS Citation" is not a source;
* a **section** only as a unit of its own citation's section list: a title the guideline
  vocabulary knows is one unit, commas included; a piece of the list the vocabulary does not
  know, where a comma may or may not separate sections, is not verified either way (the
  check is inconclusive);
* a **page** only as a number the line prints after a page label ("Page(s):", "pages", "pg.",
  "p") in its own citation: an edition year ("Low Back Complaints 2004") or a section number is
  not a page;
* the **flags** ``cited`` and ``outside_mtus`` by their own words ("Decision based on", "did not
  cite any evidence", "outside of the MTUS").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ..schema import CheckResult, CitationKind
from ..vocabulary import guideline_of, key, vocabulary

_WORD_RX = re.compile(r"\S+")
_GLUED_SENTENCE_RX = re.compile(r"(?<=[a-z0-9)])\.(?=[A-Z][a-z])")
_EDGE_PUNCT = ".,;:"
_YEAR_RX = re.compile(r"(?:19|20)\d\d")
_SECTION_LABEL_RX = re.compile(r"sections?(?:\(s\))?:", re.IGNORECASE)
_PAGE_LABEL_RX = re.compile(r"(?:page\(s\)|pages?|pgs?|pp?)[.:]*", re.IGNORECASE)
_PAGE_WORD_RX = re.compile(r"\d+(?:[-–]\d*)?|[-–]\d*|and|&", re.IGNORECASE)
_PAGE_NUMBER_RX = re.compile(r"(\d+)(?:\s*[-–]\s*(\d+))?")
_SEPARATOR_RX = re.compile(r"[,()\[\]]")
_SECTION_NUMBER_RX = re.compile(r"\d+(?:\.\d+)*\.?$")
#: The most words a guideline title runs to before its edition.
MAX_TITLE_WORDS = 12
#: A printed page range wider than this is two pages, not a range (a misprint).
MAX_RANGE = 50


class Word(NamedTuple):
    """A run of non-space characters; ``norm`` is it case-folded without edge punctuation."""

    start: int
    end: int
    raw: str
    norm: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the line says of one value: the check's result, where it stands, and why not."""

    result: CheckResult
    span: tuple[int, int] | None = None
    detail: str = ""


@dataclass
class LineCitation:
    """One citation as the line prints it."""

    kind: CitationKind | None  # None: no word marks it
    marker: tuple[int, int] | None
    source: tuple[int, int] | None
    #: The section list split at top-level commas (a lower-case piece joined to the one before).
    atoms: list[tuple[int, int]] = field(default_factory=list)
    #: Units of the section list: (first atom, last atom, sure) -- sure when the vocabulary or
    #: the list's numbering says the unit is one section, not a piece or several (filled with
    #: ``run_keys``).
    units: list[tuple[int, int, bool]] = field(default_factory=list)
    #: page -> where it is printed
    pages: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: the source is one of several parts split at ", and" and the vocabulary does not know it
    unsure_source: bool = False
    #: vocabulary key of each run of atoms (first, last), filled on the first section asked for
    run_keys: dict[str, tuple[int, int]] | None = None
    source_key: str | None = None


@dataclass
class LineReading:
    """A guideline line read into its statements and citation slots."""

    text: str
    start: int
    end: int
    decision_based: tuple[int, int] | None = None
    not_cited: tuple[int, int] | None = None
    outside: tuple[int, int] | None = None
    citations: list[LineCitation] = field(default_factory=list)

    # --- flags -------------------------------------------------------------------------------

    def flag_verdict(self, flag: str, value: bool) -> Verdict:
        """``cited`` / ``outside_mtus`` against the words that state them."""
        at: tuple[int, int] | None
        if flag == "cited":
            if self.not_cited is not None:
                printed, at = False, self.not_cited
            elif self.decision_based is not None or self.outside is not None:
                printed, at = True, self.decision_based or self.outside
            else:
                return Verdict(CheckResult.INCONCLUSIVE, None, "the line states no citation")
        else:
            if self.outside is not None:
                printed, at = True, self.outside
            elif self.decision_based is not None or self.not_cited is not None:
                # Said by the whole line: none of its words puts the decision outside the MTUS.
                printed, at = False, _trim(self.text, self.start, self.end)
            else:
                return Verdict(CheckResult.INCONCLUSIVE, None, "the line states no citation")
        if printed == value:
            return Verdict(CheckResult.PASSED, at)
        return Verdict(CheckResult.FAILED, None, f"the line says {flag}={printed}")

    # --- citations ---------------------------------------------------------------------------

    def own_citation(self, source: str, taken: set[int]) -> int | None:
        """The index of the line's citation whose source slot is ``source`` (not yet taken)."""
        want = key(source)
        hits: list[int | None] = []
        for i, c in enumerate(self.citations):
            if c.source is None:
                continue
            if c.source_key is None:
                c.source_key = key(self.text[c.source[0] : c.source[1]])
            if c.source_key == want:
                hits.append(i)
        free = [i for i in hits if i not in taken]
        return (free or hits or [None])[0]

    def source_verdict(self, own: int | None, value: str) -> Verdict:
        if own is None:
            where = "no citation of the line has it as its source"
            if key(value) in key(self.text[self.start : self.end]):
                where = "it is in the line, but not as a whole source"
            return Verdict(CheckResult.FAILED, None, f"{value[:60]!r}: {where}")
        cit = self.citations[own]
        if cit.unsure_source:
            return Verdict(
                CheckResult.INCONCLUSIVE,
                None,
                f"{value[:60]!r} is one of several parts split at ', and' and not a known title",
            )
        return Verdict(CheckResult.PASSED, cit.source)

    def kind_verdict(self, own: int | None, kind: CitationKind) -> Verdict:
        if own is None:
            if any(c.kind is kind for c in self.citations):
                return Verdict(CheckResult.INCONCLUSIVE, None, "the citation is not in the line")
            return Verdict(CheckResult.FAILED, None, f"no citation in the line is {kind.value}")
        cit = self.citations[own]
        if cit.kind is None:
            return Verdict(CheckResult.INCONCLUSIVE, None, "no word marks the citation's kind")
        if cit.kind is kind:
            return Verdict(CheckResult.PASSED, cit.marker)
        return Verdict(CheckResult.FAILED, None, f"the line marks it {cit.kind.value}")

    def section_verdict(self, own: int | None, value: str) -> Verdict:
        want = key(value)
        if own is None:
            if any(self._run_of(c, want) for c in self.citations):
                return Verdict(CheckResult.INCONCLUSIVE, None, "its citation is not in the line")
            return Verdict(CheckResult.FAILED, None, f"{value[:60]!r} is not a section there")
        cit = self.citations[own]
        run = self._run_of(cit, want)
        if run is None:
            return Verdict(
                CheckResult.FAILED, None, f"{value[:60]!r} is not a section of its citation"
            )
        a, b = run
        for first, last, sure in cit.units:
            if (first, last) == (a, b):
                if sure:
                    return Verdict(CheckResult.PASSED, (cit.atoms[a][0], cit.atoms[b][1]))
                break
            if not sure and first <= a and b <= last:
                break
        else:
            return Verdict(
                CheckResult.FAILED, None, f"{value[:60]!r} cuts or joins the line's sections"
            )
        return Verdict(
            CheckResult.INCONCLUSIVE,
            None,
            f"{value[:60]!r}: the vocabulary does not say whether its commas separate sections",
        )

    def _run_of(self, cit: LineCitation, want: str) -> tuple[int, int] | None:
        if cit.run_keys is None:
            atoms, text = cit.atoms, self.text
            keys = {
                (a, b): key(text[atoms[a][0] : atoms[b][1]])
                for a in range(len(atoms))
                for b in range(a, len(atoms))
            }
            # The first run of a key wins.
            cit.run_keys = {k: run for run, k in reversed(keys.items())}
            cit.units = _units(text, atoms, keys)
        return cit.run_keys.get(want)

    def page_verdict(self, own: int | None, page: int) -> Verdict:
        if own is not None and page in self.citations[own].pages:
            return Verdict(CheckResult.PASSED, self.citations[own].pages[page])
        elsewhere = [c for c in self.citations if page in c.pages]
        if own is None and elsewhere:
            return Verdict(CheckResult.INCONCLUSIVE, None, "its citation is not in the line")
        if elsewhere:
            return Verdict(CheckResult.FAILED, None, f"page {page} is another citation's")
        return Verdict(CheckResult.FAILED, None, f"the line prints no page {page}")


# --- reading -------------------------------------------------------------------------------------


_new_word = tuple.__new__  # a Word without the generated __new__'s call (words are many)


def _words(text: str, start: int, end: int) -> list[Word]:
    """The line's words; a word broken by a hyphen at a line break is one word, and two
    sentences a tool glued at their full stop ("Guidelines.Decision based on") are two."""
    found = []
    for m in _WORD_RX.finditer(text, start, end):
        s0, raw = m.start(), m.group()
        cut = _GLUED_SENTENCE_RX.search(raw)
        if cut is not None:
            found.append((s0, s0 + cut.start() + 1, raw[: cut.start() + 1]))
            found.append((s0 + cut.start() + 1, m.end(), raw[cut.start() + 1 :]))
        else:
            found.append((s0, m.end(), raw))
    if any(raw[-1] == "-" for _, _, raw in found):
        joined: list[tuple[int, int, str]] = []
        for s, e, raw in found:
            if joined and joined[-1][2][-1] == "-" and "\n" in text[joined[-1][1] : s]:
                ps, _, praw = joined.pop()
                s, raw = ps, praw + raw
            joined.append((s, e, raw))
        found = joined
    return [_new_word(Word, (s, e, raw, raw.strip(_EDGE_PUNCT).casefold())) for s, e, raw in found]


def _phrase_at(words: list[Word], i: int, phrase: tuple[str, ...]) -> bool:
    """Whether ``phrase`` stands at ``words[i]`` (a word hyphenated across a line counts)."""
    return i + len(phrase) <= len(words) and all(
        words[i + k].norm.replace("-", "") == w for k, w in enumerate(phrase)
    )


def _rejoin_split(words: list[Word], i: int, target: str) -> list[Word] | None:
    """``words`` with ``words[i]`` and ``words[i + 1]`` made one word when together they are
    ``target`` (a word a tool split with a space: "Decisi on"), else None."""
    if i + 1 < len(words) and words[i].norm + words[i + 1].norm == target:
        a, b = words[i], words[i + 1]
        joined = _new_word(Word, (a.start, b.end, a.raw + b.raw, target))
        return [*words[:i], joined, *words[i + 2 :]]
    return None


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and (text[s].isspace() or text[s] in _EDGE_PUNCT):
        s += 1
    while e > s and (text[e - 1].isspace() or text[e - 1] in _EDGE_PUNCT):
        e -= 1
    return s, e


def read_line(text: str, start: int, end: int) -> LineReading:
    """Read the guideline line ``text[start:end]``."""
    reading = LineReading(text, start, end)
    words = _words(text, start, end)
    for i in range(len(words) - 2, -1, -1):
        for target in ("decision", "based"):
            if target.startswith(words[i].norm) and words[i].norm != target:
                words = _rejoin_split(words, i, target) or words
    bodies: list[int] = []  # index of the first word after each "Decision based on"
    for i, w in enumerate(words):
        n = w.norm.replace("-", "")
        if n == "decision" and _phrase_at(words, i, ("decision", "based", "on")):
            if reading.decision_based is None:
                reading.decision_based = (w.start, words[i + 2].end)
            bodies.append(i + 3)
        elif n == "did" and _phrase_at(words, i, ("did", "not", "cite")):
            if reading.not_cited is None:
                last = i + 2  # "... cite any (medical) evidence"
                for word in ("any", "medical", "evidence"):
                    if last + 1 < len(words) and words[last + 1].norm == word:
                        last += 1
                reading.not_cited = (w.start, words[last].end)
        elif n == "outside" and reading.outside is None:
            for tail in (("of", "the", "mtus"), ("the", "mtus")):
                if _phrase_at(words, i + 1, tail):
                    reading.outside = (w.start, words[i + len(tail)].end)
                    break
    for k, first in enumerate(bodies):
        last = bodies[k + 1] - 3 if k + 1 < len(bodies) else len(words)
        reading.citations.extend(_read_body(text, words[first:last]))
    return reading


def _read_body(text: str, words: list[Word]) -> list[LineCitation]:
    """The citations of one "Decision based on ..." statement."""
    if not words:
        return []
    n0 = words[0].norm
    kind: CitationKind | None = None
    marker: tuple[int, int] | None = None
    i = 0
    n1 = words[1].norm if len(words) > 1 else ""
    if n0 == "non-mtus" or (n0 == "non-" and n1 == "mtus") or (n0 == "non" and n1 == "-mtus"):
        # "Non-MTUS", also "Non- MTUS" and "Non -MTUS" (a hyphen padded apart on one line)
        kind, i = CitationKind.NON_MTUS, 1 if n0 == "non-mtus" else 2
        if len(words) > i and words[i].norm in ("citation", "citations"):
            i += 1
    elif n0 == "mtus" or (n0 == "ca" and len(words) > 1 and words[1].norm == "mtus"):
        kind, i = CitationKind.MTUS, 1 if n0 == "mtus" else 2
    if i:
        marker_end = words[i - 1].end
        while text[marker_end - 1] == ":":
            marker_end -= 1
        marker = (words[0].start, marker_end)
    rest = words[i:]
    if not rest:
        return []
    if kind is CitationKind.MTUS:
        return _mtus_parts(text, rest, marker)
    return [_other_citation(text, rest, kind, marker)]


def _is_page_label(words: list[Word], i: int) -> bool:
    raw = words[i].raw.lstrip(",;(")
    return (
        raw[:1] in ("p", "P")
        and _PAGE_LABEL_RX.fullmatch(raw) is not None
        and i + 1 < len(words)
        and words[i + 1].raw[:1].isdigit()
    )


def _page_run(words: list[Word], i: int) -> int:
    """The index after the page list that starts at ``words[i]``."""
    j = i
    while j < len(words) and _PAGE_WORD_RX.fullmatch(words[j].raw.rstrip(_EDGE_PUNCT)):
        j += 1
        if words[j - 1].raw.endswith("."):
            break
    return j


def _pages(text: str, s: int, e: int) -> dict[int, tuple[int, int]]:
    pages: dict[int, tuple[int, int]] = {}
    for m in _PAGE_NUMBER_RX.finditer(text, s, e):
        first = int(m.group(1))
        if m.group(2) is None:
            pages.setdefault(first, m.span(1))
            continue
        last = int(m.group(2))
        if not 0 <= last - first <= MAX_RANGE:
            pages.setdefault(first, m.span(1))
            pages.setdefault(last, m.span(2))
            continue
        for n in range(first, last + 1):
            at = m.span(1) if n == first else m.span(2) if n == last else m.span()
            pages.setdefault(n, at)
    return {n: at for n, at in pages.items() if n >= 1}


def _other_citation(
    text: str, words: list[Word], kind: CitationKind | None, marker: tuple[int, int] | None
) -> LineCitation:
    """A Non-MTUS (or unmarked) citation: its whole text is the source, less a closing page
    list ("..., pg. 607", "... Page(s): 12-14")."""
    end = len(words)
    pages: dict[int, tuple[int, int]] = {}
    for i in range(1, len(words) - 1):
        if _is_page_label(words, i) and _page_run(words, i + 1) == len(words):
            pages = _pages(text, words[i + 1].start, words[-1].end)
            end = i
            break
    source = _trim(text, words[0].start, words[end - 1].end)
    return LineCitation(kind, marker, source if source[0] < source[1] else None, pages=pages)


def _part_starts(words: list[Word]) -> list[int]:
    """Where each MTUS part starts: the first word, and each ", and <title> <year>"."""
    starts = [0]
    for i in range(1, len(words) - 2):
        if words[i].norm != "and" or not words[i - 1].raw.endswith(","):
            continue
        if not any(_is_year(w) for w in words[starts[-1] : i]):
            continue  # the part so far has no edition: "Forearm, Wrist, and Hand Complaints"
        for j in range(i + 1, min(len(words), i + 1 + MAX_TITLE_WORDS)):
            w = words[j]
            if ":" in w.raw or _is_page_label(words, j):
                break
            if _is_year(w):
                if j > i + 1 and (j + 1 == len(words) or w.raw[-1] in ",."):
                    starts.append(i + 1)
                break
    return starts


def _mtus_parts(text: str, words: list[Word], marker: tuple[int, int] | None) -> list[LineCitation]:
    starts = _part_starts(words)
    out = []
    for k, first in enumerate(starts):
        last = starts[k + 1] - 1 if k + 1 < len(starts) else len(words)  # drop the "and"
        part = _mtus_part(text, words[first:last], marker)
        if len(starts) > 1 and part.source is not None:
            part.unsure_source = guideline_of(text[part.source[0] : part.source[1]]) is None
        out.append(part)
    return out


def _is_section_label(raw: str) -> bool:
    raw = raw.lstrip(",;(")
    return raw[:1] in ("s", "S") and _SECTION_LABEL_RX.fullmatch(raw) is not None


def _is_label(words: list[Word], j: int) -> bool:
    return _is_section_label(words[j].raw) or _is_page_label(words, j)


def _is_year(w: Word) -> bool:
    """An edition: "2016", or "(2009)" after a title."""
    norm = w.norm
    if len(norm) == 6 and norm[0] == "(" and norm[-1] == ")":
        norm = norm[1:-1]
    return len(norm) == 4 and _YEAR_RX.fullmatch(norm) is not None


def _source_end(text: str, words: list[Word]) -> int:
    """The index after an MTUS part's source: its edition year, else the longest title the
    vocabulary knows, else its "Guidelines" word (and a parenthesised qualifier)."""
    label = len(words)
    for j, w in enumerate(words):
        if _is_label(words, j):
            label = j
            break
        if _is_year(w):
            return j + 1
    for j in range(label, 0, -1):
        if guideline_of(text[words[0].start : words[j - 1].end]) is not None:
            return j
    for j in range(label):
        if words[j].norm == "guidelines":
            j += 1
            if j < label and words[j].raw.startswith("("):
                while j < label and not words[j].raw.rstrip(_EDGE_PUNCT).endswith(")"):
                    j += 1
                j += 1
            return min(j, label)
    return label


def _mtus_part(text: str, words: list[Word], marker: tuple[int, int] | None) -> LineCitation:
    if not words:
        return LineCitation(CitationKind.MTUS, marker, None)
    j = _source_end(text, words)
    source = _trim(text, words[0].start, words[j - 1].end) if j else None
    cit = LineCitation(
        CitationKind.MTUS, marker, source if source and source[0] < source[1] else None
    )
    # The rest: section lists and page lists, each after its label (text before any label is
    # a section list, as the older forms print it).
    segments: list[tuple[int, int]] = []
    seg_start = words[j - 1].end if j else words[0].start
    i = j
    while i < len(words):
        w = words[i]
        if w.raw[-1] == ":" and _is_section_label(w.raw):
            segments.append((seg_start, w.start))
            seg_start = w.end
            i += 1
        elif _is_page_label(words, i):
            segments.append((seg_start, w.start))
            stop = _page_run(words, i + 1)
            cit.pages.update(
                (n, at)
                for n, at in _pages(text, words[i + 1].start, words[stop - 1].end).items()
                if n not in cit.pages
            )
            seg_start = words[stop - 1].end
            i = stop
        else:
            i += 1
    segments.append((seg_start, words[-1].end))
    for s, e in segments:
        cit.atoms.extend(_atoms(text, s, e))
    return cit


def _atoms(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A section list split at commas outside brackets; a piece that starts in lower case
    continues the one before ("TENS, chronic pain (...)")."""
    pieces: list[tuple[int, int]] = []
    depth = 0
    at = start
    cuts = [m.start() for m in _SEPARATOR_RX.finditer(text, start, end)]
    for i in (*cuts, end):
        c = text[i] if i < end else ","
        if c in "([":
            depth += 1
        elif c in ")]":
            depth = max(0, depth - 1)
        elif depth == 0 or i == end:
            s, e = _trim(text, at, i)
            if s < e:
                if pieces and text[s].islower():
                    pieces[-1] = (pieces[-1][0], e)
                else:
                    pieces.append((s, e))
            at = i + 1
    return pieces


def _units(
    text: str, atoms: list[tuple[int, int]], keys: dict[tuple[int, int], str]
) -> list[tuple[int, int, bool]]:
    """The list's sections: runs the vocabulary knows; in a numbered list, each number with the
    pieces up to the next; else single pieces between known ones (sure) or stretches of
    several unknown pieces (not sure whether they are one section or more). ``keys`` holds the
    vocabulary key of every run of atoms."""
    known = vocabulary().sections
    most = vocabulary().max_section_commas
    n = len(atoms)
    numbered = bool(atoms) and _starts_numbered(text, atoms[0])
    units: list[tuple[int, int, bool]] = []
    stretch: int | None = None  # first atom of an open stretch of unknown pieces
    i = 0
    while i < n:
        j = next(
            (j for j in range(min(n - 1, i + most), i - 1, -1) if keys[i, j] in known),
            None,
        )
        if j is None and numbered and _starts_numbered(text, atoms[i]):
            j = i
            while j + 1 < n and not _starts_numbered(text, atoms[j + 1]):
                j += 1
        if j is None:
            if stretch is None:
                stretch = i
            i += 1
            continue
        if stretch is not None:
            units.append((stretch, i - 1, stretch == i - 1))
            stretch = None
        units.append((i, j, True))
        i = j + 1
    if stretch is not None:
        units.append((stretch, n - 1, stretch == n - 1))
    return units


def _starts_numbered(text: str, atom: tuple[int, int]) -> bool:
    head = text[atom[0] : min(atom[1], atom[0] + 12)].split(maxsplit=1)
    return bool(head) and len(head) > 1 and _SECTION_NUMBER_RX.match(head[0]) is not None
