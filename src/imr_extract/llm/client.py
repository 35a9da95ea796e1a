"""One structured call to an OpenAI-compatible endpoint, honest about retries, time and cost.

Two kinds of retry, kept apart:
  * transport (around each HTTP request): connection errors, timeouts, 429 (waiting as long as
    Retry-After says), 5xx, and a 2xx body that is not a chat completion (an HTML page, JSON
    without choices); exponential backoff with jitter, ``transport_retries`` times;
  * validation (instructor, around the whole answer): an answer that does not fit the schema is
    re-asked with the validation error, ``max_reasks`` times, within ``token_budget``.
An answer cut off at ``max_tokens`` (finish_reason "length") fails at once: asking again would
cut it off again. Usage is counted from every raw response, whatever became of it.

Time is bounded twice: each attempt ends by ``timeout_s`` after it starts, body included (see
``deadline``), and all of a letter's attempts, waits and re-asks end by its ``Deadline``
(``letter_seconds``); a wait (Retry-After or backoff) that would end past it is not begun.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from pydantic import BaseModel

from ..errors import (
    LLMBadResponseError,
    LLMBudgetError,
    LLMDeadlineError,
    LLMError,
    LLMRejectedError,
    LLMTransportError,
    LLMTruncatedError,
    LLMValidationError,
)
from ..redact import redact, register_secret
from ..schema import Usage
from .config import LLMConfig, LLMMode
from .deadline import Deadline, DeadlineHttpClient, attempt_deadline

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

#: Longest wait honoured from a Retry-After header; a server asking for more is treated as down.
MAX_RETRY_AFTER_S = 120.0


@dataclass
class CallStats:
    """Counted from raw responses: every attempt, including the ones that failed validation."""

    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    #: HTTP attempts that failed (counted in ``usage.requests`` too, not in ``attempts``).
    failed_requests: int = 0
    finish_reasons: list[str] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)

    def on_failed_request(self, exc: BaseException) -> None:
        """An HTTP attempt that brought no response: a request all the same (no tokens known)."""
        self.failed_requests += 1
        self.usage = self.usage + Usage(requests=1)

    def on_response(self, response: Any) -> None:
        self.attempts += 1
        u = getattr(response, "usage", None)
        self.usage = self.usage + Usage(
            requests=1,
            prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(u, "completion_tokens", 0) or 0,
            total_tokens=getattr(u, "total_tokens", 0) or 0,
        )
        choices = getattr(response, "choices", None) or []
        if choices:
            self.finish_reasons.append(str(choices[0].finish_reason))
            message = choices[0].message
            content = getattr(message, "content", None)
            if content is None and getattr(message, "tool_calls", None):
                content = message.tool_calls[0].function.arguments
            self.raw_outputs.append(content or "")


class MalformedResponseError(Exception):
    """The endpoint answered 2xx with a body that is not a chat completion (not JSON, an HTML
    page, JSON without ``choices`` or with none): transient, so retried like a 5xx."""


class DeadlinePassedError(Exception):
    """The letter's deadline passed, or a wait (Retry-After, backoff) would end past it."""


