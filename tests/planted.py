"""Planted defects (mutation testing) for the verifier, on the bundled letters.

Each mutator takes a bundled letter and plants one defect of a named kind, the way a wrong
extractor or a damaged text would carry it:

- **record side**: the rules' record of the letter is changed (a value, an item) and handed to
  ``imr_extract.verify.verify`` with the letter's text. A changed value is planted in one of
  three *forms*: ``kept`` (value changed, its provenance entry kept as the rules wrote it),
  ``located`` (value changed and placed as a model's value is: ``imr_extract.locate`` finds it
  in the item's region, then anywhere in the letter; method ``llm``), ``rules`` (placed like
  ``located``, but the entry still says the rules read it there: a rules misreading).
- **text side**: the letter's text is changed and extracted with the rules
  (``imr_extract.extract.extract_document``).

Invariant: a ``Planted`` says which values it made wrong (``paths``) and whether it lost
something the letter decides (``loss``); ``judge`` says whether the verifier caught it:

- record side: every planted value's status is not ``verified``; for a lost item, the record
  does not look complete (``incomplete``: coverage below 1.0, a failed check, or the verifier's
  census says the letter decides more than the record holds); a value left right but with a
  span moved counts as caught when verification puts the span back where it was;
- text side: extraction refuses with an ``ImrExtractError``, or the record is flagged
  (incomplete, or a value not verified), or (where the defect leaves the letter's content
  whole: a split word, running headers, a repeated block) the record equals the one read from
  the untouched text.

Every kind is planted on every letter where it applies, at up to ``SITES_PER_LETTER`` of its
sites there (a seeded sample): everything is deterministic.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from imr_extract.assemble import match_kind
from imr_extract.errors import ImrExtractError
from imr_extract.extract import extract_document
from imr_extract.forms import SECTION_RX
from imr_extract.ingest import Document, read_path, read_text_bytes
from imr_extract.locate import Location, locate, locate_near
from imr_extract.schema import (
    DATA_FIELDS,
    CheckResult,
    Decision,
    Item,
    LetterRecord,
    MatchKind,
    Method,
    Provenance,
    Sex,
    Span,
    Status,
)
from imr_extract.text import fold
from imr_extract.verify import verify
from imr_extract.verify.grounding import value_at

LETTERS = Path(__file__).parent / "data" / "letters"
SEED = 11
#: Sites of one kind planted in one letter, at most (a seeded sample), to keep CI fast.
SITES_PER_LETTER = 2
#: How far after an item's start a model's value is looked for first (as llm/response.py does).
ITEM_REGION = 4000
PLANTED_RULE = "planted@test"

KEPT, LOCATED, RULES = "kept", "located", "rules"
VALUE_FORMS = (KEPT, LOCATED, RULES)
_GUIDELINES = ("claims_administrator_guideline", "imr_guideline")
_YEAR_RX = re.compile(r"(?<!\d)(19[5-9]\d|20[0-4]\d)(?!\d)")
_ACTIVE_PRACTICE_RX = re.compile(r"active\s+clinical\s+practice\s+for\s+more\s+than\s+\w+\s+years")
_SUMMARY_RX = re.compile(r"CASE\s+SUMMARY|Case\s+Summary", re.IGNORECASE)
_WORD_RX = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")


# --- the letters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    name: str
    doc: Document
    record: LetterRecord  # what the rules read from the untouched letter

    @property
    def text(self) -> str:
        return self.doc.text


@functools.cache
def letters() -> tuple[Letter, ...]:
    """Every bundled letter (PDF and text) with its rules record, in name order."""
    out = []
    for path in sorted(LETTERS.glob("*/*"), key=lambda p: p.name):
        doc = read_path(path)
        out.append(Letter(path.name, doc, extract_document(doc)))
    return tuple(out)


def text_document(text: str, name: str) -> Document:
    """A letter's (possibly mutated) text read as a text file."""
    return read_text_bytes(text.encode("utf-8"), name)


@functools.cache
def text_baseline(name: str) -> LetterRecord:
    """The rules record of the untouched letter, read through the text route."""
    letter = next(lt for lt in letters() if lt.name == name)
    return extract_document(text_document(letter.text, name))


# --- planted defects -----------------------------------------------------------------------------


@dataclass
class Planted:
    kind: str
    form: str
    letter: str
    site: str
    #: The values made wrong (record side), by path in the mutated record.
    paths: tuple[str, ...] = ()
    #: Something the letter decides is missing from the record.
    loss: bool = False
    record: LetterRecord | None = None  # record side: the mutated record, not yet verified
    text: str | None = None  # text side: the mutated text
    #: Text side: a record equal to the untouched letter's is a right answer.
    same_is_right: bool = False
    #: Spans moved with the value kept: where they were (caught if verification moves them back).
    true_spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.form}"


@dataclass(frozen=True)
class Verdict:
    caught: bool
    how: str  # flagged / incomplete / corrected / refused / handled / missed
    #: For a miss: the planted values left verified, or the fields the text's record got wrong.
    detail: str = ""


def _parts(path: str) -> list[str | int]:
    return [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", path)
    ]


