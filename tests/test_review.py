"""The review page: its HTML (self-contained, escaped, well nested) and the page in a real browser.

The browser tests run Debian's headless chromium on the written file. They are skipped when
chromium is not installed, unless IMR_REQUIRE_BROWSER=1 (as in CI), which makes them fail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import LETTERS, document, letter_path, rules_record
from imr_extract.cli import app
from imr_extract.errors import ImrExtractError
from imr_extract.llm import LLMExtractor
from imr_extract.review import GROUP_COLOURS, _Mark, field_group, render_letter, render_review
from imr_extract.schema import (
    Alternative,
    Check,
    CheckResult,
    LetterRecord,
    Method,
    Status,
    Verification,
)
from llm_cassettes import recorded
from test_llm_replay import cassette_name, meta_for, replay_config

LETTER = "CM16-0231706.pdf"
CONTRADICTED = "dates.injury"
UNVERIFIED = "patient.age"
BROWSER_TIMEOUT_S = 90
VOID = {"meta", "br", "input", "img", "hr", "link", "wbr", "col", "area", "base", "source"}


# --------------------------------------------------------------------------- records


@pytest.fixture(scope="module")
def doc():
    return document(LETTER)


@pytest.fixture(scope="module")
def llm_record(request, tmp_path_factory) -> LetterRecord:
    """The recorded answer of the local Qwen model for the same letter, replayed."""
    extractor = LLMExtractor(replay_config(tmp_path_factory.mktemp("llm")))
    d = document(LETTER)
    with recorded(request, cassette_name(LETTER), meta_for(extractor, d.sha256)):
        return extractor(d)


@pytest.fixture(scope="module")
def checked(llm_record) -> LetterRecord:
    """The rules record with statuses as a verifier would set them: one field contradicted,
    one unverified, the rest verified; one failed check; the LLM's request as an alternative."""
    rules = rules_record(LETTER)
    provenance = {}
    for path, prov in rules.provenance.items():
        status, failed = Status.VERIFIED, []
        if path == CONTRADICTED:
            status, failed = Status.CONTRADICTED, ["dates_in_order"]
        elif path == UNVERIFIED:
            status = Status.UNVERIFIED
        provenance[path] = prov.model_copy(update={"status": status, "failed_checks": failed})
    llm_request = llm_record.provenance["items[0].request"]
    return rules.model_copy(
        update={
            "provenance": provenance,
            "verification": Verification(
                verified=len(provenance) - 2,
                unverified=1,
                contradicted=1,
                coverage=0.9,
                expected_fields=20,
                novel_layout=False,
                checks=[
                    Check(name="header_value_beside_label", result=CheckResult.PASSED),
                    Check(
                        name="dates_in_order",
                        result=CheckResult.FAILED,
                        paths=[CONTRADICTED, "dates.ur_denial"],
                        detail="injury after the UR denial",
                    ),
                    Check(name="rationale_in_item", result=CheckResult.NOT_APPLICABLE, item=0),
                ],
            ),
            "alternatives": {
                "items[0].request": Alternative(
                    method=Method.LLM,
                    value=llm_record.items[0].request,
                    status=Status.VERIFIED,
                    spans=llm_request.spans,
                )
            },
        }
    )


@pytest.fixture(scope="module")
def records(checked, llm_record) -> dict[str, LetterRecord]:
    return {"checked": checked, "rules": rules_record(LETTER), "llm": llm_record}


@pytest.fixture(scope="module")
def page(doc, records) -> str:
    return render_review(doc, records)


# --------------------------------------------------------------------------- parsing


