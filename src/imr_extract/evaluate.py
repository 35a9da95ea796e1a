"""Score extracted records against gold annotations, field by field.

``evaluate(results, gold_dir)`` pairs each record with the gold file named after its letter
(``CM16-0231706.pdf`` -> ``CM16-0231706.json``), aligns their items (``fields.align_items``) and
counts, for every field in ``fields.LETTER_FIELDS`` and ``fields.ITEM_FIELDS``:

- TP: the record states a value (not null, not empty) and it equals gold's;
- FP: the record states a value and gold states none or another one;
- FN: gold states a value and the record states none or another one.

A wrong value is therefore both an FP and an FN. Precision = TP / (TP + FP), recall = TP /
(TP + FN), F1 their harmonic mean; each is ``None`` when its denominator is 0 (nothing stated
on either side). Item fields of an item only gold has count as FN, of an item only the record
has (invented) as FP. Values compare exactly, as gold holds them: one different character is a
miss. Every FP or FN is listed once in ``EvalReport.misses``.

Beside them, what the record's own verification is worth (``fields.support``: a field's status is
the worst of the provenance entries at and beneath its path; a record without provenance has
none): **verified precision** = verified values equal to gold / verified values; **verified
recall** = verified values equal to gold / values gold states; **false-alarm rate** = values equal
to gold flagged ``contradicted`` / values equal to gold.

Letters without a result are listed in ``missing_results`` and, unless ``score_missing`` is set,
not scored (so a run over a subset of the letters can be scored); results without a gold file
are listed in ``without_gold``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from .fields import (
    ITEM_FIELDS,
    LETTER_FIELDS,
    FieldSpec,
    RecordLike,
    RecordsError,
    align_items,
    data_fields,
    is_null,
    item_path,
    letter_name,
    record_data,
    support,
)
from .reporting import listing, ratio
from .text import fold


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass
class FieldScore:
    """TP/FP/FN counts of one field over every letter (or item) scored."""

    field: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    #: Stated values the record marks verified, those of them equal to gold, and values equal
    #: to gold that it marks contradicted (false alarms).
    verified: int = 0
    verified_tp: int = 0
    contradicted_tp: int = 0

    def add(self, expected: Any, got: Any, status: str | None = None) -> bool:
        """Count one comparison (``status``: the record's for ``got``); True when it is a miss
        (an FP, an FN or both)."""
        stated, truth = not is_null(got), not is_null(expected)
        right = stated and truth and got == expected
        self.tp += right
        self.fp += stated and not right
        self.fn += truth and not right
        if stated and status == "verified":
            self.verified += 1
            self.verified_tp += right
        self.contradicted_tp += right and status == "contradicted"
        return (stated or truth) and not right

    @property
    def precision(self) -> float | None:
        return _rate(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _rate(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def verified_precision(self) -> float | None:
        """Share of the values marked verified that equal gold."""
        return _rate(self.verified_tp, self.verified)

    @property
    def verified_recall(self) -> float | None:
        """Share of gold's values that the record states equal and marked verified."""
        return _rate(self.verified_tp, self.tp + self.fn)

    @property
    def false_alarm_rate(self) -> float | None:
        """Share of the values equal to gold that the record marks contradicted."""
        return _rate(self.contradicted_tp, self.tp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "verified": self.verified,
            "verified_tp": self.verified_tp,
            "contradicted_tp": self.contradicted_tp,
            "verified_precision": self.verified_precision,
            "verified_recall": self.verified_recall,
            "false_alarm_rate": self.false_alarm_rate,
        }


@dataclass(frozen=True)
class Miss:
    """One field where the record and gold differ (an FP, an FN, or both).

    ``gold_path`` / ``result_path`` are the field in each record (``None`` for an item that side
    lacks: gold's item was dropped, or the result's was invented). ``expected`` is gold's value,
    ``got`` the result's (``None``, or ``[]`` for a set, where one states nothing).
    """

    letter: str
    gold_path: str | None
    result_path: str | None
    expected: Any
    got: Any

    @property
    def path(self) -> str:
        """Where the miss is: gold's path, or the result's for an invented item."""
        path = self.gold_path or self.result_path
        assert path is not None  # an alignment row always has an item on one side
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "letter": self.letter,
            "path": self.path,
            "expected": self.expected,
            "got": self.got,
            "gold_path": self.gold_path,
            "result_path": self.result_path,
        }