def _set_at(record: LetterRecord, path: str, value: Any) -> LetterRecord:
    """``record`` with the value at a provenance path set (an index one past a list's end
    appends). Copy on write: every model and list on the way is copied, nothing else, so the
    rules' record the mutation started from is left as it was."""
    *head, last = _parts(path)
    root = record.model_copy()
    obj: Any = root
    for part in head:
        child = obj[part] if isinstance(part, int) else getattr(obj, part)
        child = list(child) if isinstance(child, list) else child.model_copy()
        if isinstance(part, int):
            obj[part] = child
        else:
            setattr(obj, part, child)
        obj = child
    if isinstance(last, int):
        if last == len(obj):
            obj.append(value)
        else:
            obj[last] = value
    else:
        setattr(obj, last, value)
    return root


def _spans(record: LetterRecord, path: str) -> list[tuple[int, int]]:
    entry = record.provenance.get(path)
    return [(s.start, s.end) for s in entry.spans] if entry else []


def item_start(record: LetterRecord, i: int) -> int:
    starts = [
        s
        for k in ("request", "original_request", "authorized")
        for s, _ in _spans(record, f"items[{i}].{k}")
    ]
    return min(starts) if starts else 0


def item_region(record: LetterRecord, i: int) -> tuple[int, int]:
    start = item_start(record, i)
    return start, start + ITEM_REGION


def guideline_line(record: LetterRecord, i: int, g: str) -> tuple[int, int] | None:
    """Where the rules read item ``i``'s guideline ``g``: the union of its values' spans."""
    prefix = f"items[{i}].{g}."
    spans = [sp for p in record.provenance if p.startswith(prefix) for sp in _spans(record, p)]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def _as_printed(value: Any) -> list[str]:
    """How a value may be printed, most likely first (what a locator would search for)."""
    if isinstance(value, Decision):
        return [value.value.capitalize(), value.value]
    if isinstance(value, Enum):
        return [str(value.value)]
    if isinstance(value, dt.date):
        m, d, y = value.month, value.day, value.year
        return [f"{m:02}/{d:02}/{y}", f"{m}/{d}/{y}", f"{m:02}-{d:02}-{y}", f"{m}-{d}-{y}"]
    return [str(value)]


def locate_value(
    text: str, value: Any, regions: list[tuple[int, int]], avoid: tuple[int, int] | None = None
) -> Location | None:
    """Where a model's value would be placed: first in ``regions``, then anywhere.

    ``avoid``: a span the value may not be placed on (the other occurrence is wanted).
    """
    for printed in _as_printed(value):
        if avoid is None:
            loc = locate_near(text, printed, regions)
        else:
            loc = next(
                (
                    hit
                    for hit in occurrences(text, printed)
                    if not (hit.start < avoid[1] and avoid[0] < hit.end)
                ),
                None,
            )
        if loc is not None:
            return loc
    if isinstance(value, int) and not isinstance(value, bool):
        # A page printed inside a range ("46-47"): where the number stands, though ``locate``
        # will not start a value after a hyphen.
        rx = re.compile(rf"(?<!\d){value}(?!\d)")
        for start, end in [*regions, (0, len(text))]:
            m = rx.search(text, max(0, start), end)
            if m and (avoid is None or not (m.start() < avoid[1] and avoid[0] < m.end())):
                return Location(m.start(), m.end(), MatchKind.EXACT)
    return None


def occurrences(text: str, value: str) -> Iterator[Location]:
    pos = 0
    while (loc := locate(text, value, pos, fuzzy=False)) is not None:
        yield loc
        pos = loc.end


class Mutation:
    """A letter's rules record, changed value by value in one form.

    Copy on write: the record, its provenance map and every model or list on a changed path
    are copied; the rules' record itself is never changed.
    """

    def __init__(self, letter: Letter, form: str) -> None:
        self.letter = letter
        self.form = form
        self.record = letter.record.model_copy(
            update={"verification": None, "provenance": dict(letter.record.provenance)}
        )
        self.changed: list[str] = []

    @property
    def text(self) -> str:
        return self.letter.text

    def entry(
        self,
        path: str,
        value: Any,
        like: Provenance | None,
        regions: list[tuple[int, int]],
        line: tuple[int, int] | None = None,
    ) -> Provenance:
        """The provenance entry of ``value`` placed in this mutation's form.

        ``like``: the entry the value replaces or copies (kept as is in the ``kept`` form);
        ``line``: for a flag, the guideline line a model would quote for it.
        """
        if self.form == KEPT and like is not None:
            return like
        if isinstance(value, bool):
            quote = fold(self.text[line[0] : line[1]]) if line else ""
            loc = locate_near(self.text, quote, regions) if quote else None
        elif value is None:
            loc = None
        else:
            loc = locate_value(self.text, value, regions)
        method, rule = Method.LLM, PLANTED_RULE
        if self.form == RULES and like is not None:
            method, rule = like.method, like.rule
        if loc is None:
            return Provenance(method=method, rule=rule, match=MatchKind.ABSENT, spans=[])
        kind = match_kind(self.text, loc.start, loc.end, value)
        page = self.letter.doc.page_of(loc.start)
        return Provenance(
            method=method,
            rule=rule,
            match=kind,
            spans=[Span(start=loc.start, end=loc.end, page=page)],
        )

    def set(
        self,
        path: str,
        value: Any,
        regions: list[tuple[int, int]] | None = None,
        like: str | None = None,
        line: tuple[int, int] | None = None,
    ) -> None:
        """Plant ``value`` at ``path`` (``like``: the path whose entry a new value copies)."""
        old = self.record.provenance.get(like or path)
        self.record = _set_at(self.record, path, value)
        self.record.provenance[path] = self.entry(path, value, old, regions or [], line)
        self.changed.append(path)

    def set_items(self, items: list[tuple[Item, dict[str, Provenance]]]) -> None:
        """Replace the items; each comes with its entries keyed by suffix (``.request``)."""
        prov = {p: e for p, e in self.record.provenance.items() if not p.startswith("items[")}
        for k, (_item, entries) in enumerate(items):
            for suffix, e in entries.items():
                prov[f"items[{k}]{suffix}"] = e
        self.record.items = [item for item, _ in items]
        self.record.provenance = prov

    def items(self) -> list[tuple[Item, dict[str, Provenance]]]:
        out = []
        for i, item in enumerate(self.record.items):
            prefix = f"items[{i}]"
            entries = {
                p[len(prefix) :]: e
                for p, e in self.record.provenance.items()
                if p.startswith(prefix + ".")
            }
            out.append((item, entries))
        return out

    def planted(self, kind: str, site: str, **kw: Any) -> Planted:
        kw.setdefault("paths", tuple(self.changed))
        return Planted(kind, self.form, self.letter.name, site, record=self.record, **kw)