class Page(HTMLParser):
    """The elements of a page, with a strict check that every end tag closes the open element."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.errors: list[str] = []
        self.marks: list[dict[str, str]] = []  # with "view" and "text" added
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.mark_text: dict[str, str] = {}
        self.texts: dict[int, str] = {}  # id(attrs) -> text inside the element
        self.open_text: list[dict[str, str]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.feed(source)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {[t for t, _ in self.stack]}")

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag in VOID:
            return
        if tag == "mark":
            view = next((x.get("data-view") for t, x in reversed(self.stack) if t == "pre"), None)
            a["view"] = view or ""
            a["ancestors"] = " ".join(x["data-path"] for t, x in self.stack if t == "mark")
            self.marks.append(a)
        self.stack.append((tag, a))
        self.open_text.append(a)
        self.texts[id(a)] = ""

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else None}")
            return
        _, a = self.stack.pop()
        self.open_text.pop()
        if tag == "mark" and a.get("data-k"):
            self.mark_text[a["data-k"]] = self.mark_text.get(a["data-k"], "") + self.texts[id(a)]
        if tag == "script":
            self.scripts.append((a, self.texts[id(a)]))

    def handle_data(self, data):
        for a in self.open_text:
            self.texts[id(a)] += data

    def text_of(self, attrs: dict[str, str]) -> str:
        return self.texts.get(id(attrs), "")

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k) == v or (v is True and k in a) for k, v in want.items())
        ]


def embedded_data(html: str) -> dict:
    block = re.search(
        r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S
    )
    assert block
    assert "</" not in block.group(1) and "<!--" not in block.group(1)
    return json.loads(block.group(1))


def is_field(mark: dict[str, str]) -> bool:
    """A highlight of the record's own value (not of an alternative)."""
    return re.fullmatch(r"r\d+s\d+", mark.get("data-k", "")) is not None


def span_text(doc, start: int, end: int) -> str:
    return doc.text[start:end].replace("\f", "")


# --------------------------------------------------------------------------- the HTML


def test_page_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, re.I)
    assert not re.search(r"<(?:link|img|iframe|object|embed|base)\b", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)
    assert "default-src 'none'" in page  # and a CSP that would block any fetch anyway
    parsed = Page(page)
    assert [a.get("type") for a, _ in parsed.scripts] == [None, "application/json", None]
    assert not [a for a, _ in parsed.scripts if "src" in a]


def test_html_is_well_nested(page):
    assert Page(page).errors == []


def test_every_span_is_a_highlight_holding_its_text(doc, records, page):
    parsed = Page(page)
    for view, record in enumerate(records.values()):
        keys: dict[str, set[str]] = {}
        for mark in parsed.marks:
            if mark["view"] == str(view) and is_field(mark):
                keys.setdefault(mark["data-path"], set()).add(mark["data-k"])
        for path, prov in record.provenance.items():
            assert len(keys.get(path, ())) == len(prov.spans), (view, path)
            texts = sorted(parsed.mark_text[k] for k in keys.get(path, ()))
            assert texts == sorted(span_text(doc, s.start, s.end) for s in prov.spans), path
        # The first piece of every highlight carries its id (the target of a click).
        ids = {
            m["id"] for m in parsed.marks if m["view"] == str(view) and m.get("id") and is_field(m)
        }
        assert ids == {k for ks in keys.values() for k in ks}
    # The data block describes the same highlights, with their text.
    data = embedded_data(page)
    assert set(data["spans"]) == {m["data-k"] for m in parsed.marks if m.get("data-k")}
    assert all(parsed.mark_text[k] == s["text"] for k, s in data["spans"].items())


def test_tooltips_give_path_value_method_match_score_and_status(page, checked):
    parsed = Page(page)
    by_path = {m["data-path"]: m for m in parsed.marks if m["view"] == "0" and is_field(m)}
    title = by_path["items[0].request"]["title"]
    assert title.startswith("items[0].request  [checked]")
    assert '"Chiropractic physiotherapy treatment 6 visits"' in title
    assert "rules · rule " in title and "match exact" in title and "status verified" in title
    assert "score –" in title
    contradicted = by_path[CONTRADICTED]
    assert "st-contradicted" in contradicted["class"].split()
    assert "status contradicted" in contradicted["title"]
    assert "failed checks: dates_in_order" in contradicted["title"]
    assert "st-unverified" in by_path[UNVERIFIED]["class"].split()
    # The fuzzy LLM match shows its score.
    llm = [m for m in parsed.marks if m["view"] == "2"]
    assert llm and all("[llm]" in m["title"] for m in llm)


