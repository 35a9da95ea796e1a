"""LLM settings: one frozen object, resolved as flag > environment > default.

The API key is read from the environment only (``OPENAI_API_KEY``, or the variable named by
``api_key_env``) and is never serialised: ``LLMConfig`` keeps it out of repr and dumps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlparse

from ..limits import DEFAULT_LIMITS
from ..redact import register_secret

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"


class LLMMode(StrEnum):
    """How the schema is conveyed to the model (instructor's modes)."""

    AUTO = "auto"  # chosen per endpoint, see resolve_mode
    TOOLS = "tools"
    JSON = "json"
    JSON_SCHEMA = "json_schema"
    MD_JSON = "md_json"


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    prompt: float
    completion: float


#: Known list prices (USD / 1M tokens). Local models cost nothing; unknown models get no estimate.
PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imr-extract" / "llm"


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    mode: LLMMode = LLMMode.AUTO
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 2048  # per answer; an answer cut off here fails fast, it is not re-asked
    #: Seconds per HTTP attempt, end to end: connect, send and the whole body (``--timeout``).
    timeout_s: float = 300.0
    #: Seconds for all of one letter's model calls: every part, transport retry, wait and
    #: re-ask together (``limits.Limits.letter_seconds``; 0 for none). A Retry-After past it
    #: fails at once.
    letter_seconds: float = DEFAULT_LIMITS.letter_seconds
    #: Validation re-asks after the first answer (instructor's max_retries).
    max_reasks: int = 1
    #: Transport retries per request (connection errors, timeouts, 429, 5xx).
    transport_retries: int = 3
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    #: Per-letter token budget over all requests and attempts; None for no limit.
    token_budget: int | None = 60_000
    #: Characters of letter text per request; longer letters are split by item sections.
    max_chunk_chars: int = 9_000
    #: Re-ask when an item's request is not verbatim in the letter (costs a full answer each).
    verbatim_reask: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)
    use_cache: bool = True
    prices: dict[str, Price] = field(default_factory=lambda: dict(PRICES))

    def __post_init__(self) -> None:
        register_secret(self.api_key)  # masked wherever it appears (redact.redact)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> LLMConfig:
        """Settings from the environment, with explicit (non-None) overrides taking precedence.

        ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``IMR_LLM_MODEL`` (or ``OPENAI_MODEL``),
        ``IMR_LLM_MODE``, ``IMR_LLM_MAX_REASKS``, ``IMR_CACHE_DIR`` (the service has no model
        flags: these configure its model).
        """
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        if env.get("OPENAI_BASE_URL"):
            values["base_url"] = env["OPENAI_BASE_URL"]
        model = env.get("IMR_LLM_MODEL") or env.get("OPENAI_MODEL")
        if model:
            values["model"] = model
        if env.get("IMR_LLM_MODE"):
            values["mode"] = LLMMode(env["IMR_LLM_MODE"])
        if env.get("IMR_LLM_MAX_REASKS"):
            values["max_reasks"] = int(env["IMR_LLM_MAX_REASKS"])
        if env.get("IMR_CACHE_DIR"):
            values["cache_dir"] = Path(env["IMR_CACHE_DIR"])
        if env.get("OPENAI_API_KEY"):
            values["api_key"] = env["OPENAI_API_KEY"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "mode" in values and not isinstance(values["mode"], LLMMode):
            values["mode"] = LLMMode(str(values["mode"]))
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> LLMConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_openai(self) -> bool:
        return (urlparse(self.base_url).hostname or "").endswith("api.openai.com")

    def resolve_mode(self) -> LLMMode:
        """AUTO: tools on OpenAI; prompt-only MD_JSON elsewhere.

        Local llama.cpp servers reject OpenAI's json_schema response format, and grammar-forced
        output made small local models split multi-part item names; asking for JSON in the
        prompt (MD_JSON) works on llama.cpp, vLLM and Ollama alike.
        """
        if self.mode is not LLMMode.AUTO:
            return self.mode
        return LLMMode.TOOLS if self.is_openai else LLMMode.MD_JSON

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.prices.get(self.model)
        if price is None:
            return None
        return (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1e6

    def public(self) -> dict[str, object]:
        """Settings safe to log or store: never the key."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "mode": self.resolve_mode().value,
            "max_tokens": self.max_tokens,
            "max_reasks": self.max_reasks,
            "token_budget": self.token_budget,
        }
