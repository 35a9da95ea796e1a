"""The review page: one self-contained HTML file to check records against their letter.

``render_review(doc, records)`` shows the letter's normalised text with every field's span(s)
highlighted (one colour per field group, nested spans nested or split, page breaks marked), the
fields of every record side by side, the fields that are unverified or contradicted, and the
verifier's cross-checks. The page is built here in Python; a small inline script adds the
interaction (tabs, click a row to scroll to its span, click a highlight for its details, toggle
groups) and checks in the browser that every highlight holds exactly its span's text.

Everything that comes from a letter or a record is untrusted: text and attributes are escaped,
the embedded JSON escapes ``<``, ``>`` and ``&``, the script only ever sets ``textContent``, and a
Content-Security-Policy allows no network access and only this page's own script and style.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ImrExtractError
from .ingest import PAGE_BREAK, Document
from .names import escape_name, has_surrogates
from .schema import DATA_FIELDS, CheckResult, LetterRecord, Provenance, Status

# --------------------------------------------------------------------------- field groups

#: (key, label, background colour). Opaque colours, so nested highlights stay distinguishable.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("case", "case number, priority", "#ffd54f"),
    ("dates", "dates", "#90caf9"),
    ("reviewer", "reviewer", "#b39ddb"),
    ("patient", "patient", "#f48fb1"),
    ("request", "request", "#a5d6a7"),
    ("decision", "decision", "#ffab91"),
    ("guideline", "guideline line", "#d7efec"),
    ("citation", "citation", "#80cbc4"),
    ("section", "section", "#e6ee9c"),
    ("page", "page", "#bcaaa4"),
    ("rationale", "rationale", "#eceff4"),
    ("other", "other", "#e0e0e0"),
)
GROUP_COLOURS = {key: colour for key, _label, colour in GROUPS}
_INDEX = re.compile(r"\[\d+\]")
_PART = re.compile(r"[^.\[\]]+|\[\d+\]")
#: C0/C1 controls other than tab, newline and form feed: shown as a visible placeholder.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0d-\x1f\x7f-\x9f]")
_MISSING = object()


def field_group(path: str) -> str:
    """The colour group of a field path (``items[0].imr_guideline.citations[1].pages[0]``)."""
    parts = _INDEX.sub("", path).split(".")
    head = parts[0]
    if head in ("case_number", "priority"):
        return "case"
    if head in ("dates", "reviewer", "patient"):
        return head
    if head != "items" or len(parts) < 2:
        return "other"
    field = parts[1]
    if field in ("request", "original_request", "authorized"):
        return "request"
    if field in ("decision", "rationale"):
        return field
    if field.endswith("guideline"):
        if len(parts) >= 4 and parts[2] == "citations":
            return {"sections": "section", "pages": "page"}.get(parts[3], "citation")
        return "guideline"
    return "other"


# --------------------------------------------------------------------------- helpers


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _display(text: str) -> str:
    """Text as the page shows it: controls made visible, one character for one (``\\f`` aside)."""
    return _CONTROLS.sub(
        lambda m: chr(0x2400 + ord(m.group())) if ord(m.group()) < 0x20 else "\ufffd", text
    )


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(obj, list) and obj:
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}[{i}]", out)
    else:
        out[prefix] = obj


def record_fields(record: LetterRecord) -> dict[str, Any]:
    """The record's data fields as ``path -> leaf value`` (an empty list is one leaf)."""
    out: dict[str, Any] = {}
    data = record.model_dump(mode="json", include=set(DATA_FIELDS) - {"letter"})
    for name in DATA_FIELDS:
        if name in data:
            _flatten(data[name], name, out)
    return out


def _breakable(path: str) -> str:
    """A field path, escaped, that may wrap after each dot."""
    return ".<wbr>".join(_esc(part) for part in path.split("."))


def _value_text(value: Any) -> str:
    if value is _MISSING:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else _value_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_for_script(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</``, ``<!--`` or ``]]>`` can form."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def _assessed(record: LetterRecord) -> bool:
    """Whether statuses were set by a verifier (not all left at the default)."""
    return record.verification is not None or any(
        p.status is not Status.UNVERIFIED for p in record.provenance.values()
    )


def _status(prov_status: Status, assessed: bool) -> str:
    return prov_status.value if assessed else "none"