class RetryAfterRefusedError(Exception):
    """The endpoint asked for a wait longer than ``MAX_RETRY_AFTER_S``: treated as down."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, MalformedResponseError):
        return True
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(exc, openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _retry_after(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # the other form: an HTTP date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def backoff(config: LLMConfig, attempt_number: int) -> float:
    """Exponential backoff with full jitter before try ``attempt_number + 1``."""
    ceiling = min(config.backoff_max_s, config.backoff_initial_s * 2 ** (attempt_number - 1))
    return random.uniform(0, ceiling)


def _snippet(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return redact(text[:n] + ("..." if len(text) > n else ""))


def not_a_completion(response: Any) -> str | None:
    """What is wrong with a 2xx ``response`` that is not a chat completion; None if it is one."""
    if isinstance(response, str | bytes):
        text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
        what = "an HTML page" if text.lstrip().startswith("<") else "text that is not JSON"
        return f"{what}, not a chat completion ({_snippet(text)!r})"
    choices = getattr(response, "choices", None)
    if choices is None:
        extra = getattr(response, "model_extra", None) or {}
        keys = ", ".join(sorted({*getattr(response, "model_fields_set", ()), *extra})[:8])
        return f"JSON without 'choices', not a chat completion (keys: {keys or 'none'})"
    if not choices:
        return "a chat completion with no choices"
    if getattr(choices[0], "message", None) is None:
        return "a chat completion whose first choice has no message"
    return None


def checked_completions(create: Callable[..., Any]) -> Callable[..., Any]:
    """``create``, raising ``MalformedResponseError`` for a 2xx body that is not a completion."""

    def create_checked(*args: Any, **kwargs: Any) -> Any:
        try:
            response = create(*args, **kwargs)
        except json.JSONDecodeError as exc:
            raise MalformedResponseError(f"endpoint sent a body that is not JSON ({exc})") from exc
        problem = not_a_completion(response)
        if problem is not None:
            raise MalformedResponseError(f"endpoint answered 2xx with {problem}")
        return response

    return create_checked


def with_transport_retries(
    create: Callable[..., Any],
    config: LLMConfig,
    sleep: Callable[[float], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    deadline: Deadline | None = None,
) -> Callable[..., Any]:
    """Wrap an OpenAI ``create`` so transient failures are retried before instructor sees them.

    Each try runs under an attempt deadline of ``config.timeout_s`` (never past ``deadline``,
    the letter's: by default ``config.letter_seconds`` from the call), and is passed that much
    as its ``timeout``. A wait that would end past ``deadline`` is not begun:
    ``DeadlinePassedError`` says so. ``on_error`` hears of every attempt that failed (a 429, a
    500, a timeout, a body that is not a completion): each was a request, and counts against a
    requests-per-minute limit all the same.
    """
    nap = sleep if sleep is not None else time.sleep
    tries = config.transport_retries + 1

    def create_once(*args: Any, **kwargs: Any) -> Any:
        try:
            return create(*args, **kwargs)
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            _mask(exc, config)
            raise

    def create_with_retries(*args: Any, **kwargs: Any) -> Any:
        letter = deadline or Deadline.after(config.letter_seconds)
        for attempt in range(1, tries + 1):
            left = letter.left()
            if left <= 0:
                raise DeadlinePassedError(_deadline_passed(config, letter, attempt - 1))
            per_try = min(config.timeout_s, left) if config.timeout_s > 0 else left
            timeout = None if math.isinf(per_try) else per_try
            try:
                with attempt_deadline(time.monotonic() + per_try):
                    return create_once(*args, **{**kwargs, "timeout": timeout})
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                if letter.left() <= 0:
                    raise DeadlinePassedError(
                        _deadline_passed(config, letter, attempt - 1)
                    ) from exc
                if attempt == tries:
                    raise
                asked = _retry_after(exc)
                wait = asked if asked is not None else backoff(config, attempt)
                status = getattr(exc, "status_code", "?")
                if wait >= letter.left():
                    why = (
                        f"endpoint asked to retry after {asked:g} s (HTTP {status})"
                        if asked is not None
                        else f"the next try's backoff of {wait:.1f} s"
                    )
                    raise DeadlinePassedError(
                        f"{why}, past the letter's deadline of {letter.seconds:g} s "
                        f"({max(letter.left(), 0):.1f} s left, --letter-timeout): not waited, "
                        f"given up after {attempt} tr{'y' if attempt == 1 else 'ies'}"
                    ) from exc
                if asked is not None and asked > MAX_RETRY_AFTER_S:
                    raise RetryAfterRefusedError(
                        f"endpoint asked to retry after {asked:g} s (HTTP {status}), more than "
                        f"the {MAX_RETRY_AFTER_S:g} s imr-extract waits: treated as down"
                    ) from exc
                nap(wait)
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover

    return create_with_retries


def _mask(exc: BaseException, config: LLMConfig) -> None:
    """Mask the key in ``exc``'s text (an error body may repeat it) before anyone logs it:
    instructor logs every failed call's exception at ERROR level."""
    if not isinstance(exc, openai.APIError):
        return  # only the endpoint's own errors quote what it sent
    text = str(exc)
    masked = redact(text, [config.api_key or ""])
    if masked != text:
        exc.args = (masked,)
        if hasattr(exc, "message"):
            exc.message = masked


def _deadline_passed(config: LLMConfig, letter: Deadline, tries: int) -> str:
    return (
        f"the letter's model calls ran into its deadline of {letter.seconds:g} s "
        f"(--letter-timeout) on try {tries + 1} of this request (each try at most "
        f"{config.timeout_s:g} s, --timeout)"
    )


_INSTRUCTOR_MODES = {
    LLMMode.TOOLS: "TOOLS",
    LLMMode.JSON: "JSON",
    LLMMode.JSON_SCHEMA: "JSON_SCHEMA",
    LLMMode.MD_JSON: "MD_JSON",
}


def make_openai_client(config: LLMConfig, http_client: Any = None) -> openai.OpenAI:
    """A client whose attempts end by their deadline (``deadline.DeadlineHttpClient``).

    The SDK's own retries are off: ``with_transport_retries`` does them, so they are counted
    and bounded once. A caller's own ``http_client`` keeps its per-operation timeouts only.
    """
    register_secret(config.api_key)  # in this process too (a config unpickled in a worker)
    return openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key or "no-key",  # local servers need none; the SDK needs a string
        timeout=config.timeout_s,
        max_retries=0,
        http_client=http_client if http_client is not None else DeadlineHttpClient(),
    )


