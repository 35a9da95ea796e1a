"""The OpenAPI document of the service, as checked into ``schemas/openapi.json``.

Invariant: ``openapi_text()`` is made from the app's routes and models alone (no server, no
store is started), so the checked-in document can be compared with it in a test.

Regenerate: ``python -m imr_extract.service.openapi schemas/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .app import create_app
from .settings import Settings


def openapi_text() -> str:
    document = create_app(Settings(letter_workers=1)).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    text = openapi_text()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