def untouched(letter: Letter) -> LetterRecord:
    """The rules record taken apart and put back by ``Mutation`` (no change): the control."""
    m = Mutation(letter, KEPT)
    m.set_items(m.items())
    return m.record


# --- record side: one function per kind, yielding every site in every form ----------------------

RecordMutator = Callable[[Letter], Iterator[Planted]]
RECORD_KINDS: dict[str, RecordMutator] = {}


def record_kind(fn: RecordMutator) -> RecordMutator:
    RECORD_KINDS[fn.__name__] = fn
    return fn


def _citation_sites(record: LetterRecord) -> Iterator[tuple[int, str]]:
    for i, item in enumerate(record.items):
        for g in _GUIDELINES:
            if getattr(item, g).citations:
                yield i, g


@record_kind
def swap_decisions(letter: Letter) -> Iterator[Planted]:
    """Two items' decisions swapped (every pair of items whose decisions differ)."""
    items = letter.record.items
    for i, j in itertools.combinations(range(len(items)), 2):
        a = items[i]
        if items[j].decision == a.decision:
            continue
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(f"items[{i}].decision", items[j].decision, [item_region(letter.record, i)])
            m.set(f"items[{j}].decision", a.decision, [item_region(letter.record, j)])
            yield m.planted("swap_decisions", f"items {i}<->{j}")


@record_kind
def flip_decision(letter: Letter) -> Iterator[Planted]:
    """An item's decision turned to the other one (every item)."""
    for i, item in enumerate(letter.record.items):
        other = Decision.OVERTURNED if item.decision is Decision.UPHELD else Decision.UPHELD
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(f"items[{i}].decision", other, [item_region(letter.record, i)])
            yield m.planted("flip_decision", f"item {i}")


@record_kind
def drop_citation(letter: Letter) -> Iterator[Planted]:
    """One citation of a guideline line left out of the record (nothing wrong is stated: the
    record must not look complete)."""
    rec = letter.record
    for i, g in _citation_sites(rec):
        for c in range(len(getattr(rec.items[i], g).citations)):
            m = Mutation(letter, "-")
            gp = f"items[{i}].{g}"
            cits = getattr(rec.items[i], g).citations
            m.record = _set_at(m.record, f"{gp}.citations", [*cits[:c], *cits[c + 1 :]])
            prov = m.record.provenance
            moved = {}
            for path in [p for p in prov if p.startswith(f"{gp}.citations[")]:
                n = int(re.match(rf"{re.escape(gp)}\.citations\[(\d+)\]", path).group(1))
                entry = prov.pop(path)
                if n != c:
                    rest = path[len(f"{gp}.citations[{n}]") :]
                    moved[f"{gp}.citations[{n - (n > c)}]{rest}"] = entry
            prov.update(moved)
            yield m.planted("drop_citation", f"{gp}.citations[{c}]", loss=True)


def _line_numbers(text: str, line: tuple[int, int] | None) -> set[int]:
    if line is None:
        return set()
    return {int(n) for n in re.findall(r"\d+", text[line[0] : line[1]])}


def _plant_page(
    letter: Letter, i: int, g: str, page: int, kind: str, site: str
) -> Iterator[Planted]:
    """Put ``page`` in item ``i``'s guideline ``g``: replace the first citation's first page
    (of the first citation that has pages), or add it to the first citation."""
    cits = getattr(letter.record.items[i], g).citations
    c = next((c for c, cit in enumerate(cits) if cit.pages), 0)
    cp = f"items[{i}].{g}.citations[{c}]"
    src = _spans(letter.record, f"{cp}.source")
    # Replace the first page; with none, add one that copies the citation's source entry (the
    # span a wrong reader points at).
    path, like = f"{cp}.pages[0]", None if cits[c].pages else f"{cp}.source"
    for form in VALUE_FORMS:
        m = Mutation(letter, form)
        m.set(path, page, [*src, item_region(letter.record, i)], like=like)
        yield m.planted(kind, site)


