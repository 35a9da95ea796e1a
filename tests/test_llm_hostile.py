"""Slow and lying endpoints, and answers that break the schema (issue 12, findings 4, 5 and 8).

Every endpoint here is a real loopback server (``hostile_endpoints``); every timeout is a second
or two, so a test that waits for what it should not wait for fails by its clock.
"""

from __future__ import annotations

import copy
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import hostile_endpoints as h
from conftest import document
from imr_extract import layouts
from imr_extract.assemble import verified_record
from imr_extract.errors import (
    LLMBadResponseError,
    LLMDeadlineError,
    LLMError,
    LLMTransportError,
    LLMValidationError,
)
from imr_extract.hybrid import HybridExtractor, Route
from imr_extract.llm import LLMConfig, LLMExtractor, LLMMode
from imr_extract.llm.client import structured_call
from imr_extract.llm.response import LLMLetter, salvage, to_letter_found
from imr_extract.schema import DATA_FIELDS, Backend, ExtractorInfo, Method, schema_hash
from test_gold import diff
from test_hybrid import injury_answer, relabelled
from test_verify import GOLD, HEADER, gold_answer

FAKE_KEY = "imr-test-placeholder-not-a-key"


def config(tmp_path: Path, base_url: str, **changes: object) -> LLMConfig:
    return LLMConfig(
        base_url=base_url,
        model="fake-model",
        api_key=FAKE_KEY,
        mode=LLMMode.MD_JSON,
        transport_retries=1,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        timeout_s=1.0,
        max_reasks=0,
        use_cache=False,
        cache_dir=tmp_path / "cache",
    ).with_(**changes)


def timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    try:
        outcome = call()
    except LLMError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


class Ok(BaseModel):
    ok: bool


ASK = [{"role": "user", "content": "Answer ok."}]


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One structured call before the clocks start: the first one in a process builds
    instructor's handlers and the answer schema (a second or more)."""
    with h.serve_hostile(h.answer(header_answer())) as server:
        cfg = config(tmp_path_factory.mktemp("warm"), server.base_url)
        structured_call("warm.txt", cfg, ASK, LLMLetter)


# --- finding 4: --timeout bounds a try end to end; the letter's deadline bounds them all ----------


@pytest.mark.parametrize("reply", [h.drip(0.2, max_s=4), h.drip_headers(0.2, max_s=4)])
def test_a_dripping_endpoint_holds_a_try_no_longer_than_the_timeout(reply, tmp_path):
    # A byte every 0.2 s never trips a per-read timeout of 1 s; without an end-to-end bound a
    # try lasts until the server hangs up (4 s here, the body's length in the wild).
    doc = document(HEADER)
    with h.serve_hostile(reply) as server:
        extractor = LLMExtractor(config(tmp_path, server.base_url, timeout_s=1.0))
        error, elapsed = timed(lambda: extractor(doc))
    assert isinstance(error, LLMTransportError) and error.code == "llm-transport"
    assert "within --timeout 1 s" in error.cause
    assert len(server.requests) == 2  # one try and one transport retry
    assert elapsed < 2 * 1.0 + 0.8, f"{elapsed:.1f} s for two tries of at most 1 s"


def test_the_letters_deadline_bounds_every_try_and_wait_together(tmp_path):
    doc = document(HEADER)
    with h.serve_hostile(h.drip(0.2, max_s=8)) as server:
        cfg = config(tmp_path, server.base_url, transport_retries=10, letter_seconds=2.5)
        error, elapsed = timed(lambda: LLMExtractor(cfg)(doc))
    assert isinstance(error, LLMDeadlineError) and error.code == "timeout"
    assert "deadline of 2.5 s" in error.cause and "--letter-timeout" in error.cause
    assert 2.5 <= elapsed < 3.3
    assert len(server.requests) == 3  # 1 s, 1 s, then the half second that was left
    assert error.usage.requests == 3  # every try counted, for --rpm


