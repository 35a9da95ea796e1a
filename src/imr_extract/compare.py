"""How far two sets of records of the same letters agree (rules vs LLM, one run vs another).

``compare(left, right)`` pairs records by their ``letter``, aligns each pair's items
(``fields.align_items``) and, for every field in ``fields.LETTER_FIELDS`` and
``fields.ITEM_FIELDS`` that at least one side states (not null, not empty), counts:

- exact: both sides hold the same value;
- fuzzy: the same once every string is casefolded and its whitespace folded, or a string (each
  element, for lists and objects) with difflib ratio >= ``FUZZY_MIN_RATIO`` on those folded
  forms. Exact agreement is fuzzy agreement too, so fuzzy >= exact.

Decisions are also compared with Cohen's kappa over every row of the item alignment: each side's
category is ``upheld``, ``overturned``, or ``missing`` when that side has no item aligned with the
other's. An invented or a dropped item thus counts as a disagreement, not as nothing. Kappa is
``None`` where it is undefined (no items, or both sides put every item in one category).

Every field that is not exactly equal is a ``Disagreement``, with both values and both records'
spans and verification status from their provenance, so each can be checked in the letter.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from .fields import (
    ITEM_FIELDS,
    LETTER_FIELDS,
    FieldKind,
    FieldSpec,
    RecordLike,
    Support,
    align_items,
    fold_request,
    is_null,
    item_path,
    letter_name,
    record_data,
    support,
)
from .reporting import listing, ratio

#: Two strings whose folded forms are at least this similar agree fuzzily.
FUZZY_MIN_RATIO = 0.9
#: A decision's category when the other side has the item and this side does not.
MISSING = "missing"


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def fuzzy_equal(a: Any, b: Any, kind: FieldKind = FieldKind.VALUE) -> bool:
    """Whether two values agree once case and whitespace are set aside (see the module doc).

    Lists compare element by element (a SET field's elements in folded order); objects key by
    key; other values exactly.
    """
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        fa, fb = fold_request(a), fold_request(b)
        if fa == fb:
            return True
        return difflib.SequenceMatcher(None, fa, fb, autojunk=False).ratio() >= FUZZY_MIN_RATIO
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        if kind is FieldKind.SET:
            a, b = sorted(a, key=_fold_key), sorted(b, key=_fold_key)
        return all(fuzzy_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(fuzzy_equal(a[k], b[k]) for k in a)
    return False


def _fold_key(value: Any) -> str:
    return fold_request(value) if isinstance(value, str) else repr(value)


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' categories: (p_o - p_e) / (1 - p_e).

    p_o is the share of pairs where both chose the same category; p_e the agreement expected by
    chance, the sum over categories of the product of each rater's share for it. ``None`` when
    there are no pairs or p_e is 1 (both raters used one and the same category throughout).
    """
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    left = Counter(a for a, _ in pairs)
    right = Counter(b for _, b in pairs)
    expected = sum(left[c] * right[c] for c in left) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


@dataclass
class FieldAgreement:
    """Agreement counts of one field over every letter (or aligned item row) compared."""

    field: str
    compared: int = 0  # at least one side states a value
    exact: int = 0
    fuzzy: int = 0  # exact included
    left_only: int = 0  # only the left side states a value
    right_only: int = 0

    @property
    def disagree(self) -> int:
        return self.compared - self.fuzzy

    @property
    def exact_rate(self) -> float | None:
        return _rate(self.exact, self.compared)

    @property
    def fuzzy_rate(self) -> float | None:
        return _rate(self.fuzzy, self.compared)

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "compared": self.compared,
            "exact": self.exact,
            "fuzzy": self.fuzzy,
            "disagree": self.disagree,
            "left_only": self.left_only,
            "right_only": self.right_only,
            "exact_rate": self.exact_rate,
            "fuzzy_rate": self.fuzzy_rate,
        }


@dataclass(frozen=True)
class Disagreement:
    """One field the two sides do not hold exactly the same value for.

    ``left_path`` / ``right_path`` are the field in each record (``None`` for an item that side
    lacks); ``fuzzy`` says whether the values agree once folded. The spans are
    ``(start, end, page)`` in each record's own letter text, from its provenance.
    """

    letter: str
    left_path: str | None
    right_path: str | None
    left: Any
    right: Any
    fuzzy: bool
    left_support: Support = field(default_factory=Support)
    right_support: Support = field(default_factory=Support)

    @property
    def path(self) -> str:
        """The left-hand path, or the right-hand one for an item only the right has."""
        path = self.left_path or self.right_path
        assert path is not None  # an alignment row always has an item on one side
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "letter": self.letter,
            "path": self.path,
            "left_path": self.left_path,
            "right_path": self.right_path,
            "left": self.left,
            "right": self.right,
            "fuzzy": self.fuzzy,
            "left_spans": [list(s) for s in self.left_support.spans],
            "right_spans": [list(s) for s in self.right_support.spans],
            "left_status": self.left_support.status,
            "right_status": self.right_support.status,
        }


