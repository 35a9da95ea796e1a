"""The HTTP API: a FastAPI app over the ``Engine``, made by ``create_app(settings)``.

Invariants: every route under ``/v1`` needs an API key (``Authorization: Bearer`` or
``X-API-Key``) unless the settings turn auth off (``serve --no-auth``, loopback only); every
error, whatever raised it (the letter, the request, the framework, a bug), is an
``application/problem+json`` body made by ``problems`` (no stack trace, server path or key);
a request body is read through ``body.read_capped`` before anything parses it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from .. import __version__
from ..errors import ImrExtractError
from ..output import View, view_json
from ..redact import redact
from ..runner import TokenBucket
from ..schema import Backend, LetterRecord
from ..store import StoreUnusableError
from .archive import job_letters
from .body import letter_and_record, letter_of, read_capped
from .engine import Engine, Result
from .jobs import Job, JobWorker
from .keys import KeyStore
from .metrics import Metrics
from .problems import MEDIA_TYPE, SERVICE_PROBLEMS, Problem, ProblemError, body, from_error
from .settings import SETTINGS_ENV, Settings

logger = logging.getLogger("imr_extract.service")


class ServeBackend(StrEnum):
    RULES = "rules"
    HYBRID = "hybrid"
    LLM = "llm"


SHA256 = r"^[0-9a-f]{64}$"
JOB_ID = r"^job-[0-9a-f]{24}$"
VIEW_HELP = (
    "full: the whole record; data: the values alone (no provenance, checks or metadata); "
    "compact: provenance cut to each field's spans and status, checks to those not passed "
    "(as the CLI's --view)."
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error statuses (their bodies are set to ``Problem`` by
    ``_openapi``)."""
    titles = {s: t for s, t in SERVICE_PROBLEMS.values()}
    titles |= {404: "No such resource", 422: "The letter or the request cannot be used"}
    titles |= {502: "The model endpoint failed", 409: "That backend is not configured"}
    return {status: {"description": titles.get(status, "Error")} for status in statuses}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, every error response an ``application/problem+json``
    ``Problem`` (FastAPI's own validation-error schema is never answered: see the handlers)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    response["content"] = {MEDIA_TYPE: {"schema": ref}}
            ok = operation.get("responses", {}).get("200", {}).get("content", {})
            record = ok.get("application/json", {}).get("schema", {})
            if record.get("$ref", "").endswith("/LetterRecord"):
                ok["application/json"]["schema"] = {
                    "anyOf": [
                        record,
                        {
                            "type": "object",
                            "description": "view=data or view=compact: a part of the record",
                        },
                    ]
                }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "imr-extract keys create"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    app.openapi_schema = document
    return document


def _job_response(job: Job, status: int = 200) -> Response:
    headers = {"Location": f"/v1/jobs/{job.id}"} if status == 202 else None
    return Response(job.model_dump_json(), status, headers=headers, media_type="application/json")


class JsonLinesResponse(StreamingResponse):
    media_type = "application/x-ndjson"


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return Response(body(problem), problem.status, headers=headers, media_type=MEDIA_TYPE)


def _record_response(record_json: str, view: View) -> Response:
    """A record in ``view``: the same views, made by the same code, as the CLI's ``--view``."""
    return Response(view_json(record_json, view), media_type="application/json")


def create_app(settings: Settings) -> FastAPI:
    """The service for ``settings`` (its engine starts with the app and stops with it)."""
    keys = KeyStore(settings.store)
    metrics = Metrics()
    buckets: dict[str, TokenBucket] = {}  # per API key id
    rate_lock = threading.Lock()
    state: dict[str, Engine] = {}
    workers: dict[str, JobWorker] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine = Engine(settings, metrics=metrics)
        engine.warm()
        state["engine"] = engine
        worker = workers["jobs"] = JobWorker(engine)
        worker.start()
        try:
            yield
        finally:
            await worker.close()
            engine.close()

    app = FastAPI(
        title="imr-extract",
        version=__version__,
        summary="Verified structured records from California IMR final determination letters.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    def engine() -> Engine:
        return state["engine"]

    def jobs() -> JobWorker:
        return workers["jobs"]

    def answer(problem: Problem, headers: dict[str, str] | None = None) -> Response:
        metrics.error(problem.code)
        return problem_response(problem, headers)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response: Response = await call_next(request)
        except Exception as exc:
            # Answered here, not by Starlette's error middleware: that one hands the exception
            # on to the server, which logs its stack trace. One redacted line, no trace.
            logger.error(redact(f"unexpected {type(exc).__name__}: {exc}"))
            response = answer(
                ProblemError("internal", "an unexpected error (a bug in imr-extract)").problem
            )
        try:
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            method = request.method if request.method in _METHODS else "other"
            template = getattr(route, "path", None) or "other"
            metrics.request(template, method, status, time.perf_counter() - started)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> Response:
        return answer(exc.problem, exc.headers)

    @app.exception_handler(StoreUnusableError)
    async def _store(_: Request, exc: StoreUnusableError) -> Response:
        logger.error(redact(f"run store: {exc.cause}"))
        return answer(
            ProblemError("store-unusable", "the run store cannot be used now").problem,
            {"Retry-After": "5"},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return answer(ProblemError("invalid-request", where).problem)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
        detail = exc.detail if isinstance(exc.detail, str) else code
        # The framework's own headers stand (a 405's Allow, a 401's WWW-Authenticate).
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # every route of the path, not the first one's alone
            allowed: set[str] = set()
            for route in app.router.routes:
                if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
                    allowed |= route.methods or set()
            if allowed:
                headers = (headers or {}) | {"Allow": ", ".join(sorted(allowed))}
        return answer(ProblemError(code, detail, status=exc.status_code).problem, headers)

    # ------------------------------------------------------------------ auth

    def caller(request: Request) -> str | None:
        """The API key's id (None with auth off); a 401 problem without a valid key."""
        if not settings.auth:
            return None
        token = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if token is None and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        found = keys.check(token) if token else None
        if found is None:
            raise ProblemError(
                "unauthorized",
                "no valid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
                "(keys are made with `imr-extract keys create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if settings.rate_per_minute:
            with rate_lock:
                bucket = buckets.get(found.id)
                if bucket is None:
                    rate = settings.rate_per_minute
                    bucket = buckets[found.id] = TokenBucket(rate, capacity=max(1.0, rate / 6))
                wait = bucket.wait_for(1)
                if wait <= 0:
                    bucket.take(1)
            if wait > 0:
                raise ProblemError(
                    "rate-limited",
                    f"more than {settings.rate_per_minute:g} requests a minute with this key",
                    headers={"Retry-After": str(math.ceil(wait))},
                )
        return found.id

    auth = [Depends(caller)]

    # ------------------------------------------------------------------ health

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The run store can be written (and the model endpoint reached, if configured).",
        responses=_problems(503),
    )
    async def readyz() -> dict[str, str]:
        await engine().ready()
        return {"status": "ready"}

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of this process (text exposition format).",
        response_class=PlainTextResponse,
    )
    async def metrics_text() -> Response:
        waiting = state["engine"].waiting if "engine" in state else 0
        return PlainTextResponse(
            metrics.render(waiting), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # ------------------------------------------------------------------ letters

    @app.post(
        "/v1/extract",
        tags=["letters"],
        summary="Extract one letter: its verified record.",
        description=(
            "The letter is the body: application/pdf, text/plain, multipart/form-data with one "
            'file, or application/json {"text": "...", "name": "..."}. The body is read up to '
            "the service's cap (413 past it). A letter that cannot be extracted is a problem "
            "(4xx) naming its code."
        ),
        response_model=LetterRecord,
        responses={
            202: {
                "model": Job,
                "description": "Not done within the wait: a job of this one letter carries on "
                "(its status and, when done, its record at Location).",
                "headers": {"Location": {"schema": {"type": "string"}}},
            },
            **_problems(400, 401, 409, 413, 415, 422, 429, 500, 502, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    "text/plain": {"schema": {"type": "string"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"text": {"type": "string"}, "name": {"type": "string"}},
                            "required": ["text"],
                        }
                    },
                },
            }
        },
    )
    async def extract(
        request: Request,
        backend: Annotated[
            ServeBackend, Query(description="rules, or hybrid/llm when a model is configured.")
        ] = ServeBackend.RULES,
        view: Annotated[View, Query(description=VIEW_HELP)] = View.FULL,
        name: Annotated[
            str | None, Query(max_length=500, description="The letter's name (a label).")
        ] = None,
        wait: Annotated[
            float | None,
            Query(
                ge=0,
                allow_inf_nan=False,
                description="Seconds to wait for the record before answering 202 and a job "
                "of this letter (at most the server's serve --wait; 0: a job at once).",
            ),
        ] = None,
        key_id: str | None = Depends(caller),
    ) -> Response:
        engine().backend(Backend(backend.value))  # refused before the body is read
        data = await read_capped(
            request.stream(), request.headers.get("content-length"), settings.max_body
        )
        letter = letter_of(request.headers.get("content-type"), data, name)
        chosen = Backend(backend.value)
        task: asyncio.Future[Result] = asyncio.ensure_future(engine().extract(letter, chosen))
        limit = settings.wait if wait is None else min(wait, settings.wait)
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:  # it carries on as a job of one letter
            job = await jobs().adopt(key_id or "", chosen, letter, task)
            return _job_response(job, 202)
        result = task.result()
        if result.record_json is None:
            assert result.error is not None
            raise from_error(result.error, letter.name)
        return _record_response(result.record_json, view)

    @app.get(
        "/v1/letters/{sha256}",
        dependencies=auth,
        tags=["letters"],
        summary="A stored record, by the letter's SHA-256.",
        response_model=LetterRecord,
        responses=_problems(401, 404, 409, 422, 429, 503),
    )
    async def stored(
        sha256: Annotated[str, _sha_path()],
        backend: Annotated[ServeBackend, Query()] = ServeBackend.RULES,
        view: Annotated[View, Query(description=VIEW_HELP)] = View.FULL,
    ) -> Response:
        text = await engine().stored(sha256, Backend(backend.value))
        if text is None:
            raise ProblemError("not-found", f"no {backend.value} record of letter {sha256} here")
        return _record_response(text, view)

    @app.get(
        "/v1/letters/{sha256}/review",
        dependencies=auth,
        tags=["letters"],
        summary="The review page of a stored letter (HTML).",
        response_class=HTMLResponse,
        responses=_problems(401, 404, 422, 429, 503),
    )
    async def review(sha256: Annotated[str, _sha_path()]) -> Response:
        try:
            page = await engine().review(sha256)
        except ImrExtractError as exc:
            raise from_error(exc, None) from None
        if page is None:
            raise ProblemError(
                "not-found", f"letter {sha256} was not extracted by this service (or not kept)"
            )
        return HTMLResponse(page)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.post(
        "/v1/verify",
        dependencies=auth,
        tags=["letters"],
        summary="Verify a record from any tool against its letter: the record with statuses.",
        description=(
            "multipart/form-data with a 'letter' file and a 'record' part (JSON), or "
            'application/json {"text": "...", "name": "...", "record": {...}}. The record is in '
            "the output shape (the gold shape), provenance optional; each value is located in "
            "the letter and checked, a value that does not fit the schema is reported on its "
            "own (a failed value_fits_schema check) and left out."
        ),
        response_model=LetterRecord,
        responses=_problems(400, 401, 413, 415, 422, 429, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "letter": {"type": "string", "format": "binary"},
                                "record": {"type": "string"},
                            },
                            "required": ["letter", "record"],
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "text": {"type": "string"},
                                "name": {"type": "string"},
                                "record": {"type": "object"},
                            },
                            "required": ["text", "record"],
                        }
                    },
                },
            }
        },
    )
    async def verify(
        request: Request, view: Annotated[View, Query(description=VIEW_HELP)] = View.FULL
    ) -> Response:
        data = await read_capped(
            request.stream(), request.headers.get("content-length"), settings.max_body
        )
        letter, record = letter_and_record(request.headers.get("content-type"), data)
        try:
            text = await engine().verify(letter, record)
        except ImrExtractError as exc:
            raise from_error(exc, letter.name) from None
        return _record_response(text, view)

    # ------------------------------------------------------------------ jobs

    binary = {"schema": {"type": "string", "format": "binary"}}

    @app.post(
        "/v1/jobs",
        tags=["jobs"],
        status_code=202,
        summary="Many letters at once: a job, extracted in the background.",
        description=(
            "The letters are the body: multipart/form-data with one file per letter, or one "
            "archive (application/zip, application/x-tar, application/gzip for a tar.gz; "
            "application/octet-stream is sniffed). Only files named .pdf or .txt (or PDFs by "
            "their bytes) are letters; other members are skipped and counted. An archive is "
            "refused whole (4xx naming the cause) if it holds more members than the service "
            "takes, inflates past the body cap, names a member by an absolute or climbing "
            "path, or cannot be read. Answers 202 with the job and Location: /v1/jobs/{id}."
        ),
        response_model=Job,
        responses={
            202: {"headers": {"Location": {"schema": {"type": "string"}}}},
            **_problems(400, 401, 409, 413, 415, 422, 429, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                            "required": ["files"],
                        }
                    },
                    "application/zip": binary,
                    "application/x-tar": binary,
                    "application/gzip": binary,
                },
            }
        },
    )
    async def create_job(
        request: Request,
        backend: Annotated[
            ServeBackend, Query(description="rules, or hybrid/llm when a model is configured.")
        ] = ServeBackend.RULES,
        key_id: str | None = Depends(caller),
    ) -> Response:
        chosen = Backend(backend.value)
        engine().backend(chosen)  # refused before the body is read
        data = await read_capped(
            request.stream(), request.headers.get("content-length"), settings.max_body
        )
        found = await asyncio.to_thread(
            job_letters,
            request.headers.get("content-type"),
            data,
            max_members=settings.max_job_letters,
            member_cap=settings.limits.max_stdin_bytes or settings.max_body,
            total_cap=settings.max_body,
        )
        job = await jobs().create(key_id or "", chosen, found.letters, found.skipped)
        return _job_response(job, 202)

    @app.get(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        summary="A job: its status, counts and progress.",
        response_model=Job,
        responses=_problems(401, 404, 422, 429, 503),
    )
    async def get_job(
        job_id: Annotated[str, _job_path()], key_id: str | None = Depends(caller)
    ) -> Response:
        return _job_response(await _found(job_id, key_id))

    async def _found(job_id: str, key_id: str | None) -> Job:
        return _or_not_found(job_id, await jobs().job(job_id, key_id or ""))

    def _or_not_found(job_id: str, job: Job | None) -> Job:
        if job is None:  # another key's job does not exist for this one
            raise ProblemError("not-found", f"no job {job_id} (of this API key) here")
        return job

    @app.delete(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        summary="Cancel a job: its letters not started are not extracted. Answers the job.",
        response_model=Job,
        responses=_problems(401, 404, 422, 429, 503),
    )
    async def cancel_job(
        job_id: Annotated[str, _job_path()], key_id: str | None = Depends(caller)
    ) -> Response:
        return _job_response(_or_not_found(job_id, await jobs().cancel(job_id, key_id or "")))

    @app.get(
        "/v1/jobs/{job_id}/results",
        tags=["jobs"],
        summary="A job's results: JSON Lines, one line per letter, in the job's order.",
        description=(
            "Each line is a letter's record (in the view asked for, as /v1/extract answers it) "
            'or its error: {"letter", "sha256", "error" (the code), "cause"}; a letter of a '
            "cancelled job never extracted is an error line with code 'cancelled'. Streamed. "
            "follow=false (the default): the letters finished now, in order (those not yet "
            "finished are left out: compare the line count with counts.done). follow=true: "
            "every letter's line in order, each sent as soon as it is done; the stream ends "
            "when the last letter is done (or cancelled), or after the server's serve "
            "--follow-timeout (default 600 s) even if the job has not ended: then it holds "
            "fewer lines than letters (compare with counts.done and ask again). A job is "
            "kept for serve --keep-jobs after it ended (default 7 days), then it is 404."
        ),
        response_class=JsonLinesResponse,
        responses={
            200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
            **_problems(401, 404, 422, 429, 503),
        },
    )
    async def job_results(
        job_id: Annotated[str, _job_path()],
        view: Annotated[View, Query(description=VIEW_HELP)] = View.FULL,
        follow: Annotated[
            bool,
            Query(
                description="Wait for every letter, streaming each as it is done (at most the "
                "server's serve --follow-timeout)."
            ),
        ] = False,
        key_id: str | None = Depends(caller),
    ) -> Response:
        await _found(job_id, key_id)
        return JsonLinesResponse(jobs().results(job_id, view, follow))

    return app


def _sha_path() -> Any:
    from fastapi import Path as PathParam

    return PathParam(pattern=SHA256, description="The SHA-256 of the letter's bytes (hex).")


def _job_path() -> Any:
    from fastapi import Path as PathParam

    return PathParam(pattern=JOB_ID, description="The job's id.")


def app_from_env() -> FastAPI:
    """uvicorn's factory in each worker process: the settings ``serve`` put in the environment."""
    text = os.environ.get(SETTINGS_ENV)
    return create_app(Settings.from_json(text) if text else Settings())
