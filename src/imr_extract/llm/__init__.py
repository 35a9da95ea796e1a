"""LLM extraction: an OpenAI-compatible model fills the schema; every value is then located.

from imr_extract.llm import LLMConfig, LLMExtractor
extractor = LLMExtractor(LLMConfig.from_env(model="gpt-4o-mini"))
record = extractor(read_path("letter.pdf"))
"""

from ..errors import (
    LLMBudgetError,
    LLMError,
    LLMRejectedError,
    LLMTransportError,
    LLMTruncatedError,
    LLMValidationError,
)
from .config import LLMConfig, LLMMode
from .extract import LLMExtractor

__all__ = [
    "LLMBudgetError",
    "LLMConfig",
    "LLMError",
    "LLMExtractor",
    "LLMMode",
    "LLMRejectedError",
    "LLMTransportError",
    "LLMTruncatedError",
    "LLMValidationError",
]