@record_kind
def page_from_other_item(letter: Letter) -> Iterator[Planted]:
    """An item's guideline gets a page of another guideline line (another item's, or the
    item's other line) that its own line does not print: a cited page where there is one (few
    letters cite pages), else a number printed in that line."""
    rec = letter.record
    lines = {
        (i, g): line
        for i in range(len(rec.items))
        for g in _GUIDELINES
        if (line := guideline_line(rec, i, g)) is not None
    }
    for i, g in _citation_sites(rec):
        own = _line_numbers(letter.text, lines.get((i, g)))
        other = [k for k in lines if k != (i, g)]
        pages = [
            p
            for j, gg in other
            for cit in getattr(rec.items[j], gg).citations
            for p in cit.pages
            if p not in own
        ]
        numbers = sorted(
            {n for k in other for n in _line_numbers(letter.text, lines[k]) if n >= 1} - own
        )
        if pages or numbers:
            page = (pages or numbers)[0]
            yield from _plant_page(letter, i, g, page, "page_from_other_item", f"{i}.{g} {page}")


@record_kind
def year_as_page(letter: Letter) -> Iterator[Planted]:
    """A year printed in the item's own guideline line (an edition: ``2004``) as a page."""
    rec = letter.record
    for i, g in _citation_sites(rec):
        line = guideline_line(rec, i, g)
        if line is None:
            continue
        pages = {p for cit in getattr(rec.items[i], g).citations for p in cit.pages}
        years = [int(y) for y in _YEAR_RX.findall(letter.text, *line) if int(y) not in pages]
        if years:
            yield from _plant_page(letter, i, g, years[0], "year_as_page", f"{i}.{g}")


def _request_sites(
    letter: Letter, new_request: Callable[[int, Item], str | None], kind: str
) -> Iterator[Planted]:
    for i, item in enumerate(letter.record.items):
        value = new_request(i, item)
        if not value or value == item.request:
            continue
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(f"items[{i}].request", value, [item_region(letter.record, i)])
            yield m.planted(kind, f"item {i}")


@record_kind
def truncate_request(letter: Letter) -> Iterator[Planted]:
    """A request missing its last word."""

    def cut(_i: int, item: Item) -> str | None:
        words = item.request.split()
        return " ".join(words[:-1]).rstrip(",;:") if len(words) > 1 else None

    return _request_sites(letter, cut, "truncate_request")


@record_kind
def extend_request(letter: Letter) -> Iterator[Planted]:
    """A request that starts one word early (the word printed before it)."""

    def grow(i: int, item: Item) -> str | None:
        spans = _spans(letter.record, f"items[{i}].request")
        if not spans:
            return None
        start, end = spans[0][0], spans[-1][1]
        before = list(re.finditer(r"\S+", letter.text[max(0, start - 200) : start]))
        if not before:
            return None
        word = before[-1].group()
        return fold(f"{word} {letter.text[start:end]}").rstrip(".:,; ")

    return _request_sites(letter, grow, "extend_request")


@record_kind
def truncate_request_head(letter: Letter) -> Iterator[Planted]:
    """A request that lost its start: a wrapped request read from its last line only (as
    ``11/11/2016`` was read for ``..., DOS: / 11/11/2016: Upheld``), else without its first
    word."""

    def cut(i: int, item: Item) -> str | None:
        spans = _spans(letter.record, f"items[{i}].request")
        if not spans:
            return None
        raw = letter.text[spans[0][0] : spans[-1][1]].rstrip()
        if "\n" in raw:
            return fold(raw[raw.rfind("\n") + 1 :]).rstrip(".:,; ") or None
        words = item.request.split()
        return " ".join(words[1:]) if len(words) > 1 else None

    return _request_sites(letter, cut, "truncate_request_head")


def _previous_word(text: str, start: int) -> str | None:
    before = list(re.finditer(r"\S+", text[max(0, start - 200) : start]))
    return before[-1].group() if before else None


@record_kind
def extend_citation(letter: Letter) -> Iterator[Planted]:
    """A source or section that took in the word printed before it: its label or prefix
    (``Section(s): NSAIDs``, ``Citation ODG ...``, ``MTUS Chronic Pain ...``)."""
    rec = letter.record
    for path in rec.provenance:
        if not (path.endswith(".source") or re.search(r"\.sections\[\d+\]$", path)):
            continue
        spans = _spans(rec, path)
        word = _previous_word(letter.text, spans[0][0]) if spans else None
        if word is None:
            continue
        value = fold(f"{word} {letter.text[spans[0][0] : spans[-1][1]]}").rstrip(".:,; ")
        i = int(re.match(r"items\[(\d+)\]", path).group(1))
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(path, value, [item_region(rec, i)])
            yield m.planted("extend_citation", f"{path} = {value[:40]!r}")


@record_kind
def split_section_at_comma(letter: Letter) -> Iterator[Planted]:
    """A section title that holds a comma read as two sections (``NSAIDs, GI symptoms &
    cardiovascular risk``: one MTUS section, cut in two)."""
    rec = letter.record
    for i, g in _citation_sites(rec):
        for c, cit in enumerate(getattr(rec.items[i], g).citations):
            cp = f"items[{i}].{g}.citations[{c}]"
            for k, section in enumerate(cit.sections):
                if ", " not in section:
                    continue
                parts = [p.strip() for p in section.split(", ", 1)]
                for form in VALUE_FORMS:
                    m = Mutation(letter, form)
                    prov = m.record.provenance  # the mutation's own map
                    old = [prov.pop(f"{cp}.sections[{n}]") for n in range(len(cit.sections))]
                    m.record = _set_at(
                        m.record,
                        f"{cp}.sections",
                        [*cit.sections[:k], *parts, *cit.sections[k + 1 :]],
                    )
                    kept = old[:k] + [old[k]] * len(parts) + old[k + 1 :]
                    for n, e in enumerate(kept):
                        prov[f"{cp}.sections[{n}]"] = e
                    for n, part in enumerate(parts, start=k):
                        # Each half replaces the entry of the whole (kept: its span, too).
                        m.set(f"{cp}.sections[{n}]", part, [item_region(rec, i)])
                    yield m.planted("split_section_at_comma", f"{cp}.sections[{k}]")


