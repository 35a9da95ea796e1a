"""Large LLM jobs through the OpenAI Batch API, resumable across restarts.

A job goes through four steps, each of which can run in a new process; everything a later step
needs is in the **job file** (JSON, rewritten atomically after every step, never holding the API
key) and the requests file written beside it:

1. ``prepare_job``: read the letters, plan the requests the synchronous path would make (one per
   region: the whole letter, its parts when long, or, for ``backend="hybrid"``, only the sections
   the rules could not verify) and write them as JSON Lines,
   ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``.
2. ``submit_job``: upload that file (``files.create(purpose="batch")``) and create the batch
   (``batches.create(endpoint="/v1/chat/completions", completion_window="24h")``). Each id is
   saved as soon as it is known: a job that has a batch id is never submitted again, and a job
   whose upload succeeded reuses the uploaded file (and, after a crash between creating the batch
   and saving its id, the batch already made from that file).
3. ``refresh_job`` / ``wait_for_job``: ``batches.retrieve`` until the batch ends, then
   ``download_results``: the output and error files (``files.content``) are parsed into
   ``results`` in the job file, keyed by custom_id.
4. ``collect_job``: every letter is read again and extracted by the synchronous pipeline itself
   (``LLMExtractor``, or ``HybridExtractor`` for hybrid jobs), whose model calls are answered
   from the batch results: the same validation (instructor's parser for the job's mode, md_json
   fences included), the same locating (``to_letter_found``), record (``build_record``) and
   ``verify``. ``extractor.usage`` is the usage the batch output reports.

**Request bodies** are exactly what the synchronous path sends: ``structured_call`` is run with
the same settings, messages (``LLMExtractor.messages``), response model and validation context,
against a client whose ``create`` records its arguments instead of sending them. So the body is
what instructor makes of them for the mode: ``md_json`` appends the JSON schema to the system
message and adds a closing user message asking for a fenced JSON block (no ``response_format``);
``json`` does the same with ``response_format={"type": "json_object"}``; ``json_schema`` sends
the messages with ``response_format={"type": "json_schema", ...}``; ``tools`` sends the messages
with one function tool and ``tool_choice`` naming it. Always ``model``, ``temperature`` and
``max_tokens`` from the settings.

**Custom ids** are ``imr-<letter sha256>-r<start>-<end>-p<part>of<parts>``: the letter's bytes
and the region of its text that the request holds, so an answer maps back to the letter and part
it belongs to, and two copies of one letter share one request.

**What a batch cannot do**: re-ask. An answer that fails validation fails its letter
(``llm-invalid``), as a cut-off one does (``llm-truncated``); a request listed in the error file,
answered with a status other than 200, or left unanswered (batch failed, expired, cancelled) fails
with ``llm-batch`` naming the letter and the request. With ``fallback="rules"`` such a letter
gets the rules' record instead (``extractor.model_error`` says why); hybrid jobs always keep the
rules' record, as ``extract --backend hybrid`` does. ``cost_usd`` applies the Batch API's 50%
discount (``BATCH_PRICE_FACTOR``) to the price table.

Tested only against a local server implementing the documented endpoints
(``tests/batch_server.py``), not against the hosted OpenAI service.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import openai

from ..errors import ImrExtractError, LLMError
from ..extract import Outcome
from ..ingest import Document, default_pdf_engine, iter_paths, read_bytes
from ..redact import redact, redact_json, register_secret
from ..schema import Backend, ExtractorInfo, LetterRecord, Usage, schema_hash
from .chunking import plan_regions
from .client import make_openai_client, structured_call
from .config import LLMConfig
from .extract import LLMExtractor, LLMRun, response_schema_hash
from .response import LLMLetter, VerbatimLLMLetter

JOB_FORMAT = "imr-extract-batch-job"
JOB_VERSION = 1
# Final: the SDK's ``batches.create`` takes these as literal types.
ENDPOINT: Final = "/v1/chat/completions"
COMPLETION_WINDOW: Final = "24h"
#: The Batch API's documented limits per batch.
MAX_REQUESTS = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
#: Batch requests are billed at half the synchronous list price.
BATCH_PRICE_FACTOR = 0.5
#: Batch statuses after which nothing more will be answered.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: Local statuses: requests written but not uploaded; uploaded but no batch; nothing to send.
PREPARED, UPLOADED, NO_REQUESTS = "prepared", "uploaded", "no_requests"
BACKENDS = ("llm", "hybrid")
FALLBACKS = ("rules",)


class BatchJobError(ImrExtractError):
    """The job as a whole cannot go on (bad job file, endpoint refused, not finished yet)."""

    code = "batch-job"


class LLMBatchError(LLMError):
    """One letter's batch request failed, was refused, or was never answered."""

    code = "llm-batch"