_ENDRAW_RX = re.compile(r"\{%-?\s*endraw\s*-?%\}")


def literal(text: str) -> str:
    """``text`` as a Jinja template that renders to ``text`` itself."""
    # A final newline stays outside the raw block, where Jinja drops it as it always did.
    body, tail = (text[:-1], "\n") if text.endswith("\n") else (text, "")
    inner = _ENDRAW_RX.sub(lambda m: "{% endraw %}{{ " + repr(m.group()) + " }}{% raw %}", body)
    return "{% raw %}" + inner + "{% endraw %}" + tail


def structured_call(
    source: str,
    config: LLMConfig,
    messages: list[dict[str, str]],
    response_model: type[T],
    *,
    client: openai.OpenAI | None = None,
    context: dict[str, Any] | None = None,
    stats: CallStats | None = None,
    sleep: Callable[[float], None] | None = None,
    deadline: Deadline | None = None,
    salvage: Callable[[str], T | None] | None = None,
) -> tuple[T, CallStats]:
    """Ask for ``response_model``; raise an ``LLMError`` naming ``source`` when it cannot be had.

    ``deadline`` is the letter's (shared by all its parts); by default ``config.letter_seconds``
    from now. Tries, waits and re-asks all end by it. ``salvage`` makes what it can of the last
    raw answer when no answer validated (re-asks and budget spent): its result is returned
    instead of an error, unless it is None.
    """
    import instructor
    from instructor.core.exceptions import (
        IncompleteOutputException,
        InstructorRetryException,
        TokenBudgetError,
    )

    stats = stats or CallStats()
    deadline = deadline or Deadline.after(config.letter_seconds)
    own_client = client is None
    client = client or make_openai_client(config)
    # instructor is handed a ``create`` that already retries transport failures (and counts
    # them); the client itself is left as it is, so a shared client never stacks retries.
    create = with_transport_retries(
        checked_completions(client.chat.completions.create),
        config,
        sleep,
        on_error=stats.on_failed_request,
        deadline=deadline,
    )
    mode = getattr(instructor.Mode, _INSTRUCTOR_MODES[config.resolve_mode()])
    patched = instructor.Instructor(
        client=client, create=instructor.patch(create=create, mode=mode), mode=mode
    )
    patched.on("completion:response", stats.on_response)
    kwargs: dict[str, Any] = {
        "model": config.model,
        # instructor renders messages as Jinja templates whenever a context is given: a letter
        # that prints "{{" or "{%" would be altered (or crash the call), so each message is sent
        # as a literal. It renders to the same text, so recorded request bodies still match.
        "messages": [{**m, "content": literal(m["content"])} for m in messages]
        if context
        else messages,
        "response_model": response_model,
        "max_retries": config.max_reasks,
        "context": context,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    if config.token_budget is not None:
        kwargs["token_budget"] = config.token_budget
    try:
        answer = patched.chat.completions.create(**kwargs)
    except IncompleteOutputException as exc:
        raise LLMTruncatedError(
            source,
            f"model answer cut off at max_tokens={config.max_tokens} (finish_reason=length); "
            "raise --max-tokens or shorten the input",
            stats.usage,
            stats.attempts,
        ) from exc
    except TokenBudgetError as exc:
        rescued = _rescued(source, salvage, stats)
        if rescued is not None:
            return rescued, stats
        if type(exc).__name__ == "TokenUsageUnavailableError":
            # Not a budget spent: the endpoint reports no usage, so no re-ask can be bounded.
            raise LLMValidationError(
                source,
                f"no valid answer after {stats.attempts} attempt(s), and the endpoint reports no "
                f"token usage, so no re-ask within the token budget: {_validation_summary(exc)}",
                stats.usage,
                stats.attempts,
            ) from exc
        raise LLMBudgetError(
            source,
            f"token budget of {config.token_budget} spent after {stats.attempts} attempt(s) "
            f"({stats.usage.total_tokens} tokens) without a valid answer",
            stats.usage,
            stats.attempts,
        ) from exc
    except InstructorRetryException as exc:
        # instructor wraps errors of the call itself too; those are not validation failures.
        api_error = _api_error_in(exc)
        # An answer came, then its re-ask failed (the endpoint, the deadline): what can be kept
        # of that answer is kept; with no answer at all, the call's own failure is the error.
        rescued = _rescued(source, salvage, stats)
        if api_error is not None and rescued is None:
            raise _call_error(source, config, api_error, stats) from exc
        if rescued is not None:
            return rescued, stats
        raise LLMValidationError(
            source,
            f"no valid answer after {stats.attempts} attempt(s): {_validation_summary(exc)}",
            stats.usage,
            stats.attempts,
        ) from exc
    except (
        openai.OpenAIError,
        MalformedResponseError,
        DeadlinePassedError,
        RetryAfterRefusedError,
    ) as exc:
        raise _call_error(source, config, exc, stats) from exc
    finally:
        if own_client:
            client.close()
    return answer, stats


def _rescued(source: str, salvage: Callable[[str], T | None] | None, stats: CallStats) -> T | None:
    """What ``salvage`` makes of the last raw answer, if anything."""
    if salvage is None or not stats.raw_outputs:
        return None
    rescued = salvage(stats.raw_outputs[-1])
    if rescued is not None:
        log.warning("%s: the model's last answer broke the schema; its bad values dropped", source)
    return rescued


_CallFailure = (
    openai.OpenAIError | MalformedResponseError | DeadlinePassedError | RetryAfterRefusedError
)


def _api_error_in(exc: BaseException) -> _CallFailure | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _CallFailure):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _call_error(source: str, config: LLMConfig, exc: _CallFailure, stats: CallStats) -> LLMError:
    """The ``LLMError`` for a call that failed before any answer could be validated.

    Its cause quotes the endpoint (an error body may repeat the key: the configured key and
    anything key-shaped are masked here, where the error is made).
    """
    kind: type[LLMError] = LLMTransportError
    tries = config.transport_retries + 1
    if isinstance(exc, DeadlinePassedError):
        kind, cause = LLMDeadlineError, _first_line(exc)
    elif isinstance(exc, RetryAfterRefusedError):
        cause = _first_line(exc)
    elif isinstance(exc, MalformedResponseError):
        kind = LLMBadResponseError
        cause = f"{_first_line(exc)}; {stats.failed_requests + stats.attempts} tries"
    elif isinstance(exc, openai.APIStatusError):
        kind = LLMTransportError if _is_transient(exc) else LLMRejectedError
        cause = f"endpoint answered HTTP {exc.status_code}: {_first_line(exc)}"
    elif isinstance(exc, openai.APITimeoutError):
        cause = (
            f"endpoint {config.base_url} sent no whole answer within --timeout "
            f"{config.timeout_s:g} s, {tries} tries"
        )
    else:
        cause = f"endpoint {config.base_url} failed after {tries} tries: {_first_line(exc)}"
    cause = redact(cause, [config.api_key or ""])
    return kind(source, cause, stats.usage, stats.attempts)


def _validation_summary(exc: BaseException) -> str:
    """The last attempt's validation errors, in one line (instructor's own text is XML-ish)."""
    attempts = getattr(exc, "failed_attempts", None) or []
    last = attempts[-1].exception if attempts else (exc.__cause__ or exc)
    errors = getattr(last, "errors", None)
    if callable(errors):
        try:
            parts = [
                f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}"
                for e in errors()[:3]
            ]
            return "; ".join(parts)[:300]
        except (TypeError, ValueError):
            pass
    return _first_line(last)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