def test_groups_and_nesting(doc, checked, page):
    assert field_group("items[0].imr_guideline.citations[1].pages[0]") == "page"
    assert field_group("items[2].claims_administrator_guideline.outside_mtus") == "guideline"
    assert field_group("items[0].imr_guideline.citations[0].sections[0]") == "section"
    assert field_group("items[0].original_request") == "request"
    assert field_group("case_number") == "case" and field_group("dates.injury") == "dates"
    # A section is drawn inside its citation line's highlight, which lies inside nothing else.
    parsed = Page(page)
    section = next(
        m for m in parsed.marks if m["view"] == "0" and m["data-path"].endswith("sections[0]")
    )
    assert section["ancestors"] == "items[0].imr_guideline.outside_mtus"


def test_letter_text_is_escaped(doc, checked):
    evil = "</script><script>alert('letter')</script><img src=x onerror=alert(1)> & <!--"
    hostile_doc = dataclasses.replace(doc, text=doc.text + "\n" + evil + "\n")
    hostile = checked.model_copy(
        deep=True, update={"case_number": '"><script>alert("value")</script>', "warnings": [evil]}
    )
    hostile.provenance["items[0].request"].rule = "<b onmouseover=alert(2)>"
    html = render_review(hostile_doc, {"<script>x</script>": hostile})
    assert "alert('letter')</script>" not in html and "<img" not in html
    assert '<script>alert("value")' not in html and "<b onmouseover" not in html
    assert html.count("<script") == 3 and "&lt;script&gt;alert(&#x27;letter&#x27;)" in html
    assert Page(html).errors == []
    data = embedded_data(html)
    assert data["records"]["<script>x</script>"]["case_number"].startswith('"><script>')


def test_contradicted_first_then_unverified_and_failed_checks_first(page):
    parsed = Page(page)
    issues = parsed.find("li", **{"class": "issue st-contradicted"}) + parsed.find(
        "li", **{"class": "issue st-unverified"}
    )
    order = [
        a["data-path"] for t, a in parsed.elements if t == "li" and "issue" in a.get("class", "")
    ]
    assert order[:2] == [CONTRADICTED, UNVERIFIED]
    assert {a["data-path"] for a in issues} >= {CONTRADICTED, UNVERIFIED}
    rows = [a["class"] for t, a in parsed.elements if t == "tr" and "chk" in a.get("class", "")]
    assert rows[0] == "chk failed"
    assert page.index("injury after the UR denial") < page.index('class="chk passed"')


def test_fields_side_by_side(page, checked, llm_record):
    parsed = Page(page)
    head = [parsed.text_of(a) for t, a in parsed.elements if t == "th"]
    assert head[:5] == ["field", "checked", "rules", "llm", "alternative"]
    row = parsed.find("tr", data_path="items[0].request")[0]
    text = parsed.text_of(row)
    assert checked.items[0].request in text and llm_record.items[0].request in text
    assert "verified" in text
    # Rows whose values differ between the records are marked.
    differing = {a["data-path"] for a in parsed.find("tr") if "diff" in a.get("class", "")}
    assert CONTRADICTED not in differing
    assert (
        llm_record.items[0].request != checked.items[0].request
        or "items[0].request" not in differing
    )


def test_render_letter_nests_splits_and_marks_page_breaks():
    text = "abcdef\n\fghij\n\fklm"
    marks = [
        _Mark("r0s0", 0, "outer", 0, 17, "rationale", "verified", False, "o", 0),
        _Mark("r0s1", 0, "cross1", 2, 5, "page", "verified", False, "c1", 1),
        _Mark("r0s2", 0, "cross2", 4, 10, "section", "contradicted", False, "c2", 2),
        _Mark("r0s3", 0, "point", 3, 3, "case", "unverified", False, "p", 3),
        _Mark("r0s4", 0, "tail", 14, 17, "dates", "verified", False, "t", 4),
    ]
    html = render_letter(text, marks)
    parsed = Page(f'<pre data-view="0">{html}</pre>')
    assert parsed.errors == []
    for m in marks:
        assert parsed.mark_text.get(m.key, "") == text[m.start : m.end].replace("\f", ""), m.path
    assert [a["data-page"] for a in parsed.find("span", role="separator")] == ["1", "2", "3"]
    assert len([m for m in parsed.marks if m["data-k"] == "r0s2"]) >= 2  # split, not mis-nested
    assert len([m for m in parsed.marks if m.get("id")]) == len(marks)
    assert "\f" not in html


