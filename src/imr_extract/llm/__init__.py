"""LLM extraction: an OpenAI-compatible model fills the schema; every value is then located.

from imr_extract.llm import LLMConfig, LLMExtractor
extractor = LLMExtractor(LLMConfig.from_env(model="gpt-4o-mini"))
record = extractor(read_path("letter.pdf"))
"""

from typing import TYPE_CHECKING, Any

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
from .config import LLMConfig, LLMMode

if TYPE_CHECKING:
    from .extract import LLMExtractor


def __getattr__(name: str) -> Any:
    # The extractor pulls in openai and instructor (most of a second): only on first use, so
    # the rules path and the CLI's start-up do not pay for a model they may never call.
    if name == "LLMExtractor":
        from .extract import LLMExtractor

        return LLMExtractor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LLMBadResponseError",
    "LLMBudgetError",
    "LLMConfig",
    "LLMDeadlineError",
    "LLMError",
    "LLMExtractor",
    "LLMMode",
    "LLMRejectedError",
    "LLMTransportError",
    "LLMTruncatedError",
    "LLMValidationError",
]
