"""Layout detection: every known form with its reader, a notice printed the 2016 way, and unknown."""

from __future__ import annotations

import pytest

from conftest import document, rules_record
from imr_extract import layouts
from imr_extract.extract import extract_text

REAL = "CM16-0231706.pdf"


def _part(text: str, start: str, end: str | None = None) -> str:
    i = text.index(start)
    return text[i : text.index(end, i) if end else len(text)]


def relaid(heading: str, decisions_heading: str, credentials_heading: str = "") -> str:
    """A real letter's content re-laid under another form's headings (text itself unchanged)."""
    text = document(REAL).text
    summary = _part(text, "The injured worker", "IMR ISSUES")
    decisions = _part(
        text,
        "Chiropractic physiotherapy treatment 12 visits for the cervical spine and back followed by \nre-examination was",
    )
    return (
        f"{heading}\n\n{credentials_heading}\n"
        "Physical Medicine & Rehabilitation, licensed in California\n\n"
        f"CASE SUMMARY\n{summary}\n{decisions_heading}\n{decisions}"
    )


def test_shared_letters_are_read_by_their_dedicated_readers():
    assert rules_record(REAL).layout == "final_determination_2016"
    assert rules_record("000_95767a46bf993051.txt").layout == "final_determination_prose"
    assert rules_record(REAL).warnings == []


@pytest.mark.parametrize(
    ("text", "name", "dedicated"),
    [
        (relaid("MAXIMUS FEDERAL SERVICES, INC.\nIndependent Medical Review\nDOCUMENTS REVIEWED",
                "IMR DECISION(S) AND RATIONALE(S)"), "maximus_imr_decisions", True),
        (relaid("MEDICAL PROFESSIONAL REVIEW\nISSUE AT DISPUTE", "DECISION",
                "MEDICAL REVIEWER QUALIFICATIONS"), "medical_professional_review", True),
        (relaid("Notice of Independent Medical Review Determination", "DETERMINATION"),
         "notice_2013", True),
    ],
)  # fmt: skip
def test_other_known_forms_are_recognised_and_reported(text, name, dedicated):
    layout, score = layouts.detect(text)
    assert (layout.name, layout.dedicated_reader) == (name, dedicated)
    assert score >= layouts.MIN_DETECT_SCORE
    record = extract_text(text, "relaid.txt")
    assert record.layout == name
    assert any("no dedicated reader" in w for w in record.warnings) is not dedicated
    # A notice whose items are printed the 2016 way ("X: Upheld", no numbered sentences) is read
    # by the item rules, and says so.
    fallback = any("no numbered decisions" in w for w in record.warnings)
    assert fallback is (name == "notice_2013")
    # The decision and the partial authorisation are still found.
    (item,) = record.items
    assert item.request == rules_record(REAL).items[0].request
    assert item.decision == rules_record(REAL).items[0].decision
    assert record.patient.age == 43


def test_unrecognised_form_is_unknown_but_still_read():
    text = relaid("SOME OTHER REVIEW ORGANISATION", "RESULTS")
    assert layouts.detect(text)[0].name == "unknown"
    record = extract_text(text, "other.txt")
    assert record.layout == "unknown" and len(record.items) == 1


def test_every_layout_module_is_registered_once():
    names = [layout.name for layout in layouts.all_layouts()]
    assert len(names) == len(set(names))
    assert {"final_determination_2016", "final_determination_prose", "unknown"} <= set(names)
    with pytest.raises(ValueError, match="registered twice"):
        layouts.register(
            layouts.Layout("unknown", "dup", detect=lambda t: 0.0, read=layouts.get("unknown").read)
        )
