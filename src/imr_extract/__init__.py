"""imr-extract: California IMR final determination letters -> strict, verified records.

Library first; the ``imr-extract`` CLI is a thin layer over these functions::

    from imr_extract import extract_path
    record = extract_path("CM16-0231706.pdf")
    record.items[0].decision  # Decision.UPHELD

    from imr_extract import verify_external  # another tool's record, checked against its letter
    checked = verify_external({"letter": "CM16-0231706.pdf", "items": [...]}, "CM16-0231706.pdf")
"""

from .errors import ImrExtractError
from .extract import Outcome, extract_document, extract_many, extract_path, extract_text
from .ingest import Document, read_path
from .schema import LetterRecord
from .verify import verify_external, verify_records

__version__ = "0.1.0"

__all__ = [
    "Document",
    "ImrExtractError",
    "LetterRecord",
    "Outcome",
    "__version__",
    "extract_document",
    "extract_many",
    "extract_path",
    "extract_text",
    "read_path",
    "verify_external",
    "verify_records",
]