def test_unverified_record_is_said_to_be_unverified(doc):
    bare = rules_record(LETTER).model_copy(
        update={
            "verification": None,
            "provenance": {
                p: v.model_copy(update={"status": Status.UNVERIFIED})
                for p, v in rules_record(LETTER).provenance.items()
            },
        }
    )
    html = render_review(doc, {"rules": bare})
    assert "Not verified: statuses are at their default" in html
    classes = {c for m in Page(html).marks if is_field(m) for c in m["class"].split()}
    assert "st-unverified" not in classes and "st-none" in classes
    assert "No verification in these records" in html


# --------------------------------------------------------------------------- the command

runner = CliRunner()


def test_cli_review_writes_the_page_beside_results(tmp_path, monkeypatch, llm_record):
    results = tmp_path / "llm.jsonl"
    other = rules_record("CM16-0229336.pdf")
    results.write_text(llm_record.model_dump_json() + "\n" + other.model_dump_json() + "\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["review", str(letter_path(LETTER)), "--results", str(results)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "CM16-0231706.review.html"
    assert result.stdout.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert list(embedded_data(html)["records"]) == ["rules", "llm"]
    assert Page(html).errors == []


def test_cli_review_errors_name_the_file(tmp_path):
    out = tmp_path / "x.html"
    missing = tmp_path / "nope.pdf"
    result = runner.invoke(app, ["review", str(missing), "--out", str(out)])
    assert result.exit_code == 2 and str(missing) in result.stderr
    bad = tmp_path / "bad.jsonl"
    for content, cause in [
        ("{not json\n", "line 1: invalid JSON"),
        ('{"letter": "x"}\n', "not a letter record"),
        ("", "empty file"),
    ]:
        bad.write_text(content)
        result = runner.invoke(
            app, ["review", str(letter_path(LETTER)), "--results", str(bad), "-o", str(out)]
        )
        assert result.exit_code == 2, result.output
        assert f"error: {bad}: " in result.stderr and cause in result.stderr
    result = runner.invoke(
        app, ["review", str(letter_path(LETTER)), "--results", str(tmp_path / "none.json")]
    )
    assert result.exit_code == 2 and "none.json: cannot read file" in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- in a browser


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("IMR_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (IMR_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def test_missing_browser_skips_unless_required(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("IMR_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception):
        chromium()
    monkeypatch.setenv("IMR_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="IMR_REQUIRE_BROWSER"):
        chromium()


def run_browser(
    tmp_path: Path, html_file: Path, *args: str, fragment: str = ""
) -> subprocess.CompletedProcess:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
        html_file.resolve().as_uri() + fragment,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish in {BROWSER_TIMEOUT_S}s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def page_file(tmp_path_factory, page) -> Path:
    path = tmp_path_factory.mktemp("review") / "CM16-0231706.review.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_page_runs_in_a_real_browser(tmp_path, page_file, doc, records, checked, llm_record):
    dom = run_browser(tmp_path, page_file, "--dump-dom").stdout
    parsed = Page(dom)
    body = parsed.find("body")[0]
    errors = parsed.find("ul", id="js-errors")[0]
    assert parsed.text_of(errors) == "", parsed.text_of(errors)
    assert "data-error" not in body
    assert body.get("data-ready") == "1"  # the script ran to its end
    # In the DOM the browser built, every highlight holds exactly its span's text.
    assert body.get("data-span-check") == "ok"
    n_spans = sum(len(p.spans) for r in records.values() for p in r.provenance.values()) + sum(
        len(a.spans) for a in checked.alternatives.values()
    )
    assert body.get("data-marks") == str(n_spans)
    # Highlights with their value and status in the tooltip, for every located field.
    marks = {(m["view"], m["data-path"]): m for m in parsed.marks if is_field(m)}
    for view, record in enumerate(records.values()):
        values = {k: v for k, v in _fields(record).items()}
        for path, prov in record.provenance.items():
            if not prov.spans:
                continue
            title = marks[(str(view), path)]["title"]
            assert path in title and f"status {prov.status.value}" in title
            value = values[path]
            assert json.dumps(value, ensure_ascii=False)[:100] in title, (path, title)
    assert "st-contradicted" in marks[("0", CONTRADICTED)]["class"]
    # The list of fields to look at shows the contradicted one first, then the unverified one.
    issues = [a for a in parsed.find("li") if "issue" in a.get("class", "")]
    assert [a["data-path"] for a in issues[:2]] == [CONTRADICTED, UNVERIFIED]
    assert "st-contradicted" in issues[0]["class"]
    assert "dates_in_order" in parsed.text_of(issues[0])
    # Only the primary record's letter is shown; the tabs switch between the three.
    views = {a["data-view"]: a for a in parsed.find("pre")}
    assert "hidden" not in views["0"] and "hidden" in views["1"] and "hidden" in views["2"]
    tabs = [parsed.text_of(a) for a in parsed.find("button", role="tab")]
    assert [re.sub(r"\d+$", "", t) for t in tabs] == ["checked", "rules", "llm"]
    # The LLM record's located request is highlighted in its own view.
    llm_request = llm_record.provenance["items[0].request"]
    if llm_request.spans:
        assert ("2", "items[0].request") in marks


def test_a_link_to_a_field_switches_record_scrolls_and_shows_it(tmp_path, page_file, llm_record):
    """What a click on a table row does, run by the page's script from a link's fragment."""
    prov = llm_record.provenance["items[0].request"]
    assert prov.spans  # the recorded answer's request is located in the letter
    fragment = "#field=" + quote("items[0].request") + "&record=llm"
    dom = run_browser(tmp_path, page_file, "--dump-dom", fragment=fragment).stdout
    parsed = Page(dom)
    body = parsed.find("body")[0]
    assert body.get("data-ready") == "1" and "data-error" not in body
    assert body.get("data-view") == "2"  # the LLM record's letter is shown
    views = {a["data-view"]: a for a in parsed.find("pre")}
    assert "hidden" in views["0"] and "hidden" not in views["2"]
    selected_tab = [parsed.text_of(a) for a in parsed.find("button", aria_selected="true")]
    assert [re.sub(r"\d+$", "", t) for t in selected_tab] == ["llm"]
    # Its highlight is selected and described in the detail box.
    sel = [m for m in parsed.marks if "sel" in m["class"].split()]
    assert sel and sel[0]["data-path"] == "items[0].request" and sel[0]["view"] == "2"
    assert body.get("data-selected") == sel[0]["data-k"]
    box = parsed.find("div", id="detail")[0]
    assert "hidden" not in box
    text = parsed.text_of(box)
    assert "items[0].request [llm]" in text and llm_record.items[0].request in text
    assert f"status {prov.status.value}" in text and f"match {prov.match.value}" in text


def test_hostile_letter_runs_nothing_in_a_real_browser(tmp_path, doc, checked):
    evil = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    hostile_doc = dataclasses.replace(doc, text=doc.text + "\n" + evil + "\n")
    hostile = checked.model_copy(deep=True, update={"case_number": evil})
    page_file = tmp_path / "hostile.html"
    page_file.write_text(render_review(hostile_doc, {"rules": hostile}), encoding="utf-8")
    parsed = Page(run_browser(tmp_path, page_file, "--dump-dom").stdout)
    body = parsed.find("body")[0]
    assert body.get("data-ready") == "1" and body.get("data-span-check") == "ok"
    assert parsed.text_of(parsed.find("title")[0]) == "Review: CM16-0231706.pdf"
    assert not parsed.find("img")
    assert evil in parsed.text_of(parsed.find("pre", data_view="0")[0])  # shown as text


def _fields(record: LetterRecord) -> dict:
    from imr_extract.review import record_fields

    return record_fields(record)


def test_screenshot_shows_the_highlight_colours(tmp_path, page_file):
    shot = tmp_path / "page.png"
    run_browser(tmp_path, page_file, "--window-size=1400,900", f"--screenshot={shot}")
    _width, pixels = read_png_rows(shot.read_bytes(), rows=450)
    counts = colour_counts(pixels)
    case = hex_rgb(GROUP_COLOURS["case"])
    dates = hex_rgb(GROUP_COLOURS["dates"])
    red = hex_rgb("#c62828")  # the contradicted outline
    assert counts.get(case, 0) > 500, "no case-number highlight on screen"
    assert counts.get(dates, 0) > 500, "no date highlight on screen"
    assert counts.get(red, 0) > 50, "no contradicted outline on screen"


# --------------------------------------------------------------------------- PNG, no Pillow


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def colour_counts(rows: list[bytes]) -> dict[tuple[int, int, int], int]:
    counts: dict[tuple[int, int, int], int] = {}
    for row in rows:
        for i in range(0, len(row), 4):
            px = (row[i], row[i + 1], row[i + 2])
            counts[px] = counts.get(px, 0) + 1
    return counts


def read_png_rows(data: bytes, rows: int) -> tuple[int, list[bytes]]:
    """The first ``rows`` rows of an 8-bit RGB(A) PNG, as RGBA bytes per row."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    width = height = color = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    bpp = 4 if color == 6 else 3
    stride = width * bpp
    raw = zlib.decompressobj().decompress(b"".join(idat), (stride + 1) * min(rows, height))
    prev = bytearray(stride)
    out = []
    for y in range(min(rows, height)):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        prev = line
        if bpp == 3:
            rgba = bytearray()
            for i in range(0, stride, 3):
                rgba += line[i : i + 3] + b"\xff"
            out.append(bytes(rgba))
        else:
            out.append(bytes(line))
    return width, out


def test_png_reader_reads_what_it_is_given():
    # A 2x2 RGB image, rows filtered with Sub and Up.
    rows = [b"\x01" + bytes([10, 20, 30, 5, 5, 5]), b"\x02" + bytes([1, 1, 1, 0, 0, 0])]
    ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
    width, got = read_png_rows(png, rows=2)
    assert width == 2
    assert got == [
        bytes([10, 20, 30, 255, 15, 25, 35, 255]),
        bytes([11, 21, 31, 255, 15, 25, 35, 255]),
    ]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab\n\f<&>\"'\x0b", max_size=40),
    spans=st.lists(st.tuples(st.integers(-3, 45), st.integers(-3, 45)), max_size=8),
)
def test_any_spans_render_well_nested_holding_their_text(text, spans):
    marks = [
        _Mark(f"r0s{i}", 0, f"p{i}", a, b, "other", "verified", False, "t", i)
        for i, (a, b) in enumerate(spans)
    ]
    parsed = Page(f'<pre data-view="0">{render_letter(text, marks)}</pre>')
    assert parsed.errors == []
    shown = text.replace("\x0b", "\u240b")
    for m in marks:
        start, end = max(0, min(m.start, len(text))), max(0, min(m.end, len(text)))
        want = shown[start:end].replace("\f", "") if end > start else ""
        assert parsed.mark_text.get(m.key, "") == want
    assert len(parsed.find("span", role="separator")) == text.count("\f") + 1


def test_every_shared_letter_renders_well_nested():
    for path in sorted(LETTERS.glob("*/*")):
        doc = document(path.name)
        try:
            record = rules_record(path.name)
        except ImrExtractError:
            continue
        parsed = Page(render_review(doc, {"rules": record}))
        assert parsed.errors == [], path.name
        for key, text in embedded_data_spans(parsed).items():
            assert parsed.mark_text[key] == text, (path.name, key)


def embedded_data_spans(parsed: Page) -> dict[str, str]:
    raw = next(body for a, body in parsed.scripts if a.get("type") == "application/json")
    return {k: s["text"] for k, s in json.loads(raw)["spans"].items()}


def test_records_of_another_text_are_flagged_not_trusted(doc, checked):
    other = checked.model_copy(
        deep=True,
        update={"source": checked.source.model_copy(update={"sha256": "0" * 64, "chars": 10})},
    )
    other.provenance["case_number"] = other.provenance["case_number"].model_copy(
        update={
            "spans": [other.provenance["case_number"].spans[0].model_copy(update={"end": 10**6})]
        }
    )
    html = render_review(doc, {"rules": other})
    assert "rules: extracted from other content (sha256 000000000000…)" in html
    assert "rules: spans outside the text: case_number" in html
    assert Page(html).errors == []
