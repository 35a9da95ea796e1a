"""The LLM backend on real recorded calls to Qwen2.5-Coder-1.5B-Instruct (llama-cpp-python).

Replay needs no key and no network. The model is small and often wrong: these tests assert what
the pipeline does with its answers (parse, locate, retry, count, cache), not that it is right;
how right it is gets printed as a per-field score at the end of the run.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import document, gold_files, load_gold
from imr_extract.errors import SeveralLettersError
from imr_extract.llm import (
    LLMConfig,
    LLMExtractor,
    LLMRejectedError,
    LLMTransportError,
    LLMTruncatedError,
)
from imr_extract.llm.chunking import plan_regions
from imr_extract.llm.config import LLMMode
from imr_extract.llm.extract import LLMRun, response_schema_hash
from imr_extract.llm.response import LLMLetter
from imr_extract.schema import Backend, LetterRecord, MatchKind, Method
from imr_extract.verify.grounding import ungrounded
from llm_cassettes import (
    CASSETTES,
    RECORD_BASE_URL,
    RECORD_MODEL,
    cassette_path,
    recorded,
)
from test_gold import diff

#: Never a real key: replay must not need one, and it must never reach a cassette.
FAKE_KEY = "imr-test-placeholder-not-a-key"

#: Multi-item, partly authorised (both wordings), older-form and long (chunked) letters.
FULL_LETTERS = [
    "000_95767a46bf993051.txt",
    "002_a2a7644a77995063.txt",
    "CM16-0231706.pdf",
    "CM16-0229336.pdf",
    "CM16-0233904.pdf",
    "CM16-0247287.pdf",
    "CM16-0231745.pdf",
    "CM16-0240259.pdf",
]
#: Letters whose answers (with quotes for 3+ items) need more room than the default 2,048 tokens.
LONG_ANSWERS = {"CM16-0249724.pdf": 4096, "CM17-0014449.pdf": 4096}
#: Parts small enough that the 5-item letter below is read in several (as a 20-item one would be).
SMALL_PARTS = 4000
SCORES: dict[str, dict[str, tuple[int, int]]] = {}


def replay_config(tmp_path: Path, **changes: object) -> LLMConfig:
    base = LLMConfig(
        base_url=RECORD_BASE_URL,
        model=RECORD_MODEL,
        mode=LLMMode.AUTO,
        api_key=FAKE_KEY,
        max_tokens=2048,
        max_reasks=1,
        transport_retries=1,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        token_budget=60_000,
        timeout_s=900.0,  # a 2-core CPU model; not part of the request body, so not matched
        use_cache=False,
        cache_dir=tmp_path / "cache",
    )
    return base.with_(**changes)


def meta_for(extractor: LLMExtractor, doc_sha: str, **extra: object) -> dict[str, object]:
    return {
        "prompt": extractor.prompt_ref,
        "response_schema": response_schema_hash(),
        "model": extractor.config.model,
        "mode": extractor.config.resolve_mode().value,
        "max_tokens": extractor.config.max_tokens,
        "letter_sha256": doc_sha,
        **extra,
    }


def recorded_usage(name: str) -> tuple[int, int]:
    """(requests, total tokens) as the cassette's own responses report them."""
    data = yaml.safe_load(cassette_path(name).read_text())
    total = 0
    for interaction in data["interactions"]:
        body = json.loads(interaction["response"]["body"]["string"])
        total += (body.get("usage") or {}).get("total_tokens", 0)
    return len(data["interactions"]), total


def cassette_name(letter: str) -> str:
    return "extract_" + Path(letter).stem


def _score(name: str, record: LetterRecord) -> None:
    gold = load_gold(next(g for g in gold_files() if load_gold(g)["letter"] == name))
    got = record.model_dump(mode="json")
    fields: dict[str, tuple[int, int]] = {}
    for key in ("case_number", "dates", "priority", "reviewer", "patient"):
        fields[key] = (int(not diff(gold[key], got[key])), 1)
    items_ok = len(gold["items"]) == len(got["items"])
    fields["item count"] = (int(items_ok), 1)
    for part in ("request", "decision", "claims_administrator_guideline", "imr_guideline"):
        right = sum(
            1
            for g, r in zip(gold["items"], got["items"], strict=False)
            if not diff(g[part], r[part])
        )
        fields[f"items.{part}"] = (right, len(gold["items"]))
    SCORES[name] = fields