# --------------------------------------------------------------------------- highlights


@dataclass(frozen=True)
class _Mark:
    key: str
    view: int
    path: str
    start: int
    end: int
    group: str
    status: str  # a Status value, or "none" when the record was not verified
    alt: bool
    title: str
    seq: int

    def open_tag(self, first: bool) -> str:
        classes = f"hl g-{self.group} st-{self.status}"
        if self.alt:
            classes += " alt"
        if self.end <= self.start:
            classes += " pt"
        ident = f' id="{self.key}"' if first else ""
        return (
            f'<mark class="{classes}" data-k="{self.key}"{ident} data-path="{_esc(self.path)}"'
            f' title="{_esc(self.title)}">'
        )


def _page_label(page: int, first: bool = False) -> str:
    cls = "pb first" if first else "pb"
    return f'<span class="{cls}" role="separator" data-page="{page}">page {page}</span>'


def render_letter(text: str, marks: Iterable[_Mark]) -> str:
    """The letter as HTML with ``marks`` as ``<mark>`` elements, always well nested.

    The text is cut at every span boundary and page break. At each cut the marks that end there
    are closed (with any marks opened inside them, which are then reopened: a crossing span is
    split, never mis-nested), and the marks that start there are opened, longest first. A page
    break closes every open mark, shows a separator and reopens them after it.
    """
    n = len(text)
    starts: dict[int, list[_Mark]] = {}
    ends: dict[int, set[str]] = {}
    points: dict[int, list[_Mark]] = {}
    cuts = {0, n}
    for mark in marks:
        start, end = max(0, min(mark.start, n)), max(0, min(mark.end, n))
        if end <= start:
            points.setdefault(start, []).append(mark)
            cuts.add(start)
            continue
        starts.setdefault(start, []).append(mark)
        ends.setdefault(end, set()).add(mark.key)
        cuts.update((start, end))
    breaks = {i for i, c in enumerate(text) if c == PAGE_BREAK}
    for b in breaks:
        cuts.update((b, b + 1))
    bounds = sorted(cuts)

    out = [_page_label(1, first=True)]
    stack: list[_Mark] = []
    opened: set[str] = set()
    pending: list[_Mark] = []  # closed at a page break, reopened after it
    page = 1

    def open_mark(mark: _Mark) -> None:
        out.append(mark.open_tag(mark.key not in opened))
        opened.add(mark.key)
        stack.append(mark)

    for i, pos in enumerate(bounds):
        ending = ends.get(pos, set())
        reopen = [m for m in pending if m.key not in ending]
        pending = []
        while any(m.key in ending for m in stack):
            mark = stack.pop()
            out.append("</mark>")
            if mark.key not in ending:
                reopen.append(mark)
        to_open = sorted(
            reopen + starts.get(pos, []), key=lambda m: (-m.end, m.start, m.view, m.seq)
        )
        if pos in breaks:
            # Close everything over the separator; reopen it (and what starts here) after.
            pending = sorted(stack + to_open, key=lambda m: (-m.end, m.start, m.view, m.seq))
            out.append("</mark>" * len(stack))
            stack.clear()
            page += 1
            out.append(_page_label(page))
        else:
            for mark in to_open:
                open_mark(mark)
        for mark in points.get(pos, []):
            out.append(mark.open_tag(mark.key not in opened) + "</mark>")
            opened.add(mark.key)
        if i + 1 < len(bounds) and pos not in breaks:
            out.append(_esc(_display(text[pos : bounds[i + 1]])))
    out.append("</mark>" * len(stack))
    return "".join(out)


# --------------------------------------------------------------------------- the page model


@dataclass
class _View:
    """One record as the page shows it."""

    index: int
    label: str
    record: LetterRecord
    fields: dict[str, Any]
    assessed: bool
    marks: list[_Mark]
    first_key: dict[str, str]  # path -> key of its first highlight
    alt_key: dict[str, str]  # path -> key of its alternative's first highlight


def _tooltip(label: str, path: str, value: Any, prov: Provenance, assessed: bool) -> str:
    bits = [prov.method.value]
    if prov.rule:
        bits.append(f"rule {prov.rule}")
    bits.append(f"match {prov.match.value}")
    bits.append(f"score {prov.score:.2f}" if prov.score is not None else "score –")
    bits.append(
        f"status {prov.status.value}" if assessed else "status unverified (record not verified)"
    )
    lines = [f"{path}  [{label}]", f"= {_short(value)}", " · ".join(bits)]
    if prov.failed_checks:
        lines.append("failed checks: " + ", ".join(prov.failed_checks))
    return "\n".join(lines)