def custom_id(sha256: str, region: tuple[int, int], part: int, parts: int) -> str:
    return f"imr-{sha256}-r{region[0]}-{region[1]}-p{part}of{parts}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- the job file


class BatchJob:
    """The state of one batch job, kept in a JSON file (see the README for its fields)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = Path(path)
        self.data = data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BatchJob:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BatchJobError(str(p), f"cannot read job file ({exc.strerror or exc})") from exc
        except ValueError as exc:
            raise BatchJobError(str(p), f"job file is not JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != JOB_FORMAT:
            raise BatchJobError(str(p), "not an imr-extract batch job file")
        if data.get("version") != JOB_VERSION:
            raise BatchJobError(
                str(p), f"job file version {data.get('version')!r}; this imr-extract reads 1"
            )
        return cls(p, data)

    def save(self) -> None:
        """Write the job file atomically: a killed process leaves the old or the new state."""
        self.data["updated_at"] = _now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.data, f, indent=1, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # convenience views
    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def backend(self) -> str:
        return str(self.data["backend"])

    @property
    def batch_id(self) -> str | None:
        return self.data.get("batch_id")

    @property
    def letters(self) -> list[dict[str, Any]]:
        return self.data["letters"]

    @property
    def requests(self) -> dict[str, dict[str, Any]]:
        return self.data["requests"]

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        return self.data["results"]

    @property
    def requests_file(self) -> Path:
        return self.path.parent / self.data["requests_file"]

    @property
    def finished(self) -> bool:
        """Nothing more will be answered (and the answers, if any, are downloaded)."""
        if self.status == NO_REQUESTS:
            return True
        return self.status in TERMINAL and bool(self.data.get("results_downloaded"))

    def ended_why(self) -> str:
        """Why a request has no answer, in words."""
        status = self.status
        errors = self.data.get("batch_errors") or []
        detail = f": {errors[0].get('message') or errors[0].get('code')}" if errors else ""
        if status == "completed":
            return f"batch {self.batch_id} completed without an answer for it"
        return f"batch {self.batch_id} ended {status}{detail}"


def settings_of(config: LLMConfig) -> dict[str, Any]:
    """What the request bodies were built with (never the key)."""
    return {
        "base_url": config.base_url,
        "model": config.model,
        "mode": config.resolve_mode().value,
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
        "max_chunk_chars": config.max_chunk_chars,
    }


def job_config(job: BatchJob, env: dict[str, str] | None = None) -> LLMConfig:
    """The settings the job was built with; the key (if any) from the environment only."""
    s = job.data["settings"]
    return LLMConfig.from_env(
        env,
        base_url=s["base_url"],
        model=s["model"],
        mode=s["mode"],
        max_tokens=s["max_tokens"],
        temperature=s["temperature"],
        max_chunk_chars=s["max_chunk_chars"],
        use_cache=False,
        verbatim_reask=False,
    )


def make_batch_client(config: LLMConfig) -> openai.OpenAI:
    """The official client, for files and batches; the SDK retries 429/5xx/connection errors."""
    register_secret(config.api_key)
    return openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key or "no-key",
        timeout=config.timeout_s,
        max_retries=config.transport_retries,
    )


# --------------------------------------------------------------------------- building requests


class _Captured(BaseException):
    """Raised by the recording client: a BaseException, so no retry layer catches it."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("captured")
        self.kwargs = kwargs