@dataclass
class Comparison:
    """Per-field agreement, decision kappa and every disagreement between two record sets."""

    left_name: str = "left"
    right_name: str = "right"
    fields: dict[str, FieldAgreement] = field(
        default_factory=lambda: {
            s.name: FieldAgreement(s.name) for s in LETTER_FIELDS + ITEM_FIELDS
        }
    )
    letters: list[str] = field(default_factory=list)
    only_left: list[str] = field(default_factory=list)
    only_right: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    #: (left category, right category) for every row of every letter's item alignment.
    decisions: list[tuple[str, str]] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa on item decisions (``missing`` for an item one side lacks)."""
        return cohen_kappa(self.decisions)

    @property
    def decision_agreement(self) -> float | None:
        """Share of alignment rows with the same category on both sides (kappa's p_o)."""
        return _rate(sum(a == b for a, b in self.decisions), len(self.decisions))

    def items_count(self) -> dict[str, int]:
        """Alignment rows with an item on both sides, only on the left, only on the right."""
        return {
            "aligned": sum(MISSING not in p for p in self.decisions),
            "left_only": sum(p[1] == MISSING for p in self.decisions),
            "right_only": sum(p[0] == MISSING for p in self.decisions),
        }

    def confusion(self) -> list[dict[str, Any]]:
        counts = Counter(self.decisions)
        return [
            {self.left_name: a, self.right_name: b, "count": n}
            for (a, b), n in sorted(counts.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "left": self.left_name,
            "right": self.right_name,
            "letters_compared": len(self.letters),
            "letters": self.letters,
            "only_left": self.only_left,
            "only_right": self.only_right,
            "duplicates": self.duplicates,
            "fields": [f.to_dict() for f in self.fields.values()],
            "items": self.items_count(),
            "decisions": {
                "kappa": self.kappa,
                "agreement": self.decision_agreement,
                "confusion": self.confusion(),
            },
            "disagreements": [d.to_dict() for d in self.disagreements],
        }

    def csv_rows(self) -> tuple[list[str], list[dict[str, Any]]]:
        rows = [f.to_dict() for f in self.fields.values()]
        return list(rows[0]), rows

    def renderable(self, limit: int = 50) -> RenderableType:
        title = (
            f"imr-extract compare: {self.left_name} vs {self.right_name}, "
            f"{len(self.letters)} letters"
        )
        table = Table(title=title, title_justify="left")
        for name in ("field", "compared", "exact", "fuzzy", "disagree", "exact %", "fuzzy %"):
            table.add_column(name, justify="left" if name == "field" else "right")
        for f in self.fields.values():
            table.add_row(
                f.field,
                str(f.compared),
                str(f.exact),
                str(f.fuzzy),
                str(f.disagree),
                _pct(f.exact_rate),
                _pct(f.fuzzy_rate),
            )
        summary = Table(show_header=False, title="summary", title_justify="left")
        summary.add_column("what")
        summary.add_column("value", overflow="fold")
        summary.add_row("letters compared", str(len(self.letters)))
        summary.add_row(f"letters only in {self.left_name}", listing(self.only_left))
        summary.add_row(f"letters only in {self.right_name}", listing(self.only_right))
        if self.duplicates:
            summary.add_row("duplicate records (ignored)", listing(self.duplicates))
        counts = self.items_count()
        summary.add_row("items aligned", str(counts["aligned"]))
        summary.add_row(f"items only in {self.left_name}", str(counts["left_only"]))
        summary.add_row(f"items only in {self.right_name}", str(counts["right_only"]))
        summary.add_row("decision agreement", ratio(self.decision_agreement))
        summary.add_row("Cohen's kappa (decisions)", ratio(self.kappa))
        summary.add_row("disagreements", str(len(self.disagreements)))
        parts: list[RenderableType] = [table, summary]
        if self.disagreements and limit > 0:
            shown = self.disagreements[:limit]
            title = "disagreements"
            if len(shown) < len(self.disagreements):
                title += f" ({len(shown)} of {len(self.disagreements)}; all in --format json)"
            t = Table(title=title, title_justify="left")
            for name in ("letter", "path", self.left_name, self.right_name):
                t.add_column(name, overflow="fold")
            t.add_column(f"{self.left_name} spans")
            t.add_column(f"{self.right_name} spans")
            for d in shown:
                t.add_row(
                    d.letter,
                    self._where(d) + (" (fuzzy)" if d.fuzzy else ""),
                    _cell(d.left),
                    _cell(d.right),
                    _spans(d.left_support),
                    _spans(d.right_support),
                )
            parts.append(t)
        return Group(*parts)

    def _where(self, d: Disagreement) -> str:
        if d.right_path is None:
            return f"{d.left_path} (only {self.left_name})"
        if d.left_path is None:
            return f"{d.right_path} (only {self.right_name})"
        if d.left_path != d.right_path:
            return f"{d.left_path} ({self.right_name} {d.right_path.split('.', 1)[0]})"
        return d.left_path


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(value: Any, width: int = 50) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _spans(s: Support) -> str:
    spans = ", ".join(f"{a}-{b} p{p}" for a, b, p in s.spans[:3])
    if len(s.spans) > 3:
        spans += f", +{len(s.spans) - 3}"
    return " ".join(x for x in (spans, f"[{s.status}]" if s.status else "") if x)


def _by_letter(
    records: Iterable[RecordLike], side: str, duplicates: list[str]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        name = letter_name(record)
        if name in out:
            duplicates.append(f"{side}:{name}")
        else:
            out[name] = record_data(record)
    return out


def _tally(
    report: Comparison,
    letter: str,
    spec: FieldSpec,
    roots: tuple[dict[str, Any], dict[str, Any]],
    paths: tuple[str | None, str | None],
    values: tuple[Any, Any],
) -> None:
    a, b = values
    if is_null(a) and is_null(b):
        return
    tally = report.fields[spec.name]
    tally.compared += 1
    tally.left_only += is_null(b)
    tally.right_only += is_null(a)
    if a == b:
        tally.exact += 1
        tally.fuzzy += 1
        return
    fuzzy = not is_null(a) and not is_null(b) and fuzzy_equal(a, b, spec.kind)
    tally.fuzzy += fuzzy
    left_path, right_path = paths
    report.disagreements.append(
        Disagreement(
            letter,
            left_path,
            right_path,
            a,
            b,
            fuzzy,
            support(roots[0], left_path) if left_path else Support(),
            support(roots[1], right_path) if right_path else Support(),
        )
    )


def _compare_letter(
    report: Comparison, letter: str, left: dict[str, Any], right: dict[str, Any]
) -> None:
    roots = (left, right)
    for spec in LETTER_FIELDS:
        values = (spec.read(left), spec.read(right))
        _tally(report, letter, spec, roots, (spec.path, spec.path), values)
    l_items, r_items = left.get("items") or [], right.get("items") or []
    for pair in align_items(l_items, r_items):
        li = l_items[pair.left] if pair.left is not None else None
        ri = r_items[pair.right] if pair.right is not None else None
        for spec in ITEM_FIELDS:
            paths = (
                item_path(pair.left, spec.path) if pair.left is not None else None,
                item_path(pair.right, spec.path) if pair.right is not None else None,
            )
            values = (spec.read(li), spec.read(ri))
            _tally(report, letter, spec, roots, paths, values)
        report.decisions.append((_category(li), _category(ri)))


def _category(item: dict[str, Any] | None) -> str:
    decision = item.get("decision") if item is not None else None
    return decision if isinstance(decision, str) else MISSING


def compare(
    left: Iterable[RecordLike],
    right: Iterable[RecordLike],
    *,
    left_name: str = "left",
    right_name: str = "right",
) -> Comparison:
    """Compare two sets of records of the same letters, keyed by ``letter``.

    Args:
        left: records (or their JSON) from one extractor or run.
        right: records of the same letters from another.
        left_name: how reports name the left side (``rules``, a file name).
        right_name: how reports name the right side.

    Returns:
        Per-field agreement, the decision kappa and every disagreement; letters only one side
        has are listed in ``only_left`` / ``only_right``, not compared.

    Raises:
        RecordsError: a record names no letter.
    """
    report = Comparison(left_name=left_name, right_name=right_name)
    lefts = _by_letter(left, "left", report.duplicates)
    rights = _by_letter(right, "right", report.duplicates)
    for name, record in lefts.items():
        if name not in rights:
            report.only_left.append(name)
            continue
        report.letters.append(name)
        _compare_letter(report, name, record, rights[name])
    report.only_right = [name for name in rights if name not in lefts]
    return report