def _build_view(index: int, label: str, record: LetterRecord, doc: Document) -> _View:
    fields = record_fields(record)
    assessed = _assessed(record)
    marks: list[_Mark] = []
    first_key: dict[str, str] = {}
    alt_key: dict[str, str] = {}
    seq = 0
    n = len(doc.text)  # a span past the end (a record of another text) is clamped to it
    for path, prov in record.provenance.items():
        value = fields.get(path, _MISSING)
        title = _tooltip(label, path, None if value is _MISSING else value, prov, assessed)
        alt = record.alternatives.get(path)
        if alt is not None:
            title += f"\nother ({alt.method.value}, {alt.status.value}): {_short(alt.value)}"
        for span in prov.spans:
            key = f"r{index}s{seq}"
            marks.append(
                _Mark(
                    key=key,
                    view=index,
                    path=path,
                    start=min(max(span.start, 0), n),
                    end=min(max(span.end, 0), n),
                    group=field_group(path),
                    status=_status(prov.status, assessed),
                    alt=False,
                    title=title + f"\npage {span.page}, chars {span.start}–{span.end}",
                    seq=seq,
                )
            )
            first_key.setdefault(path, key)
            seq += 1
    for path, alt in record.alternatives.items():
        for span in alt.spans:
            key = f"r{index}a{seq}"
            title = (
                f"{path}  [{label}: the other extractor's value]\n= {_short(alt.value)}\n"
                f"{alt.method.value} · status {alt.status.value}"
            )
            marks.append(
                _Mark(
                    key=key,
                    view=index,
                    path=path,
                    start=min(max(span.start, 0), n),
                    end=min(max(span.end, 0), n),
                    group=field_group(path),
                    status=alt.status.value,
                    alt=True,
                    title=title,
                    seq=seq,
                )
            )
            alt_key.setdefault(path, key)
            seq += 1
    return _View(index, label, record, fields, assessed, marks, first_key, alt_key)


def _sorted_paths(views: list[_View]) -> list[str]:
    """Every field path of every record, in schema order with items and lists by index."""
    rank: dict[str, int] = {}
    paths: list[str] = []
    seen: set[str] = set()
    for view in views:
        for path in [*view.fields, *view.record.provenance, *view.record.alternatives]:
            for part in _PART.findall(path):
                if not part.startswith("["):
                    rank.setdefault(part, len(rank))
            if path not in seen:
                seen.add(path)
                paths.append(path)

    def key(path: str) -> tuple[tuple[int, int], ...]:
        return tuple(
            (1, int(p[1:-1])) if p.startswith("[") else (0, rank[p]) for p in _PART.findall(path)
        )

    return sorted(paths, key=key)


# --------------------------------------------------------------------------- sections


def _badge(text: str, cls: str, title: str = "") -> str:
    tip = f' title="{_esc(title)}"' if title else ""
    return f'<span class="badge {cls}"{tip}>{_esc(text)}</span>'


def _status_badge(status: Status, assessed: bool) -> str:
    if not assessed:
        return _badge("not verified", "st-none", "the record has no verification")
    return _badge(status.value, f"st-{status.value}")


def _value_html(value: Any) -> str:
    text = _value_text(value)
    cls = "v"
    if value is _MISSING:
        cls += " missing"
    elif value is None or value == []:
        cls += " nul"
    if len(text) > 140:
        cls += " long"
    return f'<div class="{cls}">{_esc(text)}</div>'