class RequestBuilder:
    """The chat-completion body the synchronous path would send for one part of a letter."""

    #: Client options that are not part of the request body.
    _NOT_BODY = frozenset({"extra_headers", "extra_query", "timeout"})

    def __init__(self, llm: LLMExtractor) -> None:
        self.llm = llm
        self.client = make_openai_client(llm.config.with_(api_key=None))

    def body(self, text: str, part: int, parts: int) -> dict[str, Any]:
        def record(*_args: Any, **kwargs: Any) -> Any:
            raise _Captured(kwargs)

        config = self.llm.config
        self.client.chat.completions.create = record  # type: ignore[method-assign]
        model = VerbatimLLMLetter if config.verbatim_reask else LLMLetter
        try:
            structured_call(
                "<batch>",
                config,
                self.llm.messages(text, part, parts),
                model,
                client=self.client,
                context={"letter": text},
            )
        except _Captured as captured:
            kwargs = dict(captured.kwargs)
        else:  # pragma: no cover - the recording client always raises
            raise AssertionError("the request was not recorded")
        extra = kwargs.pop("extra_body", None) or {}
        body = {k: v for k, v in kwargs.items() if k not in self._NOT_BODY}
        body.update(extra)
        # What the SDK puts on the wire: plain JSON.
        return json.loads(json.dumps(body))


def plan_letter(
    doc: Document, llm: LLMExtractor, backend: str
) -> tuple[str | None, list[tuple[tuple[int, int], int, int]]]:
    """The route (hybrid) and the (region, part, parts) requests the synchronous path would make.

    Mirrors ``LLMExtractor.found`` (the whole letter, split by ``plan_regions`` when long) and
    ``HybridExtractor`` (nothing, the sections, or the whole letter, by ``plan_routing``).
    """
    if backend == "llm":
        regions = plan_regions(doc.text, llm.config.max_chunk_chars)
        return None, [(r, i, len(regions)) for i, r in enumerate(regions, start=1)]
    from ..hybrid import Route, plan_routing, rules_record

    routing = plan_routing(rules_record(doc), doc.text)
    if routing.route is Route.NONE:
        return routing.route.value, []
    if routing.route is Route.LETTER:
        regions = plan_regions(doc.text, llm.config.max_chunk_chars)
    else:
        regions = list(routing.regions)
    return routing.route.value, [(r, i, len(regions)) for i, r in enumerate(regions, start=1)]


def _read_letter(path: str, abspath: str, pdf_engine: str) -> Document:
    try:
        data = Path(abspath).read_bytes()
    except OSError as exc:
        raise ImrExtractError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return read_bytes(data, Path(path).name, path, pdf_engine)


