"""Prompts are Jinja2 files in ``prompts/``, rendered with strict undefined variables.

Each rendered prompt is identified as ``name@hash`` (hash of the template source), recorded on
every LLM result, in cache keys and in cassette metadata, so a changed prompt is never mistaken
for the one that produced an old answer.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

SYSTEM = "system"
EXTRACT_LETTER = "extract_letter"


def prompts_dir() -> Path:
    """``IMR_PROMPTS_DIR``, else the copy bundled in a wheel, else the repo's ``prompts/``."""
    env = os.environ.get("IMR_PROMPTS_DIR")
    if env:
        return Path(env)
    bundled = Path(__file__).resolve().parents[1] / "prompts"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parents[3] / "prompts"


@dataclass(frozen=True)
class Prompt:
    name: str
    source: str
    template: jinja2.Template

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.hash}"

    def render(self, **variables: object) -> str:
        return self.template.render(**variables).strip() + "\n"


@cache
def _env(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, not an empty string
        keep_trailing_newline=True,
        autoescape=False,
    )


def load(name: str, directory: Path | None = None) -> Prompt:
    directory = directory or prompts_dir()
    path = directory / f"{name}.j2"
    source = path.read_text(encoding="utf-8")
    return Prompt(name, source, _env(str(directory)).get_template(f"{name}.j2"))


def prompt_set_hash(*prompts: Prompt) -> str:
    """One hash over several prompts (the system prompt and the task prompt)."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.ref.encode())
    return h.hexdigest()[:12]
