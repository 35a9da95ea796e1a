"""Rule functions on the tricky shapes found in real letters (fragments quoted from them)."""

from __future__ import annotations

import datetime as dt

import pytest

from imr_extract.rules import (
    find_credential_lines,
    find_credential_prose,
    find_dates,
    find_items,
    find_patient,
    find_priority,
)
from imr_extract.rules.guidelines import find_pages, find_sections, parse_guideline
from imr_extract.schema import CitationKind, Decision, Sex

HEADER = (
    "Case Number: CM16-0231706\n"
    "Date Assigned: 12/07/2016 Date of Injury: 10/23/2016\n"
    "Decision Date: 01/05/2017 UR Denial Date: 11/29/2016\n"
    "Priority: Standard Application \n"
    "Received: \n"
    "12/01/2016\n"
)
INTRO = (
    "IMR ISSUES, DECISIONS AND RATIONALES\n"
    "The Final Determination was based on decisions for the disputed items/services set forth "
    "below:\n"
)
NO_EVIDENCE = (
    "Claims Administrator guideline: The Claims Administrator did not cite any medical evidence "
    "for its decision.\n"
    "MAXIMUS guideline: The Expert Reviewer did not cite any medical evidence for its decision.\n"
)


def values(found):
    return [f.value for f in found]


def test_header_dates_with_application_received_split_over_lines():
    dates = find_dates(HEADER)
    assert {k: v.value for k, v in dates.items()} == {
        "assigned": dt.date(2016, 12, 7),
        "injury": dt.date(2016, 10, 23),
        "decision": dt.date(2017, 1, 5),
        "ur_denial": dt.date(2016, 11, 29),
        "application_received": dt.date(2016, 12, 1),
    }
    received = dates["application_received"]
    assert HEADER[received.start : received.end] == "12/01/2016"
    assert find_priority(HEADER).value == "Standard"


def test_impossible_date_is_not_reported():
    assert "assigned" not in find_dates("Date Assigned: 13/45/2016\n")


def test_credentials_lines_with_wrapped_specialty():
    text = (
        "The Expert Reviewer has the following credentials:\n"
        "State(s) of Licensure: Iowa, Montana, California\n"
        "Certification(s)/Specialty: Preventive Medicine, Occupational Medicine, Public Health & \n"
        "General Preventive Medicine\n"
        "CLINICAL CASE SUMMARY\n"
    )
    found = find_credential_lines(text, 0, len(text))
    assert values(found.licensure) == ["Iowa", "Montana", "California"]
    assert found.specialty.value == (
        "Preventive Medicine, Occupational Medicine, Public Health & General Preventive Medicine"
    )
    assert found.subspecialty is None


def test_credentials_in_prose_with_subspecialty():
    text = (
        "The expert \nreviewer is Board Certified in Physical Medicine & Rehabilitation, has a "
        "subspecialty in \nNeuromuscular Medicine and is licensed to practice in Maryland. He/she"
    )
    found = find_credential_prose(text, 0, len(text))
    assert found.specialty.value == "Physical Medicine & Rehabilitation"
    assert found.subspecialty.value == "Neuromuscular Medicine"
    assert values(found.licensure) == ["Maryland"]


def test_prose_licensure_lists_several_states():
    text = (
        "is Board Certified in Surgery and is licensed to practice in California, Texas and Ohio."
    )
    assert values(find_credential_prose(text, 0, len(text)).licensure) == [
        "California",
        "Texas",
        "Ohio",
    ]


@pytest.mark.parametrize(
    ("summary", "age", "sex"),
    [
        ("The injured worker is a 43 year old female, who sustained", 43, Sex.FEMALE),
        ("This case involves a now 54-year-old female with a history", 54, Sex.FEMALE),
        ("The 58 year old female injured worker sustained", 58, Sex.FEMALE),
        ("The applicant is a 61-year-old male who has filed", 61, Sex.MALE),
        ("This patient present's with lower back pain.", None, None),
    ],
)
def test_patient_from_summary_statement(summary, age, sex):
    found = find_patient(summary, 0, len(summary))
    assert (found.age.value if found.age else None) == age
    assert (found.sex.value if found.sex else None) == sex