def prepare_job(
    paths: Iterable[str | os.PathLike[str]],
    job_path: str | os.PathLike[str],
    config: LLMConfig,
    *,
    backend: str = "llm",
    pdf_engine: str | None = None,
) -> BatchJob:
    """Read the letters, write the requests file and a new job file (status ``prepared``).

    A letter that cannot be read is kept in the job with its error (``collect_job`` reports it);
    nothing is sent for it.
    """
    job_path = Path(job_path)
    if backend not in BACKENDS:
        raise BatchJobError(str(job_path), f"backend must be one of {', '.join(BACKENDS)}")
    if job_path.exists():
        raise BatchJobError(str(job_path), "job file exists already")
    files = list(iter_paths(paths))
    if "-" in files:
        raise BatchJobError(str(job_path), "a batch job cannot read standard input")
    if not files:
        raise BatchJobError(str(job_path), "no letters (.pdf, .txt) found")
    config = config.with_(use_cache=False, verbatim_reask=False)
    engine = pdf_engine or default_pdf_engine()
    llm = LLMExtractor(config)
    builder = RequestBuilder(llm)
    letters: list[dict[str, Any]] = []
    requests: dict[str, dict[str, Any]] = {}
    lines: list[str] = []
    for path in files:
        abspath = os.path.abspath(path)
        entry: dict[str, Any] = {"path": path, "abspath": abspath, "name": Path(path).name}
        letters.append(entry)
        try:
            doc = _read_letter(path, abspath, engine)
        except ImrExtractError as exc:
            entry["error"] = {"code": exc.code, "cause": exc.cause}
            continue
        route, planned = plan_letter(doc, llm, backend)
        entry.update(sha256=doc.sha256, route=route, custom_ids=[])
        for region, part, parts in planned:
            cid = custom_id(doc.sha256, region, part, parts)
            entry["custom_ids"].append(cid)
            if cid in requests:  # another copy of the same letter
                continue
            requests[cid] = {"sha256": doc.sha256, "region": list(region), "part": part}
            requests[cid]["parts"] = parts
            body = builder.body(doc.text[region[0] : region[1]], part, parts)
            line = {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}
            lines.append(json.dumps(line, ensure_ascii=False))
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if len(requests) > MAX_REQUESTS or len(data) > MAX_INPUT_BYTES:
        raise BatchJobError(
            str(job_path),
            f"{len(requests)} requests, {len(data):,} bytes: over the Batch API's limit of "
            f"{MAX_REQUESTS:,} requests or {MAX_INPUT_BYTES:,} bytes per batch; split the letters "
            "into several jobs",
        )
    requests_file = job_path.with_name(job_path.stem + ".requests.jsonl")
    requests_file.parent.mkdir(parents=True, exist_ok=True)
    requests_file.write_bytes(data)
    job = BatchJob(
        job_path,
        {
            "format": JOB_FORMAT,
            "version": JOB_VERSION,
            "job_id": uuid.uuid4().hex,
            "created_at": _now(),
            "updated_at": _now(),
            "backend": backend,
            "pdf_engine": engine,
            "settings": settings_of(config),
            "prompt": llm.prompt_ref,
            "response_schema": response_schema_hash(),
            "record_schema": schema_hash(),
            "requests_file": requests_file.name,
            "requests_sha256": hashlib.sha256(data).hexdigest(),
            "letters": letters,
            "requests": requests,
            "status": PREPARED if requests else NO_REQUESTS,
            "input_file_id": None,
            "batch_id": None,
            "request_counts": None,
            "output_file_id": None,
            "error_file_id": None,
            "batch_errors": [],
            "results_downloaded": False,
            "results": {},
            "warnings": [],
        },
    )
    job.save()
    return job


