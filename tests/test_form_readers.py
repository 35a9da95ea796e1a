"""Each form the guide describes is read without a model: its items, decisions and header values.

The 2013 notice (``tests/data/relaid/notice_2013``), the MAXIMUS "Independent Medical Review"
form (``tests/data/relaid/maximus_imr_decisions``) and the older prose form
(``tests/data/letters/txt``), each held to its gold, and to the same gold in the other ways the
same letter is printed: variants derived here from the bundled text (never edited on disk).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DATA
from imr_extract import layouts
from imr_extract.extract import extract_text
from imr_extract.rules.numbered import find_decision_sentences as sentences
from imr_extract.schema import DATA_FIELDS, LetterRecord, Status
from test_gold import diff

RELAID = DATA / "relaid"
NOTICES = sorted((RELAID / "notice_2013").glob("*.txt"))
MAXIMUS = sorted((RELAID / "maximus_imr_decisions").glob("*.txt"))
PROSE = sorted((DATA / "letters" / "txt").glob("*.txt"))

Variant = Callable[[str], str]


def _gold(letter: Path) -> dict:
    if letter.parent.parent == RELAID:
        path = RELAID / "gold" / f"{letter.parent.name}__{letter.stem}.json"
    else:
        path = DATA / "gold" / f"{letter.stem}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _read(letter: Path, variant: Variant | None = None) -> tuple[LetterRecord, dict]:
    gold = _gold(letter)
    text = letter.read_text(encoding="utf-8")
    if variant is not None:
        changed = variant(text)
        assert changed != text, "the variant must change the letter"
        text = changed
    return extract_text(text, gold["letter"]), gold


def _data(record: LetterRecord) -> dict:
    return record.model_dump(mode="json", include=set(DATA_FIELDS))


def _unverified(record: LetterRecord) -> dict[str, str]:
    return {
        p: prov.status.value
        for p, prov in record.provenance.items()
        if prov.status is not Status.VERIFIED
    }


# --- derived variants ----------------------------------------------------------------------------


def double_spaced(text: str) -> str:
    """Every line followed by a blank line, as the older text letters were published."""
    return text.replace("\n", "\n\n")


def single_spaced(text: str) -> str:
    """Every blank (or whitespace-only) line removed."""
    return re.sub(r"\n(?:[ \t]*\n)+", "\n", text)


def decision_two_lines_below(text: str) -> str:
    """``<request>: Upheld`` -> ``<request>: `` / `` / ``Upheld``."""
    return re.sub(r":[ \t]*\n?[ \t]*(Upheld|Overturned)\b", r": \n\n\1", text)


_NUMBERED_LINE_RX = re.compile(r"^(\d{1,2})\.(?= (?:MAXIMUS|Regarding))", re.MULTILINE)
_SUMMARY_SENTENCE_RX = re.compile(
    r"^\d{1,2}\. MAXIMUS Federal Services.*?necessary\s+and\s+appropriate\.\n",
    re.MULTILINE | re.DOTALL,
)
_CLOSING_RX = re.compile(
    r"The reviewer has determined .*?decision\s+is\s+(?:upheld|overturned)\.\n?", re.DOTALL
)
_HEADING = "INDEPENDENT MEDICAL REVIEW DECISION AND RATIONALE"


def paren_numbers(text: str) -> str:
    """``1.`` -> ``1)`` in the decision sentences and the items' headings."""
    return _NUMBERED_LINE_RX.sub(r"\1)", text)


def not_joined(text: str) -> str:
    """``not medically`` -> ``notmedically``, an extraction artifact of real notices."""
    return re.sub(r"\bnot\s+medically", "notmedically", text)


def decisions_printed_twice(text: str) -> str:
    """The numbered decisions printed again as a summary at the top, before the decisions
    section (as the 2013 notice prints them)."""
    summary = "".join(m.group() for m in _SUMMARY_SENTENCE_RX.finditer(text))
    assert summary
    return text.replace(_HEADING, f"Final Determination:\n{summary}\n{_HEADING}", 1)


def without_closing_sentences(text: str) -> str:
    """Each decision printed once: the sentences that close an item's section removed."""
    return _CLOSING_RX.sub("", text)


def without_decision_sentences(text: str) -> str:
    """Each decision printed once: the numbered sentences removed (the sections' closing
    sentences remain)."""
    return _SUMMARY_SENTENCE_RX.sub("", text)


