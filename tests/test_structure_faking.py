"""Structure a letter cannot fake (issue 12, finding 7): a second decisions heading, an item-shaped
line or a decision sentence where the form states none is flagged, never obeyed.

The attacks are derived from every bundled letter of every form (``faked_structure``): lines
in the letter's own shapes inserted into its case summary or its first item's rationale. Each
side holds on its own: the rules never build an item from them, and verification, which reads
nothing of the rules', never verifies an item that rests on them, whoever extracted it (a record
from another tool that did build the item is checked here through ``verify_external``).
"""

from __future__ import annotations

from collections import Counter

import pytest

from faked_structure import (
    FLAGGED_KINDS,
    Attack,
    attacks,
    baseline,
    document,
    is_fake,
    judge,
    read,
)
from imr_extract.extract import extract_text
from imr_extract.schema import DATA_FIELDS, CheckResult, Status
from imr_extract.verify import verify_external
from variants import letter_names

#: The checks and warnings this feature adds: none may appear on a real letter.
STRUCTURE_CHECKS = (
    "decisions_heading_printed_once",
    "decisions_only_where_the_form_states_them",
    "one_decisions_section",
)
STRUCTURE_WARNINGS = ("decisions heading is printed", "item-shaped line", "outside the decisions")
FORMS = (
    "final_determination_2016",
    "final_determination_prose",
    "maximus_imr_decisions",
    "medical_professional_review",
    "notice_2013",
)

REQUIRED = [a for a in attacks() if a.flag_required]
# The 2016 form's 64 letters: every fourth (the other forms: every letter).
_SAMPLED = set(letter_names()[::4])
OTHERS = [
    a
    for a in attacks()
    if not a.flag_required and (a.layout != "final_determination_2016" or a.letter in _SAMPLED)
]


def test_attacks_cover_every_form_kind_and_place() -> None:
    seen = Counter((a.layout, a.kind, a.place) for a in REQUIRED)
    for form in FORMS:
        for kind in FLAGGED_KINDS:
            for place in ("summary", "rationale"):
                assert seen[(form, kind, place)] >= 2, (form, kind, place)
    assert len({a.letter for a in attacks()}) == len(letter_names())


@pytest.mark.parametrize("name", letter_names())
def test_a_real_letter_raises_no_structure_flag(name: str) -> None:
    _text, record = baseline(name)
    v = record.verification
    assert v is not None and v.complete
    flags = [c for c in v.checks if c.name in STRUCTURE_CHECKS]
    assert flags == []
    assert not [w for w in record.warnings if any(s in w for s in STRUCTURE_WARNINGS)]


@pytest.mark.parametrize("attack", REQUIRED, ids=lambda a: a.id)
def test_an_attack_is_flagged_not_obeyed_and_the_real_items_stay_verified(attack: Attack) -> None:
    record = read(attack)
    verdict = judge(attack, record)
    assert not verdict.obeyed, "the made-up item is verified"
    assert verdict.flagged, "no failed check names the inserted lines, or the record is complete"
    assert verdict.real_kept, f"values verified on the letter are no longer: {verdict.lost[:4]}"
    assert verdict.warned, f"no rules warning names the inserted lines: {record.warnings}"


@pytest.mark.parametrize("attack", OTHERS, ids=lambda a: a.id)
def test_a_summary_sentence_or_a_forged_block_is_never_a_verified_item(attack: Attack) -> None:
    record = read(attack)
    verdict = judge(attack, record)
    assert not verdict.obeyed
    if attack.kind == "conclusion_sentence":
        # What a case summary says of its own: not an item, and no false alarm either.
        assert not any(is_fake(record, i, attack.request) for i in range(len(record.items)))
        assert verdict.real_kept and not verdict.flagged
    else:  # a whole item block forged under a second heading: flagged
        assert verdict.flagged


EXTERNAL = [a for a in REQUIRED if a.letter in letter_names()[::9] or a.layout != FORMS[0]]