@record_kind
def merge_requests(letter: Letter) -> Iterator[Planted]:
    """Two neighbouring items read as one (``A, B``), the second item gone."""
    for i in range(len(letter.record.items) - 1):
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            items = m.items()
            a, b = items[i][0], items[i + 1][0]
            m.set_items(items[: i + 1] + items[i + 2 :])
            m.set(f"items[{i}].request", f"{a.request}, {b.request}", [item_region(m.record, i)])
            yield m.planted("merge_requests", f"items {i}+{i + 1}", loss=True)


@record_kind
def drop_item(letter: Letter) -> Iterator[Planted]:
    """One item left out of the record."""
    for i in range(len(letter.record.items)):
        m = Mutation(letter, "-")
        items = m.items()
        m.set_items(items[:i] + items[i + 1 :])
        yield m.planted("drop_item", f"item {i}", loss=True)


def _item_paths(record: LetterRecord, i: int) -> list[str]:
    return [p for p in record.provenance if p.startswith(f"items[{i}].")]


def _invent(
    letter: Letter, form: str, source: int, request: str, at: int, kind: str, site: str
) -> Planted:
    """A copy of item ``source`` with another ``request``, inserted as item ``at``.

    ``kept``: the copy keeps the source item's entries (its request's too); ``located``: every
    value is placed as a model's is, near where the request is printed; ``rules``: placed so,
    with the source's entries' method and rule.
    """
    m = Mutation(letter, form)
    items = m.items()
    item, entries = items[source]
    copy = item.model_copy(deep=True, update={"request": request})
    items.insert(at, (copy, dict(entries)))
    m.set_items(items)
    rec = letter.record
    loc = locate_value(letter.text, request, [])
    region = [(loc.start, loc.start + ITEM_REGION)] if loc else []
    for path in _item_paths(m.record, at):
        suffix = path[len(f"items[{at}]") :]
        g = next((g for g in _GUIDELINES if suffix.startswith(f".{g}.")), None)
        line = guideline_line(rec, source, g) if g else None
        like = rec.provenance[f"items[{source}]{suffix}"]
        value = value_at(m.record, path)
        m.record.provenance[path] = m.entry(path, value, like, region, line)
    m.changed = _item_paths(m.record, at)
    return m.planted(kind, site)


@record_kind
def invent_item_copy(letter: Letter) -> Iterator[Planted]:
    """An invented item: a copy of the last item with another letter's request."""
    names = [lt.name for lt in letters()]
    other = letters()[(names.index(letter.name) + 1) % len(names)]
    own = {fold(it.request) for it in letter.record.items}
    request = next((it.request for it in other.record.items if fold(it.request) not in own), None)
    if request is None or locate(letter.text, request) is not None:
        return
    last = len(letter.record.items) - 1
    for form in VALUE_FORMS:
        yield _invent(letter, form, last, request, last + 1, "invent_item_copy", f"after {last}")


def summary_region(text: str) -> tuple[int, int] | None:
    """The case summary: from its heading to the decisions section's heading."""
    head = _SUMMARY_RX.search(text)
    if head is None:
        return None
    section = SECTION_RX.search(text, head.end())
    return head.end(), section.start() if section else min(len(text), head.end() + 3000)


@record_kind
def invent_item_from_summary(letter: Letter) -> Iterator[Planted]:
    """An invented item whose request is a phrase of the case summary (4 words, seeded)."""
    region = summary_region(letter.text)
    if region is None:
        return
    # Whole lines' words, so that the phrase is one the summary prints as it is.
    words = list(_WORD_RX.finditer(letter.text, *region))
    if len(words) < 8:
        return
    rng = random.Random(f"{SEED}:summary:{letter.name}")
    k = rng.randrange(len(words) - 4)
    request = fold(letter.text[words[k].start() : words[k + 3].end()])
    for form in VALUE_FORMS:
        yield _invent(letter, form, 0, request, 0, "invent_item_from_summary", repr(request))


@record_kind
def swap_dates(letter: Letter) -> Iterator[Planted]:
    """Two header dates swapped (every pair that differs)."""
    dates = letter.record.dates
    present = [(n, d) for n, d in dates.model_dump().items() if d is not None]
    for (a, da), (b, db) in itertools.combinations(present, 2):
        if da == db:
            continue
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(f"dates.{a}", db)
            m.set(f"dates.{b}", da)
            yield m.planted("swap_dates", f"{a}<->{b}")


@record_kind
def move_span(letter: Letter) -> Iterator[Planted]:
    """A right value whose span is moved to another place the letter prints it (seeded)."""
    rec = letter.record
    movable = []
    for path in sorted(rec.provenance):
        value = value_at(rec, path)
        spans = _spans(rec, path)
        if isinstance(value, bool) or len(spans) != 1:
            continue
        loc = locate_value(letter.text, value, [], avoid=spans[0])
        if loc is not None:
            movable.append((path, loc, spans))
    for path, loc, spans in movable:
        for form in (LOCATED, RULES):
            m = Mutation(letter, form)
            old = rec.provenance[path]
            method, rule = (Method.LLM, PLANTED_RULE) if form == LOCATED else (old.method, old.rule)
            m.record.provenance[path] = Provenance(
                method=method,
                rule=rule,
                match=match_kind(letter.text, loc.start, loc.end, value_at(rec, path)),
                spans=[Span(start=loc.start, end=loc.end, page=letter.doc.page_of(loc.start))],
            )
            yield m.planted("move_span", path, paths=(path,), true_spans={path: spans})