def overturned(text: str) -> str:
    """Every decision an overturn: "is medically necessary", "decision is overturned"."""
    text = re.sub(
        r"is(\s+)not(\s+)medically(\s+)necessary(\s+)and", r"is\1medically\3necessary\4and", text
    )
    return re.sub(r"decision(\s+)is(\s+)upheld", r"decision\1is\2overturned", text)


def page_break_before_items(text: str) -> str:
    """A page break (form feed) before each item's detailed section."""
    return re.sub(r"\n(?=\d{1,2}\. Regarding)", "\n\f", text)


def _then(*variants: Variant) -> Variant:
    def apply(text: str) -> str:
        for v in variants:
            text = v(text)
        return text

    return apply


NOTICE_VARIANTS: dict[str, Variant] = {
    "paren_numbers": paren_numbers,
    "notmedically": not_joined,
    "double_spaced": double_spaced,
    "page_break": page_break_before_items,
    "printed_twice": decisions_printed_twice,
    "without_closing_sentences": without_closing_sentences,
    "without_decision_sentences": without_decision_sentences,
    "all_at_once": _then(
        decisions_printed_twice, paren_numbers, not_joined, without_closing_sentences, double_spaced
    ),
}

# --- the 2013 notice -----------------------------------------------------------------------------


def test_the_notice_has_a_dedicated_reader():
    layout = layouts.get("notice_2013")
    assert layout.dedicated_reader
    assert "priority" not in layout.expected_fields


@pytest.mark.parametrize("letter", NOTICES, ids=lambda p: p.stem)
def test_the_notice_is_read_exactly_by_the_rules(letter):
    record, gold = _read(letter)
    assert record.layout == "notice_2013"
    assert diff(gold, _data(record)) == []
    assert record.warnings == []
    # Every value verified (the census ties each request to its numbered decision).
    assert _unverified(record) == {}


