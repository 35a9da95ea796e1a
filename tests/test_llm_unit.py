"""LLM layer pieces that need no model: config, prompts, retries, chunking, cache, locating."""

from __future__ import annotations

import itertools

import httpx2 as httpx
import jinja2
import openai
import pytest
from pydantic import BaseModel

from conftest import document, letter_path
from fake_openai import Reply, answer, serve
from imr_extract.extract import extract_many
from imr_extract.llm import LLMExtractor, LLMTransportError, prompts
from imr_extract.llm.cache import AnswerCache, cache_key
from imr_extract.llm.chunking import plan_regions
from imr_extract.llm.client import make_openai_client, structured_call, with_transport_retries
from imr_extract.llm.config import LLMConfig, LLMMode
from imr_extract.llm.response import (
    LLMCitation,
    LLMGuideline,
    LLMItem,
    LLMLetter,
    VerbatimLLMLetter,
    to_letter_found,
)
from imr_extract.rules import find_items
from imr_extract.schema import Decision, Usage

REQ = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def status_error(cls: type[openai.APIStatusError], code: int, headers: dict | None = None):
    response = httpx.Response(code, request=REQ, headers=headers or {}, json={"error": "x"})
    return cls("boom", response=response, body=None)


# --------------------------------------------------------------------------- config


def test_config_precedence_flag_over_env_over_default(tmp_path):
    env = {
        "OPENAI_BASE_URL": "http://127.0.0.1:8080/v1",
        "IMR_LLM_MODEL": "env-model",
        "OPENAI_API_KEY": "sk-env",
        "IMR_LLM_MODE": "json",
    }
    assert LLMConfig.from_env({}).model == "gpt-4o-mini"
    from_env = LLMConfig.from_env(env)
    assert (from_env.base_url, from_env.model, from_env.mode) == (
        "http://127.0.0.1:8080/v1",
        "env-model",
        LLMMode.JSON,
    )
    flagged = LLMConfig.from_env(env, model="flag-model", mode="tools", base_url=None)
    assert (flagged.model, flagged.mode, flagged.base_url) == (
        "flag-model",
        LLMMode.TOOLS,
        "http://127.0.0.1:8080/v1",
    )
    assert from_env.api_key == "sk-env"


def test_key_never_shows_in_repr_or_public_settings():
    config = LLMConfig.from_env({"OPENAI_API_KEY": "sk-secret-123"})
    assert "sk-secret-123" not in repr(config)
    assert "sk-secret-123" not in str(config.public())


def test_mode_is_chosen_per_endpoint_and_can_be_forced():
    assert LLMConfig().resolve_mode() is LLMMode.TOOLS  # api.openai.com
    local = LLMConfig(base_url="http://127.0.0.1:8080/v1")
    assert local.resolve_mode() is LLMMode.MD_JSON  # llama.cpp rejects json_schema
    assert LLMConfig(base_url="http://localhost:11434/v1").resolve_mode() is LLMMode.MD_JSON
    assert local.with_(mode=LLMMode.JSON_SCHEMA).resolve_mode() is LLMMode.JSON_SCHEMA


def test_cost_estimate_from_price_table():
    config = LLMConfig(model="gpt-4o-mini")
    assert config.cost_usd(1_000_000, 1_000_000) == pytest.approx(0.75)
    assert LLMConfig(model="qwen-local").cost_usd(10, 10) is None


# --------------------------------------------------------------------------- prompts


def test_prompts_render_with_the_letter_first():
    task = prompts.load(prompts.EXTRACT_LETTER)
    text = task.render(letter="LETTER BODY", part=1, parts=1)
    assert text.startswith("<letter>\nLETTER BODY")
    assert "part 1 of" not in text
    assert "part 2 of 3" in task.render(letter="x", part=2, parts=3)
    assert task.ref == f"extract_letter@{task.hash}" and len(task.hash) == 12


def test_missing_prompt_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        prompts.load(prompts.EXTRACT_LETTER).render(letter="x")


