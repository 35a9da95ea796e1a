"""Faked structure: a decisions heading, an item or a decision where the letter's form puts none.

Invariant: every attack is *derived* from a bundled letter (tests/data/letters and the re-laid
letters of the other forms in tests/data/relaid, never edited): its text as the letter prints
it, with lines inserted at a sentence end near the middle of its case summary (``summary``) or
of its first item's rationale (``rationale``). The inserted lines copy the letter's own shapes:
its decisions heading (the capitals line above its first item), its first item's decision line
with the request replaced by a request of another bundled letter that this one never prints,
the decision turned over, and the numbering moved on. Kinds:

- ``heading_item``: the decisions heading, then the item line (the 2013 notice: its numbered
  decision sentence);
- ``item_line``: the item line alone (the notice: its item heading, ``N. Regarding the request
  for X:``);
- ``decision_sentence``: a decision sentence (the notice: its numbered decision sentence; the
  other forms: "MAXIMUS Federal Services, Inc. has determined the request for X is medically
  necessary and appropriate.");
- ``conclusion_sentence``: "The request for X is medically necessary." A case summary states
  such sentences of its own (the prose letter ``000_95767a46bf993051.txt`` summarises the
  rationale that way), so it must never become an item, but it is not flagged: a flag there
  would be a false alarm on a real letter;
- ``heading_block``: the heading, then a whole item block (decision line, guideline lines and
  rationale) copied with another request: a forgery of the letter's own item. It is flagged and
  never verified, but where two copies of the heading each open a well-formed item, the real
  item next to the copy is left unverified too (which copy is the letter's cannot be told).

``judge`` holds a record read from an attack to what the attack must not achieve.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from imr_extract.extract import extract_document
from imr_extract.ingest import Document, read_path, read_text_bytes
from imr_extract.locate import locate
from imr_extract.rules.numbered import find_decision_sentences
from imr_extract.schema import CheckResult, Decision, LetterRecord, Status
from imr_extract.text import fold
from imr_extract.verify.grounding import value_at
from variants import letter_names, letter_path

KINDS = ("heading_item", "item_line", "decision_sentence", "conclusion_sentence", "heading_block")
#: Kinds that must be flagged, and leave the real items verified as before.
FLAGGED_KINDS = ("heading_item", "item_line", "decision_sentence")
PLACES = ("summary", "rationale")

_SUMMARY_RX = re.compile(r"CASE\s+SUMMARY|Case\s+Summary\s*:")
_REGARDING_LINE_RX = re.compile(r"^[ \t]*\d{1,2}[ \t]*[.)][ \t]+Regarding\b", re.MULTILINE)
_ITEM_LABEL_RX = re.compile(r"^(\s*(?:Item|Issue|Request)\s*#?\s*)(\d+)(\s*[:.)]\s*)$")
_NUMBER_RX = re.compile(r"^(\s*)(\d{1,2})")
_WORD_RX = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class Attack:
    letter: str
    layout: str
    kind: str
    place: str
    text: str
    inserted: tuple[int, int]  # where the inserted lines stand in ``text``
    request: str  # the made-up item's request
    decision: Decision

    @property
    def flag_required(self) -> bool:
        return self.kind in FLAGGED_KINDS

    @property
    def id(self) -> str:
        return f"{self.layout}:{self.letter}:{self.kind}@{self.place}"


@functools.cache
def baseline(name: str) -> tuple[str, LetterRecord]:
    """The letter's text and the rules' record of it, read as a text file (as attacks are)."""
    text = read_path(letter_path(name)).text
    return text, extract_document(read_text_bytes(text.encode("utf-8"), name))


def document(attack: Attack) -> Document:
    return read_text_bytes(attack.text.encode("utf-8"), attack.letter)


def read(attack: Attack) -> LetterRecord:
    return extract_document(document(attack))


def inserted_in(attack: Attack, text: str) -> tuple[int, int]:
    """Where the inserted lines stand in ``text``, the attack's text as read (reading may drop
    page furniture before them, moving their offsets)."""
    lines = [ln.strip() for ln in attack.text[slice(*attack.inserted)].split("\n") if ln.strip()]
    start = text.find(lines[0])
    end = text.find(lines[-1], start)
    assert start >= 0 and end >= 0, "the inserted lines are read as printed"
    return start, end + len(lines[-1])


def _double_spaced(text: str) -> bool:
    lines = text.count("\n") + 1
    return len(re.findall(r"\n[ \t\f]*(?=\n)", text)) / lines > 0.35


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _spans(record: LetterRecord, path: str) -> list[tuple[int, int]]:
    prov = record.provenance.get(path)
    return [(s.start, s.end) for s in prov.spans] if prov else []


def _is_heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return len(line.split()) >= 3 and bool(letters) and all(c.isupper() for c in letters)


def _decisions_heading(text: str, before: int) -> str | None:
    """The letter's decisions heading as printed: the last capitals line above ``before``."""
    lines = text[:before].split("\n")
    return next((ln.strip() for ln in reversed(lines) if _is_heading(ln.strip())), None)