def same_inputs(job: BatchJob, paths: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether ``paths`` name the letters ``job`` was prepared from."""
    given = [os.path.abspath(p) for p in iter_paths(paths)]
    return given == [letter["abspath"] for letter in job.letters]


# --------------------------------------------------------------------------- talking to the API


def _api_error(job: BatchJob, what: str, exc: openai.OpenAIError) -> BatchJobError:
    if isinstance(exc, openai.APIStatusError):
        detail = f"endpoint answered HTTP {exc.status_code}: {str(exc).splitlines()[0][:300]}"
    else:
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return BatchJobError(str(job.path), f"{what} failed: {detail}")


def _record_batch(job: BatchJob, batch: Any) -> None:
    job.data["batch_id"] = batch.id
    job.data["status"] = batch.status
    counts = getattr(batch, "request_counts", None)
    job.data["request_counts"] = (
        {"total": counts.total, "completed": counts.completed, "failed": counts.failed}
        if counts is not None
        else None
    )
    job.data["output_file_id"] = getattr(batch, "output_file_id", None)
    job.data["error_file_id"] = getattr(batch, "error_file_id", None)
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    job.data["batch_errors"] = [
        {"code": e.code, "message": redact(e.message or ""), "line": e.line, "param": e.param}
        for e in errors
    ]


def _find_batch(client: openai.OpenAI, input_file_id: str) -> Any | None:
    """A batch already made from ``input_file_id`` (a crash before its id was saved), if any."""
    try:
        page = client.batches.list(limit=100)
    except openai.OpenAIError:
        return None
    for batch in page.data:
        if batch.input_file_id == input_file_id and batch.status not in ("failed", "cancelled"):
            return batch
    return None


def submit_job(job: BatchJob, client: openai.OpenAI) -> BatchJob:
    """Upload the requests and create the batch, each only if not done before.

    Safe to run again at any point: a job with a batch id is left alone.
    """
    if job.batch_id is not None or job.status == NO_REQUESTS:
        return job
    uploaded_now = False
    if job.data.get("input_file_id") is None:
        try:
            data = job.requests_file.read_bytes()
        except OSError as exc:
            raise BatchJobError(
                str(job.path), f"cannot read {job.requests_file} ({exc.strerror or exc})"
            ) from exc
        if hashlib.sha256(data).hexdigest() != job.data["requests_sha256"]:
            raise BatchJobError(str(job.path), f"{job.requests_file} changed since it was written")
        try:
            uploaded = client.files.create(
                file=(job.requests_file.name, data, "application/jsonl"), purpose="batch"
            )
        except openai.OpenAIError as exc:
            raise _api_error(job, "uploading the requests", exc) from exc
        job.data["input_file_id"] = uploaded.id
        job.data["status"] = UPLOADED
        job.save()
        uploaded_now = True
    file_id = job.data["input_file_id"]
    batch = None if uploaded_now else _find_batch(client, file_id)
    if batch is None:
        try:
            batch = client.batches.create(
                input_file_id=file_id,
                endpoint=ENDPOINT,
                completion_window=COMPLETION_WINDOW,
                metadata={"imr_extract_job": job.data["job_id"]},
            )
        except openai.OpenAIError as exc:
            raise _api_error(job, "creating the batch", exc) from exc
    _record_batch(job, batch)
    job.data["submitted_at"] = _now()
    job.save()
    return job


def refresh_job(job: BatchJob, client: openai.OpenAI) -> BatchJob:
    """Ask for the batch's status once; download its results when it has ended."""
    if job.status == NO_REQUESTS or job.finished:
        return job
    if job.batch_id is None:
        raise BatchJobError(str(job.path), "not submitted yet: run `imr-extract batch submit`")
    try:
        batch = client.batches.retrieve(job.batch_id)
    except openai.OpenAIError as exc:
        raise _api_error(job, f"retrieving batch {job.batch_id}", exc) from exc
    _record_batch(job, batch)
    job.save()
    if job.status in TERMINAL:
        download_results(job, client)
    return job


def wait_for_job(
    job: BatchJob,
    client: openai.OpenAI,
    *,
    poll_interval_s: float = 30.0,
    max_wait_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[BatchJob], None] | None = None,
) -> BatchJob:
    """Poll until the batch ends (or ``max_wait_s`` passes); the job file is saved each time."""
    started = time.monotonic()
    while True:
        refresh_job(job, client)
        if on_poll is not None:
            on_poll(job)
        if job.finished:
            return job
        if max_wait_s is not None and time.monotonic() - started >= max_wait_s:
            return job
        sleep(poll_interval_s)


def _parse_result_line(line: str) -> tuple[str, dict[str, Any]] | None:
    try:
        data = json.loads(line)
        cid = data["custom_id"]
    except (ValueError, KeyError, TypeError):
        return None
    response = data.get("response") or {}
    return str(cid), {
        "status_code": response.get("status_code"),
        "body": response.get("body"),
        "error": data.get("error"),
    }


def download_results(job: BatchJob, client: openai.OpenAI) -> BatchJob:
    """Fetch the output and error files into ``results`` (an answer beats an error line)."""
    if job.data.get("results_downloaded"):
        return job
    results: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for key in ("error_file_id", "output_file_id"):  # output last: it wins over errors
        file_id = job.data.get(key)
        if not file_id:
            continue
        try:
            text = client.files.content(file_id).text
        except openai.OpenAIError as exc:
            raise _api_error(job, f"downloading {key.removesuffix('_id')} {file_id}", exc) from exc
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parsed = _parse_result_line(line)
            if parsed is None:
                warnings.append(f"{file_id} line {n}: not a batch result line")
                continue
            cid, result = parsed
            if cid not in job.requests:
                warnings.append(f"{file_id} line {n}: unknown custom_id {cid!r}")
                continue
            ok = result["error"] is None and result["status_code"] == 200
            if ok or cid not in results:
                # Kept in the job file: an error body (or an answer) may repeat the key.
                results[cid] = redact_json(result)
    job.data["results"] = results
    job.data["warnings"] = warnings
    job.data["results_downloaded"] = True
    job.save()
    return job