def test_prompt_hash_follows_the_template_source(tmp_path):
    (tmp_path / "p.j2").write_text("hello {{ name }}")
    first = prompts.load("p", tmp_path).hash
    (tmp_path / "p.j2").write_text("hello {{ name }}!")
    prompts._env.cache_clear()
    assert prompts.load("p", tmp_path).hash != first


# --------------------------------------------------------------------------- retries


class FakeCreate:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, **kwargs):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_transient_errors_are_retried_with_backoff():
    sleeps: list[float] = []
    create = FakeCreate(
        openai.APIConnectionError(request=REQ),
        status_error(openai.InternalServerError, 503),
        "answer",
    )
    config = LLMConfig(transport_retries=3, backoff_initial_s=1.0, backoff_max_s=4.0)
    assert with_transport_retries(create, config, sleeps.append)() == "answer"
    assert create.calls == 3
    assert len(sleeps) == 2 and all(0 <= s <= 4.0 for s in sleeps)


def test_429_waits_as_long_as_retry_after_says():
    sleeps: list[float] = []
    create = FakeCreate(
        status_error(openai.RateLimitError, 429, {"retry-after": "7"}),
        "answer",
    )
    assert with_transport_retries(create, LLMConfig(), sleeps.append)() == "answer"
    assert sleeps == [7.0]


def test_client_errors_are_not_retried():
    create = FakeCreate(status_error(openai.BadRequestError, 400))
    with pytest.raises(openai.BadRequestError):
        with_transport_retries(create, LLMConfig(), lambda s: None)()
    assert create.calls == 1


def test_retries_stop_at_the_limit():
    create = FakeCreate(*[openai.APITimeoutError(request=REQ)] * 5)
    with pytest.raises(openai.APITimeoutError):
        with_transport_retries(create, LLMConfig(transport_retries=2), lambda s: None)()
    assert create.calls == 3


# --------------------------------------------------------------------------- chunking, cache


def test_long_letter_is_split_at_item_boundaries():
    text = document("CM17-0014449.pdf").text
    regions = plan_regions(text, 9000)
    assert len(regions) > 1
    assert regions[0][0] == 0 and regions[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(regions))
    item_starts = {item.start for item in find_items(text)}
    assert all(start in item_starts for start, _ in regions[1:])
    assert plan_regions("short", 9000) == [(0, 5)]


def test_cache_round_trip(tmp_path):
    cache = AnswerCache(tmp_path)
    key = cache_key(text="abc", prompt="p@1", model="m")
    assert cache.get(key) is None
    cache.put(key, {"items": []}, Usage(requests=1, total_tokens=9), 1)
    hit = cache.get(key)
    assert hit.answer == {"items": []} and hit.usage.total_tokens == 9 and hit.attempts == 1
    assert cache_key(text="abc", prompt="p@2", model="m") != key
    assert not list(tmp_path.rglob("*.tmp"))


# --------------------------------------------------------------------------- locating answers


def test_model_values_are_located_not_trusted():
    doc = document("CM16-0231706.pdf")
    answer = LLMLetter(
        case_number="CM16-0231706",
        date_of_injury="10/23/2016",
        patient_age=43,
        patient_sex="female",
        items=[
            LLMItem(
                request="Chiropractic physiotherapy treatment 6 visits",
                decision="upheld",
                decision_quote="Chiropractic physiotherapy treatment 6 visits is: Upheld",
                imr_guideline=LLMGuideline(
                    quote="MAXIMUS guideline: Decision based on MTUS Chronic Pain Medical "
                    "Treatment 2016, Section(s): Manual therapy & manipulation.",
                    citations=[
                        LLMCitation(
                            kind="MTUS",
                            source="Chronic Pain Medical Treatment 2016",
                            sections=["Manual therapy & manipulation", "Massage therapy"],
                            pages=[99],
                        )
                    ],
                ),
            )
        ],
    )
    found = to_letter_found(answer, doc.text, "extract_letter@test")
    item = found.items[0]
    assert doc.text[item.request.start : item.request.end].split() == item.request.value.split()
    assert doc.text[item.decision.start : item.decision.end] == "Upheld"
    assert item.decision.value is Decision.UPHELD
    real, invented = item.imr_guideline.citations[0].sections
    assert real.end > real.start  # found in the letter
    assert invented.end == invented.start == 0  # not in the letter: no span
    assert item.imr_guideline.citations[0].pages[0].end == 0  # page 99 is not cited there
    assert (
        found.patient.age.value == 43
        and doc.text[found.patient.age.start : found.patient.age.end] == "43"
    )


