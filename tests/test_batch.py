"""Large LLM jobs through the Batch API, against a real local server (tests/batch_server.py).

Only the documented endpoints as that server implements them are exercised here; nothing in
this file has been run against the hosted OpenAI service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import batch_server
import fake_openai
from batch_server import BatchReply, fenced
from conftest import document, letter_path
from imr_extract.cli import EXIT_PENDING, app
from imr_extract.errors import ImrExtractError
from imr_extract.ingest import read_bytes
from imr_extract.llm import LLMConfig, LLMExtractor, LLMMode
from imr_extract.llm import batch as jobs
from imr_extract.schema import DATA_FIELDS, Backend, LetterRecord, Method, Status, Usage
from test_gold import diff
from test_verify import GOLD, HEADER, TWO_ITEMS, gold_answer

FAKE_KEY = "imr-test-placeholder-not-a-key"
#: Nothing listens here: building requests must not need the endpoint.
NOWHERE = "http://127.0.0.1:9/v1"

runner = CliRunner()


def cfg(base_url: str, tmp_path: Path, **changes: object) -> LLMConfig:
    config = LLMConfig(
        base_url=base_url,
        model="fake-model",
        api_key=FAKE_KEY,
        transport_retries=0,
        max_reasks=0,
        timeout_s=5.0,
        use_cache=False,
        cache_dir=tmp_path / "cache",
    )
    if "mode" in changes:
        changes["mode"] = LLMMode(changes["mode"])
    return config.with_(**changes)


def right(letter: str) -> dict:
    return gold_answer(GOLD[letter]).model_dump(mode="json")


def wrong_page(letter: str = TWO_ITEMS) -> dict:
    answer = gold_answer(GOLD[letter])
    answer.items[0].imr_guideline.citations[0].pages = [98]  # item 1's page, printed elsewhere
    return answer.model_dump(mode="json")


def by_letter(replies: dict[str, BatchReply | None]) -> batch_server.Responder:
    """Answer each request by the letter whose sha256 its custom_id holds."""
    shas = {document(name).sha256: reply for name, reply in replies.items()}

    def respond(line: dict) -> BatchReply | None:
        sha = line["custom_id"].split("-")[1]
        return shas[sha]

    return respond


# --- the requests: the bodies the synchronous path sends -----------------------------------------


@pytest.fixture(scope="module")
def sync_server():
    """One chat server for the synchronous path: a fenced answer with no items, every time."""
    with fake_openai.serve([fake_openai.answer({"items": []})]) as fake:
        yield fake


def sync_bodies(fake: fake_openai.FakeOpenAI, config: LLMConfig, letter: str) -> list[dict]:
    """The request bodies the synchronous path sends for ``letter``."""
    before = len(fake.requests)
    with pytest.raises(ImrExtractError):  # no items (or, but in md_json, invalid): no record
        LLMExtractor(config)(document(letter))
    return fake.requests[before:]


@pytest.mark.parametrize("mode", ["md_json", "tools", "json", "json_schema"])
def test_each_request_line_holds_the_body_the_sync_path_sends(mode, tmp_path, sync_server):
    doc = document(HEADER)
    sent = sync_bodies(sync_server, cfg(sync_server.base_url, tmp_path, mode=mode), HEADER)
    assert len(sent) == 1
    job = jobs.prepare_job(
        [letter_path(HEADER)], tmp_path / "job.json", cfg(NOWHERE, tmp_path, mode=mode)
    )
    lines = [json.loads(x) for x in job.requests_file.read_text().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {"custom_id", "method", "url", "body"}
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
    assert line["custom_id"] == f"imr-{doc.sha256}-r0-{len(doc.text)}-p1of1"
    assert line["body"] == sent[0]
    if mode == "md_json":  # instructor's prompt-only JSON: no response_format, a closing ask
        assert "response_format" not in line["body"] and "tools" not in line["body"]
        assert "```json" in line["body"]["messages"][-1]["content"]
    assert job.status == jobs.PREPARED and job.batch_id is None


def test_a_long_letter_is_sent_in_the_same_parts(tmp_path, sync_server):
    letter = "CM16-0231745.pdf"  # five items: several parts at 4,000 characters
    config = cfg(sync_server.base_url, tmp_path, max_chunk_chars=4000)
    sent = sync_bodies(sync_server, config, letter)
    parts = len(sent)
    assert parts > 1
    job = jobs.prepare_job(
        [letter_path(letter)], tmp_path / "job.json", cfg(NOWHERE, tmp_path, max_chunk_chars=4000)
    )
    lines = [json.loads(x) for x in job.requests_file.read_text().splitlines()]
    assert [x["body"] for x in lines] == sent
    assert [x["custom_id"].rsplit("-", 1)[1] for x in lines] == [
        f"p{i}of{parts}" for i in range(1, parts + 1)
    ]
    assert job.letters[0]["custom_ids"] == [x["custom_id"] for x in lines]


# --- a job end to end through the CLI, with a restart between every step -------------------------

GARBAGE = "CM16-0229336.pdf"
FAILED_500 = "CM16-0233904.pdf"
IN_ERROR_FILE = "CM16-0247287.pdf"
CUT_OFF = "CM16-0240259.pdf"
LETTERS = [HEADER, TWO_ITEMS, GARBAGE, FAILED_500, IN_ERROR_FILE, CUT_OFF]
REPLIES = {
    HEADER: fenced(right(HEADER), prompt_tokens=1000, completion_tokens=200),
    TWO_ITEMS: fenced(wrong_page(), prompt_tokens=2000, completion_tokens=300),
    GARBAGE: BatchReply(content="I cannot help with that.", prompt_tokens=900, completion_tokens=7),
    FAILED_500: BatchReply(status=500),
    IN_ERROR_FILE: BatchReply(error=("server_error", "the model is overloaded")),
    CUT_OFF: fenced(right(CUT_OFF), finish_reason="length", prompt_tokens=1500),
}


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "IMR_LLM_MODEL", "OPENAI_MODEL", "IMR_LLM_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def records_of(text: str) -> dict[str, LetterRecord]:
    records = [LetterRecord.model_validate_json(x) for x in text.splitlines()]
    return {r.letter: r for r in records}


def test_submit_restart_collect_through_the_cli(tmp_path, env):
    job = tmp_path / "job.json"
    paths = [str(letter_path(x)) for x in LETTERS]
    with batch_server.serve(by_letter(REPLIES)) as api:
        submitted = cli(
            "batch", "submit", *paths, "--job", str(job), "--base-url", api.base_url,
            "--model", "fake-model", "--mode", "md_json",
        )  # fmt: skip
        assert submitted.exit_code == 0, submitted.output
        assert "batch_1" in submitted.stdout and "validating" in submitted.stdout
        # The upload holds one line per letter, exactly the requests file.
        state = json.loads(job.read_text())
        assert state["batch_id"] == "batch_1" and state["input_file_id"] == "file-1"
        requests_file = tmp_path / state["requests_file"]
        assert api.uploaded("file-1") == requests_file.read_bytes()
        assert len(state["requests"]) == len(LETTERS)
        assert api.batches["batch_1"]["metadata"] == {"imr_extract_job": state["job_id"]}

        # Submitting again (a restart) does not submit again.
        again = cli("batch", "submit", *paths, "--job", str(job))
        assert again.exit_code == 0 and "not submitting again" in again.stdout
        assert api.count("POST", "/v1/files") == 1 and api.count("POST", "/v1/batches") == 1
        other = cli("batch", "submit", paths[0], "--job", str(job))
        assert other.exit_code == 2 and "other letters" in other.stderr

        # Not ended yet: --no-wait says so with its own exit code.
        pending = cli("batch", "collect", "--job", str(job), "--no-wait")
        assert pending.exit_code == EXIT_PENDING and "in_progress" in pending.stderr

        # A new process collects from the job file alone.
        out = tmp_path / "out.jsonl"
        errors = tmp_path / "errors.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "imr_extract.cli", "batch", "collect", "--job", str(job),
             "--poll-interval", "0", "--out", str(out), "--errors", str(errors)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "OPENAI_API_KEY": FAKE_KEY},
        )  # fmt: skip
        calls = list(api.calls)
    assert proc.returncode == 1, proc.stderr
    assert api.count("POST", "/v1/batches") == 1
    assert ("GET", "/v1/files/file-2/content") in calls  # the output file

    records = records_of(out.read_text())
    assert sorted(records) == sorted([HEADER, TWO_ITEMS])
    # The right answer: every value located and verified; the data equal gold.
    header = records[HEADER]
    assert header.extractor.backend is Backend.LLM and header.extractor.model == "fake-model"
    assert header.extractor.mode == "md_json" and header.extractor.attempts == 1
    assert all(p.method is Method.LLM for p in header.provenance.values())
    assert all(p.status is Status.VERIFIED for p in header.provenance.values())
    assert diff(GOLD[HEADER], header.model_dump(mode="json", include=set(DATA_FIELDS))) == []
    # Usage is what the batch output reports for that letter's request.
    assert header.extractor.usage == Usage(
        requests=1, prompt_tokens=1000, completion_tokens=200, total_tokens=1200
    )
    # The wrong answer is flagged, not verified.
    wrong = records[TWO_ITEMS]
    path = "items[0].imr_guideline.citations[0].pages[0]"
    assert wrong.items[0].imr_guideline.citations[0].pages == [98]
    assert wrong.provenance[path].status is Status.CONTRADICTED
    assert wrong.extractor.usage.total_tokens == 2300

    # Every failed request is named with its letter and its cause.
    failed = {Path(e["letter"]).name: e for e in map(json.loads, errors.read_text().splitlines())}
    assert sorted(failed) == sorted([GARBAGE, FAILED_500, IN_ERROR_FILE, CUT_OFF])
    assert failed[GARBAGE]["error"] == "llm-invalid"
    assert "no valid answer after 1 attempt" in failed[GARBAGE]["cause"]
    assert failed[FAILED_500]["error"] == "llm-batch"
    assert "answered HTTP 500" in failed[FAILED_500]["cause"]
    assert failed[IN_ERROR_FILE]["error"] == "llm-batch"
    assert "server_error" in failed[IN_ERROR_FILE]["cause"]
    assert "the model is overloaded" in failed[IN_ERROR_FILE]["cause"]
    assert failed[CUT_OFF]["error"] == "llm-truncated"
    for name in failed:
        assert f"{name}: " in proc.stderr
    # The run's usage sums every answered request, the failed ones included.
    summary = " ".join(proc.stderr.split())
    assert "prompt tokens │ 5400" in summary  # 1000 + 2000 + 900 + 1500

    # Collecting again needs no network (the server is gone); --fallback rules gives the failed
    # letters the rules' records.
    fallback = cli("batch", "collect", "--job", str(job), "--fallback", "rules", "--no-summary")
    status = cli("batch", "status", "--job", str(job))
    assert fallback.exit_code == 0, fallback.output
    assert "completed" in status.stdout and "downloaded" in status.stdout
    again = records_of(fallback.stdout)
    assert sorted(again) == sorted(LETTERS)
    rules = again[FAILED_500]
    assert rules.extractor.backend is Backend.RULES
    assert rules.extractor.model_error.startswith("llm-batch: batch request imr-")
    assert any("model failed" in w for w in rules.warnings)
    assert all(p.method is Method.RULES for p in rules.provenance.values())
    assert again[GARBAGE].extractor.usage.prompt_tokens == 900  # what the failed answer cost
    assert again[HEADER] == header

    # The key was sent to the endpoint, and is written nowhere.
    assert all(h.get("authorization") == f"Bearer {FAKE_KEY}" for h in api.headers)
    for f in tmp_path.iterdir():
        assert f.is_file() and FAKE_KEY not in f.read_text(), f
    for text in (submitted.output, fallback.output, status.output, proc.stdout, proc.stderr):
        assert FAKE_KEY not in text


# --- resuming, and batches that end badly ---------------------------------------------------------


def submitted_job(tmp_path: Path, api: batch_server.FakeBatchAPI, letters: list[str], **kw):
    config = cfg(api.base_url, tmp_path, **kw)
    job = jobs.prepare_job([letter_path(x) for x in letters], tmp_path / "job.json", config)
    jobs.submit_job(job, jobs.make_batch_client(config))
    return jobs.BatchJob.load(tmp_path / "job.json"), config


def test_a_crash_before_the_batch_id_was_saved_finds_the_batch_instead_of_making_another(
    tmp_path,
):
    with batch_server.serve(by_letter({HEADER: fenced(right(HEADER))})) as api:
        job, config = submitted_job(tmp_path, api, [HEADER])
        # As if the process died after batches.create answered, before the job was saved.
        job.data.update(batch_id=None, status=jobs.UPLOADED)
        job.save()
        resumed = jobs.submit_job(jobs.BatchJob.load(job.path), jobs.make_batch_client(config))
        assert resumed.batch_id == "batch_1"
        assert api.count("POST", "/v1/batches") == 1 and api.count("POST", "/v1/files") == 1
        # A job uploaded but never batched creates the batch from the same file.
        job.data.update(batch_id=None, status=jobs.UPLOADED)
        api.batches.clear()
        job.save()
        resumed = jobs.submit_job(jobs.BatchJob.load(job.path), jobs.make_batch_client(config))
        assert api.count("POST", "/v1/batches") == 2 and api.count("POST", "/v1/files") == 1
        assert api.batches[resumed.batch_id]["input_file_id"] == job.data["input_file_id"]


@pytest.mark.parametrize("final", ["expired", "failed"])
def test_requests_never_answered_are_named_per_letter(final, tmp_path):
    replies = {HEADER: fenced(right(HEADER)), TWO_ITEMS: None}  # the second never answered
    with batch_server.serve(by_letter(replies), final=final) as api:
        job, config = submitted_job(tmp_path, api, [HEADER, TWO_ITEMS])
        jobs.wait_for_job(job, jobs.make_batch_client(config), poll_interval_s=0)
    assert job.status == final and job.finished
    outcomes = {Path(o.source).name: o for o in jobs.collect_job(job, env={})}
    missing = outcomes[TWO_ITEMS].error
    assert missing is not None and missing.code == "llm-batch"
    assert f"{TWO_ITEMS}: no answer for batch request imr-" in str(missing)
    assert f"ended {final}" in str(missing)
    if final == "expired":  # what was answered before it expired is kept
        assert outcomes[HEADER].record is not None
    else:
        assert "bad line" in str(outcomes[HEADER].error)


def test_tools_mode_answers_are_parsed_like_the_sync_path(tmp_path):
    reply = BatchReply(content=json.dumps(right(HEADER)), as_tool_call=True)
    with batch_server.serve(by_letter({HEADER: reply})) as api:
        job, config = submitted_job(tmp_path, api, [HEADER], mode="tools")
        jobs.wait_for_job(job, jobs.make_batch_client(config), poll_interval_s=0)
    line = json.loads(job.requests_file.read_text())
    assert line["body"]["tool_choice"]["type"] == "function"
    [outcome] = jobs.collect_job(job, env={})
    assert outcome.record is not None and outcome.record.extractor.mode == "tools"
    assert all(p.status is Status.VERIFIED for p in outcome.record.provenance.values())


def test_a_changed_letter_or_prompt_is_not_credited_with_old_answers(tmp_path):
    letter = tmp_path / "letter.txt"
    letter.write_text(document(TWO_ITEMS).text)
    replies = {TWO_ITEMS: fenced(right(TWO_ITEMS))}
    with batch_server.serve(lambda line: replies[TWO_ITEMS]) as api:
        config = cfg(api.base_url, tmp_path)
        job = jobs.prepare_job([letter], tmp_path / "job.json", config)
        client = jobs.make_batch_client(config)
        jobs.submit_job(job, client)
        jobs.wait_for_job(job, client, poll_interval_s=0)
    [ok] = jobs.collect_job(job, env={})
    assert ok.record is not None
    letter.write_text(document(TWO_ITEMS).text + "\nAddendum.\n")
    [changed] = jobs.collect_job(job, env={})
    assert changed.error is not None and "changed since the batch was submitted" in str(
        changed.error
    )
    [rules] = jobs.collect_job(job, env={}, fallback="rules")
    assert rules.record is not None and rules.record.extractor.backend is Backend.RULES
    job.data["prompt"] = "extract_letter@000000000000"
    with pytest.raises(jobs.BatchJobError, match="submitted with prompt"):
        list(jobs.collect_job(job, env={}))


def test_a_hybrid_job_sends_only_what_the_rules_cannot_verify(tmp_path):
    text = document(HEADER).text
    relabelled = tmp_path / "relabelled.txt"
    relabelled.write_text(text.replace("Date of Injury:", "Injury Dt:", 1))
    doc = read_bytes(relabelled.read_bytes(), relabelled.name)
    injury = fenced({"date_of_injury": "10/23/2016", "items": []}, prompt_tokens=300)
    with batch_server.serve(lambda line: injury) as api:
        config = cfg(api.base_url, tmp_path)
        paths = [letter_path(HEADER), relabelled]
        job = jobs.prepare_job(paths, tmp_path / "job.json", config, backend="hybrid")
        client = jobs.make_batch_client(config)
        jobs.submit_job(job, client)
        jobs.wait_for_job(job, client, poll_interval_s=0)
    # The shared letter is verified by the rules: nothing sent. The other: its header block.
    assert [x["route"] for x in job.letters] == ["none", "sections"]
    [cid] = job.letters[1]["custom_ids"]
    assert cid.startswith(f"imr-{doc.sha256}-r0-") and len(job.requests) == 1
    sent = json.loads(job.requests_file.read_text())["body"]["messages"][-1]["content"]
    assert "Injury Dt: 10/23/2016" in sent and "CLINICAL CASE SUMMARY" not in sent
    first, second = (o.record for o in jobs.collect_job(job, env={}))
    assert first.extractor.routed == "none" and first.extractor.usage.requests == 0
    assert second.extractor.backend is Backend.HYBRID and second.extractor.routed == "sections"
    assert second.dates.injury.isoformat() == GOLD[HEADER]["dates"]["injury"]
    prov = second.provenance["dates.injury"]
    assert prov.method is Method.LLM and prov.status is Status.VERIFIED
    assert second.extractor.usage.prompt_tokens == 300
