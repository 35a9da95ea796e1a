"""The hybrid backend: routing, merge precedence, model failure, and the shared letters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import document, gold_files, load_gold
from fake_openai import Reply, answer, serve
from imr_extract.errors import NoDecisionsError
from imr_extract.hybrid import HybridExtractor, Route, plan_routing, rules_record
from imr_extract.ingest import Document, read_bytes
from imr_extract.layouts._regions import find_regions
from imr_extract.llm import LLMConfig, LLMExtractor
from imr_extract.merge import PRECEDENCE, merge
from imr_extract.schema import DATA_FIELDS, Backend, ExtractorInfo, Method, Status, schema_hash
from imr_extract.verify import verify
from test_gold import diff
from test_verify import GOLD, HEADER, gold_answer, model_record

FAKE_KEY = "imr-test-placeholder-not-a-key"


def llm(tmp_path: Path, base_url: str, **changes: object) -> LLMExtractor:
    config = LLMConfig(
        base_url=base_url,
        model="fake-model",
        api_key=FAKE_KEY,
        transport_retries=1,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        timeout_s=5.0,
        max_reasks=0,
        use_cache=False,
        cache_dir=tmp_path / "cache",
    )
    return LLMExtractor(config.with_(**changes))


# --- the shared letters: the rules verify everything, so the model is never asked ----------------

#: Nothing listens here: a call would fail and show up as a model error.
NOWHERE = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("gold_path", gold_files(), ids=[g.stem for g in gold_files()])
def test_hybrid_is_gold_exact_and_verified_without_a_model_call(gold_path, tmp_path):
    gold = load_gold(gold_path)
    record = HybridExtractor(llm(tmp_path, NOWHERE))(document(gold["letter"]))
    assert diff(gold, record.model_dump(mode="json", include=set(DATA_FIELDS))) == []
    assert record.extractor.backend is Backend.HYBRID and record.extractor.routed == "none"
    assert record.extractor.usage.requests == 0 and record.extractor.model_error is None
    assert all(p.status is Status.VERIFIED for p in record.provenance.values())
    assert all(p.method is Method.RULES for p in record.provenance.values())


# --- routing ----------------------------------------------------------------------------------


def relabelled(letter: str, old: str, new: str) -> Document:
    """A shared letter with one printed label changed (a variant form; the original is kept)."""
    text = document(letter).text
    assert old in text
    return read_bytes(text.replace(old, new, 1).encode(), f"relabelled-{letter}.txt")


def test_a_missing_header_field_sends_only_the_header_block():
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    record = rules_record(doc)
    assert record.dates.injury is None and record.verification.coverage < 1.0
    routing = plan_routing(record, doc.text)
    assert routing.route is Route.SECTIONS
    assert routing.regions == ((0, find_regions(doc.text).header_end),)
    assert any(r.startswith("dates.injury") for r in routing.reasons)


def test_an_unverified_item_sends_only_that_items_text():
    letter = "CM16-0231745.pdf"  # five items
    record = rules_record(document(letter)).model_copy(deep=True)
    record.items[2].decision = record.items[2].decision.__class__("overturned")
    text = document(letter).text
    record = verify(record, text)
    routing = plan_routing(record, text)
    assert routing.route is Route.SECTIONS and len(routing.regions) == 1
    start, end = routing.regions[0]
    assert record.items[2].request in " ".join(text[start:end].split())
    for other in (1, 3):
        assert record.items[other].request not in " ".join(text[start:end].split())


def test_a_letter_of_no_known_form_is_sent_whole():
    doc = read_bytes(b"Dear claimant,\nWe reviewed your file.\nKnee brace: Upheld\n", "x.txt")
    record = rules_record(doc)
    assert record.layout == "unknown" and record.verification.novel_layout
    assert plan_routing(record, doc.text).route is Route.LETTER


# --- the model on a section, through a real local HTTP server ------------------------------------


def injury_answer() -> dict:
    return {"date_of_injury": "10/23/2016", "items": []}


def test_a_section_answer_fills_the_gap_and_is_verified(tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with serve([answer(injury_answer())]) as fake:
        record = HybridExtractor(llm(tmp_path, fake.base_url))(doc)
    # Only the header block went to the model, not the clinical summary or the items.
    assert len(fake.requests) == 1
    sent = fake.requests[0]["messages"][-1]["content"]
    assert "Injury Dt: 10/23/2016" in sent and "CLINICAL CASE SUMMARY" not in sent
    assert "authorization" in fake.headers[0] and FAKE_KEY in fake.headers[0]["authorization"]
    assert record.dates.injury.isoformat() == GOLD[HEADER]["dates"]["injury"]
    prov = record.provenance["dates.injury"]
    assert prov.method is Method.LLM and prov.status is Status.VERIFIED
    assert record.provenance["dates.assigned"].method is Method.RULES
    assert record.extractor.routed == "sections" and record.extractor.usage.requests == 1
    gold = dict(GOLD[HEADER], letter=doc.name)
    assert diff(gold, record.model_dump(mode="json", include=set(DATA_FIELDS))) == []


def test_a_wrong_section_answer_is_flagged_not_verified(tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    wrong = {"date_of_injury": "12/07/2016", "items": []}  # the assigned date, printed nearby
    with serve([answer(wrong)]) as fake:
        record = HybridExtractor(llm(tmp_path, fake.base_url))(doc)
    assert record.dates.injury is not None
    assert record.provenance["dates.injury"].status is Status.CONTRADICTED


@pytest.mark.parametrize(
    "script, code",
    [
        ([Reply(status=500)], "llm-transport"),
        ([Reply(status=429, headers={"Retry-After": "0"})], "llm-transport"),
        ([Reply(body=b"<html>bad gateway</html>")], "llm-bad-response"),
        ([Reply(content="I cannot help with that.")], "llm-invalid"),
        ([answer(injury_answer(), finish_reason="length")], "llm-truncated"),
    ],
    ids=["500", "429", "not-json", "garbage", "cut-off"],
)
def test_a_failing_model_leaves_the_rules_record_standing(script, code, tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with serve(script) as fake:
        record = HybridExtractor(llm(tmp_path, fake.base_url))(doc)
    assert fake.requests  # the model was asked (and retried where that makes sense)
    assert record.extractor.model_error is not None
    assert record.extractor.model_error.startswith(code)
    assert any("model failed" in w for w in record.warnings)
    assert record.dates.injury is None and record.dates.assigned is not None
    assert all(p.method is Method.RULES for p in record.provenance.values())


def test_a_model_timeout_falls_back_within_the_retry_budget(tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with serve([Reply(delay_s=1.0, content="{}")]) as fake:
        record = HybridExtractor(llm(tmp_path, fake.base_url, timeout_s=0.2))(doc)
    assert record.extractor.model_error.startswith("llm-transport")
    assert len(fake.requests) == 2  # one try and one transport retry, then the rules stand


def test_a_letter_nobody_can_read_names_both_causes(tmp_path):
    doc = read_bytes(b"Dear claimant,\nWe reviewed your file and wish you well.\n", "blank.txt")
    with serve([Reply(status=500)]) as fake:
        with pytest.raises(NoDecisionsError) as err:
            HybridExtractor(llm(tmp_path, fake.base_url))(doc)
    assert "blank.txt" in str(err.value) and "llm-transport" in str(err.value)


# --- merge precedence --------------------------------------------------------------------------


def _info() -> ExtractorInfo:
    return ExtractorInfo(backend=Backend.HYBRID, schema_hash=schema_hash())


def test_precedence_is_verified_rules_then_verified_model_then_unverified():
    assert PRECEDENCE[:3] == (
        (Method.RULES, Status.VERIFIED),
        (Method.LLM, Status.VERIFIED),
        (Method.RULES, Status.UNVERIFIED),
    )
    text = document(HEADER).text
    rules = rules_record(document(HEADER)).model_copy(deep=True)
    rules.reviewer.specialty = "Orthopaedic Surgery"  # not what the letter says
    rules = verify(rules, text)
    answer_ = gold_answer(GOLD[HEADER])
    answer_.case_number = "CM16-0231707"  # not in the letter: unverified
    model = model_record(HEADER, answer_)
    merged = verify(merge(rules, model, _info()), text)
    # verified model value beats an unverified rule value; the loser is kept as the alternative
    assert merged.reviewer.specialty == GOLD[HEADER]["reviewer"]["specialty"]
    assert merged.provenance["reviewer.specialty"].method is Method.LLM
    alt = merged.alternatives["reviewer.specialty"]
    assert alt.method is Method.RULES and alt.value == "Orthopaedic Surgery"
    assert alt.status is Status.CONTRADICTED  # not the whole of the letter's specialty slot
    # a verified rule value beats an unverified model value
    assert merged.case_number == "CM16-0231706"
    assert merged.alternatives["case_number"].value == "CM16-0231707"
    # both verified and equal: the rules' (ties go to the rules), no alternative
    assert merged.provenance["dates.assigned"].method is Method.RULES
    assert "dates.assigned" not in merged.alternatives
    assert all(p.status is Status.VERIFIED for p in merged.provenance.values())


def test_an_unverified_model_item_is_left_out_when_the_rules_found_items():
    text = document(HEADER).text
    rules = rules_record(document(HEADER))
    answer_ = gold_answer(GOLD[HEADER])
    invented = answer_.items[0].model_copy(deep=True)
    invented.request = "MRI of the lumbar spine without contrast"
    answer_.items.append(invented)
    merged = verify(merge(rules, model_record(HEADER, answer_), _info()), text)
    assert [i.request for i in merged.items] == [i["request"] for i in GOLD[HEADER]["items"]]
    assert any("MRI of the lumbar spine" in w and "left out" in w for w in merged.warnings)


# --- the review page with a model configured ---------------------------------------------------


def test_review_with_a_model_shows_hybrid_model_and_rules_side_by_side(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from conftest import letter_path
    from imr_extract.cli import app

    wrong = gold_answer(GOLD[HEADER])
    wrong.items[0].decision = "overturned"
    out = tmp_path / "page.html"
    with serve([answer(wrong.model_dump(mode="json"))]) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("IMR_LLM_MODEL", "fake-model")
        monkeypatch.setenv("IMR_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        result = CliRunner().invoke(app, ["review", str(letter_path(HEADER)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(fake.requests) == 1  # the hybrid needed no call; the model view made one
    page = out.read_text()
    tabs = re.findall(r'role="tab" data-view="\d+" aria-selected="\w+">(\w+)', page)
    assert tabs == ["hybrid", "llm", "rules"]
    assert "rationale_agrees_with_decision" in page  # the model's wrong decision, flagged


def test_a_letter_with_template_syntax_reaches_the_model_unchanged(tmp_path):
    text = document(HEADER).text
    odd = "Note {{ letter }} and {% if x %}y{% endif %} and {%endraw%} and {# c #}.\n"
    doc = read_bytes((text.replace("Date of Injury:", "Injury Dt:", 1) + odd).encode(), "t.txt")
    with serve([answer(injury_answer())]) as fake:
        HybridExtractor(llm(tmp_path, fake.base_url, max_chunk_chars=100_000), force=Route.LETTER)(
            doc
        )
    sent = fake.requests[0]["messages"][-1]["content"]
    assert odd.strip() in sent


# --- two extractors, one field ------------------------------------------------------------------


def test_a_model_sent_one_item_supplies_nothing_else():
    """A model sent one item's text that answers with a subspecialty (which the letter does not
    print) must not bring it into the merged record; the item it was asked about still merges."""
    text = document(HEADER).text
    rules = rules_record(document(HEADER))
    assert rules.reviewer.subspecialty is None
    answer_ = gold_answer(GOLD[HEADER])
    answer_.reviewer_subspecialty = "Sports Medicine"
    model = model_record(HEADER, answer_)
    asked = ("items[0].request",)
    merged = verify(merge(rules, model, _info(), only=asked), text)
    assert merged.reviewer.subspecialty is None
    assert "reviewer.subspecialty" not in merged.alternatives
    assert any("reviewer.subspecialty was not asked" in w for w in merged.warnings)
    assert merged.items[0].request == GOLD[HEADER]["items"][0]["request"]
    # Asked about everything (a whole letter), the same answer's value is weighed as usual.
    whole = verify(merge(rules, model, _info()), text)
    assert whole.reviewer.subspecialty == "Sports Medicine"
    assert whole.provenance["reviewer.subspecialty"].status is not Status.VERIFIED


def _with_alternative(record, path, alt):
    data = record.model_dump(mode="json")
    data["alternatives"] = {path: alt}
    return type(record).model_validate_json(json.dumps(data))


def test_two_verified_answers_that_differ_are_never_both_verified():
    text = document(HEADER).text
    rules = rules_record(document(HEADER))
    path = "items[0].request"
    assert rules.provenance[path].status is Status.VERIFIED
    other = rules.provenance[path].model_dump()
    alt = {
        "method": "llm",
        "value": rules.items[0].request + " and re-examination",
        "status": "verified",
        "spans": other["spans"],
    }
    contested = _with_alternative(rules, path, alt)
    checked = verify(contested, text)
    assert checked.provenance[path].status is Status.UNVERIFIED
    agree = [c for c in checked.verification.checks if c.name == "extractors_agree"]
    assert agree and path in agree[0].paths
    # The same value in other case and spacing is no disagreement.
    same = dict(alt, value="  " + rules.items[0].request.upper())
    calm = _with_alternative(rules, path, same)
    assert verify(calm, text).provenance[path].status is Status.VERIFIED


def test_decisions_the_rules_did_not_read_send_the_letter_to_the_model():
    letter = "CM16-0236380.pdf"  # three items
    doc = document(letter)
    rules = rules_record(doc)
    assert plan_routing(rules, doc.text).route is Route.NONE
    data = rules.model_dump(mode="json")
    data["items"] = data["items"][:2]
    data["provenance"] = {
        p: v for p, v in data["provenance"].items() if not p.startswith("items[2]")
    }
    lost = verify(type(rules).model_validate_json(json.dumps(data)), doc.text)
    assert lost.verification.unaccounted_decisions == 1 and not lost.verification.complete
    routing = plan_routing(lost, doc.text)
    assert routing.route is Route.LETTER
    assert "1 decision(s) the rules did not read" in routing.reasons[0]


def test_a_key_or_endpoint_in_the_environment_alone_starts_no_model_call(tmp_path, monkeypatch):
    """OPENAI_API_KEY / OPENAI_BASE_URL set for other tools must not turn extract or review into
    paid model calls: the backend stays the rules unless a model is named."""
    from typer.testing import CliRunner

    from conftest import letter_path
    from imr_extract.cli import app

    with serve([answer(gold_answer(GOLD[HEADER]).model_dump(mode="json"))]) as fake:
        for var in ("IMR_LLM_MODEL", "OPENAI_MODEL"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
        out = tmp_path / "records.jsonl"
        result = CliRunner().invoke(app, ["extract", str(letter_path(HEADER)), "-o", str(out)])
        assert result.exit_code == 0, result.output
        page = tmp_path / "page.html"
        reviewed = CliRunner().invoke(app, ["review", str(letter_path(HEADER)), "-o", str(page)])
        assert reviewed.exit_code == 0, reviewed.output
        # Named, the same environment does reach the model (the endpoint above is real).
        monkeypatch.setenv("IMR_LLM_MODEL", "fake-model")
        monkeypatch.setenv("IMR_CACHE_DIR", str(tmp_path / "cache"))
        again = CliRunner().invoke(app, ["review", str(letter_path(HEADER)), "-o", str(page)])
        assert again.exit_code == 0, again.output
    record = json.loads(out.read_text().splitlines()[0])
    assert record["extractor"]["backend"] == "rules"
    assert len(fake.requests) == 1  # only the named run asked the model