def _other_request(name: str, text: str) -> str | None:
    """A request of another bundled letter (the next ones in name order) this one never prints."""
    names = letter_names()
    k = names.index(name)
    for other in names[k + 1 :] + names[:k]:
        for item in baseline(other)[1].items:
            if len(item.request) < 90 and locate(text, item.request) is None:
                return item.request
    return None


def _renumber(prefix: str, number: int) -> str:
    m = _ITEM_LABEL_RX.match(prefix)
    if m:
        return f"{m.group(1)}{number}{m.group(3)}"
    return re.sub(r"\S", "", prefix)  # leading text of another kind: only its indentation


def _item_line(text: str, record: LetterRecord, request: str, word: str) -> str | None:
    """The first item's decision line, its request and decision word replaced."""
    req, dec = _spans(record, "items[0].request"), _spans(record, "items[0].decision")
    if not req or not dec:
        return None
    r0, r1 = req[0][0], req[-1][1]
    d0, d1 = dec[0]
    if not r1 <= d0 or text[d0:d1].lower() not in ("upheld", "overturned"):
        return None
    prefix = _renumber(text[_line_start(text, r0) : r0], len(record.items) + 1)
    return prefix + request + text[r1:d0] + word + text[d1 : _line_end(text, d1)]


def _item_block(text: str, record: LetterRecord, request: str, word: str) -> str | None:
    """The first item's whole block (decision line, guideline lines, rationale), as above."""
    line = _item_line(text, record, request, word)
    dec = _spans(record, "items[0].decision")
    if line is None:
        return None
    ends = [
        e
        for p, prov in record.provenance.items()
        if p.startswith("items[0].")
        for _s, e in ((s.start, s.end) for s in prov.spans)
    ]
    return line + text[_line_end(text, dec[0][1]) : _line_end(text, max(ends))]


def _notice_sentence(text: str, record: LetterRecord, request: str, decision: Decision) -> str:
    """The notice's first numbered decision sentence, for ``request`` and ``decision``."""
    s = find_decision_sentences(text)[0]
    start = _line_start(text, s.start)
    stop = text.find(".", s.decision.end)
    phrase = (
        "is medically necessary"
        if decision is Decision.OVERTURNED
        else "is not medically necessary"
    )
    out = (
        text[start : s.request.start]
        + request
        + text[s.request.end : s.decision.start]
        + phrase
        + text[s.decision.end : stop + 1]
    )
    return _NUMBER_RX.sub(lambda m: f"{m.group(1)}{len(record.items) + 1}", out, count=1)


def _notice_item_heading(text: str, record: LetterRecord, request: str) -> str | None:
    m = _REGARDING_LINE_RX.search(text)
    req = _spans(record, "items[0].request")
    if m is None or not req:
        return None
    lead = text[m.start() : req[0][0]]
    return _NUMBER_RX.sub(lambda n: f"{n.group(1)}{len(record.items) + 1}", lead, count=1) + (
        request + ":"
    )


_SENTENCE_END_RX = re.compile(r"[^\W\d_]{2}\.(?=[ \t]*\n|[ \t]+[A-Z])")


def _sentence_ends(text: str, start: int, end: int) -> list[int]:
    """Offsets just after a full stop that ends a sentence (a word before, a line's end or a
    capital after)."""
    return [m.end() for m in _SENTENCE_END_RX.finditer(text, start, end)]


def _summary_region(text: str, first_item: int) -> tuple[int, int] | None:
    head = _SUMMARY_RX.search(text)
    if head is None:
        return None
    pos = _line_end(text, head.end())
    while pos < len(text):
        nxt = _line_end(text, pos + 1)
        line = text[pos + 1 : nxt].strip()
        if _is_heading(line) or _REGARDING_LINE_RX.match(text[pos + 1 : nxt]):
            return head.end(), pos
        pos = nxt
    return head.end(), min(first_item, len(text))


def _place(text: str, region: tuple[int, int], drop_last: bool) -> int | None:
    ends = _sentence_ends(text, *region)
    if drop_last:
        ends = ends[:-1]
    if not ends:
        return None
    middle = (region[0] + region[1]) // 2
    return min(ends, key=lambda p: abs(p - middle))


def _insert(text: str, at: int, lines: list[str]) -> tuple[str, tuple[int, int]]:
    sep = "\n\n" if _double_spaced(text) else "\n"
    block = sep + sep.join(lines) + sep
    rest = text[at:]
    if rest.startswith((" ", "\t")):
        rest = rest.lstrip(" \t")
    return text[:at] + block + rest, (at, at + len(block))