@pytest.mark.parametrize("letter", NOTICES, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", list(NOTICE_VARIANTS), ids=str)
def test_notice_variants_read_the_same(letter, variant):
    record, gold = _read(letter, NOTICE_VARIANTS[variant])
    assert record.layout == "notice_2013"
    assert diff(gold, _data(record)) == []
    assert record.warnings == []
    # The census finds as many decisions as the record holds items, however often printed.
    assert record.verification.complete and record.verification.unaccounted_decisions == 0


@pytest.mark.parametrize(
    ("letter", "variant"),
    [
        pytest.param(
            letter,
            variant,
            id=f"{variant}-{letter.stem}",
        )
        for letter in NOTICES
        for variant in NOTICE_VARIANTS
    ],
)
def test_notice_variants_raise_no_false_alarm(letter, variant):
    record, _gold = _read(letter, NOTICE_VARIANTS[variant])
    assert "contradicted" not in _unverified(record).values()


@pytest.mark.parametrize("letter", NOTICES, ids=lambda p: p.stem)
def test_a_notice_printed_twice_keeps_each_item_once(letter):
    text = letter.read_text(encoding="utf-8")
    twice = decisions_printed_twice(text)
    assert len(_SUMMARY_SENTENCE_RX.findall(twice)) == 2 * len(_gold(letter)["items"])
    record, gold = _read(letter, decisions_printed_twice)
    assert len(record.items) == len(gold["items"])


@pytest.mark.parametrize("letter", NOTICES, ids=lambda p: p.stem)
def test_an_overturn_is_read_from_the_sentence(letter):
    record, gold = _read(letter, overturned)
    assert [i.decision.value for i in record.items] == ["overturned"] * len(gold["items"])
    for item in gold["items"]:
        item["decision"] = "overturned"
    assert diff(gold, _data(record)) == []
    # Its closing sentences conclude "is medically necessary": the decision is verified.
    assert all(
        record.provenance[f"items[{i}].decision"].status is Status.VERIFIED
        for i in range(len(record.items))
    )


def test_where_the_two_printings_disagree_the_letter_says_so():
    letter = next(p for p in NOTICES if "CM17" in p.stem)
    text = letter.read_text(encoding="utf-8")
    # The numbered sentence says "medically necessary"; the closing sentences still uphold.
    flipped = text.replace("30 is not medically necessary and", "30 is medically necessary and", 1)
    assert flipped != text
    record = extract_text(flipped, "flipped.txt")
    assert record.items[0].decision.value == "overturned"  # the numbered sentence's decision
    assert any("closes with upheld" in w for w in record.warnings)
    # It is not verified: its span is the sentence's phrase, not a printed decision word.
    assert record.provenance["items[0].decision"].status is not Status.VERIFIED


def test_a_decision_sentence_without_its_section_is_an_item_without_guideline_lines():
    letter = next(p for p in NOTICES if "000" in p.stem)
    text = letter.read_text(encoding="utf-8")
    cut = text[: text.index("2. Regarding the request for")]
    record = extract_text(cut, "cut.txt")
    assert [i.request for i in record.items] == [i["request"] for i in _gold(letter)["items"]]
    assert any("item 2: no detailed section" in w for w in record.warnings)
    assert record.provenance["items[1].imr_guideline.cited"].status is not Status.VERIFIED


def test_a_notice_without_header_misses_the_fields_the_form_prints():
    """The 000 notice's source letter printed no header: no case number or dates, so its
    coverage is below the novel-layout threshold although every item is read."""
    letter = next(p for p in NOTICES if "000" in p.stem)
    record, gold = _read(letter)
    assert len(record.items) == len(gold["items"]) and record.case_number is None
    assert record.verification.novel_layout
    full = next(p for p in NOTICES if "CM17" in p.stem)
    assert not _read(full)[0].verification.novel_layout


def test_a_numbered_sentence_as_the_issue_quotes_it():
    text = (
        "1) MAXIMUS Federal Services, Inc. has determined the request for a 28 day\n"
        "functional restoration program is notmedically necessary and appropriate.\n"
        "2. MAXIMUS Federal Services, Inc. has determined the request for\n"
        "Gabapentin 600mg #90 is medically necessary and appropriate.\n"
    )
    found = [(s.number, s.request.value, s.decision.value.value) for s in sentences(text)]
    assert found == [
        (1, "a 28 day functional restoration program", "upheld"),
        (2, "Gabapentin 600mg #90", "overturned"),
    ]


# --- the MAXIMUS "Independent Medical Review" form -----------------------------------------------


def decision_on_request_line(text: str) -> str:
    """``<request>:`` / ``Upheld`` -> ``<request>: Upheld``."""
    return re.sub(r":[ \t]*\n[ \t]*(Upheld|Overturned)\b", r": \1", text)


SPACING_VARIANTS: dict[str, Variant] = {
    "decision_on_request_line": decision_on_request_line,
    "double_spaced": double_spaced,
    "decision_two_lines_below": decision_two_lines_below,
    "two_below_double_spaced": _then(decision_two_lines_below, double_spaced),
    "crlf": lambda text: text.replace("\n", "\r\n"),
}


def test_the_maximus_form_has_a_dedicated_reader_expecting_its_whole_header():
    layout = layouts.get("maximus_imr_decisions")
    assert layout.dedicated_reader
    assert {"priority", "dates.assigned", "dates.ur_denial"} <= set(layout.expected_fields)


@pytest.mark.parametrize("letter", MAXIMUS, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", [None, *SPACING_VARIANTS], ids=str)
def test_the_maximus_form_is_read_exactly(letter, variant):
    record, gold = _read(letter, SPACING_VARIANTS[variant] if variant else None)
    assert record.layout == "maximus_imr_decisions"
    assert diff(gold, _data(record)) == []
    assert record.warnings == []
    assert record.verification.complete and record.verification.unaccounted_decisions == 0


@pytest.mark.parametrize(
    ("letter", "variant"),
    [
        pytest.param(
            letter,
            variant,
            id=f"{variant}-{letter.stem}",
        )
        for letter in MAXIMUS
        for variant in [None, *SPACING_VARIANTS]
    ],
)
def test_the_maximus_form_is_fully_verified(letter, variant):
    record, _gold = _read(letter, SPACING_VARIANTS[variant] if variant else None)
    assert _unverified(record) == {}
    assert record.verification.coverage == 1.0


# --- the older prose form ------------------------------------------------------------------------

PROSE_VARIANTS: dict[str, Variant] = {
    "single_spaced": single_spaced,
    "decision_two_lines_below": decision_two_lines_below,
    "single_spaced_two_below": _then(single_spaced, decision_two_lines_below),
    "crlf": lambda text: text.replace("\n", "\r\n"),
}


@pytest.mark.parametrize("letter", PROSE, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", [None, *PROSE_VARIANTS], ids=str)
def test_the_prose_form_reads_the_same_in_any_spacing(letter, variant):
    record, gold = _read(letter, PROSE_VARIANTS[variant] if variant else None)
    assert record.layout == "final_determination_prose"
    assert diff(gold, _data(record)) == []
    assert record.verification.complete and record.verification.unaccounted_decisions == 0
    assert _unverified(record) == {}
    assert record.verification.coverage == 1.0


def test_the_derived_prose_variants_have_the_shapes_they_name():
    text = PROSE[0].read_text(encoding="utf-8")
    assert "\n\n" in text and "\n\n" not in single_spaced(text).strip()
    assert re.search(r"foot: \n\nUpheld|times two: \n\nUpheld", decision_two_lines_below(text))


def test_a_rationale_concluding_notmedically_agrees_with_an_upheld_decision():
    """Where "is notmedically necessary" is the item's only conclusion, the check reads it as a
    negation: the decision is verified, not left unchecked or contradicted."""
    letter = next(p for p in NOTICES if "CM17" in p.stem)
    text = not_joined(letter.read_text(encoding="utf-8"))
    text = text.replace("cannot\nbe deemed medically necessary", "cannot\nbe deemed appropriate")
    assert len(re.findall(r"necessary", text[text.index("Rationale for the Decision") :])) == 1
    record = extract_text(text, letter.name)
    assert record.items[0].decision.value == "upheld"
    agree = [c for c in record.verification.checks if c.name == "rationale_agrees_with_decision"]
    assert [c.result.value for c in agree] == ["passed"]
    assert record.provenance["items[0].decision"].status is Status.VERIFIED


@pytest.mark.parametrize("letter", NOTICES, ids=lambda p: p.stem)
def test_a_notice_with_a_documents_reviewed_section_is_still_a_notice(letter):
    """The MAXIMUS form's marks (its letterhead, DOCUMENTS REVIEWED) do not outscore the title."""
    text = letter.read_text(encoding="utf-8")
    marked = text.replace(
        "\nExpert Reviewer Case Summary:",
        "\nDOCUMENTS REVIEWED\n- Medical records\n\nExpert Reviewer Case Summary:",
        1,
    )
    assert marked != text
    layout, _score = layouts.detect(marked)
    assert layout.name == "notice_2013"
    assert diff(_gold(letter), _data(extract_text(marked, letter.name)))[:1] == []


def test_a_sentence_without_a_conclusion_does_not_swallow_the_next():
    text = (
        "1. MAXIMUS Federal Services, Inc. has determined the request for X-rays is\n"
        "upheld for want of records.\n"
        "2. MAXIMUS Federal Services, Inc. has determined the request for\n"
        "Gabapentin 600mg #90 is medically necessary and appropriate.\n"
    )
    found = [(s.number, s.request.value, s.decision.value.value) for s in sentences(text)]
    assert found == [(2, "Gabapentin 600mg #90", "overturned")]


def test_numbered_decisions_under_an_unknown_title_are_still_read():
    letter = next(p for p in NOTICES if "000" in p.stem)
    text = letter.read_text(encoding="utf-8")
    body = text[text.index("INDEPENDENT MEDICAL REVIEW DECISION AND RATIONALE") :]
    gold = _gold(letter)
    # Read as the MAXIMUS form (its text names MAXIMUS Federal Services, Inc.), and as unknown
    # (with another organisation's name the decisions come from the items' closing sentences).
    seen = set()
    for text in (body, body.replace("MAXIMUS Federal Services, Inc.", "The IRO")):
        record = extract_text(text, letter.name)
        seen.add(record.layout)
        assert "items read as the 2013 notice numbers them" in record.warnings
        assert diff(gold["items"], _data(record)["items"]) == [], text[:80]
    assert seen == {"maximus_imr_decisions", "unknown"}


def test_a_notice_header_under_the_final_determinations_labels():
    """ "UR Denial Date:", "Application Received:", "Date Assigned:" and a printed priority are
    read from the notice's header too (the priority is not expected of the form)."""
    letter = next(p for p in NOTICES if "CM17" in p.stem)
    text = letter.read_text(encoding="utf-8")
    relabelled = (
        text.replace("Date of UR Decision:  ", "UR Denial Date:       ")
        .replace("IMR Application Received:", "Application Received:    ")
        .replace(
            "Date of Injury:             10/29/2016",
            "Date of Injury:             10/29/2016\nDate Assigned:              01/31/2017\nPriority:                   Standard",
        )
    )
    assert relabelled.count("UR Denial Date:") == 1 and "Priority:" in relabelled
    record = extract_text(relabelled, letter.name)
    gold = _gold(letter)
    gold["priority"] = "Standard"
    assert diff(gold, _data(record)) == []
    assert record.provenance["dates.assigned"].rule == "header.date.assigned"
    assert _unverified(record) == {}