def cancel_job(job: BatchJob, client: openai.OpenAI) -> BatchJob:
    if job.batch_id is None:
        raise BatchJobError(str(job.path), "not submitted: nothing to cancel")
    if job.status in TERMINAL:
        return job
    try:
        batch = client.batches.cancel(job.batch_id)
    except openai.OpenAIError as exc:
        raise _api_error(job, f"cancelling batch {job.batch_id}", exc) from exc
    _record_batch(job, batch)
    job.save()
    return job


def total_usage(job: BatchJob) -> Usage:
    """Usage over every answered request, as the batch output reports it."""
    total = Usage()
    for result in job.results.values():
        total = total + _usage_of(result.get("body"))
    return total


def _usage_of(body: Any) -> Usage:
    u = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(u, dict):
        return Usage()
    prompt = int(u.get("prompt_tokens") or 0)
    completion = int(u.get("completion_tokens") or 0)
    return Usage(
        requests=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(u.get("total_tokens") or prompt + completion),
    )


# --------------------------------------------------------------------------- collecting


class BatchLLM(LLMExtractor):
    """``LLMExtractor`` whose model calls are answered from a batch job's results."""

    def __init__(self, config: LLMConfig, job: BatchJob) -> None:
        super().__init__(config.with_(use_cache=False, verbatim_reask=False))
        self.job = job
        self.submitted = {letter.get("sha256") for letter in job.letters}
        # Parses recorded answers; it never connects anywhere.
        self.replay = make_openai_client(self.config.with_(api_key=None))

    def info(self, run: LLMRun, backend: Backend = Backend.LLM, **extra: Any) -> ExtractorInfo:
        info = super().info(run, backend, **extra)
        if info.cost_usd is None:
            return info
        return info.model_copy(update={"cost_usd": info.cost_usd * BATCH_PRICE_FACTOR})

    def _answer(
        self, doc: Document, region: tuple[int, int], part: int, parts: int, run: LLMRun
    ) -> LLMLetter:
        source = doc.path or doc.name
        cid = custom_id(doc.sha256, region, part, parts)

        def fail(cause: str, usage: Usage | None = None) -> LLMBatchError:
            run.usage = run.usage + (usage or Usage())
            return LLMBatchError(source, cause, run.usage, run.attempts)

        if cid not in self.job.requests:
            if doc.sha256 not in self.submitted:
                raise fail("the file changed since the batch was submitted; submit it again")
            raise fail(
                f"part {part} of {parts} (characters {region[0]}-{region[1]}) was not in the "
                "batch (the rules or the chunking changed since it was submitted)"
            )
        result = self.job.results.get(cid)
        if result is None:
            raise fail(f"no answer for batch request {cid}: {self.job.ended_why()}")
        body = result.get("body")
        usage = _usage_of(body)
        error = result.get("error")
        if error is not None:
            what = error.get("message") if isinstance(error, dict) else str(error)
            code = error.get("code") if isinstance(error, dict) else None
            raise fail(f"batch request {cid} failed ({code or 'error'}): {what}", usage)
        status = result.get("status_code")
        if status != 200:
            err = body.get("error") if isinstance(body, dict) else None
            what = err.get("message") if isinstance(err, dict) else json.dumps(body)[:300]
            raise fail(f"batch request {cid} answered HTTP {status}: {what}", usage)
        try:
            from openai.types.chat import ChatCompletion

            completion = ChatCompletion.model_validate(body)
        except ValueError as exc:
            cause = str(exc).splitlines()[0][:200]
            raise fail(f"batch answer {cid} is not a chat completion ({cause})", usage) from exc

        # The synchronous path's own parsing and validation, on the recorded answer: one
        # attempt, since a batch cannot re-ask. (The ignore: a stand-in for an overloaded SDK
        # method, replacing it on this one client.)
        self.replay.chat.completions.create = lambda *_a, **_k: completion  # type: ignore[assignment]
        config = self.config.with_(max_reasks=0, transport_retries=0, token_budget=None)
        answer, _stats = self.call(doc, config, region, part, parts, run, LLMLetter, self.replay)
        return answer