def _header(doc: Document, views: list[_View]) -> str:
    primary = views[0].record if views else None
    title = f"Review: {doc.name}"
    meta = [
        f"<span><b>case</b> {_esc(primary.case_number or '—')}</span>" if primary else "",
        f"<span><b>layout</b> {_esc(primary.layout)}</span>" if primary else "",
        f"<span><b>pages</b> {doc.pages}</span>",
        f"<span><b>chars</b> {len(doc.text):,}</span>",
        f"<span><b>read as</b> {_esc(doc.media)} / {_esc(doc.text_engine)}</span>",
        f'<span title="{_esc(doc.sha256)}"><b>sha256</b> {_esc(doc.sha256[:12])}…</span>',
    ]
    recs = []
    for view in views:
        info = view.record.extractor
        parts = [] if view.label == info.backend.value else [info.backend.value]
        if info.model:
            parts.append(info.model)
        if info.prompt:
            parts.append(f"prompt {info.prompt}")
        if info.routed:
            parts.append(f"routed {info.routed}")
        if info.attempts:
            parts.append(f"{info.attempts} call(s), {info.usage.total_tokens:,} tokens")
        if info.cost_usd is not None:
            parts.append(f"${info.cost_usd:.4f}")
        if info.cached:
            parts.append("cached")
        if info.model_error:
            parts.append("model call failed")
        ver = view.record.verification
        if ver is not None:
            novel = ", novel layout" if ver.novel_layout else ""
            parts.append(f"coverage {ver.coverage:.0%} of {ver.expected_fields}{novel}")
        role = " (primary)" if view.index == 0 and len(views) > 1 else ""
        recs.append(
            f'<li><b class="rec">{_esc(view.label)}</b>{role}: {_esc(" · ".join(parts))}</li>'
        )
    return (
        f"<header><h1>{_esc(title)}</h1>"
        f'<div class="meta">{"".join(m for m in meta if m)}</div>'
        f'<ul class="recs">{"".join(recs)}</ul></header>'
    )


def _problems(doc: Document, views: list[_View]) -> list[str]:
    """Notes on records whose spans may not line up with this letter."""
    notes = []
    for view in views:
        src = view.record.source
        if src.sha256 != doc.sha256:
            notes.append(f"{view.label}: extracted from other content (sha256 {src.sha256[:12]}…)")
        elif src.chars != len(doc.text):
            notes.append(
                f"{view.label}: extracted from a text of {src.chars:,} characters "
                f"({src.text_engine}), this one has {len(doc.text):,}: highlights may be misplaced"
            )
        n = len(doc.text)
        bad = sorted(
            path
            for path, prov in view.record.provenance.items()
            if any(not 0 <= s.start <= s.end <= n for s in prov.spans)
        )
        if bad:
            notes.append(f"{view.label}: spans outside the text: {', '.join(bad[:5])}")
        failed = view.record.extractor.model_error
        if failed:  # the hybrid kept the rules' values: the model's were never had
            notes.append(f"{view.label}: the model call failed ({failed}): the rules' values stand")
        for warning in view.record.warnings:
            notes.append(f"{view.label}: {warning}")
    return notes


def _attention(views: list[_View], multi: bool) -> str:
    blocks = []
    for view in views:
        entries: list[tuple[int, str, str]] = []
        for path, prov in view.record.provenance.items():
            status = prov.status
            if not view.assessed:
                if prov.spans:
                    continue
                status = Status.UNVERIFIED
                why = "not found in the letter (no span)"
            elif status is Status.VERIFIED:
                continue
            else:
                why = (
                    "fails " + ", ".join(prov.failed_checks)
                    if prov.failed_checks
                    else ("not found in the letter" if not prov.spans else f"match {prov.match}")
                )
            order = 0 if status is Status.CONTRADICTED else 1
            value = view.fields.get(path, _MISSING)
            target = view.first_key.get(path, "")
            entries.append(
                (
                    order,
                    path,
                    f'<li class="issue st-{status.value}" data-target="{target}" '
                    f'data-path="{_esc(path)}">{_badge(status.value, f"st-{status.value}")} '
                    f"<code>{_esc(path)}</code> <span class=v>{_esc(_short(value, 90))}</span>"
                    f' <span class="why">{_esc(why)}</span></li>',
                )
            )
        entries.sort(key=lambda e: e[0])
        note = (
            ""
            if view.assessed
            else '<p class="note">Not verified: statuses are at their default; '
            "only values without a span are listed.</p>"
        )
        if entries:
            body = f'<ul class="issues">{"".join(e[2] for e in entries)}</ul>'
        else:
            body = '<p class="ok">Nothing unverified or contradicted.</p>'
        if not multi:
            blocks.append(f'<div class="att" data-rec="{view.index}">{note}{body}</div>')
            continue
        # Every record's list, the primary's open and the others folded under their counts.
        bad = sum(e[0] == 0 for e in entries)
        counts = f"{bad} contradicted, {len(entries) - bad} unverified"
        blocks.append(
            f'<details class="att" data-rec="{view.index}"{" open" if view.index == 0 else ""}>'
            f'<summary><b class="rec-head">{_esc(view.label)}</b> '
            f'<span class="note">{counts}</span></summary>{note}{body}</details>'
        )
    return (
        '<section id="attention"><h2>Unverified and contradicted</h2>'
        + "".join(blocks)
        + "</section>"
    )