@pytest.mark.parametrize("after", ["100000", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_a_retry_after_past_the_deadline_fails_at_once_and_says_so(after, tmp_path):
    waits: list[float] = []
    with h.serve_hostile(h.retry_after(after)) as server:
        cfg = config(tmp_path, server.base_url, transport_retries=3, letter_seconds=30)
        with pytest.raises(LLMDeadlineError) as err:
            structured_call("x.txt", cfg, ASK, Ok, sleep=waits.append)
    assert waits == []  # not waited at all (it was 120 s, three times)
    assert len(server.requests) == 1
    cause = err.value.cause
    assert "asked to retry after" in cause and "s (HTTP 429)" in cause
    assert "past the letter's deadline of 30 s" in cause
    assert err.value.code == "timeout"


def test_a_retry_after_longer_than_any_wait_is_an_endpoint_down_not_a_wait(tmp_path):
    waits: list[float] = []
    with h.serve_hostile(h.retry_after("500")) as server:
        cfg = config(tmp_path, server.base_url, transport_retries=3, letter_seconds=1000)
        with pytest.raises(LLMTransportError) as err:
            structured_call("x.txt", cfg, ASK, Ok, sleep=waits.append)
    assert waits == [] and len(server.requests) == 1
    assert "retry after 500 s" in err.value.cause and "treated as down" in err.value.cause


def test_in_hybrid_a_retry_after_past_the_deadline_leaves_the_rules_at_once(tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with h.serve_hostile(h.retry_after("100000")) as server:
        llm = LLMExtractor(config(tmp_path, server.base_url, letter_seconds=60))
        record, elapsed = timed(lambda: HybridExtractor(llm)(doc))
    assert elapsed < 2.0
    assert record.extractor.model_error.startswith("timeout: endpoint asked to retry after")
    assert record.dates.assigned is not None and record.dates.injury is None


# --- finding 5: a 2xx that is not a chat completion is named and retried ------------------------


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (h.html(), "an HTML page"),
        (h.no_choices(), "JSON without 'choices'"),
        (h.empty_choices(), "no choices"),
    ],
    ids=["html", "no-choices", "empty-choices"],
)
def test_a_2xx_that_is_not_a_completion_is_named_and_retried(reply, says, tmp_path):
    doc = document(HEADER)
    with h.serve_hostile(reply) as server:
        error, _ = timed(lambda: LLMExtractor(config(tmp_path, server.base_url))(doc))
    assert isinstance(error, LLMBadResponseError) and error.code == "llm-bad-response"
    assert says in error.cause and "token budget" not in error.cause
    assert len(server.requests) == 2  # retried like a 5xx
    assert error.usage.requests == 2


def test_a_2xx_that_is_not_a_completion_then_an_answer_is_the_answer(tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with h.serve_hostile(h.html(), h.answer(injury_answer())) as server:
        record = HybridExtractor(LLMExtractor(config(tmp_path, server.base_url)))(doc)
    assert len(server.requests) == 2 and record.extractor.model_error is None
    assert record.dates.injury.isoformat() == "2016-10-23"


@pytest.mark.parametrize("status", [401, 404, 500])
def test_an_error_body_that_echoes_the_key_does_not_carry_it_into_the_error(
    status, tmp_path, caplog
):
    caplog.set_level("DEBUG")
    caplog.set_level("DEBUG", logger="instructor")  # the CLI quiets it; a test may have run it
    key = FAKE_KEY + "-" + secrets.token_hex(12)  # not key-shaped: only the config knows it
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with h.serve_hostile(h.echo_key(status)) as server:
        cfg = config(tmp_path, server.base_url, api_key=key)
        error, _ = timed(lambda: LLMExtractor(cfg)(doc))
        record = HybridExtractor(LLMExtractor(cfg))(doc)
    assert key in server.headers[0]["authorization"]  # the endpoint did get it, and echoed it
    assert isinstance(error, LLMError) and f"HTTP {status}" in error.cause
    assert key not in str(error) and key not in error.cause
    assert key not in record.model_dump_json()
    assert "API call failed" in caplog.text and key not in caplog.text  # instructor's log


# --- finding 8: a model answer that breaks the schema does not break the letter ------------------


def header_answer() -> dict[str, Any]:
    return gold_answer(GOLD[HEADER]).model_dump(mode="json")


def test_an_empty_citation_source_is_dropped_with_a_warning_not_the_letter(tmp_path):
    payload = header_answer()
    payload["items"][0]["imr_guideline"]["citations"][0]["source"] = ""
    with h.serve_hostile(h.answer(payload)) as server:
        record = LLMExtractor(config(tmp_path, server.base_url))(document(HEADER))
    gold = GOLD[HEADER]["items"][0]
    assert [c.source for c in record.items[0].imr_guideline.citations] == [
        c["source"] for c in gold["imr_guideline"]["citations"][1:]
    ]
    assert [c.source for c in record.items[0].claims_administrator_guideline.citations] == [
        c["source"] for c in gold["claims_administrator_guideline"]["citations"]
    ]
    assert any(
        w.startswith("model answer: items[0].imr_guideline.citations[0] dropped")
        for w in record.warnings
    )


def test_a_null_quote_is_no_quote_and_the_answer_stands(tmp_path):
    payload = header_answer()
    payload["items"][0]["claims_administrator_guideline"]["quote"] = None
    payload["items"][0]["decision_quote"] = None
    with h.serve_hostile(h.answer(payload)) as server:
        record = LLMExtractor(config(tmp_path, server.base_url))(document(HEADER))
    got = record.model_dump(mode="json", include=set(DATA_FIELDS))
    assert diff(GOLD[HEADER], got) == []
    assert len(server.requests) == 1


def test_a_bad_value_is_reasked_first_and_the_last_answer_salvaged(tmp_path):
    payload = header_answer()
    payload["patient_age"] = "forty-one"
    payload["items"][0]["imr_guideline"]["citations"][1]["kind"] = "ODG"
    with h.serve_hostile(h.answer(payload)) as server:
        cfg = config(tmp_path, server.base_url, max_reasks=1, use_cache=True)
        record = LLMExtractor(cfg)(document(HEADER))
        again = LLMExtractor(cfg)(document(HEADER))  # from the cache: the same record
    assert len(server.requests) == 2  # the re-ask quoted the errors; the answer did not change
    assert "validation error" in server.requests[1]["messages"][-1]["content"]
    assert record.patient.age is None and record.patient.sex is not None
    assert len(record.items[0].imr_guideline.citations) == 1
    dropped = [w for w in record.warnings if w.startswith("model answer:")]
    assert [w.split(" dropped")[0] for w in dropped] == [
        "model answer: patient_age",
        "model answer: items[0].imr_guideline.citations[1]",
    ]
    assert again.warnings == record.warnings and again.items == record.items
    # An answer that is not the letter object is not salvaged into an empty letter.
    with h.serve_hostile(h.answer({"request": "MRI", "decision": "upheld"})) as server:
        error, _ = timed(lambda: LLMExtractor(config(tmp_path, server.base_url))(document(HEADER)))
    assert isinstance(error, LLMValidationError) and "not the letter object" in error.cause


def test_an_answer_whose_re_ask_fails_keeps_its_good_values(tmp_path):
    payload = header_answer()
    payload["patient_age"] = "forty-one"
    with h.serve_hostile(h.answer(payload), h.echo_key(500)) as server:
        cfg = config(tmp_path, server.base_url, max_reasks=1, transport_retries=0)
        record = LLMExtractor(cfg)(document(HEADER))
    assert len(server.requests) == 2  # the answer, then its re-ask, which the endpoint failed
    assert record.patient.age is None and len(record.items) == len(GOLD[HEADER]["items"])
    assert any(w.startswith("model answer: patient_age dropped") for w in record.warnings)
    assert record.extractor.usage.requests == 2


def test_in_hybrid_a_schema_breaking_answer_never_costs_the_rules_record(tmp_path):
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    payload = injury_answer()
    payload["items"] = [
        {"request": "...", "decision": "upheld"},
        {
            "request": "Chiropractic physiotherapy treatment 6 visits",
            "decision": "upheld",
            "decision_quote": None,
            "imr_guideline": {"quote": None, "citations": [{"kind": "MTUS", "source": ""}]},
        },
    ]
    with h.serve_hostile(h.answer(payload)) as server:
        record = HybridExtractor(LLMExtractor(config(tmp_path, server.base_url)))(doc)
    assert record.extractor.model_error is None
    assert record.dates.injury.isoformat() == "2016-10-23"  # the model's good value is used
    gold = {**copy.deepcopy(GOLD[HEADER]), "letter": doc.name}
    assert diff(gold, record.model_dump(mode="json", include=set(DATA_FIELDS))) == []
    assert any("items[0] dropped" in w for w in record.warnings)


def test_in_hybrid_a_whole_letter_answer_with_an_empty_source_keeps_the_rules_values(tmp_path):
    payload = header_answer()
    payload["items"][0]["imr_guideline"]["citations"][0]["source"] = ""
    with h.serve_hostile(h.answer(payload)) as server:
        llm = LLMExtractor(config(tmp_path, server.base_url))
        record = HybridExtractor(llm, force=Route.LETTER)(document(HEADER))
    assert record.extractor.model_error is None and record.extractor.routed == "letter"
    assert diff(GOLD[HEADER], record.model_dump(mode="json", include=set(DATA_FIELDS))) == []


def test_in_hybrid_an_unexpected_failure_in_the_model_path_keeps_the_rules_record(
    tmp_path, monkeypatch
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("merge broke")

    monkeypatch.setattr("imr_extract.hybrid.merge", broken)
    doc = relabelled(HEADER, "Date of Injury:", "Injury Dt:")
    with h.serve_hostile(h.answer(injury_answer())) as server:
        record = HybridExtractor(LLMExtractor(config(tmp_path, server.base_url)))(doc)
    assert record.extractor.model_error.startswith("internal: ")
    assert "RuntimeError: merge broke" in record.extractor.model_error
    assert record.extractor.usage.requests == 1  # what the answer cost is still counted
    assert record.dates.assigned is not None and record.items
    assert any("model failed" in w for w in record.warnings)


def test_salvage_drops_each_bad_value_and_names_it():
    answer = {
        "case_number": "CM16-0231706",
        "patient_age": "forty",
        "patient_sex": "robot",
        "reviewer_licensure": ["California", None, 5],
        "items": [
            {
                "request": "MRI",
                "decision": "Upheld",
                "imr_guideline": {
                    "quote": None,
                    "cited": "perhaps",
                    "citations": [
                        {"kind": "MTUS", "source": ""},
                        {"kind": "ISO", "source": "x"},
                        {"kind": "MTUS", "source": "ACOEM", "pages": ["46-47", 3]},
                    ],
                },
            },
            {"request": "...", "decision": "upheld"},
            {"request": "PT", "decision": "maybe"},
            "a line of prose",
            {"request": "Rx", "decision": "overturned", "claims_administrator_guideline": "x"},
        ],
    }
    kept = salvage(LLMLetter, answer)
    assert [i.request for i in kept.items] == ["MRI", "Rx"]
    assert kept.reviewer_licensure == ["California"]
    assert (kept.patient_age, kept.patient_sex) == (None, None)
    imr = kept.items[0].imr_guideline
    assert [(c.source, c.pages) for c in imr.citations] == [("ACOEM", [3])]
    assert imr.cited is True  # the field's default, as if the model had left it out
    paths = [n.removeprefix("model answer: ").split(" dropped")[0] for n in kept.dropped]
    assert paths == [  # in the schema's order
        "reviewer_licensure[1]",
        "reviewer_licensure[2]",
        "patient_age",
        "patient_sex",
        "items[0].imr_guideline.cited",
        "items[0].imr_guideline.citations[0]",
        "items[0].imr_guideline.citations[1]",
        "items[0].imr_guideline.citations[2].pages[0]",
        "items[1]",
        "items[2]",
        "items[3]",
        "items[4].claims_administrator_guideline",
    ]
    assert answer["items"][0]["imr_guideline"]["citations"][0]["source"] == ""  # not mutated
    with pytest.raises(ValidationError, match="not the letter object"):
        salvage(LLMLetter, {"request": "MRI", "decision": "upheld"})  # not a letter: re-ask


# Any JSON value in place of any value of a good answer: the answer is salvaged and maps onto a
# record the contract accepts (no crash, whatever the model wrote).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _leaves(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at] if at else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _leaves(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _leaves(v, (*at, i))
    return out


def _set(answer: Any, at: tuple[Any, ...], value: Any) -> None:
    """Put ``value`` at ``at`` in ``answer``, if an earlier change left that place there."""

    def has(node: Any, key: Any) -> bool:
        if isinstance(node, dict):
            return isinstance(key, str)
        return isinstance(node, list) and isinstance(key, int) and key < len(node)

    node = answer
    for key in at[:-1]:
        if not (has(node, key) and (isinstance(node, list) or key in node)):
            return
        node = node[key]
    if has(node, at[-1]):
        node[at[-1]] = value


HEADER_DOC = document(HEADER)
HEADER_LAYOUT = layouts.detect(HEADER_DOC.text)[0].name
HEADER_ANSWER = header_answer()
PATHS = _leaves(HEADER_ANSWER)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), JSON), min_size=1, max_size=3))
def test_whatever_value_the_model_writes_the_record_is_built(changes):
    answer = copy.deepcopy(HEADER_ANSWER)
    for at, value in changes:
        _set(answer, at, value)
    kept = salvage(LLMLetter, answer)
    found = to_letter_found(kept, HEADER_DOC.text, "extract_letter@test")
    info = ExtractorInfo(backend=Backend.LLM, schema_hash=schema_hash())
    record = verified_record(HEADER_DOC, HEADER_LAYOUT, found, Method.LLM, info)
    assert all(c.source for i in record.items for c in i.imr_guideline.citations)
    assert all(i.request for i in record.items)