def _rules_fallback(doc: Document, exc: ImrExtractError, llm: BatchLLM) -> LetterRecord:
    from ..hybrid import rules_record, rules_standing

    info = ExtractorInfo(
        backend=Backend.RULES,
        schema_hash=schema_hash(),
        model=llm.config.model,
        mode=llm.config.resolve_mode().value,
        prompt=llm.prompt_ref,
    )
    return rules_standing(rules_record(doc), exc, info)


def collect_job(
    job: BatchJob, *, fallback: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Outcome]:
    """One ``Outcome`` per letter of a finished job, in the order the letters were given.

    Raises ``BatchJobError`` when the job has not finished, or when the prompts or the response
    schema changed since it was submitted (the answers would be credited to the wrong prompt).
    """
    if fallback is not None and fallback not in FALLBACKS:
        raise BatchJobError(str(job.path), f"fallback must be one of {', '.join(FALLBACKS)}")
    if not job.finished:
        raise BatchJobError(
            str(job.path),
            f"batch {job.batch_id or '(not submitted)'} is {job.status}, not finished",
        )
    llm = BatchLLM(job_config(job, env), job)
    if (
        llm.prompt_ref != job.data["prompt"]
        or response_schema_hash() != job.data["response_schema"]
    ):
        raise BatchJobError(
            str(job.path),
            f"submitted with prompt {job.data['prompt']} and response schema "
            f"{job.data['response_schema']}, but this imr-extract has {llm.prompt_ref} and "
            f"{response_schema_hash()}: collect with the prompts it was submitted with "
            "(IMR_PROMPTS_DIR), or submit the letters again",
        )
    extractor: Callable[[Document], LetterRecord] = llm
    if job.backend == "hybrid":
        from ..hybrid import HybridExtractor

        extractor = HybridExtractor(llm)
    engine = job.data["pdf_engine"]
    for letter in job.letters:
        source = letter["path"]
        try:
            doc = _read_letter(source, letter["abspath"], engine)
        except ImrExtractError as exc:
            yield Outcome(source, error=exc)
            continue
        try:
            yield Outcome(source, record=extractor(doc))
        except ImrExtractError as exc:
            if fallback != "rules" or job.backend == "hybrid":
                yield Outcome(source, error=exc)
                continue
            try:
                yield Outcome(source, record=_rules_fallback(doc, exc, llm))
            except ImrExtractError as both:
                yield Outcome(source, error=both)


def describe(job: BatchJob) -> str:
    """One line about where the job stands."""
    n = len(job.letters)
    if job.status == NO_REQUESTS:
        return f"{job.path}: nothing to send for {n} letter(s); collect writes their records"
    counts = job.data.get("request_counts") or {}
    done = (
        f", {counts.get('completed', 0)}/{counts.get('total', 0)} requests done" if counts else ""
    )
    failed = f", {counts['failed']} failed" if counts.get("failed") else ""
    where = f"batch {job.batch_id}" if job.batch_id else "not submitted"
    line = f"{job.path}: {where} ({job.status}{done}{failed}); {len(job.requests)} request(s)"
    line += f" for {n} letter(s) on {redact(job.data['settings']['base_url'])}"
    if job.status in TERMINAL and job.data.get("results_downloaded"):
        line += f"; {len(job.results)} result(s) downloaded"
    return line


__all__ = [
    "BATCH_PRICE_FACTOR",
    "BatchJob",
    "BatchJobError",
    "BatchLLM",
    "LLMBatchError",
    "RequestBuilder",
    "cancel_job",
    "collect_job",
    "custom_id",
    "describe",
    "download_results",
    "job_config",
    "make_batch_client",
    "plan_letter",
    "prepare_job",
    "refresh_job",
    "same_inputs",
    "submit_job",
    "total_usage",
    "wait_for_job",
]
