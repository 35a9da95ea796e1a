"""One error tree. Every error names the file it is about and a cause a person can act on.

The CLI turns any ``ImrExtractError`` into a per-file failure line and carries on with the batch;
anything else escaping the library is a bug in imr-extract.

A cause is often built from what an endpoint or a library said (an error body, an exception's
text, a URL): it is redacted (``redact.redact``) where the error is made, so no error carries a
key into a line, a row or a record.
"""

from __future__ import annotations

from .redact import redact
from .schema import Usage


class ImrExtractError(Exception):
    """Root of every error imr-extract raises on purpose."""

    #: A short machine-readable tag for summaries and error records.
    code = "error"

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = redact(cause)
        super().__init__(f"{source}: {self.cause}")

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle by (source, cause): errors cross process boundaries in a batch with --workers.
        return (type(self), (self.source, self.cause))


class InputError(ImrExtractError):
    """The file cannot be read as a letter at all."""

    code = "input"


class EmptyInputError(InputError):
    code = "empty"


class BinaryInputError(InputError):
    code = "binary"


class EncodingInputError(InputError):
    code = "encoding"


class TooLargeInputError(InputError):
    """Far larger than any letter: refused before it is read (see ``ingest.MAX_*_BYTES``)."""

    code = "too-large"


class PdfError(InputError):
    """Corrupt, truncated or password-protected PDF."""

    code = "pdf"


class NoTextLayerError(InputError):
    """A PDF with pages but no extractable text: a scan that needs OCR first."""

    code = "no-text"


class ExtractionError(ImrExtractError):
    """The text was read but is not a letter the extractor can use."""

    code = "extraction"


class NoDecisionsError(ExtractionError):
    code = "no-decisions"

    #: What a model's answer that found no decision cost (None when no model was asked): the
    #: run summary counts it. Set by the extractor that raises; not carried across processes.
    usage: Usage | None = None


class SeveralLettersError(ExtractionError):
    """The text holds more than one letter (files pasted together): one record would hold
    another letter's items, so it is refused; split it into one file per letter."""

    code = "several-letters"


class InternalError(ImrExtractError):
    """An unexpected exception while extracting one letter (a bug in imr-extract): the batch
    runner reports it for that letter and goes on."""

    code = "internal"


class LLMError(ExtractionError):
    """The model could not produce a usable answer; carries what it cost."""

    code = "llm"

    def __init__(
        self, source: str, cause: str, usage: Usage | None = None, attempts: int = 0
    ) -> None:
        super().__init__(source, cause)
        self.usage = usage or Usage()
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.source, self.cause, self.usage, self.attempts))


class LLMTransportError(LLMError):
    code = "llm-transport"


class LLMTruncatedError(LLMError):
    code = "llm-truncated"


class LLMValidationError(LLMError):
    code = "llm-invalid"


class LLMBudgetError(LLMError):
    code = "llm-budget"


class LLMRejectedError(LLMError):
    """The endpoint refused the request itself (4xx other than 429): retrying cannot help."""

    code = "llm-rejected"


# --------------------------------------------------------------------------- limits (limits.py)


class LimitError(ImrExtractError):
    """A letter went past one of the configured limits (``limits.Limits``): refused, not read."""

    code = "limit"


class TooManyPagesError(LimitError, InputError):
    code = "too-many-pages"


class TooMuchTextError(LimitError, InputError):
    code = "too-much-text"


class TooManyItemsError(LimitError, ExtractionError):
    code = "too-many-items"


class LetterTimeoutError(LimitError):
    """The letter took longer than its wall-clock allowance (``--letter-timeout``)."""

    code = "timeout"


class OutOfMemoryError(LimitError):
    """The worker reading the letter ran out of its memory allowance (``--worker-memory``)."""

    code = "out-of-memory"


class WorkerCrashedError(ImrExtractError):
    """The process reading the letter died (a parser crash, an abort, a kill): that letter is
    lost to this run, the batch goes on."""

    code = "worker-crashed"


class PageUnreadableError(PdfError):
    """A page of the PDF could not be parsed: the letter is refused rather than read short."""

    code = "page-unreadable"
