"""One structured call to an OpenAI-compatible endpoint, honest about retries and cost.

Two kinds of retry, kept apart:
  * transport (tenacity, around each HTTP request): connection errors, timeouts, 429 (waiting as
    long as Retry-After says), 5xx; exponential backoff with jitter, ``transport_retries`` times;
  * validation (instructor, around the whole answer): an answer that does not fit the schema is
    re-asked with the validation error, ``max_reasks`` times, within ``token_budget``.
An answer cut off at ``max_tokens`` (finish_reason "length") fails at once: asking again would
cut it off again. Usage is counted from every raw response, whatever became of it.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from pydantic import BaseModel
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.nap import sleep as _tenacity_sleep

from ..errors import (
    LLMBudgetError,
    LLMError,
    LLMRejectedError,
    LLMTransportError,
    LLMTruncatedError,
    LLMValidationError,
)
from ..redact import register_secret
from ..schema import Usage
from .config import LLMConfig, LLMMode

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
    """The endpoint answered 2xx with a body that is not JSON (a proxy's error page, a cut
    connection): transient, so retried like a 5xx."""


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
        return float(value)
    except ValueError:
        return None


def transport_wait(config: LLMConfig) -> Callable[[RetryCallState], float]:
    """Retry-After when the server gives one, else exponential backoff with full jitter."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = _retry_after(exc)
        if after is not None:
            return min(max(after, 0.0), MAX_RETRY_AFTER_S)
        ceiling = min(
            config.backoff_max_s, config.backoff_initial_s * 2 ** (state.attempt_number - 1)
        )
        return random.uniform(0, ceiling)

    return wait


def with_transport_retries(
    create: Callable[..., Any],
    config: LLMConfig,
    sleep: Callable[[float], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> Callable[..., Any]:
    """Wrap an OpenAI ``create`` so transient failures are retried before instructor sees them.

    ``on_error`` hears of every attempt that failed (a 429, a 500, a timeout, a body that is not
    JSON): each was a request, and counts against a requests-per-minute limit all the same.
    """

    def create_once(*args: Any, **kwargs: Any) -> Any:
        try:
            return create(*args, **kwargs)
        except json.JSONDecodeError as exc:
            if on_error is not None:
                on_error(exc)
            raise MalformedResponseError(f"endpoint sent a body that is not JSON ({exc})") from exc
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            raise

    def create_with_retries(*args: Any, **kwargs: Any) -> Any:
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(config.transport_retries + 1),
            wait=transport_wait(config),
            reraise=True,
            sleep=sleep if sleep is not None else _tenacity_sleep,  # tenacity's own default
        )
        return retrying(create_once, *args, **kwargs)

    return create_with_retries


_INSTRUCTOR_MODES = {
    LLMMode.TOOLS: "TOOLS",
    LLMMode.JSON: "JSON",
    LLMMode.JSON_SCHEMA: "JSON_SCHEMA",
    LLMMode.MD_JSON: "MD_JSON",
}


def make_openai_client(config: LLMConfig, http_client: Any = None) -> openai.OpenAI:
    # The SDK's own retries are off: tenacity does them, so they are counted and bounded once.
    register_secret(config.api_key)  # in this process too (a config unpickled in a worker)
    return openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key or "no-key",  # local servers need none; the SDK needs a string
        timeout=config.timeout_s,
        max_retries=0,
        http_client=http_client,
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
) -> tuple[T, CallStats]:
    """Ask for ``response_model``; raise an ``LLMError`` naming ``source`` when it cannot be had."""
    import instructor
    from instructor.core.exceptions import (
        IncompleteOutputException,
        InstructorRetryException,
        TokenBudgetError,
    )

    stats = stats or CallStats()
    client = client or make_openai_client(config)
    # instructor is handed a ``create`` that already retries transport failures (and counts
    # them); the client itself is left as it is, so a shared client never stacks retries.
    create = with_transport_retries(
        client.chat.completions.create, config, sleep, on_error=stats.on_failed_request
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
        if isinstance(api_error, MalformedResponseError):
            raise _malformed(source, config, api_error, stats) from exc
        if api_error is not None:
            raise _transport_error(source, config, api_error, stats) from exc
        raise LLMValidationError(
            source,
            f"no valid answer after {stats.attempts} attempt(s): {_validation_summary(exc)}",
            stats.usage,
            stats.attempts,
        ) from exc
    except openai.OpenAIError as exc:
        raise _transport_error(source, config, exc, stats) from exc
    except MalformedResponseError as exc:
        raise _malformed(source, config, exc, stats) from exc
    return answer, stats


def _malformed(
    source: str, config: LLMConfig, exc: MalformedResponseError, stats: CallStats
) -> LLMError:
    tries = config.transport_retries + 1
    return LLMTransportError(
        source, f"{_first_line(exc)}, {tries} tries", stats.usage, stats.attempts
    )


def _api_error_in(exc: BaseException) -> openai.OpenAIError | MalformedResponseError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, openai.OpenAIError | MalformedResponseError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _transport_error(
    source: str, config: LLMConfig, exc: openai.OpenAIError, stats: CallStats
) -> LLMError:
    if isinstance(exc, openai.APIStatusError):
        kind = LLMTransportError if _is_transient(exc) else LLMRejectedError
        cause = f"endpoint answered HTTP {exc.status_code}: {_first_line(exc)}"
        return kind(source, cause, stats.usage, stats.attempts)
    tries = config.transport_retries + 1
    return LLMTransportError(
        source,
        f"endpoint {config.base_url} failed after {tries} tries: {_first_line(exc)}",
        stats.usage,
        stats.attempts,
    )


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