def test_small_model_quirks_are_tolerated():
    answer = LLMLetter.model_validate(
        {
            "reviewer_specialty": ["Physical Medicine", "Pain Management"],
            "reviewer_subspecialty": "null",
            "patient_sex": "Female",
            "items": [{"request": "MRI", "decision": "Upheld", "original_request": "None"}],
        }
    )
    assert answer.reviewer_specialty == "Physical Medicine, Pain Management"
    assert answer.reviewer_subspecialty is None and answer.patient_sex == "female"
    assert answer.items[0].decision == "upheld" and answer.items[0].original_request is None
    with pytest.raises(ValueError):
        LLMLetter.model_validate({"items": [{"request": "MRI", "decision": "denied"}]})


def test_verbatim_reask_rejects_items_not_in_the_letter():
    letter = "Cervical spine MRI without contrast: Upheld\n"
    ok = {"items": [{"request": "Cervical spine MRI without contrast", "decision": "upheld"}]}
    assert VerbatimLLMLetter.model_validate(ok, context={"letter": letter}).items
    made_up = {"items": [{"request": "cervical spine mri", "decision": "upheld"}]}
    with pytest.raises(ValueError, match="not in the letter; copy them verbatim"):
        VerbatimLLMLetter.model_validate(made_up, context={"letter": letter})


def test_unreachable_endpoint_is_a_per_letter_failure_and_the_batch_goes_on(tmp_path):
    config = LLMConfig(
        base_url="http://127.0.0.1:9/v1",  # nothing listens on the discard port
        model="m",
        transport_retries=1,
        backoff_initial_s=0.01,
        use_cache=False,
        cache_dir=tmp_path,
    )
    outcomes = list(
        extract_many(
            [letter_path("CM16-0231706.pdf"), letter_path("CM16-0240259.pdf")],
            extractor=LLMExtractor(config),
        )
    )
    assert [o.ok for o in outcomes] == [False, False]
    err = outcomes[0].error
    assert isinstance(err, LLMTransportError) and err.code == "llm-transport"
    assert "CM16-0231706.pdf" in str(err) and "127.0.0.1:9" in str(err)


def test_a_shared_client_is_left_as_it_was_and_every_request_is_counted(tmp_path):
    """structured_call hands instructor its own retrying ``create``: the client is not patched
    (a shared client would otherwise stack one retry loop per call), and a failed HTTP attempt
    counts as a request (it counts against a requests-per-minute limit all the same)."""

    class Answer(BaseModel):
        ok: bool

    script = [Reply(status=500), answer({"ok": True})] * 2
    with serve(script) as fake:
        config = LLMConfig(
            base_url=fake.base_url,
            model="fake-model",
            api_key="imr-test-placeholder-not-a-key",
            mode=LLMMode.MD_JSON,
            transport_retries=1,
            backoff_initial_s=0.01,
            backoff_max_s=0.02,
            max_reasks=0,
            use_cache=False,
            cache_dir=tmp_path,
        )
        client = make_openai_client(config)
        before = client.chat.completions.create
        for _ in range(2):
            messages = [{"role": "user", "content": "Answer ok."}]
            value, stats = structured_call("x.txt", config, messages, Answer, client=client)
            assert value.ok
            assert (stats.attempts, stats.failed_requests, stats.usage.requests) == (1, 1, 2)
        assert client.chat.completions.create == before
        assert len(fake.requests) == 4