def _checks(views: list[_View], multi: bool) -> str:
    blocks = []
    order = {
        CheckResult.FAILED: 0,
        CheckResult.INCONCLUSIVE: 0,  # shown with the failures: both keep a value unverified
        CheckResult.PASSED: 1,
        CheckResult.NOT_APPLICABLE: 2,
    }
    for view in views:
        ver = view.record.verification
        if ver is None:
            continue
        summary = (
            f"coverage <b>{ver.coverage:.0%}</b> of {ver.expected_fields} expected fields · "
            f"{ver.verified} verified · {ver.unverified} unverified · "
            f"{ver.contradicted} contradicted · layout {_esc(view.record.layout)}"
            + (" · <b class=bad>novel layout</b>" if ver.novel_layout else "")
        )
        rows: dict[int, list[str]] = {0: [], 1: [], 2: []}
        for check in sorted(ver.checks, key=lambda c: order[c.result]):
            links = " ".join(
                f'<code class="plink" data-target="{view.first_key.get(p, "")}">{_esc(p)}</code>'
                for p in check.paths
            )
            item = "" if check.item is None else f"item {check.item}"
            rows[order[check.result]].append(
                f'<tr class="chk {check.result.value}"><td>'
                f"{_badge(check.result.value, 'c-' + check.result.value)}</td>"
                f"<td><b>{_esc(check.name)}</b> {_esc(item)}<div class=detail>"
                f"{_esc(check.detail)}</div>{links}</td></tr>"
            )
        table = f'<table class="checks">{"".join(rows[0])}</table>' if rows[0] else ""
        rest = rows[1] + rows[2]
        if rest:
            table += (
                f"<details><summary>{len(rows[1])} passed, {len(rows[2])} not applicable"
                f'</summary><table class="checks">{"".join(rest)}</table></details>'
            )
        if not ver.checks:
            table = '<p class="note">No checks recorded.</p>'
        head = f'<h3 class="rec-head">{_esc(view.label)}</h3>' if multi else ""
        blocks.append(f'<div class="ver">{head}<p class="cov">{summary}</p>{table}</div>')
    if not blocks:
        return (
            '<section id="checks"><h2>Cross-checks</h2><p class="note">'
            "No verification in these records.</p></section>"
        )
    return '<section id="checks"><h2>Cross-checks</h2>' + "".join(blocks) + "</section>"