@record_kind
def section_from_other_item(letter: Letter) -> Iterator[Planted]:
    """An item's citation gets a section of another item's (one its own line does not print)."""
    rec = letter.record
    for i, g in _citation_sites(rec):
        line = guideline_line(rec, i, g)
        own = fold(letter.text[line[0] : line[1]]).casefold() if line else ""
        others = [
            s
            for j, item in enumerate(rec.items)
            if j != i
            for gg in _GUIDELINES
            for cit in getattr(item, gg).citations
            for s in cit.sections
            if fold(s).casefold() not in own
        ]
        if not others:
            continue
        cits = getattr(rec.items[i], g).citations
        c = next((c for c, cit in enumerate(cits) if cit.sections), 0)
        cp = f"items[{i}].{g}.citations[{c}]"
        n = 0 if cits[c].sections else len(cits[c].sections)
        like = None if cits[c].sections else f"{cp}.source"
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(f"{cp}.sections[{n}]", others[0], [item_region(rec, i)], like=like)
            yield m.planted("section_from_other_item", f"{i}.{g}")


@record_kind
def flip_flag(letter: Letter) -> Iterator[Planted]:
    """A guideline flag (``cited``, ``outside_mtus``) flipped; its span kept (the rules'
    entry) or the line quoted (a model's)."""
    rec = letter.record
    for i, item in enumerate(rec.items):
        for g in _GUIDELINES:
            line = guideline_line(rec, i, g)
            for flag in ("cited", "outside_mtus"):
                path = f"items[{i}].{g}.{flag}"
                value = not getattr(getattr(item, g), flag)
                for form in (KEPT, LOCATED):
                    m = Mutation(letter, form)
                    m.set(path, value, [item_region(rec, i)], line=line)
                    yield m.planted("flip_flag", path)


@record_kind
def reviewer_phrase(letter: Letter) -> Iterator[Planted]:
    """A reviewer value replaced by another phrase of the letter: the sentence on clinical
    practice as a licensure state, or another credential (a state as the specialty)."""
    rec = letter.record
    practice = _ACTIVE_PRACTICE_RX.search(letter.text)
    phrases = [fold(practice.group())] if practice else []
    values = {
        p: value_at(rec, p) for p in rec.provenance if p.startswith("reviewer.") and "[" in p
    } | {p: value_at(rec, p) for p in ("reviewer.specialty", "reviewer.subspecialty")}
    for path, value in values.items():
        if value is None:
            continue
        others = [v for p, v in values.items() if p != path and v is not None and v != value]
        phrase = (phrases + others)[0] if phrases + others else None
        if phrase is None:
            continue
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(path, phrase)
            yield m.planted("reviewer_phrase", f"{path} = {phrase[:40]!r}")


@record_kind
def extend_letter_value(letter: Letter) -> Iterator[Planted]:
    """A letter-level value run into the word printed after it (``Standard Application``: a
    priority run into the next label)."""
    rec = letter.record
    for path in ("case_number", "priority", "reviewer.specialty", "reviewer.subspecialty"):
        spans = _spans(rec, path)
        value = value_at(rec, path) if path in rec.provenance else None
        if not spans or not isinstance(value, str):
            continue
        after = re.search(r"\S+", letter.text[spans[-1][1] : spans[-1][1] + 200])
        if after is None:
            continue
        longer = fold(f"{letter.text[spans[0][0] : spans[-1][1]]} {after.group()}").rstrip(".:,; ")
        if longer == value:
            continue
        for form in VALUE_FORMS:
            m = Mutation(letter, form)
            m.set(path, longer)
            yield m.planted("extend_letter_value", f"{path} = {longer[:40]!r}")


@record_kind
def patient_other_value(letter: Letter) -> Iterator[Planted]:
    """The patient's age given as another age-like number the letter prints, or the sex as the
    other sex word it prints."""
    rec = letter.record
    if rec.patient.age is not None:
        others = [
            int(n)
            for n in re.findall(r"(?<![\d/.-])(\d{2})(?![\d/.-])", letter.text)
            if 18 <= int(n) <= 99 and int(n) != rec.patient.age
        ]
        if others:
            for form in VALUE_FORMS:
                m = Mutation(letter, form)
                m.set("patient.age", others[0])
                yield m.planted("patient_other_value", f"age {others[0]}")
    sex = rec.patient.sex
    if sex is not None:
        other = Sex.MALE if sex is Sex.FEMALE else Sex.FEMALE
        if locate(letter.text, other.value) is not None:
            for form in VALUE_FORMS:
                m = Mutation(letter, form)
                m.set("patient.sex", other)
                yield m.planted("patient_other_value", f"sex {other.value}")


# --- text side -----------------------------------------------------------------------------------

TextMutator = Callable[[Letter], Iterator[Planted]]
TEXT_KINDS: dict[str, TextMutator] = {}


def text_kind(fn: TextMutator) -> TextMutator:
    TEXT_KINDS[fn.__name__] = fn
    return fn


