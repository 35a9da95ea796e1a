"""Which extractor, and which result key, a backend means: one answer for every caller.

Invariant: the CLI's ``extract`` and the service build their extractor, its ``ResultKey`` and the
run's recorded settings here and nowhere else, so a letter extracted by either is stored under
the same key (and one extracted by one is served from the store to the other).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .extract import Extractor, extract_document
from .limits import DEFAULT_LIMITS, Limits
from .llm.config import LLMMode
from .schema import Backend, schema_hash
from .store import ResultKey, code_version

#: The environment variable whose presence means a model is configured (hybrid becomes the
#: default). Only the project's own: a key or endpoint that other tools read
#: (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_MODEL``) never starts model calls alone.
MODEL_ENV = ("IMR_LLM_MODEL",)


def model_configured(model: str | None = None, base_url: str | None = None) -> bool:
    """Whether a model is named (by option or by ``IMR_LLM_MODEL``)."""
    return bool(model or base_url or any(os.environ.get(name) for name in MODEL_ENV))


def default_backend(model: str | None = None, base_url: str | None = None) -> Backend:
    """Hybrid when a model is configured, else the rules."""
    return Backend.HYBRID if model_configured(model, base_url) else Backend.RULES


def rules_key() -> ResultKey:
    """The result key of the rules (no prompt, no model)."""
    return ResultKey(Backend.RULES.value, schema_hash=schema_hash(), version=code_version())


@dataclass(frozen=True)
class ModelOptions:
    """The model settings a caller may give (None: the environment's, else the default)."""

    model: str | None = None
    base_url: str | None = None
    mode: LLMMode | None = None
    max_tokens: int | None = None
    max_reasks: int | None = None
    token_budget: int | None = None
    timeout: float | None = None
    cache: bool = True
    cache_dir: Path | None = None
    verbatim_reask: bool | None = None
    rpm: float | None = None
    tpm: float | None = None


@dataclass
class BuiltBackend:
    """An extractor ready to run, the key its results are stored under, and the settings a run
    records (never a key: ``LLMConfig.public``)."""

    backend: Backend
    extractor: Extractor
    key: ResultKey
    settings: dict[str, Any] = field(default_factory=dict)
    #: Whether the extractor calls a model (it then runs in threads of the calling process).
    uses_model: bool = False
    #: The model's settings (an ``LLMConfig``; None for the rules).
    config: Any = None


def build_backend(
    backend: Backend,
    limits: Limits = DEFAULT_LIMITS,
    options: ModelOptions | None = None,
    *,
    pdf_engine: str | None = None,
    quiet_instructor: bool = True,
) -> BuiltBackend:
    """The extractor and result key for ``backend`` (``rules``, ``llm`` or ``hybrid``).

    ``quiet_instructor``: instructor logs every failed attempt at ERROR; callers that report
    each failure themselves silence it.

    Raises:
        ValueError: ``external`` (records made elsewhere are verified, not extracted).
    """
    if backend is Backend.EXTERNAL:
        raise ValueError("the external backend is for records made elsewhere: see `verify`")
    options = options or ModelOptions()
    settings: dict[str, Any] = {"backend": backend.value, "pdf_engine": pdf_engine}
    if limits != DEFAULT_LIMITS:
        settings["limits"] = {
            k: v for k, v in vars(limits).items() if v != getattr(DEFAULT_LIMITS, k)
        }
    key = rules_key()
    if backend is Backend.RULES:
        extractor: Extractor = functools.partial(extract_document, limits=limits)
        return BuiltBackend(backend, extractor, key, settings)
    if quiet_instructor:
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
    from .hybrid import HybridExtractor
    from .llm import LLMConfig, LLMExtractor
    from .runner import RateLimitedLLM, RateLimiter  # imports openai: only when a model is used

    o = options
    config = LLMConfig.from_env(
        model=o.model,
        base_url=o.base_url,
        mode=o.mode,
        max_tokens=o.max_tokens,
        max_reasks=o.max_reasks,
        token_budget=o.token_budget,
        timeout_s=o.timeout,
        # A letter's model calls end by the letter's wall clock too (threads cannot be
        # killed: the client stops its own tries at this deadline).
        letter_seconds=limits.letter_seconds,
        use_cache=o.cache,
        cache_dir=o.cache_dir,
        verbatim_reask=o.verbatim_reask,
    )
    llm = (
        RateLimitedLLM(config, RateLimiter(o.rpm, o.tpm))
        if o.rpm or o.tpm
        else LLMExtractor(config)
    )
    extractor = HybridExtractor(llm) if backend is Backend.HYBRID else llm
    key = ResultKey(backend.value, llm.prompt_ref, config.model, key.schema_hash, key.version)
    settings.update(llm=config.public(), rpm=o.rpm, tpm=o.tpm, cache=o.cache)
    return BuiltBackend(backend, extractor, key, settings, uses_model=True, config=config)