def _fields_table(views: list[_View], paths: list[str], row_ids: dict[str, str]) -> str:
    with_alts = any(view.record.alternatives for view in views)
    head = "".join(f"<th>{_esc(view.label)}</th>" for view in views)
    if with_alts:
        head += "<th>alternative</th>"
    rows = []
    for path in paths:
        cells = []
        values = []
        targets = []
        for view in views:
            value = view.fields.get(path, _MISSING)
            prov = view.record.provenance.get(path)
            target = view.first_key.get(path, "")
            if target:
                targets.append(target)
            if value is not _MISSING:
                values.append(value)
            meta = ""
            cls = "val"
            if prov is not None:
                status = _status(prov.status, view.assessed)
                cls += f" st-{status}"
                meta = (
                    '<div class="pm">'
                    + _badge(prov.method.value, f"m-{prov.method.value}", prov.rule or "")
                    + _badge(prov.match.value, "mk")
                    + (_badge(f"{prov.score:.2f}", "mk", "score") if prov.score is not None else "")
                    + _status_badge(prov.status, view.assessed)
                    + "</div>"
                )
            cells.append(
                f'<td class="{cls}" data-target="{target}">{_value_html(value)}{meta}</td>'
            )
        if with_alts:
            alt = next(
                (v.record.alternatives[path] for v in views if path in v.record.alternatives), None
            )
            alt_target = next((v.alt_key[path] for v in views if path in v.alt_key), "")
            if alt is None:
                cells.append('<td class="val"></td>')
            else:
                cells.append(
                    f'<td class="val alt" data-target="{alt_target}">{_value_html(alt.value)}'
                    f'<div class="pm">{_badge(alt.method.value, f"m-{alt.method.value}")}'
                    f"{_status_badge(alt.status, True)}</div></td>"
                )
        group = field_group(path)
        differs = len(views) > 1 and (
            len(values) != len(views) or any(v != values[0] for v in values[1:])
        )
        cls = "row" + (" diff" if differs else "") + ("" if targets else " nospan")
        mark = '<span class="ne" title="the records differ">≠</span>' if differs else ""
        rows.append(
            f'<tr class="{cls}" id="{row_ids[path]}" data-path="{_esc(path)}">'
            f'<td class="path"><span class="sw g-{group}"></span>'
            f"<code>{_breakable(path)}</code>{mark}</td>{''.join(cells)}</tr>"
        )
    return (
        '<section id="fields"><h2>Fields</h2><p class="note">Click a row to show its span in '
        "the letter; click a record's cell to show that record's span.</p>"
        f'<table class="fields"><thead><tr><th>field</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _legend(views: list[_View]) -> str:
    counts: dict[str, int] = {}
    for mark in views[0].marks if views else []:
        counts[mark.group] = counts.get(mark.group, 0) + 1
    items = "".join(
        f'<label class="lg"><input type="checkbox" checked data-group="{key}">'
        f'<span class="sw g-{key}"></span>{_esc(label)}'
        f'<span class="cnt">{counts.get(key, 0)}</span></label>'
        for key, label, _colour in GROUPS
        if counts.get(key) or key != "other"
    )
    statuses = (
        '<span class="lgs"><mark class="hl g-legend st-verified">verified</mark>'
        '<mark class="hl g-legend st-unverified">unverified</mark>'
        '<mark class="hl g-legend st-contradicted">contradicted</mark>'
        '<mark class="hl g-legend st-none">not verified</mark>'
        '<mark class="hl g-legend alt">other extractor</mark></span>'
    )
    return f'<div class="legend">{items}{statuses}</div>'


# --------------------------------------------------------------------------- the page


def render_review(doc: Document, records: Mapping[str, LetterRecord]) -> str:
    """One self-contained HTML page reviewing ``records`` (the first is the primary) on ``doc``."""
    if has_surrogates(doc.name) or has_surrogates(doc.path or ""):
        # A name that is not UTF-8 is shown as the records write it (see ``names``).
        path = escape_name(doc.path) if doc.path is not None else None
        doc = replace(doc, name=escape_name(doc.name), path=path)
    views = [
        _build_view(i, label, record, doc) for i, (label, record) in enumerate(records.items())
    ]
    multi = len(views) > 1
    paths = _sorted_paths(views)
    row_ids = {path: f"f{i}" for i, path in enumerate(paths)}

    letters = []
    tabs = []
    for view in views:
        hidden = " hidden" if view.index else ""
        letters.append(
            f'<pre class="letter" data-view="{view.index}"{hidden}>'
            f"{render_letter(doc.text, view.marks)}</pre>"
        )
        selected = "true" if view.index == 0 else "false"
        tabs.append(
            f'<button type="button" role="tab" data-view="{view.index}" '
            f'aria-selected="{selected}">{_esc(view.label)}'
            f'<span class="cnt">{len(view.marks)}</span></button>'
        )
    if not views:
        letters.append(f'<pre class="letter" data-view="0">{render_letter(doc.text, [])}</pre>')

    spans: dict[str, dict[str, Any]] = {}
    for view in views:
        for mark in view.marks:
            start, end = mark.start, mark.end  # already clamped to the text
            text = _display(doc.text[start:end]).replace(PAGE_BREAK, "") if end > start else ""
            source = view.record.alternatives[mark.path] if mark.alt else None
            prov = view.record.provenance.get(mark.path)
            shown = source or prov
            spans[mark.key] = {
                "view": view.index,
                "label": view.label,
                "path": mark.path,
                "start": mark.start,
                "end": mark.end,
                "page": doc.page_of(start),
                "text": text,
                "alt": mark.alt,
                "value": source.value if source else view.fields.get(mark.path),
                "provenance": shown.model_dump(mode="json") if shown else None,
                "assessed": view.assessed,
                "row": row_ids.get(mark.path, ""),
            }
    data = {
        "letter": doc.name,
        "labels": [view.label for view in views],
        "spans": spans,
        "records": {view.label: view.record.model_dump(mode="json") for view in views},
    }
    problems = _problems(doc, views)
    notes = (
        '<ul class="problems">' + "".join(f"<li>{_esc(p)}</li>" for p in problems) + "</ul>"
        if problems
        else ""
    )
    tabbar = f'<div class="tabs" role="tablist">{"".join(tabs)}</div>' if multi else ""
    body = (
        f"{_header(doc, views)}"
        '<ul id="js-errors" class="js-errors" hidden></ul>'
        "<main>"
        '<section class="pane letter-pane" aria-label="letter">'
        f'<div class="letter-head">{tabbar}{_legend(views)}</div>'
        f"{''.join(letters)}</section>"
        '<aside class="pane side">'
        '<div id="detail" hidden></div>'
        f"{notes}{_attention(views, multi)}{_checks(views, multi)}"
        f"{_fields_table(views, paths, row_ids)}"
        "</aside></main>"
        f'<script type="application/json" id="review-data">{_json_for_script(data)}</script>'
        f"<script>{_MAIN_JS}</script>"
    )
    csp = (
        "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; "
        f"style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_BOOT_JS)} {_csp_hash(_MAIN_JS)}"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_esc('Review: ' + doc.name)}</title>"
        f"<style>{_CSS}</style><script>{_BOOT_JS}</script></head>"
        f"<body>{body}</body></html>\n"
    )