def _text_planted(letter: Letter, kind: str, form: str, site: str, text: str, **kw: Any) -> Planted:
    return Planted(kind, form, letter.name, site, text=text, **kw)


@text_kind
def delete_decision_word(letter: Letter) -> Iterator[Planted]:
    """One item's decision word deleted from the text (every item in turn)."""
    for i in range(len(letter.record.items)):
        spans = _spans(letter.record, f"items[{i}].decision")
        if not spans:
            continue
        s, e = spans[0]
        text = letter.text[:s] + letter.text[e:]
        yield _text_planted(letter, "delete_decision_word", "-", f"item {i}", text, loss=True)


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _item_block(letter: Letter, i: int) -> tuple[int, int]:
    """Item ``i``'s text: from its first line to the next item's first line (or the end of
    its rationale's line, for the last item)."""
    rec = letter.record
    start = _line_start(letter.text, item_start(rec, i))
    if i + 1 < len(rec.items):
        end = _line_start(letter.text, item_start(rec, i + 1))
    else:
        ends = [e for p in _item_paths(rec, i) for _, e in _spans(rec, p)]
        nl = letter.text.find("\n", max(ends))
        end = len(letter.text) if nl < 0 else nl + 1
    return start, end


@text_kind
def duplicate_item(letter: Letter) -> Iterator[Planted]:
    """An item's block printed twice in a row (every item in turn)."""
    for i in range(len(letter.record.items)):
        s, e = _item_block(letter, i)
        block = letter.text[s:e]
        if not block.endswith("\n"):
            block += "\n"
        text = letter.text[:e] + block + letter.text[e:]
        yield _text_planted(letter, "duplicate_item", "-", f"item {i}", text, same_is_right=True)


@text_kind
def split_word(letter: Letter) -> Iterator[Planted]:
    """The longest word of each item's request broken across a line (``plain``: a bare line
    break, ``hyphen``: a printed end-of-line hyphen)."""
    for i in range(len(letter.record.items)):
        spans = _spans(letter.record, f"items[{i}].request")
        if not spans:
            continue
        words = [w for s, e in spans for w in _WORD_RX.finditer(letter.text, s, e)]
        longest = max(words, key=lambda w: (len(w.group()), -w.start()), default=None)
        if longest is None or len(longest.group()) < 4:
            continue
        cut = longest.start() + len(longest.group()) // 2
        for form, brk in (("plain", "\n"), ("hyphen", "-\n")):
            text = letter.text[:cut] + brk + letter.text[cut:]
            site = f"item {i}: {longest.group()!r}"
            yield _text_planted(letter, "split_word", form, site, text, same_is_right=True)


HEADER_EVERY = 20