@dataclass
class EvalReport:
    """Per-field and per-item scores of a set of results against gold, with every miss."""

    fields: dict[str, FieldScore] = field(
        default_factory=lambda: {s.name: FieldScore(s.name) for s in LETTER_FIELDS + ITEM_FIELDS}
    )
    #: Whole items: TP = an aligned pair whose requests are equal once whitespace is folded and
    #: whose decisions are equal; FP = the record's other items; FN = gold's other items.
    items: FieldScore = field(default_factory=lambda: FieldScore("items"))
    #: Aligned item pairs (an item on both sides) and how many of them have the same decision.
    aligned_items: int = 0
    decisions_equal: int = 0
    letters: list[str] = field(default_factory=list)
    missing_results: list[str] = field(default_factory=list)
    without_gold: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    #: Error rows among the results (``{"letter", "error", "cause"}``, as ``verify`` writes a
    #: record it could not verify): not results, so never scored.
    error_rows: list[str] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)

    @property
    def decision_accuracy(self) -> float | None:
        """Share of aligned items whose decision equals gold's (``None``: nothing aligned)."""
        return _rate(self.decisions_equal, self.aligned_items)

    @property
    def overall(self) -> FieldScore:
        """Every scored field's counts summed (the verified rates over all of them)."""
        total = FieldScore("all fields")
        for s in self.fields.values():
            for name in ("tp", "fp", "fn", "verified", "verified_tp", "contradicted_tp"):
                setattr(total, name, getattr(total, name) + getattr(s, name))
        return total

    def to_dict(self) -> dict[str, Any]:
        overall = self.overall
        return {
            "letters_scored": len(self.letters),
            "fields": [s.to_dict() for s in self.fields.values()],
            "items": self.items.to_dict(),
            "aligned_items": self.aligned_items,
            "decision_accuracy": self.decision_accuracy,
            "verified_precision": overall.verified_precision,
            "verified_recall": overall.verified_recall,
            "false_alarm_rate": overall.false_alarm_rate,
            "verified_values": overall.verified,
            "false_alarms": overall.contradicted_tp,
            "letters": self.letters,
            "missing_results": self.missing_results,
            "without_gold": self.without_gold,
            "duplicates": self.duplicates,
            "error_rows": self.error_rows,
            "misses": [m.to_dict() for m in self.misses],
        }

    def csv_rows(self) -> tuple[list[str], list[dict[str, Any]]]:
        columns = ["field", "tp", "fp", "fn", "precision", "recall", "f1"]
        rows = [{k: s.to_dict()[k] for k in columns} for s in [*self.fields.values(), self.items]]
        return columns, rows

    def renderable(self, limit: int = 50) -> RenderableType:
        scores = Table(title=f"imr-extract eval: {len(self.letters)} letters", title_justify="left")
        columns = ("field", "TP", "FP", "FN", "precision", "recall", "F1")
        for name in (*columns, "verified P", "verified R", "false alarms"):
            scores.add_column(name, justify="left" if name == "field" else "right")
        for s in self.fields.values():
            scores.add_row(
                s.field,
                str(s.tp),
                str(s.fp),
                str(s.fn),
                ratio(s.precision),
                ratio(s.recall),
                ratio(s.f1),
                ratio(s.verified_precision),
                ratio(s.verified_recall),
                ratio(s.false_alarm_rate),
            )
        scores.add_section()
        i = self.items
        scores.add_row(
            "items (request + decision)",
            *(str(n) for n in (i.tp, i.fp, i.fn)),
            *(ratio(x) for x in (i.precision, i.recall, i.f1)),
        )
        overall = self.overall
        summary = Table(show_header=False, title="summary", title_justify="left")
        summary.add_column("what")
        summary.add_column("value", overflow="fold")
        summary.add_row("letters scored", str(len(self.letters)))
        summary.add_row("aligned items", str(self.aligned_items))
        summary.add_row("decision accuracy", ratio(self.decision_accuracy))
        summary.add_row(
            "verified precision",
            f"{ratio(overall.verified_precision)} ({overall.verified_tp} of {overall.verified} "
            "verified values equal gold)",
        )
        summary.add_row("verified recall", ratio(overall.verified_recall))
        summary.add_row(
            "false-alarm rate",
            f"{ratio(overall.false_alarm_rate)} ({overall.contradicted_tp} values equal to gold "
            "contradicted)",
        )
        summary.add_row("letters missing from results", listing(self.missing_results))
        summary.add_row("results without gold", listing(self.without_gold))
        if self.duplicates:
            summary.add_row("duplicate results (ignored)", listing(self.duplicates))
        if self.error_rows:
            summary.add_row("error rows (not results)", listing(self.error_rows))
        summary.add_row("misses", str(len(self.misses)))
        parts: list[RenderableType] = [scores, summary]
        if self.misses and limit > 0:
            shown = self.misses[:limit]
            more = len(self.misses) - len(shown)
            title = f"misses ({len(shown)} of {len(self.misses)}; all in --format json)"
            misses = Table(title=title if more else "misses", title_justify="left")
            for name in ("letter", "path", "expected", "got"):
                misses.add_column(name, overflow="fold")
            for m in shown:
                misses.add_row(m.letter, _where(m), *diff_cells(m.expected, m.got))
            parts.append(misses)
        return Group(*parts)


def _where(m: Miss) -> str:
    if m.gold_path is None:
        return f"{m.result_path} (invented)"
    if m.result_path is None:
        return f"{m.gold_path} (missing)"
    if m.result_path != m.gold_path:
        return f"{m.gold_path} (result {m.result_path.split('.', 1)[0]})"
    return m.gold_path