def test_wrapped_item_with_decision_on_next_line_in_double_spaced_text():
    text = (
        "IMR ISSUES, DECISIONS AND RATIONALES \n\n"
        "The Final Determination was based on decisions for the disputed items/services set forth "
        "below: \n\n \n\n"
        "Lumbar ESI (epidural steroid injections) and facet joint injections, L5-S1, times two:  \n"
        "Upheld \n\n \n\n"
        "Claims Administrator guideline: Decision based on MTUS Chronic Pain Treatment Guidelines "
        "\n\nPage(s): 46.   \n\n \n\n"
        "MAXIMUS guideline: Decision based on MTUS Chronic Pain Treatment Guidelines Page(s): \n\n"
        "46-47.   \n\n \n\n"
        "Decision rationale: This patient present's with lower back pain. \n\n" * 1
    )
    text += "filler line \n\n" * 30  # long enough to be recognised as double-spaced
    (item,) = find_items(text)
    assert item.request.value == (
        "Lumbar ESI (epidural steroid injections) and facet joint injections, L5-S1, times two"
    )
    assert item.decision.value is Decision.UPHELD
    assert values(item.claims_administrator_guideline.citations[0].pages) == [46]
    assert values(item.imr_guideline.citations[0].pages) == [46, 47]


def test_item_names_containing_colons_and_consecutive_items():
    text = (
        INTRO
        + "Labs to include: EKG: Upheld\n"
        + NO_EVIDENCE
        + "Decision rationale: As the requested surgical intervention is not medically necessary "
        "per the \ndocumentation, the requested ancillary service is not medically necessary.\n"
        "Associated surgical service: Cold compression therapy 30 day rental: Overturned\n"
        + NO_EVIDENCE
        + "Decision rationale: The request is medically necessary.\n"
    )
    first, second = find_items(text)
    assert first.request.value == "Labs to include: EKG"
    assert (
        second.request.value
        == "Associated surgical service: Cold compression therapy 30 day rental"
    )
    assert second.decision.value is Decision.OVERTURNED
    assert first.rationale.value.endswith(
        "the requested ancillary service is not medically necessary"
    )
    assert first.claims_administrator_guideline.cited.value is False


def test_partial_authorisation_remaining_portion_across_a_page_break():
    text = (
        INTRO
        + "Chiropractic physiotherapy treatment 12 visits for the cervical spine and back followed by \n"
        "re-examination was the original request. Chiropractic physiotherapy treatment 6 visits was \n"
        "\fauthorized by the Claims Administrator. The remaining IMR eligible portion of the \n"
        "original request, Chiropractic physiotherapy treatment 6 visits is: Upheld\n" + NO_EVIDENCE
    )
    (item,) = find_items(text)
    assert item.request.value == "Chiropractic physiotherapy treatment 6 visits"
    assert item.original_request.value == (
        "Chiropractic physiotherapy treatment 12 visits for the cervical spine and back followed "
        "by re-examination"
    )
    assert item.authorized.value == "Chiropractic physiotherapy treatment 6 visits"


def test_partial_authorisation_leaving_wording_after_a_previous_rationale():
    text = (
        INTRO
        + "Back support: Upheld\n"
        + NO_EVIDENCE
        + "Decision rationale: As such, the request is not medically necessary.\n"
        "Purchase of a bedside 3 in 1 commode was the original request. The Claims Administrator \n"
        "authorized a bedside 3 in 1 commode for 1 month, leaving the original request IMR \n"
        "eligible. The original request, purchase of a bedside 3 in 1 commode is: Upheld\n"
        + NO_EVIDENCE
    )
    _, item = find_items(text)
    assert item.request.value == "purchase of a bedside 3 in 1 commode"
    assert item.original_request.value == "Purchase of a bedside 3 in 1 commode"
    assert item.authorized.value == "a bedside 3 in 1 commode for 1 month"


def test_partial_when_the_original_request_sentence_ends_a_line():
    # "...was authorized by the Claims Administrator." ends a line: the walk must go past it.
    text = (
        INTRO + "Physical therapy right knee 6 times was the original request. Physical \n"
        "therapy right knee 3 times a week for 2 weeks was authorized by the Claims Administrator. \n"
        "The remaining IMR eligible portion of the original request, Physical therapy right knee 3 \n"
        "times a week for 1 week is: Upheld\n" + NO_EVIDENCE
    )
    (item,) = find_items(text)
    assert item.request.value == "Physical therapy right knee 3 times a week for 1 week"
    assert item.original_request.value == "Physical therapy right knee 6 times"


