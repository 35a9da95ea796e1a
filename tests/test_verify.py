"""Verification: statuses, cross-checks and coverage, on rule output, tampered output and the
recorded answers of a real (weak) model."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from conftest import document, gold_files, letter_path, load_gold, rules_record
from imr_extract.assemble import build_record
from imr_extract.llm import LLMExtractor
from imr_extract.llm.response import LLMLetter, to_letter_found
from imr_extract.schema import (
    Backend,
    CheckResult,
    ExtractorInfo,
    LetterRecord,
    Method,
    Status,
    schema_hash,
)
from imr_extract.text import fold
from imr_extract.verify import verify
from llm_cassettes import recorded
from test_llm_replay import FULL_LETTERS, LONG_ANSWERS, cassette_name, meta_for, replay_config

GOLD = {load_gold(g)["letter"]: load_gold(g) for g in gold_files()}


def _key(s: str | None) -> str:
    return fold(s or "").casefold()


def wrong_paths(record: LetterRecord, gold: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Provenance paths whose value the gold file does not support: path -> (got, expected).

    Items are matched to gold items by request; an item with no gold counterpart (invented,
    split, misnamed) makes its request and decision wrong. A citation value is wrong when the
    gold guideline of the matched item has no such source, section or page.
    """
    got = record.model_dump(mode="json")
    wrong: dict[str, tuple[Any, Any]] = {}
    for path in record.provenance:
        head = path.split(".")[0].split("[")[0]
        if head in ("case_number", "priority"):
            if got[head] != gold[head]:
                wrong[path] = (got[head], gold[head])
        elif head in ("dates", "patient"):
            key = path.split(".")[1]
            if got[head][key] != gold[head][key]:
                wrong[path] = (got[head][key], gold[head][key])
        elif head == "reviewer":
            key = path.split(".")[1].split("[")[0]
            if key == "licensure":
                i = int(path.split("[")[1].rstrip("]"))
                if got["reviewer"]["licensure"][i] not in gold["reviewer"]["licensure"]:
                    wrong[path] = (got["reviewer"]["licensure"][i], gold["reviewer"]["licensure"])
            elif got["reviewer"][key] != gold["reviewer"][key]:
                wrong[path] = (got["reviewer"][key], gold["reviewer"][key])
    for i, item in enumerate(got["items"]):
        p = f"items[{i}]"
        match = [g for g in gold["items"] if _key(g["request"]) == _key(item["request"])]
        if not match:
            for k in ("request", "decision"):
                wrong[f"{p}.{k}"] = (item[k], None)
            continue
        g = match[0]
        for k in ("decision", "original_request", "authorized"):
            if f"{p}.{k}" in record.provenance and item[k] != g[k]:
                wrong[f"{p}.{k}"] = (item[k], g[k])
        for gl in ("claims_administrator_guideline", "imr_guideline"):
            gold_line = g[gl]
            for flag in ("cited", "outside_mtus"):
                if item[gl][flag] != gold_line[flag]:
                    wrong[f"{p}.{gl}.{flag}"] = (item[gl][flag], gold_line[flag])
            sources = {_key(c["source"]) for c in gold_line["citations"]}
            sections = {_key(s) for c in gold_line["citations"] for s in c["sections"]}
            pages = {n for c in gold_line["citations"] for n in c["pages"]}
            for c, cit in enumerate(item[gl]["citations"]):
                cp = f"{p}.{gl}.citations[{c}]"
                if _key(cit["source"]) not in sources:
                    wrong[f"{cp}.source"] = (cit["source"], sorted(sources))
                for s, section in enumerate(cit["sections"]):
                    if _key(section) not in sections:
                        wrong[f"{cp}.sections[{s}]"] = (section, sorted(sections))
                for n, page in enumerate(cit["pages"]):
                    if page not in pages:
                        wrong[f"{cp}.pages[{n}]"] = (page, sorted(pages))
    return wrong


@pytest.mark.parametrize("letter", FULL_LETTERS)
def test_recorded_model_errors_are_never_verified(letter, request, tmp_path):
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=LONG_ANSWERS.get(letter, 2048)))
    with recorded(request, cassette_name(letter), meta_for(extractor, doc.sha256)):
        record = extractor(doc)
    wrong = wrong_paths(record, GOLD[letter])
    leaks = {p: w for p, w in wrong.items() if record.provenance[p].status is Status.VERIFIED}
    assert not leaks


# --- rule output -------------------------------------------------------------------------------