def diff_cells(expected: Any, got: Any, width: int = 60, context: int = 20) -> tuple[str, str]:
    """``expected`` and ``got`` as table cells of at most ``width`` characters, cut so that both
    show where they differ (``context`` characters before it), never only their common start."""
    a, b = ("null" if v is None else str(v) for v in (expected, got))
    if len(a) <= width and len(b) <= width:
        return a, b
    same = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    start = same - context if same > context else 0
    return _window(a, start, width), _window(b, start, width)


def _window(text: str, start: int, width: int) -> str:
    lead = "…" if start > 0 else ""
    body = text[start : start + width - len(lead)]
    if start + len(body) < len(text):
        body = body[:-1] + "…"
    return lead + body


def load_gold(gold_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Gold annotations by file stem (``CM16-0231706``), from ``gold_dir/*.json``.

    Raises:
        RecordsError: not a directory, no ``*.json`` in it, or a file that is not a record.
    """
    root = Path(gold_dir)
    if not root.is_dir():
        raise RecordsError(str(root), "gold directory not found")
    files = sorted(root.glob("*.json"))
    if not files:
        raise RecordsError(str(root), "no gold files (*.json) in the directory")
    gold: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecordsError(str(path), f"unreadable gold file ({exc})") from exc
        if not isinstance(data, dict):
            raise RecordsError(str(path), "a gold file must hold one JSON object")
        data.setdefault("letter", path.stem)
        gold[path.stem] = data
    return gold


def _score_letter(report: EvalReport, name: str, gold: dict[str, Any], got: RecordLike) -> None:
    g, r = data_fields(gold), data_fields(got)
    data = record_data(got)
    statuses = _Statuses(data)
    for spec in LETTER_FIELDS:
        status = statuses.at(spec.path)
        _count(report, name, spec, spec.read(g), spec.read(r), spec.path, spec.path, status)
    g_items, r_items = g["items"], r["items"]
    ok = 0
    for pair in align_items(g_items, r_items):
        gi = g_items[pair.left] if pair.left is not None else None
        ri = r_items[pair.right] if pair.right is not None else None
        for spec in ITEM_FIELDS:
            gold_path = item_path(pair.left, spec.path) if pair.left is not None else None
            result_path = item_path(pair.right, spec.path) if pair.right is not None else None
            status = statuses.at(result_path) if result_path is not None else None
            _count(report, name, spec, spec.read(gi), spec.read(ri), gold_path, result_path, status)
        if gi is not None and ri is not None:
            report.aligned_items += 1
            same_decision = gi.get("decision") == ri.get("decision")
            report.decisions_equal += same_decision
            ok += same_decision and _folded(gi.get("request")) == _folded(ri.get("request"))
    report.items.tp += ok
    report.items.fp += len(r_items) - ok
    report.items.fn += len(g_items) - ok


def _is_error_row(record: RecordLike) -> bool:
    data = record_data(record)
    return "error" in data and "cause" in data and "items" not in data


class _Statuses:
    """A record's verification status by field path (``None``: no provenance there)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data if isinstance(data.get("provenance"), dict) else None

    def at(self, path: str) -> str | None:
        if self.data is None:
            return None
        return support(self.data, path).status


def _folded(request: Any) -> Any:
    return fold(request) if isinstance(request, str) else request


def _count(
    report: EvalReport,
    letter: str,
    spec: FieldSpec,
    expected: Any,
    got: Any,
    gold_path: str | None,
    result_path: str | None,
    status: str | None = None,
) -> None:
    if report.fields[spec.name].add(expected, got, status):
        report.misses.append(Miss(letter, gold_path, result_path, expected, got))


def evaluate(
    results: Iterable[RecordLike], gold_dir: str | Path, *, score_missing: bool = False
) -> EvalReport:
    """Score ``results`` (records or their JSON) against the gold files in ``gold_dir``.

    Args:
        results: records as ``imr-extract extract`` writes them; a letter's first record counts,
            later ones are listed in ``duplicates``.
        gold_dir: a directory of ``<stem>.json`` gold files.
        score_missing: also count every gold letter that has no result, as if nothing had been
            extracted from it (all its fields FN).

    Returns:
        The per-field counts, item scores, decision accuracy, unmatched letters and misses.

    Raises:
        RecordsError: the gold directory or a record cannot be used.
    """
    gold = load_gold(gold_dir)
    report = EvalReport()
    seen: dict[str, RecordLike] = {}
    for record in results:
        name = letter_name(record)
        if _is_error_row(record):
            report.error_rows.append(name)
            continue
        stem = Path(name).stem
        if stem in seen:
            report.duplicates.append(name)
            continue
        seen[stem] = record
        if stem not in gold:
            report.without_gold.append(name)
    for stem, truth in gold.items():
        name = str(truth.get("letter") or stem)
        if stem in seen:
            report.letters.append(name)
            _score_letter(report, name, truth, seen[stem])
        else:
            report.missing_results.append(name)
            if score_missing:
                _score_letter(report, name, truth, {"letter": name})
    return report