def _guideline(line: str):
    return parse_guideline(line, 0, len(line))


def test_guideline_not_cited():
    g = _guideline("The Claims Administrator did not cite any medical evidence for its decision.")
    assert (g.cited.value, g.outside_mtus.value, g.citations) == (False, False, [])


def test_guideline_outside_mtus_with_non_mtus_source_containing_dots():
    g = _guideline(
        "The Expert Reviewer based their decision on recommendation(s) outside of the MTUS "
        "Guidelines. Decision based on Non-MTUS Citation http://www.slideshare.net/x/skilled-\n"
        "nursing-care, https://medicalinsider.holy-cross.com/acute."
    )
    assert g.cited.value is True and g.outside_mtus.value is True
    (c,) = g.citations
    assert c.kind.value is CitationKind.NON_MTUS
    assert c.source.value == (
        "http://www.slideshare.net/x/skilled- nursing-care, https://medicalinsider.holy-cross.com/acute"
    )


def test_guideline_mtus_parts_joined_by_and_with_sections():
    g = _guideline(
        "Decision based on MTUS Forearm, Wrist, and Hand Complaints 2004, Section(s): "
        "Work-Relatedness, and Postsurgical Treatment 2009, Section(s): Forearm, Wrist, & Hand, "
        "and Chronic Pain Medical Treatment 2016, Section(s): Physical medicine treatment. "
        "Decision based on Non-MTUS Citation ODG Chiropractic guidelines."
    )
    assert [(c.kind.value, c.source.value, values(c.sections)) for c in g.citations] == [
        (CitationKind.MTUS, "Forearm, Wrist, and Hand Complaints 2004", ["Work-Relatedness"]),
        (CitationKind.MTUS, "Postsurgical Treatment 2009", ["Forearm, Wrist, & Hand"]),
        (CitationKind.MTUS, "Chronic Pain Medical Treatment 2016", ["Physical medicine treatment"]),
        (CitationKind.NON_MTUS, "ODG Chiropractic guidelines", []),
    ]


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ("Muscle relaxants (for pain), Cyclobenzaprine (Flexeril)",
         ["Muscle relaxants (for pain)", "Cyclobenzaprine (Flexeril)"]),
        ("TENS, chronic pain (transcutaneous electrical nerve stimulation)",
         ["TENS, chronic pain (transcutaneous electrical nerve stimulation)"]),
        ("Ultrasound, therapeutic", ["Ultrasound, therapeutic"]),
        ("Special Studies, Summary", ["Special Studies", "Summary"]),
        ("NSAIDs, GI symptoms & cardiovascular risk, Proton Pump Inhibitors (PPIs)",
         ["NSAIDs, GI symptoms & cardiovascular risk", "Proton Pump Inhibitors (PPIs)"]),
        ("1.4 Opioids for Acute Pain: Opioids for Post-operative Pain",
         ["1.4 Opioids for Acute Pain: Opioids for Post-operative Pain"]),
    ],
)  # fmt: skip
def test_sections_lists(sections, expected):
    assert values(find_sections(sections, 0, len(sections))) == expected


def test_older_named_part_with_sections_and_pages():
    g = _guideline(
        "Decision based on MTUS Chronic Pain Treatment Guidelines Epidural \n"
        "steroid injections ESIs Page(s): 46."
    )
    (c,) = g.citations
    assert c.source.value == "Chronic Pain Treatment Guidelines"
    assert values(c.sections) == ["Epidural steroid injections ESIs"]
    assert values(c.pages) == [46]


@pytest.mark.parametrize(
    ("line", "pages"),
    [
        ("Decision based on MTUS Chronic Pain Treatment Guidelines Page(s): 46-47.", [46, 47]),
        ("Decision based on MTUS ACOEM Practice Guidelines, Chapter 12, pg. 607.", [607]),
        ("Decision based on MTUS Chronic Pain Medical Treatment 2016, Section(s): Opioids, "
         "Page(s): 74-76, 80.", [74, 75, 76, 80]),
    ],
)  # fmt: skip
def test_page_forms(line, pages):
    (c,) = _guideline(line).citations
    assert values(c.pages) == pages


def test_page_range_spans_point_at_the_printed_numbers():
    text = "46-48"
    pages = find_pages(text, 0, len(text))
    assert values(pages) == [46, 47, 48]
    assert [text[p.start : p.end] for p in pages] == ["46", "46-48", "48"]