@pytest.mark.parametrize("letter", sorted(GOLD))
def test_rule_values_on_every_shared_letter_are_verified(letter):
    record = rules_record(letter)
    v = record.verification
    assert v is not None and v.coverage == 1.0 and not v.novel_layout
    assert v.contradicted == v.unverified == 0 and v.verified == len(record.provenance)
    assert [c for c in v.checks if c.result is CheckResult.FAILED] == []
    # The checks did run: every item's decision was found beside its request.
    beside = [c for c in v.checks if c.name == "decision_beside_request"]
    assert sorted(c.item for c in beside) == list(range(len(record.items)))
    assert all(c.result is CheckResult.PASSED for c in beside)


# --- model answers built by hand: right, then wrong in one way at a time ----------------------


def gold_answer(gold: dict[str, Any]) -> LLMLetter:
    """The answer a perfect model would give for ``gold``'s letter (no quotes, like a lazy one)."""

    def us(d: str | None) -> str | None:
        return None if d is None else dt.date.fromisoformat(d).strftime("%m/%d/%Y")

    dates = gold["dates"]
    return LLMLetter.model_validate(
        {
            "case_number": gold["case_number"],
            "date_assigned": us(dates["assigned"]),
            "date_of_injury": us(dates["injury"]),
            "decision_date": us(dates["decision"]),
            "ur_denial_date": us(dates["ur_denial"]),
            "application_received": us(dates["application_received"]),
            "priority": gold["priority"],
            "reviewer_licensure": gold["reviewer"]["licensure"],
            "reviewer_specialty": gold["reviewer"]["specialty"],
            "reviewer_subspecialty": gold["reviewer"]["subspecialty"],
            "patient_age": gold["patient"]["age"],
            "patient_sex": gold["patient"]["sex"],
            "items": copy.deepcopy(gold["items"]),
        }
    )


def model_record(letter: str, answer: LLMLetter) -> LetterRecord:
    doc = document(letter)
    found = to_letter_found(answer, doc.text, "extract_letter@test")
    info = ExtractorInfo(backend=Backend.LLM, schema_hash=schema_hash())
    record = build_record(doc, rules_record(letter).layout, found, Method.LLM, info)
    return verify(record, doc.text, doc.page_of)


def status(record: LetterRecord, path: str) -> Status:
    return record.provenance[path].status


TWO_ITEMS = "000_95767a46bf993051.txt"  # item 0 cites pages 46 and 46-47, item 1 pages 98-99
HEADER = "CM16-0231706.pdf"  # all five header dates; a partly authorised item


@pytest.mark.parametrize("letter", [TWO_ITEMS, HEADER, "CM16-0249724.pdf"])
def test_a_right_answer_is_verified_in_full(letter):
    record = model_record(letter, gold_answer(GOLD[letter]))
    assert {
        p: pr.status for p, pr in record.provenance.items() if pr.status is not Status.VERIFIED
    } == {}
    assert record.verification.coverage == 1.0


def test_a_page_from_another_items_line_is_contradicted():
    answer = gold_answer(GOLD[TWO_ITEMS])
    answer.items[0].imr_guideline.citations[0].pages = [98]  # item 1's page, printed in the letter
    record = model_record(TWO_ITEMS, answer)
    path = "items[0].imr_guideline.citations[0].pages[0]"
    assert status(record, path) is Status.CONTRADICTED
    assert record.provenance[path].failed_checks == ["pages_in_guideline_line"]
    assert status(record, "items[1].imr_guideline.citations[0].pages[0]") is Status.VERIFIED


def test_a_page_not_in_the_letter_is_never_verified():
    answer = gold_answer(GOLD[TWO_ITEMS])
    answer.items[1].imr_guideline.citations[0].pages = [99, 612]
    record = model_record(TWO_ITEMS, answer)
    assert status(record, "items[1].imr_guideline.citations[0].pages[0]") is Status.VERIFIED
    assert status(record, "items[1].imr_guideline.citations[0].pages[1]") is Status.CONTRADICTED


def test_a_wrong_decision_is_contradicted_by_the_line_and_the_rationale():
    answer = gold_answer(GOLD[HEADER])
    answer.items[0].decision = "overturned"
    record = model_record(HEADER, answer)
    prov = record.provenance["items[0].decision"]
    assert prov.status is Status.CONTRADICTED
    assert prov.failed_checks == ["decision_beside_request", "rationale_agrees_with_decision"]


