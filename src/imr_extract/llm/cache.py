"""On-disk answer cache: a re-run of the same letter, prompt, model and schema costs nothing.

Keyed by (letter text hash, region, prompt set hash, model, mode, schema hashes); one JSON file per
answer, written atomically so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..schema import Usage


@dataclass(frozen=True)
class CachedAnswer:
    answer: dict[str, Any]
    usage: Usage
    attempts: int


def cache_key(**parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class AnswerCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            return CachedAnswer(
                answer=data["answer"],
                usage=Usage.model_validate(data["usage"]),
                attempts=int(data["attempts"]),
            )
        except (OSError, ValueError, KeyError):
            return None  # missing or unreadable: ask the model again

    def put(self, key: str, answer: dict[str, Any], usage: Usage, attempts: int) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"answer": answer, "usage": usage.model_dump(), "attempts": attempts}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f)
        os.replace(tmp, path)