@pytest.mark.parametrize("letter", FULL_LETTERS)
def test_full_extraction_replays_into_a_valid_record(letter, request, tmp_path):
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=LONG_ANSWERS.get(letter, 2048)))
    name = cassette_name(letter)
    with recorded(request, name, meta_for(extractor, doc.sha256)):
        record = extractor(doc)

    # A schema-valid record, whatever the model got right.
    assert LetterRecord.model_validate_json(record.model_dump_json()) == record
    info = record.extractor
    assert info.backend is Backend.LLM and info.model == RECORD_MODEL
    assert info.prompt == extractor.prompt_ref and info.mode == "md_json"
    # Usage is summed over every recorded response (re-asks and parts included).
    requests, tokens = recorded_usage(name)
    assert info.attempts == requests == info.usage.requests
    assert info.usage.total_tokens == tokens > 0
    assert info.chunks >= 1 and not info.cached
    # Every value is located or marked absent; nothing located is placed where it is not.
    assert all(p.method is Method.LLM for p in record.provenance.values())
    assert ungrounded(record, doc.text) == []
    for path, prov in record.provenance.items():
        assert (prov.match is MatchKind.ABSENT) == (not prov.spans), path
    _score(letter, record)


def test_long_letter_is_read_in_parts(request, tmp_path):
    letter = "CM16-0231745.pdf"
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_chunk_chars=SMALL_PARTS))
    name = "parts_" + Path(letter).stem
    with recorded(request, name, meta_for(extractor, doc.sha256, max_chunk_chars=SMALL_PARTS)):
        record = extractor(doc)
    assert record.extractor.chunks > 1
    assert record.extractor.attempts == recorded_usage(name)[0] >= record.extractor.chunks
    assert any("read in" in w for w in record.warnings)
    # Items found in later parts are located in document coordinates, past the first part.
    starts = [
        record.provenance[f"items[{i}].request"].spans[0].start
        for i in range(len(record.items))
        if record.provenance[f"items[{i}].request"].spans
    ]
    assert starts == sorted(starts) and max(starts) > SMALL_PARTS
    assert ungrounded(record, doc.text) == []


def test_failure_in_a_later_part_keeps_the_cost_of_every_attempt(request, tmp_path):
    # Recorded: part 1 of this 3-item letter was re-asked once (its first answer put a guideline
    # line where an object belongs), then part 2's answer ran past max_tokens.
    letter = "CM16-0249724.pdf"
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=LONG_ANSWERS[letter]))
    name = cassette_name(letter)
    with recorded(request, name, meta_for(extractor, doc.sha256)):
        with pytest.raises(LLMTruncatedError) as info:
            extractor(doc)
    requests, tokens = recorded_usage(name)
    assert (info.value.attempts, info.value.usage.total_tokens) == (requests, tokens) == (3, 16954)
    assert letter in str(info.value)


def test_answer_cut_off_fails_fast_without_reask(request, tmp_path):
    doc = document("CM16-0240259.pdf")
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=64))
    with recorded(request, "fail_truncated", meta_for(extractor, doc.sha256)):
        with pytest.raises(LLMTruncatedError, match="max_tokens=64") as info:
            extractor(doc)
    assert info.value.attempts == 1  # not re-asked: the same cut would happen again
    assert info.value.usage.completion_tokens == 64
    assert "CM16-0240259.pdf" in str(info.value)


def test_request_over_the_context_window_is_rejected_not_retried(request, tmp_path):
    doc = document("CM16-0240259.pdf")
    huge = dataclasses.replace(doc, text=doc.text * 20)
    extractor = LLMExtractor(replay_config(tmp_path, max_chunk_chars=10**7, transport_retries=3))
    with recorded(request, "fail_rejected_context", meta_for(extractor, doc.sha256, repeat=20)):
        # (The letter pasted 20 times is refused whole by extractor(huge) as several letters:
        # the model call itself is what this test is about.)
        with pytest.raises(SeveralLettersError, match="20 letters"):
            extractor(huge)
        with pytest.raises(LLMRejectedError, match="HTTP 400") as info:
            extractor.found(huge)
    requests, _ = recorded_usage("fail_rejected_context")
    assert requests == 1  # a 4xx is final: no transport retry
    assert info.value.attempts == 0