def test_an_invented_item_is_flagged_and_counted():
    answer = gold_answer(GOLD[HEADER])
    invented = answer.items[0].model_copy(deep=True)
    invented.request = "MRI of the lumbar spine without contrast"
    answer.items.append(invented)
    record = model_record(HEADER, answer)
    assert status(record, "items[1].request") is not Status.VERIFIED
    assert status(record, "items[1].decision") is not Status.VERIFIED
    backed = [c for c in record.verification.checks if c.name == "item_backed_by_census"]
    failed = [c for c in backed if c.result is CheckResult.FAILED]
    assert [c.item for c in failed] == [1] and "items[1].decision" in failed[0].paths
    assert record.verification.complete is False
    assert status(record, "items[0].request") is Status.VERIFIED


def test_an_item_split_in_two_is_flagged():
    letter = "CM16-0249724.pdf"
    answer = gold_answer(GOLD[letter])
    first = answer.items[1]
    assert " 3 in 1 " in first.request  # "purchase of a bedside 3 in 1 commode"
    head, _tail = first.request.split(" 3 in 1 ")
    second = first.model_copy(update={"request": "1 commode"})
    first.request = head
    answer.items.insert(2, second)
    record = model_record(letter, answer)
    assert status(record, "items[1].request") is not Status.VERIFIED
    assert status(record, "items[1].decision") is not Status.VERIFIED
    assert record.verification.coverage < 1.0


def test_swapped_dates_are_contradicted():
    answer = gold_answer(GOLD[HEADER])
    answer.date_assigned, answer.decision_date = answer.decision_date, answer.date_assigned
    record = model_record(HEADER, answer)
    for path in ("dates.assigned", "dates.decision"):
        prov = record.provenance[path]
        assert prov.status is Status.CONTRADICTED
        assert "header_value_beside_label" in prov.failed_checks


def test_a_value_run_into_the_next_label_is_contradicted():
    answer = gold_answer(GOLD[HEADER])
    answer.priority = "Standard Application"  # what the recorded model answered
    record = model_record(HEADER, answer)
    assert status(record, "priority") is Status.CONTRADICTED


def test_a_partial_authorisation_from_elsewhere_is_contradicted():
    answer = gold_answer(GOLD[HEADER])
    assert answer.items[0].authorized
    # In the letter (the IMR guideline line), but not in the item's sentence.
    answer.items[0].authorized = "Chronic Pain Medical Treatment 2016"
    record = model_record(HEADER, answer)
    assert status(record, "items[0].authorized") is Status.CONTRADICTED
    assert status(record, "items[0].original_request") is Status.VERIFIED


def test_a_flag_the_line_does_not_support_is_contradicted():
    answer = gold_answer(GOLD[HEADER])
    answer.items[0].imr_guideline.cited = False
    record = model_record(HEADER, answer)
    assert status(record, "items[0].imr_guideline.cited") is Status.CONTRADICTED


def test_dates_out_of_order_are_contradicted_even_without_labels():
    record = rules_record(HEADER).model_copy(deep=True)
    record.dates.injury = dt.date(2017, 3, 1)  # after the UR denial, and not what is printed
    checked = verify(record, document(HEADER).text)
    assert status(checked, "dates.injury") is Status.CONTRADICTED
    assert {"dates_in_order", "header_value_beside_label"} <= set(
        checked.provenance["dates.injury"].failed_checks
    )


def test_a_span_that_does_not_hold_its_value_is_not_verified():
    record = rules_record(HEADER).model_copy(deep=True)
    record.reviewer.specialty = "Orthopaedic Surgery"
    checked = verify(record, document(HEADER).text)
    # Not grounded at its span, and not what the letter's specialty slot holds.
    assert status(checked, "reviewer.specialty") is Status.CONTRADICTED
    assert checked.provenance["reviewer.specialty"].failed_checks == ["credential_fills_its_slot"]
    assert checked.verification.coverage < 1.0


def test_a_decision_read_from_its_printed_word_is_derived_not_fuzzy() -> None:
    """``upheld`` from "Upheld" is the enum read from the word, not a near miss: ``fuzzy`` is
    kept for quotes that are close but not as printed (and carries a score)."""
    from imr_extract import extract_path
    from imr_extract.schema import MatchKind

    record = extract_path(str(letter_path("CM16-0231706.pdf")))
    decisions = [p for k, p in record.provenance.items() if k.endswith("].decision")]
    assert decisions
    assert all(p.match is MatchKind.DERIVED and p.score is None for p in decisions)
    assert all(
        p.match is not MatchKind.FUZZY or p.score is not None for p in record.provenance.values()
    )