@pytest.mark.parametrize("attack", EXTERNAL, ids=lambda a: a.id)
def test_an_extractor_that_obeys_gets_no_verified_item(attack: Attack) -> None:
    """A record from another tool that did read the made-up item: verification refuses it."""
    record = read(attack)
    data = record.model_dump(mode="json", include=set(DATA_FIELDS))
    real = data["items"][0]
    data["items"].append(
        {
            **real,
            "request": attack.request,
            "decision": attack.decision.value,
            "original_request": None,
            "authorized": None,
            "rationale": None,
        }
    )
    checked = verify_external(data, document(attack))
    fake = [i for i in range(len(checked.items)) if is_fake(checked, i, attack.request)]
    assert fake
    for i in fake:
        for f in ("request", "decision"):
            prov = checked.provenance.get(f"items[{i}].{f}")
            assert prov is None or prov.status is not Status.VERIFIED, (f, prov)
    v = checked.verification
    assert v is not None and not v.complete


# --- the shapes, one by one ----------------------------------------------------------------------

LETTER = """\
Case Number: CM16-0000001
HOW THE IMR FINAL DETERMINATION WAS MADE
CLINICAL CASE SUMMARY
The injured worker is a 40 year old male. On 11-04-2016 the request for
physical therapy was non-certified by utilization review. The request for
acupuncture was denied.{summary}
IMR ISSUES, DECISIONS AND RATIONALES
The Final Determination was based on decisions for the disputed items/services set forth below:
Physical therapy x 6: Upheld
Claims Administrator guideline: Decision based on MTUS Chronic Pain 2009.
MAXIMUS guideline: Decision based on MTUS Chronic Pain 2009, Page(s): 98.
Decision rationale: Therapy was tried. The request is not medically necessary.{rationale}
"""


def _statuses(record, request: str) -> list[Status]:  # type: ignore[no-untyped-def]
    return [
        record.provenance[f"items[{i}].{f}"].status
        for i, it in enumerate(record.items)
        if it.request == request
        for f in ("request", "decision")
    ]


def test_summary_quoting_prior_decisions_is_no_flag() -> None:
    record = extract_text(LETTER.format(summary="", rationale=""))
    assert [it.request for it in record.items] == ["Physical therapy x 6"]
    assert record.verification is not None and record.verification.complete
    assert not [c for c in record.verification.checks if c.name in STRUCTURE_CHECKS]


@pytest.mark.parametrize(
    "summary",
    [
        "\nIMR ISSUES, DECISIONS AND RATIONALES\nAcupuncture x 12: Overturned",
        "\nAcupuncture x 12: Overturned",
    ],
    ids=["heading_and_item", "item_line"],
)
def test_an_item_line_in_the_summary_is_named_and_not_read(summary: str) -> None:
    text = LETTER.format(summary=summary, rationale="")
    record = extract_text(text)
    assert [it.request for it in record.items] == ["Physical therapy x 6"]
    assert _statuses(record, "Physical therapy x 6") == [Status.VERIFIED] * 2
    assert any("Acupuncture x 12" in w for w in record.warnings)
    v = record.verification
    assert v is not None and not v.complete
    failed = {c.name for c in v.checks if c.result is CheckResult.FAILED}
    assert "decisions_only_where_the_form_states_them" in failed


def test_an_item_line_inside_a_rationale_is_not_an_item() -> None:
    text = LETTER.format(summary="", rationale="\nAcupuncture x 12: Overturned\nIt helped.")
    record = extract_text(text)
    assert [it.request for it in record.items] == ["Physical therapy x 6"]
    v = record.verification
    assert v is not None and not v.complete


def test_a_second_heading_alone_is_named_and_the_items_stay_verified() -> None:
    text = LETTER.format(summary="\nIMR ISSUES, DECISIONS AND RATIONALES", rationale="")
    record = extract_text(text)
    assert [it.request for it in record.items] == ["Physical therapy x 6"]
    assert _statuses(record, "Physical therapy x 6") == [Status.VERIFIED] * 2
    assert any("decisions heading is printed 2 times" in w for w in record.warnings)
    v = record.verification
    assert v is not None and not v.complete
    failed = {c.name for c in v.checks if c.result is CheckResult.FAILED}
    assert "decisions_heading_printed_once" in failed
