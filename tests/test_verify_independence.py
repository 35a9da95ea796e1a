"""Checks that do not share the rules' reading: each plants the misreading a shared reading
would agree with, and asserts the check does not verify it; untouched letters stay verified."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from conftest import document
from imr_extract.extract import extract_document
from imr_extract.ingest import read_text_bytes
from imr_extract.schema import CheckResult, Status
from imr_extract.verify.labels import label_hits, pair
from test_verify import GOLD, HEADER, gold_answer, model_record, status

DATE_PATHS = ("assigned", "injury", "decision", "ur_denial", "application_received")


def _columns(text: str) -> str:
    """The 2016 header laid out as another PDF-to-text tool prints a table: a row of labels,
    then a row of values ("Date Assigned: Date of Injury:" / "01/09/2017 12/16/2016")."""
    rx = re.compile(
        r"(Date Assigned:)\s*(\S+)\s+(Date of Injury:)\s*(\S+)\s*\n"
        r"(Decision Date:)\s*(\S+)\s+(UR Denial Date:)\s*(\S+)"
    )
    m = rx.search(text)
    assert m is not None
    g = m.groups()
    table = f"{g[0]} {g[2]}\n{g[1]} {g[3]}\n{g[4]} {g[6]}\n{g[5]} {g[7]}"
    return text[: m.start()] + table + text[m.end() :]


@pytest.mark.parametrize("letter", ["CM17-0002857.pdf", "CM16-0231706.pdf", "CM17-0014449.pdf"])
def test_header_dates_in_a_table_layout_are_never_verified_wrong(letter: str) -> None:
    text = _columns(document(letter).text)
    record = extract_document(read_text_bytes(text.encode(), letter))
    gold = GOLD[letter]["dates"]
    for name in DATE_PATHS:
        path = f"dates.{name}"
        got = getattr(record.dates, name)
        want = None if gold[name] is None else dt.date.fromisoformat(gold[name])
        if path in record.provenance and got != want:
            assert record.provenance[path].status is not Status.VERIFIED, (path, got, want)
        if path in record.provenance and got == want:  # a right value is not flagged
            assert record.provenance[path].status is not Status.CONTRADICTED, (path, got)
    # And the check says why: the labels are not paired with values in this layout.
    doubts = [
        c
        for c in record.verification.checks
        if c.name == "header_value_beside_label" and c.result is CheckResult.INCONCLUSIVE
    ]
    assert doubts and all("not paired" in c.detail or "label" in c.detail for c in doubts)


def test_pairing_reads_the_layout_not_the_value_shape() -> None:
    text = "Case Number: CM17-0000001\nDate Assigned: Date of Injury:\n01/09/2017 12/16/2016\n"
    hits = label_hits(text)
    pairs = {h.path: pair(text, hits, k) for k, h in enumerate(hits)}
    assert pairs["case_number"].value is not None
    assert pairs["dates.assigned"].value is None
    assert pairs["dates.injury"].value is None
    wrapped = "Priority: Standard Application \nReceived: \n01/04/2017\n"
    hits = label_hits(wrapped)
    got = {h.path: pair(wrapped, hits, k).value for k, h in enumerate(hits)}
    assert wrapped[slice(*got["priority"])] == "Standard"
    assert wrapped[slice(*got["dates.application_received"])] == "01/04/2017"


def test_a_swapped_header_date_is_contradicted_at_its_label() -> None:
    answer = gold_answer(GOLD[HEADER])
    answer.date_assigned, answer.ur_denial_date = answer.ur_denial_date, answer.date_assigned
    record = model_record(HEADER, answer)
    assert status(record, "dates.assigned") is Status.CONTRADICTED
    assert status(record, "dates.ur_denial") is Status.CONTRADICTED


@pytest.mark.parametrize(
    "key, wrong",
    [
        # the sentence's own words kept in the value
        (
            "original_request",
            lambda v: v + " was the original request",
        ),
        # truncated: a piece of the slot, not all of it
        ("original_request", lambda v: v.split(" ", 3)[-1]),
        ("authorized", lambda v: v.rsplit(" ", 1)[0]),
        # another phrase of the letter
        ("authorized", lambda v: "Chiropractic physiotherapy treatment 12 visits"),
    ],
)
def test_partial_parts_must_fill_their_slot(key, wrong) -> None:
    answer = gold_answer(GOLD[HEADER])
    item = answer.items[0]
    setattr(item, key, wrong(getattr(item, key)))
    record = model_record(HEADER, answer)
    path = f"items[0].{key}"
    if path in record.provenance:
        assert status(record, path) is not Status.VERIFIED


def test_right_partial_parts_are_verified() -> None:
    record = model_record(HEADER, gold_answer(GOLD[HEADER]))
    assert status(record, "items[0].original_request") is Status.VERIFIED
    assert status(record, "items[0].authorized") is Status.VERIFIED


def test_a_not_necessary_conclusion_with_a_split_infinitive_agrees_with_upheld() -> None:
    """'is determined to not be medically necessary' is an upheld conclusion (it was read as
    'be medically necessary' and flagged a right decision)."""
    letter = "CM16-0239479.pdf"
    text = document(letter).text
    planted, n = re.subn(
        r"is\s+not\s+medically\s+necessary", "is determined to not be medically necessary", text
    )
    assert n >= 1
    record = extract_document(read_text_bytes(planted.encode(), letter))
    agree = [c for c in record.verification.checks if c.name == "rationale_agrees_with_decision"]
    assert agree and all(c.result is CheckResult.PASSED for c in agree)
    assert status(record, "items[0].decision") is Status.VERIFIED