@text_kind
def running_headers(letter: Letter) -> Iterator[Planted]:
    """Page furniture: a line every ``HEADER_EVERY`` lines (``page``: ``Page 2 of 5``; ``case``:
    the case number and page, as a header repeats them), or at the page breaks the PDF text
    has (``pagebreak``: a ``Page k of n`` footer before each break, the case number after it)."""
    lines = letter.text.split("\n")
    pages = -(-len(lines) // HEADER_EVERY)
    case = letter.record.case_number or "CM00-0000000"
    for form in ("page", "case"):
        out = []
        for k, line in enumerate(lines):
            out.append(line)
            if k % HEADER_EVERY == HEADER_EVERY - 1 and k + 1 < len(lines):
                page = k // HEADER_EVERY + 2
                header = f"Page {page} of {pages}"
                out.append(header if form == "page" else f"Case Number: {case}    {header}")
        text = "\n".join(out)
        site = f"every {HEADER_EVERY} lines"
        yield _text_planted(letter, "running_headers", form, site, text, same_is_right=True)
    breaks = letter.text.split("\f")
    if len(breaks) > 1:
        n = len(breaks)
        parts = [breaks[0]]
        for k, page in enumerate(breaks[1:], start=1):
            parts[-1] = parts[-1].rstrip("\n") + f"\nPage {k} of {n}\n"
            parts.append(f"IMR Case Number: {case}\n{page}")
        text = "\f".join(parts)
        yield _text_planted(
            letter, "running_headers", "pagebreak", "page breaks", text, same_is_right=True
        )


@text_kind
def paste_letters(letter: Letter) -> Iterator[Planted]:
    """This letter and the next bundled one in one text (``pages``: joined at a page break,
    ``lines``: a blank line between them)."""
    names = [lt.name for lt in letters()]
    other = letters()[(names.index(letter.name) + 1) % len(names)]
    for form, sep in (("pages", "\n\f"), ("lines", "\n\n")):
        text = letter.text.rstrip("\n") + sep + other.text
        yield _text_planted(letter, "paste_letters", form, f"+ {other.name}", text, loss=True)


# --- judging -------------------------------------------------------------------------------------


def _data(record: LetterRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", include=set(DATA_FIELDS) - {"letter"})


def incomplete(record: LetterRecord) -> bool:
    """The record does not look complete: coverage below 1.0, a failed check, or the
    verifier's census says the letter decides what the record does not hold."""
    v = record.verification
    return (
        v is None
        or v.coverage < 1.0
        or not v.complete
        or any(c.result is CheckResult.FAILED for c in v.checks)
    )


def flagged(record: LetterRecord) -> bool:
    """The record says something is wrong: not complete, or a value not verified."""
    return incomplete(record) or any(
        p.status is not Status.VERIFIED for p in record.provenance.values()
    )


def _back_in_place(spans: list[tuple[int, int]], true: list[tuple[int, int]]) -> bool:
    """Every span overlaps one where the value was (a check may place a value on fewer
    characters than the rules did: ``Non-MTUS`` for ``Non-MTUS Citation``)."""
    return bool(spans) and all(any(s < te and ts < e for ts, te in true) for s, e in spans)


def judge(planted: Planted) -> Verdict:
    letter = next(lt for lt in letters() if lt.name == planted.letter)
    if planted.record is not None:
        checked = verify(planted.record, letter.text, letter.doc.page_of)
        prov = checked.provenance
        wrong = [p for p in planted.paths if p in prov]
        if wrong and all(prov[p].status is not Status.VERIFIED for p in wrong):
            return Verdict(True, "flagged")
        if planted.true_spans and all(
            _back_in_place([(s.start, s.end) for s in prov[p].spans], spans)
            for p, spans in planted.true_spans.items()
        ):
            return Verdict(True, "corrected")
        if planted.loss and incomplete(checked):
            return Verdict(True, "incomplete")
        left = [p for p in wrong if prov[p].status is Status.VERIFIED]
        if not left:
            return Verdict(False, "missed", "the record looks complete")
        return Verdict(False, "missed", "verified: " + ", ".join(left[:3]))
    assert planted.text is not None
    try:
        record = extract_document(text_document(planted.text, planted.letter))
    except ImrExtractError:
        return Verdict(True, "refused")
    if flagged(record):
        return Verdict(True, "flagged")
    got, right = _data(record), _data(text_baseline(planted.letter))
    if planted.same_is_right and got == right:
        return Verdict(True, "handled")
    return Verdict(False, "missed", "all verified, but " + _differences(got, right))


def _differences(got: dict[str, Any], right: dict[str, Any]) -> str:
    """What a text's record got wrong, in a few words (for the report)."""
    if len(got["items"]) != len(right["items"]):
        return f"{len(got['items'])} items, not {len(right['items'])}"
    diff = [k for k in got if k != "items" and got[k] != right[k]]
    diff += [
        f"items[{i}].{k}"
        for i, (a, b) in enumerate(zip(got["items"], right["items"], strict=True))
        for k in a
        if a[k] != b[k]
    ]
    return "differs in " + ", ".join(diff[:3]) if diff else "the same"


def defects(sites_per_letter: int | None = SITES_PER_LETTER) -> tuple[Planted, ...]:
    """``plant_all``, kept (the tests look at the planted defects more than once)."""
    return _defects(sites_per_letter)


@functools.cache
def _defects(sites_per_letter: int | None) -> tuple[Planted, ...]:
    return tuple(plant_all(sites_per_letter))


def plant_all(sites_per_letter: int | None = SITES_PER_LETTER) -> Iterator[Planted]:
    """Every kind on every letter where it applies; at most ``sites_per_letter`` sites of a
    kind in one letter (a seeded sample; every form of a site is kept)."""
    for letter in letters():
        for kind, mutator in (*RECORD_KINDS.items(), *TEXT_KINDS.items()):
            by_site: dict[str, list[Planted]] = defaultdict(list)
            for planted in mutator(letter):
                by_site[planted.site].append(planted)
            sites = list(by_site)
            if sites_per_letter is not None and len(sites) > sites_per_letter:
                rng = random.Random(f"{SEED}:{kind}:{letter.name}")
                keep = set(rng.sample(sites, sites_per_letter))
                sites = [s for s in sites if s in keep]
            for site in sites:
                yield from by_site[site]


@dataclass
class Tally:
    planted: int = 0
    caught: int = 0
    how: Counter[str] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)  # "letter: site", for the report

    @property
    def rate(self) -> float:
        return self.caught / self.planted if self.planted else 0.0


def catch_rates(sites_per_letter: int | None = SITES_PER_LETTER) -> dict[str, Tally]:
    """Per defect kind (``kind/form``): planted, caught, how, and the sites missed."""
    return _catch_rates(sites_per_letter)


@functools.cache
def _catch_rates(sites_per_letter: int | None) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for planted in defects(sites_per_letter):
        verdict = judge(planted)
        t = tallies[planted.name]
        t.planted += 1
        t.caught += verdict.caught
        t.how[verdict.how] += 1
        if not verdict.caught:
            t.missed.append(f"{planted.letter}: {planted.site} ({verdict.detail})")
    return dict(sorted(tallies.items()))


@dataclass(frozen=True)
class FalseAlarms:
    values: int
    not_verified: int
    failed_checks: int
    letters_flagged: list[str]

    @property
    def rate(self) -> float:
        return self.not_verified / self.values if self.values else 0.0


def false_alarms(route: str) -> FalseAlarms:
    """On the untouched letters: ``record`` (the rules record taken apart and re-verified, as
    the record-side mutations are) or ``text`` (extracted from the letter's text, as the
    text-side mutations are)."""
    values = not_verified = failed = 0
    names = []
    for letter in letters():
        if route == "record":
            record = verify(untouched(letter), letter.text, letter.doc.page_of)
        else:
            record = text_baseline(letter.name)
        assert record.verification is not None
        values += len(record.provenance)
        bad = sum(p.status is not Status.VERIFIED for p in record.provenance.values())
        not_verified += bad
        fails = sum(c.result is CheckResult.FAILED for c in record.verification.checks)
        failed += fails
        if bad or fails or incomplete(record):
            names.append(letter.name)
    return FalseAlarms(values, not_verified, failed, names)
