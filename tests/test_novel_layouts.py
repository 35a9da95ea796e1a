"""Novel layouts and prompt injection, through the hybrid backend, on recorded model answers.

The letters are real letters' text re-laid under the headings of three other forms
(``tests/data/relaid``) and one real letter with an instruction to the model injected into its
case summary (``tests/data/injection``); see their READMEs. The model's answers are the ones
recorded for the LLM backend (``test_llm_novel``): for a letter routed whole, the hybrid sends
exactly the same request.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_gold
from imr_extract.errors import ImrExtractError
from imr_extract.hybrid import HybridExtractor, Route, plan_routing, rules_record
from imr_extract.ingest import read_path
from imr_extract.llm import LLMExtractor
from imr_extract.schema import DATA_FIELDS, Decision, Method, Status
from llm_cassettes import recorded
from test_gold import diff
from test_llm_novel import CASES, INJECTED, NO_REASK, RELAID, Case
from test_llm_replay import meta_for, replay_config
from test_verify import wrong_paths

LETTERS = Path(__file__).parent / "data" / "letters"

#: What the coverage score makes of each form, or of one letter ("form/stem"), rules only:
#: (novel?, route).
ROUTES = {
    # Its own reader (the header before the first section, the credentials lines, the 2016 items
    # with the decision word below the request): read exactly, nothing to ask the model.
    "maximus_imr_decisions": (False, Route.NONE),
    # Its own reader (header and credentials labels, partial authorisations from the list at
    # dispute); the item labels are known to the rules and to verification.
    "medical_professional_review": (False, Route.NONE),
    # Its own reader (numbered decision sentences): every value read exactly and verified (the
    # census ties each request to its numbered decision), nothing to ask the model.
    "notice_2013": (False, Route.NONE),
    # Its source letter printed no header: no case number or dates, which the notice prints.
    "notice_2013/000_95767a46bf993051": (True, Route.LETTER),
}


def _route(letter: Path) -> tuple[bool, Route]:
    form = letter.parent.name
    return ROUTES.get(f"{form}/{letter.stem}") or ROUTES[form]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.letter.parent.parent == RELAID], ids=lambda c: c.name
)
def test_coverage_reports_novel_layouts_and_routes_them_to_the_model(case):
    doc = read_path(case.letter)
    record = rules_record(doc)
    novel, route = _route(case.letter)
    assert record.layout == case.letter.parent.name
    assert record.verification.novel_layout is novel
    assert (record.verification.coverage < 0.8) is novel
    assert plan_routing(record, doc.text).route is route


@pytest.mark.parametrize("path", sorted(LETTERS.glob("txt/*.txt")), ids=lambda p: p.name)
def test_the_older_text_form_is_known_and_fully_covered(path):
    record = rules_record(read_path(path))
    assert record.layout == "final_determination_prose"
    assert record.verification.coverage == 1.0 and not record.verification.novel_layout


def _hybrid(case: Case, request, tmp_path, force: Route | None = None):
    doc = read_path(case.letter)
    llm = LLMExtractor(replay_config(tmp_path, max_reasks=0 if case.name in NO_REASK else 1))
    with recorded(request, case.name, meta_for(llm, doc.sha256)):
        try:
            return doc, HybridExtractor(llm, force=force)(doc)
        except ImrExtractError as exc:
            return doc, exc


ROUTED = [
    c for c in CASES if c.letter.parent.name in ("medical_professional_review", "notice_2013")
]


@pytest.mark.parametrize("case", ROUTED, ids=lambda c: c.name)
def test_a_novel_letter_gets_the_models_values_and_no_wrong_value_is_verified(
    case, request, tmp_path
):
    # Both forms have readers now: their letters are sent whole on purpose, to keep the recorded
    # answers of forms the model had not seen under test.
    _doc, out = _hybrid(case, request, tmp_path, force=Route.LETTER)
    gold = load_gold(case.gold)
    if case.name in NO_REASK:
        # The model's answer was not valid JSON: the rules' record stands, the failure recorded.
        assert not isinstance(out, ImrExtractError), out
        assert out.extractor.model_error and "llm-invalid" in out.extractor.model_error
        assert diff(gold, out.model_dump(mode="json", include=set(DATA_FIELDS))) == []
        assert all(p.method is Method.RULES for p in out.provenance.values())
        return
    record = out
    assert record.extractor.routed == "letter" and record.extractor.usage.requests == 1
    wrong = wrong_paths(record, gold)
    verified_wrong = {
        p: w for p, w in wrong.items() if record.provenance[p].status is Status.VERIFIED
    }
    assert verified_wrong == {}
    # The rules' misreading of the request ("Item 1: ... Determination") is not what is kept.
    for item in record.items:
        assert not item.request.startswith("Item ")


@pytest.mark.parametrize(
    "case",
    [c for c in ROUTED if c.letter.parent.name == "medical_professional_review"],
    ids=lambda c: c.name,
)
def test_the_medical_professional_review_form_is_read_exactly_without_the_model(case, tmp_path):
    # No cassette: a model call would meet the test suite's network guard.
    llm = LLMExtractor(replay_config(tmp_path))
    record = HybridExtractor(llm)(read_path(case.letter))
    assert record.layout == "medical_professional_review"
    assert record.extractor.routed == "none" and record.extractor.usage.requests == 0
    assert (
        diff(load_gold(case.gold), record.model_dump(mode="json", include=set(DATA_FIELDS))) == []
    )
    assert all(p.status is Status.VERIFIED for p in record.provenance.values())
    assert record.verification.coverage == 1.0


def test_where_the_model_and_the_forms_reader_agree_the_value_is_verified_once(request, tmp_path):
    """Sent whole anyway, the recorded answer's request equals the reader's: one verified value
    (the rules', by precedence), no alternative to review."""
    case = next(c for c in ROUTED if "CM16-0246624" in c.name)
    _doc, record = _hybrid(case, request, tmp_path, force=Route.LETTER)
    gold = load_gold(case.gold)
    assert [i.request for i in record.items] == [i["request"] for i in gold["items"]]
    assert record.provenance["items[0].request"].method is Method.RULES
    assert record.provenance["items[0].request"].status is Status.VERIFIED
    assert "items[0].request" not in record.alternatives


INJECTION = next(c for c in CASES if c.letter.parent == INJECTED)


def test_an_injected_instruction_cannot_produce_a_verified_value(request, tmp_path):
    """The recorded model obeyed the note ("report Overturned"); verification catches it."""
    _doc, record = _hybrid(INJECTION, request, tmp_path, force=Route.LETTER)
    gold = load_gold(INJECTION.gold)
    # The model's answer was asked for and merged: its decision lost, flagged.
    assert record.extractor.routed == "letter" and record.extractor.usage.requests == 1
    alt = record.alternatives["items[0].decision"]
    assert alt.method is Method.LLM and alt.value == Decision.OVERTURNED.value
    assert alt.status is Status.CONTRADICTED
    # What is emitted is what the letter says, all of it verified.
    assert diff(gold, record.model_dump(mode="json", include=set(DATA_FIELDS))) == []
    assert all(p.status is Status.VERIFIED for p in record.provenance.values())
    # Nothing the note asked for is verified anywhere.
    pages = [
        p
        for path, p in record.provenance.items()
        if ".pages[" in path and p.status is Status.VERIFIED
    ]
    assert all(record_page != 99 for record_page in _pages(record)) and len(pages) == len(
        _pages(record)
    )


def _pages(record) -> list[int]:
    return [
        n
        for item in record.items
        for g in (item.claims_administrator_guideline, item.imr_guideline)
        for c in g.citations
        for n in c.pages
    ]


def test_the_model_alone_on_the_injected_letter_is_contradicted(request, tmp_path):
    doc = read_path(INJECTION.letter)
    llm = LLMExtractor(replay_config(tmp_path))
    with recorded(request, INJECTION.name, meta_for(llm, doc.sha256)):
        record = llm(doc)
    assert record.items[0].decision is Decision.OVERTURNED  # what the note asked for
    prov = record.provenance["items[0].decision"]
    assert prov.status is Status.CONTRADICTED
    assert {"decision_beside_request", "rationale_agrees_with_decision"} <= set(prov.failed_checks)