def write_review(doc: Document, records: Mapping[str, LetterRecord], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_review(doc, records), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- results files


def load_results(path: Path) -> list[LetterRecord]:
    """Records from a JSONL file, a JSON array or one JSON record (``extract`` output).

    Raises:
        ImrExtractError: the file cannot be read, or holds something that is not a record.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImrExtractError(source, f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ImrExtractError(source, "not UTF-8 text (expected JSON or JSON Lines)") from exc
    stripped = text.strip()
    if not stripped:
        raise ImrExtractError(source, "empty file (expected JSON or JSON Lines records)")
    docs: list[tuple[str, str]] = []  # (where, one record's JSON)
    if stripped[0] == "[":
        try:
            loaded = json.loads(stripped)
        except ValueError as exc:
            raise ImrExtractError(source, f"invalid JSON ({exc})") from exc
        docs = [(f"record {i + 1}", json.dumps(obj)) for i, obj in enumerate(loaded)]
    else:
        try:
            json.loads(stripped)
            docs = [("record 1", stripped)]
        except ValueError:
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as exc:
                        raise ImrExtractError(source, f"line {n}: invalid JSON ({exc})") from exc
                    docs.append((f"line {n}", line))
    records = []
    for where, raw in docs:
        try:
            # From JSON, so strict mode still reads ISO dates and enum values.
            records.append(LetterRecord.model_validate_json(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "record"
            raise ImrExtractError(
                source, f"{where}: not a letter record ({loc}: {first['msg']})"
            ) from exc
    return records


def label_records(
    records: Iterable[tuple[str, LetterRecord]],
) -> dict[str, LetterRecord]:
    """Key records by a unique label (``rules``, ``llm``, ``llm-2`` ...), hybrid records first."""
    items = list(records)
    items.sort(key=lambda pair: 0 if pair[0] == "hybrid" else 1)
    out: dict[str, LetterRecord] = {}
    for base, record in items:
        label, n = base, 1
        while label in out:
            n += 1
            label = f"{base}-{n}"
        out[label] = record
    return out


# --------------------------------------------------------------------------- style and script


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


_CSS = (
    _asset("review.css")
    + "".join(f".g-{key}{{--c:{colour}}}\n" for key, _label, colour in GROUPS)
    + "".join(
        f".hide-{key} mark.g-{key}{{background:transparent;outline:0;text-decoration:none}}\n"
        for key, _label, _colour in GROUPS
    )
)
#: Runs first: collects any script error so the page can show it.
_BOOT_JS = (
    "window.__reviewErrors=[];"
    "window.addEventListener('error',function(e){window.__reviewErrors.push("
    "String(e.message)+' (line '+e.lineno+')');});"
)

_MAIN_JS = _asset("review.js")
