"""Letter-level fields printed as labelled values: case number, the five dates, priority.

The 2016-17 header block wraps labels across lines ("Priority: Standard Application \\nReceived:
\\n12/01/2016"), so every label pattern allows any whitespace between its words.

The header is a two-column table, and PDF-to-text tools print tables in their own orders: the
labels of a column first and then their values (pdfminer), or a row's values on a line of their
own just above or below their labels (layout-preserving tools). A value that does not follow
its label is read by ``read_header_table`` only where the layout pairs it with that label
unambiguously: a run of labels followed by as many values of the right kinds, in order; a label
with exactly one unpaired value beside it in the text's order; or, in a column layout, exactly
one unpaired value in the label's own column on the line above or below. Anything else is left
unread rather than guessed.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
from dataclasses import dataclass

from ..text import Found, phrase

CASE_NUMBER_RX = re.compile(r"Case\s+(?:Number|No\.?)\s*:?\s*(CM\d{2}-\d{5,8})\b")
BARE_CASE_NUMBER_RX = re.compile(r"\b(CM\d{2}-\d{7})\b")

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_DATE = (
    r"(\d{1,2}/\d{1,2}/\d{2,4}"
    r"|\d{1,2}-\d{1,2}-\d{4}"
    r"|(?:" + "|".join(_MONTHS) + r")\s+\d{1,2},\s+\d{4})"
)
_DATE_ANY = "(?:" + _DATE[1:]  # the same, capturing nothing

#: Field name -> label as printed. Order matters only for readability.
DATE_LABELS: dict[str, str] = {
    "assigned": "Date Assigned:",
    "injury": "Date of Injury:",
    "decision": "Decision Date:",
    "ur_denial": "UR Denial Date:",
    "application_received": "Application Received:",
}


def _label_then_date(label: str) -> str:
    """What may stand between a label and its date: spaces on the label's line; or a line break
    when the label (or its wrapped last part) stands alone on its line, or when the date stands
    alone at the start of the next line. A date on the next line under a label that shares its
    line with another cell, set in from the margin or beside other values, belongs to some other
    cell of the table ("Decision Date:   UR Denial Date:" / "  12/30/2016   10/28/2016")."""
    words = label.split()
    own_line = r"(?:^|(?<=\n))[ \t]*"
    branches = [
        phrase(label) + r"[ \t]*(?=\d|[A-Z])",
        own_line + phrase(label) + r"[ \t]*\n\s*",
        phrase(label) + r"[ \t]*\n(?:[ \t\f]*\n)*[ ]?(?=" + _DATE_ANY + r"[ \t]*(?:\n|$))",
        *(
            phrase(" ".join(words[:k]))
            + r"[ \t]*\n[ \t]*"
            + phrase(" ".join(words[k:]))
            + r"[ \t]*\n\s*"
            for k in range(1, len(words))
        ),
    ]
    return "(?:" + "|".join(branches) + ")"


def date_label_patterns(labels: dict[str, str]) -> dict[str, re.Pattern[str]]:
    """Field name -> pattern for "<label> <date>", the date in group 1 (for any form's labels)."""
    return {name: re.compile(_label_then_date(label) + _DATE) for name, label in labels.items()}


DATE_RX = date_label_patterns(DATE_LABELS)
PRIORITY_RX = re.compile(r"Priority:\s*(Standard|Expedited|Urgent|Regular)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=8192)
def parse_date(raw: str) -> dt.date | None:
    """A printed date as a ``date``; None when it is not a real date."""
    raw = " ".join(raw.split())
    for fmt in ("%m/%d/%Y", "%m-%d-%Y", "%B %d, %Y", "%m/%d/%y"):
        try:
            return dt.datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    return None


def find_case_number(text: str, end: int | None = None) -> Found[str] | None:
    m = CASE_NUMBER_RX.search(text, 0, end or len(text))
    if m:
        return Found(m.group(1), m.start(1), m.end(1), "header.case_number")
    m = BARE_CASE_NUMBER_RX.search(text, 0, end or len(text))
    if m:
        return Found(m.group(1), m.start(1), m.end(1), "header.case_number_bare")
    return None


def find_dates(
    text: str,
    end: int | None = None,
    patterns: dict[str, re.Pattern[str]] = DATE_RX,
    rule_prefix: str = "header.date",
) -> dict[str, Found[dt.date]]:
    """Each labelled date found before ``end`` (the header region); another form's labels with
    ``patterns`` (see ``date_label_patterns``) and a ``rule_prefix`` of its own.

    With this form's own labels, a date not printed after its label is looked for in the
    header's table layout (``read_header_table``; rule ``header.table.<name>``)."""
    stop = end or len(text)
    out: dict[str, Found[dt.date]] = {}
    for name, rx in patterns.items():
        m = rx.search(text, 0, stop)
        rule = f"{rule_prefix}.{name}"
        if m is None:
            continue
        value = parse_date(m.group(1))
        if value is not None:
            out[name] = Found(value, m.start(1), m.end(1), rule)
    if patterns is DATE_RX and len(out) < len(DATE_RX):
        for name, (start, stop_) in read_header_table(text, stop).items():
            if name in DATE_RX and name not in out:
                value = parse_date(text[start:stop_])
                if value is not None:
                    out[name] = Found(value, start, stop_, f"header.table.{name}")
    return out


def find_priority(text: str, end: int | None = None) -> Found[str] | None:
    m = PRIORITY_RX.search(text, 0, end or len(text))
    if not m:
        span = read_header_table(text, end or len(text)).get("priority")
        if span is None:
            return None
        return Found(text[span[0] : span[1]], *span, "header.table.priority")
    return Found(m.group(1), m.start(1), m.end(1), "header.priority")


# --- the header as a table ---------------------------------------------------------------------

#: Table field -> (label as printed, kind of value).
TABLE_LABELS: dict[str, tuple[str, str]] = {
    "case_number": ("Case Number:", "case"),
    **{name: (label, "date") for name, label in DATE_LABELS.items()},
    "priority": ("Priority:", "priority"),
}
_VALUE_KINDS: dict[str, re.Pattern[str]] = {
    "date": re.compile(_DATE),
    "case": re.compile(r"CM\d{2}-\d{5,8}"),
    "priority": re.compile(r"Standard|Expedited|Urgent|Regular", re.IGNORECASE),
}
_CELL_RX = re.compile(r"\S+(?: \S+)*")  # words parted by single spaces; 2+ spaces part cells
#: How far (in characters) a wrapped label's second line may stand from its first line's column.
_WRAP_COLUMN_SLACK = 6


@dataclass(eq=False)  # cells are compared by identity
class _Cell:
    line: int
    col: int
    start: int
    end: int
    text: str
    kind: str = "other"  # "label", "prefix", "suffix", "value", "other"
    field: str = ""  # a label's (or label part's) field; a value's kind
    taken: bool = False  # a value already paired (beside its label on its own line, or here)
    wrapped: bool = False  # a label printed over two lines (the label patterns do not read it)


def _label_cell(words: str) -> tuple[str, str]:
    """("label" | "prefix" | "suffix" | "other", field) for a cell's text."""
    for name, (label, _kind) in TABLE_LABELS.items():
        if words == label:
            return "label", name
        parts = label.split()
        for k in range(1, len(parts)):
            if words == " ".join(parts[:k]):
                return "prefix", name
            if words == " ".join(parts[k:]):
                return "suffix", name
    return "other", ""


def _value_kind(words: str) -> str:
    for kind, rx in _VALUE_KINDS.items():
        if rx.fullmatch(words):
            return kind
    return ""


def _cells(text: str, end: int) -> list[list[_Cell]]:
    """The lines of ``text[:end]``, each as its cells (classified)."""
    lines: list[list[_Cell]] = []
    pos = 0
    while pos < end:
        nl = text.find("\n", pos, end)
        stop = end if nl < 0 else nl
        row = []
        for m in _CELL_RX.finditer(text, pos, stop):
            words = m.group()
            cell = _Cell(len(lines), m.start() - pos, m.start(), m.end(), words)
            cell.kind, cell.field = _label_cell(words)
            if cell.kind == "other" and (kind := _value_kind(words)):
                cell.kind, cell.field = "value", kind
            row.append(cell)
        lines.append(row)
        pos = stop + 1
    return lines


def _merge_wrapped_labels(lines: list[list[_Cell]]) -> None:
    """A label wrapped in its cell ("Application" / "Received:") becomes one label at its first
    part; the value may stand between the parts ("Application" / "12/01/2016" / "Received:")."""
    for i, row in enumerate(lines):
        for cell in row:
            if cell.kind != "prefix":
                continue
            for below in lines[i + 1 : i + 3]:
                suffix = next(
                    (
                        c
                        for c in below
                        if c.kind == "suffix"
                        and c.field == cell.field
                        and (len(below) == 1 or abs(c.col - cell.col) <= _WRAP_COLUMN_SLACK)
                    ),
                    None,
                )
                if suffix is not None:
                    cell.kind, cell.wrapped = "label", True
                    suffix.kind = "other"
                    break


def _run_end(seq: list[_Cell], i: int) -> int:
    """The end of the run of cells of ``seq[i]``'s kind that starts at ``i``."""
    j = i
    while j < len(seq) and seq[j].kind == seq[i].kind:
        j += 1
    return j


class _Table:
    """The header's cells and the pairings made so far."""

    def __init__(self, text: str, end: int) -> None:
        self.lines = _cells(text, end)
        _merge_wrapped_labels(self.lines)
        self.out: dict[str, tuple[int, int]] = {}
        #: Labels with no value beside them on their line (the last cell, or before a label).
        self.open: list[_Cell] = []
        for row in self.lines:
            for a, b in itertools.pairwise(row):
                if a.kind == "label" and b.kind == "value" and self.fits(a, b):
                    b.taken = True  # printed beside its label: the label patterns read it ...
                    if a.wrapped:  # ... unless the label is wrapped
                        self.pair(a, b)
            self.open += [a for a, b in itertools.pairwise(row) if a.kind == "label" == b.kind]
            if row and row[-1].kind == "label":
                self.open.append(row[-1])
        # One cell a line, in text order (a tool that prints the table column by column); any
        # other non-blank line stands between them as a barrier.
        barrier = _Cell(-1, 0, 0, 0, "")
        self.seq = [row[0] if len(row) == 1 else barrier for row in self.lines if row]

    def fits(self, label: _Cell, value: _Cell) -> bool:
        return not value.taken and TABLE_LABELS[label.field][1] == value.field

    def pair(self, label: _Cell, value: _Cell) -> None:
        value.taken = True
        self.out.setdefault(label.field, (value.start, value.end))

    def pair_column_runs(self) -> None:
        """A column's labels then its values in the same order (values after the run's are the
        next column's), or a column's values then its labels."""
        seq, i = self.seq, 0
        while i < len(seq):
            j = _run_end(seq, i)
            k = _run_end(seq, j) if j < len(seq) else j
            run, nxt = seq[i:j], seq[j:k]
            labels, values = [], []
            if len(run) >= 2 and len(nxt) >= len(run) and run[0].kind == "label":
                labels, values = run, nxt[: len(run)]
            elif len(run) >= len(nxt) >= 2 and run[0].kind == "value":
                labels, values = nxt, run[len(run) - len(nxt) :]
            if labels and all(
                lab.kind == "label" and self.fits(lab, val)
                for lab, val in zip(labels, values, strict=True)
            ):
                for lab, val in zip(labels, values, strict=True):
                    self.pair(lab, val)
            i = j

    def _partners(self, n: int) -> list[int]:
        cell = self.seq[n]
        found = []
        for m in (n - 1, n + 1):
            if not 0 <= m < len(self.seq):
                continue
            other = self.seq[m]
            label, value = (cell, other) if cell.kind == "label" else (other, cell)
            if (
                label.kind == "label"
                and value.kind == "value"
                and label.field not in self.out
                and label in self.open
                and self.fits(label, value)
            ):
                found.append(m)
        return found

    def pair_neighbours(self) -> None:
        """A label and a value of its kind next to each other (either first), where neither has
        another such partner beside it; a pairing may settle a neighbour's choice, so go on
        until nothing changes."""
        changed = True
        while changed:
            changed = False
            for n, cell in enumerate(self.seq):
                if cell.kind != "label":
                    continue
                near = self._partners(n)
                if len(near) == 1 and self._partners(near[0]) == [n]:
                    self.pair(cell, self.seq[near[0]])
                    changed = True

    def pair_grid(self) -> None:
        """A row's values on a line of their own above or below its labels: a label takes the
        one unpaired value of its kind in its own column (up to the next label on its line)."""
        for label in self.open:
            row = self.lines[label.line]
            if label.field in self.out or len(row) < 2:
                continue
            right = [c.col for c in row if c.col > label.col and c.kind == "label"]
            limit = min(right, default=10**6)
            near = [
                c
                for r in (label.line - 1, label.line + 1)
                if 0 <= r < len(self.lines)
                for c in self.lines[r]
                if c.kind == "value" and label.col <= c.col < limit and self.fits(label, c)
            ]
            if len(near) == 1:
                self.pair(label, near[0])


def read_header_table(text: str, end: int) -> dict[str, tuple[int, int]]:
    """Field -> value span for the header labels whose value does not follow them on their
    line, where the table's layout pairs label and value unambiguously (see the module doc)."""
    if not any(label in text[:end] for label, _ in TABLE_LABELS.values()):
        return {}
    table = _Table(text, end)
    table.pair_column_runs()
    table.pair_neighbours()
    table.pair_grid()
    return table.out


INJURY_IN_PROSE_RX = re.compile(
    r"\binjury\s+(?:dated|on|of)\s+"
    + _DATE
    + r"|\bdate\s+of\s+injury\s+(?:of\s+|on\s+|is\s+|was\s+)?"
    + _DATE,
    re.IGNORECASE,
)


def find_injury_date_in_prose(text: str, start: int, end: int) -> Found[dt.date] | None:
    """The date of injury as the case summary states it ("a work injury dated 10/22/01")."""
    for m in INJURY_IN_PROSE_RX.finditer(text, start, end):
        group = 1 if m.group(1) else 2
        value = parse_date(m.group(group))
        if value is not None:
            return Found(value, m.start(group), m.end(group), "summary.injury_date")
    return None