def test_json_schema_mode_is_refused_by_llama_cpp_and_retried_as_5xx(request, tmp_path):
    doc = document("CM16-0240259.pdf")
    extractor = LLMExtractor(replay_config(tmp_path, mode=LLMMode.JSON_SCHEMA))
    with recorded(request, "fail_json_schema_mode", meta_for(extractor, doc.sha256)):
        with pytest.raises(LLMTransportError, match="HTTP 500"):
            extractor(doc)
    requests, _ = recorded_usage("fail_json_schema_mode")
    assert requests == 2  # the first try and transport_retries=1


def test_invalid_answer_is_reasked_with_the_error(request, tmp_path):
    # Recorded: the model wrote each guideline line as a string where an object belongs; the
    # re-ask quoted the validation errors; the second answer made the same mistake. That last
    # answer is salvaged (issue 12, finding 8): its bad values dropped, each named, the rest kept.
    letter = "CM17-0014449.pdf"
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=LONG_ANSWERS[letter]))
    config = extractor.config
    regions = plan_regions(doc.text, config.max_chunk_chars)
    name = cassette_name(letter)
    run = LLMRun()
    with recorded(request, name, meta_for(extractor, doc.sha256)) as cassette:
        answer, _ = extractor.call(doc, config, regions[0], 1, len(regions), run, LLMLetter, None)
    requests, tokens = recorded_usage(name)
    assert (run.attempts, run.usage.total_tokens) == (requests, tokens) == (2, 17244)
    first, second = (json.loads(r.body) for r in cassette.requests)
    # The re-ask repeats the conversation, adds the model's answer and the validation errors.
    assert second["messages"][:2] == first["messages"]
    assert [m["role"] for m in second["messages"][2:]] == ["assistant", "user"]
    assert "validation error" in second["messages"][3]["content"]
    assert answer.items and answer.dropped
    assert all(
        re.match(r"model answer: items\[\d+\]\.\w+_guideline dropped \(Input should be", d)
        for d in answer.dropped
    )


def test_cache_prevents_a_second_call(request, tmp_path):
    letter = "CM16-0231706.pdf"
    doc = document(letter)
    config = replay_config(tmp_path, use_cache=True)
    first = LLMExtractor(config)
    with recorded(request, cassette_name(letter), meta_for(first, doc.sha256)) as cassette:
        record = first(doc)
        played = cassette.play_count
        again = LLMExtractor(config)(doc)  # a second request would find no answer left
        assert cassette.play_count == played
    assert again.extractor.cached and not record.extractor.cached
    assert again.items == record.items
    assert again.extractor.usage == record.extractor.usage  # what the cached answer cost


def test_stale_cassette_fails_with_rerecord_instructions(request, tmp_path):
    letter = "CM16-0231706.pdf"
    extractor = LLMExtractor(replay_config(tmp_path))
    meta = meta_for(extractor, document(letter).sha256)
    meta["prompt"] = "extract_letter@000000000000"
    with pytest.raises(pytest.fail.Exception, match="re-record it") as info:
        with recorded(request, cassette_name(letter), meta, mode="none"):
            pass
    assert "prompt" in str(info.value) and "--record-mode=all" in str(info.value)


def test_cassettes_hold_no_secret():
    files = list(CASSETTES.glob("*.yaml"))
    assert len(files) >= 12
    for f in files:
        text = f.read_text()
        assert FAKE_KEY not in text, f  # the key every recording was made with
        assert "Bearer " not in text, f
        for interaction in yaml.safe_load(text)["interactions"]:
            sent = {h.lower() for h in interaction["request"]["headers"]}
            assert not sent & {"authorization", "api-key", "x-api-key", "cookie"}, f


def pytest_terminal_summary_scores() -> str:
    """The per-field accuracy of the recorded answers against gold (printed by conftest)."""
    if not SCORES:
        return ""
    fields = list(next(iter(SCORES.values())))
    lines = [f"LLM ({RECORD_MODEL}) vs gold, recorded answers on {len(SCORES)} letters:"]
    for f in fields:
        right = sum(s[f][0] for s in SCORES.values())
        total = sum(s[f][1] for s in SCORES.values())
        lines.append(f"  {f:<40} {right:>3}/{total:<3} {100 * right / max(total, 1):5.1f}%")
    return "\n".join(lines)