def attacks_of(name: str) -> Iterator[Attack]:
    text, record = baseline(name)
    if not record.items:
        return
    request = _other_request(name, text)
    if request is None:
        return
    decision = (
        Decision.UPHELD if record.items[0].decision is Decision.OVERTURNED else Decision.OVERTURNED
    )
    word = decision.value.capitalize()
    notice = record.layout == "notice_2013"
    first = min((s[0] for s in _spans(record, "items[0].request")), default=len(text))
    heading = _decisions_heading(text, first)
    necessary = (
        "is medically necessary"
        if decision is Decision.OVERTURNED
        else ("is not medically necessary")
    )
    shapes: dict[str, list[str] | None] = {}
    if notice:
        sentence = _notice_sentence(text, record, request, decision)
        shapes["heading_item"] = [heading, sentence] if heading else None
        item_heading = _notice_item_heading(text, record, request)
        shapes["item_line"] = [item_heading] if item_heading else None
        shapes["decision_sentence"] = [sentence]
        shapes["heading_block"] = None
    else:
        line = _item_line(text, record, request, word)
        block = _item_block(text, record, request, word)
        shapes["heading_item"] = [heading, line] if heading and line else None
        shapes["item_line"] = [line] if line else None
        shapes["decision_sentence"] = [
            f"MAXIMUS Federal Services, Inc. has determined the request for {request} "
            f"{necessary} and appropriate."
        ]
        shapes["heading_block"] = [heading, block] if heading and block else None
    shapes["conclusion_sentence"] = [f"The request for {request} {necessary}."]

    regions: dict[str, tuple[tuple[int, int], bool] | None] = {}
    summary = _summary_region(text, first)
    regions["summary"] = (summary, False) if summary else None
    rationale = _spans(record, "items[0].rationale")
    regions["rationale"] = ((rationale[0][0], rationale[-1][1]), True) if rationale else None
    for place, region in regions.items():
        if region is None:
            continue
        at = _place(text, *region)
        if at is None:
            continue
        for kind in KINDS:
            lines = shapes.get(kind)
            if not lines:
                continue
            attacked, inserted = _insert(text, at, lines)
            yield Attack(name, record.layout, kind, place, attacked, inserted, request, decision)


@functools.cache
def attacks() -> tuple[Attack, ...]:
    return tuple(a for name in letter_names() for a in attacks_of(name))


# --- judging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    obeyed: bool  # an item of the made-up request has a verified request or decision
    flagged: bool  # the record names the inserted lines (a warning, a check) and is not complete
    warned: bool  # a warning names the inserted lines
    real_kept: bool  # every value verified on the untouched letter is verified still
    lost: list[str]


def _names_inserted(message: str, inserted: tuple[int, int]) -> bool:
    return any(inserted[0] <= int(n) < inserted[1] for n in re.findall(r"\d+", message))


def _key(record: LetterRecord, path: str) -> tuple[str, str]:
    m = re.match(r"items\[(\d+)\](.*)", path)
    if not m:
        return "", path
    return " ".join(_WORD_RX.findall(fold(record.items[int(m.group(1))].request).lower())), m.group(
        2
    )


def verified_values(record: LetterRecord, *, rationale: bool = True) -> dict[tuple[str, str], str]:
    return {
        _key(record, p): repr(value_at(record, p))
        for p, prov in record.provenance.items()
        if prov.status is Status.VERIFIED and (rationale or not p.endswith(".rationale"))
    }


def is_fake(record: LetterRecord, i: int, request: str) -> bool:
    words = lambda s: _WORD_RX.findall(fold(s).lower())  # noqa: E731
    return words(record.items[i].request) == words(request) or (
        len(words(request)) > 2
        and " ".join(words(request)) in " ".join(words(record.items[i].request))
    )


def judge(attack: Attack, record: LetterRecord) -> Verdict:
    obeyed = any(
        record.provenance[f"items[{i}].{f}"].status is Status.VERIFIED
        for i in range(len(record.items))
        if is_fake(record, i, attack.request)
        for f in ("request", "decision")
        if f"items[{i}].{f}" in record.provenance
    )
    v = record.verification
    assert v is not None
    messages = [
        c.detail for c in v.checks if c.result in (CheckResult.FAILED, CheckResult.INCONCLUSIVE)
    ]
    inserted = inserted_in(attack, document(attack).text)
    warned = any(_names_inserted(w, inserted) for w in record.warnings)
    checked = any(_names_inserted(m, inserted) for m in messages)
    flagged = checked and not v.complete
    before = verified_values(baseline(attack.letter)[1], rationale=attack.place != "rationale")
    after = verified_values(record, rationale=attack.place != "rationale")
    lost = [f"{k}={val}" for k, val in before.items() if after.get(k) != val]
    return Verdict(obeyed, flagged, warned, not lost, lost)
