"""Property tests: the rules never crash, and every span they report holds its value."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import document, gold_files, load_gold
from imr_extract.errors import NoDecisionsError, SeveralLettersError
from imr_extract.extract import extract_document
from imr_extract.ingest import Document
from imr_extract.verify.grounding import ungrounded

NAMES = [load_gold(g)["letter"] for g in gold_files()]
FRAGMENTS = [
    "Upheld", "Overturned", ": Upheld\n", "is: Overturned\n", "Claims Administrator guideline:",
    "MAXIMUS guideline:", "Decision rationale:", "Decision based on MTUS ", "Section(s): ",
    "Page(s): 46-47.", "pg. 607", "Decision based on Non-MTUS Citation ", ", and ",
    "was the original request. ", "was authorized by the Claims Administrator. ",
    "The remaining IMR eligible portion of the original request, ", "\f", "\n", "\n\n", " ",
    "IMR ISSUES, DECISIONS AND RATIONALES\n", "Case Number: CM16-0000001\n",
    "Date Assigned: 02/30/2016", "State(s) of Licensure: ", "a 43 year old female",
    "Certification(s)/Specialty: ", "Board Certified in X and is licensed to practice in Y.",
]  # fmt: skip


def as_document(text: str) -> Document:
    return Document(
        name="prop.txt",
        text=text,
        page_starts=(0,),
        sha256="0" * 64,
        media="text",
        text_engine="utf-8",
    )


def check(text: str) -> None:
    doc = as_document(text)
    try:
        record = extract_document(doc)
    except (NoDecisionsError, SeveralLettersError):  # declared refusals, naming the file
        return
    assert ungrounded(record, text) == []


letter_text = st.sampled_from(NAMES).map(lambda n: document(n).text)


@st.composite
def mutated_letters(draw):
    text = draw(letter_text)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 400)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "fragment"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=40)) + text[i:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
    return text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(FRAGMENTS)), max_size=40))
def test_rules_never_raise_on_arbitrary_text(parts):
    check("".join(parts))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*FRAGMENTS, "Lumbar MRI", "x" * 30, "."]), max_size=60))
def test_rules_never_raise_on_letter_like_fragments(parts):
    check("".join(parts))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_letters())
def test_spans_hold_their_values_on_mutated_letters(text):
    check(text)


def test_spans_hold_their_values_on_every_real_letter():
    for name in NAMES:
        doc = document(name)
        record = extract_document(doc)
        assert len(record.provenance) > 10
        assert ungrounded(record, doc.text) == [], name


def test_grounding_check_catches_a_wrong_value():
    doc = document("CM16-0231706.pdf")
    record = extract_document(doc)
    record.items[0].request = "Chiropractic physiotherapy treatment 60 visits"
    record.dates.injury = record.dates.decision
    problems = ungrounded(record, doc.text)
    assert any(p.startswith("items[0].request") for p in problems)
    assert any(p.startswith("dates.injury") for p in problems)
