"""The LLM pipeline: ``Document`` -> model answers (per region) -> located values -> record."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import openai

from .. import layouts
from ..assemble import refuse_several_letters, verified_record
from ..errors import NoDecisionsError
from ..ingest import Document
from ..rules import LetterFound
from ..schema import Backend, ExtractorInfo, LetterRecord, Method, Usage, schema_hash
from . import prompts
from .cache import AnswerCache, cache_key
from .chunking import plan_regions
from .client import CallStats, LLMBudgetError, LLMError, structured_call
from .config import LLMConfig
from .deadline import Deadline
from .response import LLMLetter, VerbatimLLMLetter, salvage_raw, to_letter_found


@functools.cache
def response_schema_hash() -> str:
    blob = json.dumps(LLMLetter.model_json_schema(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class LLMRun:
    """What one letter cost, for the record and the run summary."""

    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    chunks: int = 0
    cached_chunks: int = 0
    #: All of the letter's model calls (every part) end by this (``LLMConfig.letter_seconds``).
    deadline: Deadline = field(default_factory=lambda: Deadline.after(0))


class LLMExtractor:
    """Callable ``Document -> LetterRecord`` backed by a model (see ``LLMConfig``)."""

    def __init__(self, config: LLMConfig, client: openai.OpenAI | None = None) -> None:
        self.config = config
        self.client = client
        self.system = prompts.load(prompts.SYSTEM)
        self.task = prompts.load(prompts.EXTRACT_LETTER)
        self.prompt_hash = prompts.prompt_set_hash(self.system, self.task)
        self.cache = AnswerCache(config.cache_dir) if config.use_cache else None

    @property
    def prompt_ref(self) -> str:
        return f"{self.task.name}@{self.prompt_hash}"

    def messages(self, text: str, part: int, parts: int) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system.render()},
            {"role": "user", "content": self.task.render(letter=text, part=part, parts=parts)},
        ]

    def _key(self, doc: Document, region: tuple[int, int]) -> str:
        return cache_key(
            text=hashlib.sha256(doc.text.encode()).hexdigest(),
            region=region,
            prompt=self.prompt_hash,
            model=self.config.model,
            base_url=self.config.base_url,
            mode=self.config.resolve_mode().value,
            response_schema=response_schema_hash(),
            max_tokens=self.config.max_tokens,
            verbatim=self.config.verbatim_reask,
        )

    def _answer(
        self, doc: Document, region: tuple[int, int], part: int, parts: int, run: LLMRun
    ) -> LLMLetter:
        key = self._key(doc, region)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                run.cached_chunks += 1
                # Report what the answer cost when it was made; ``cached`` says it cost nothing now.
                run.usage = run.usage + hit.usage
                run.attempts += hit.attempts
                return LLMLetter.from_cache(hit.answer)
        config = self.config
        if config.token_budget is not None:
            remaining = config.token_budget - run.usage.total_tokens
            if remaining <= 0:
                raise LLMBudgetError(
                    doc.path or doc.name,
                    f"token budget of {config.token_budget} spent before part {part} of {parts}",
                    run.usage,
                    run.attempts,
                )
            config = config.with_(token_budget=remaining)
        model = VerbatimLLMLetter if config.verbatim_reask else LLMLetter
        answer, stats = self.call(doc, config, region, part, parts, run, model, self.client)
        if self.cache is not None:
            self.cache.put(key, answer.to_cache(), stats.usage, stats.attempts)
        return answer

    def call(
        self,
        doc: Document,
        config: LLMConfig,
        region: tuple[int, int],
        part: int,
        parts: int,
        run: LLMRun,
        model: type[LLMLetter],
        client: openai.OpenAI | None,
    ) -> tuple[LLMLetter, CallStats]:
        """One structured call for ``region``, its cost added to ``run`` whatever its outcome."""
        stats = CallStats()
        part_text = doc.text[region[0] : region[1]]
        context = {"letter": part_text}
        try:
            answer, stats = structured_call(
                doc.path or doc.name,
                config,
                self.messages(part_text, part, parts),
                model,
                client=client,
                context=context,
                stats=stats,
                deadline=run.deadline,
                salvage=lambda raw: salvage_raw(model, raw, context),
            )
        except LLMError as exc:
            # The error reports what the whole letter cost, earlier parts included.
            run.usage = run.usage + stats.usage
            run.attempts += stats.attempts
            exc.usage, exc.attempts = run.usage, run.attempts
            raise
        run.usage = run.usage + stats.usage
        run.attempts += stats.attempts
        return answer, stats

    def found(self, doc: Document) -> tuple[LetterFound, LLMRun]:
        """Ask the model about the whole of ``doc`` (in parts if long); locate what it says."""
        regions = plan_regions(doc.text, self.config.max_chunk_chars)
        found, run = self.found_in(doc, regions)
        if len(regions) > 1:
            found.warnings.append(f"long letter: read in {len(regions)} parts")
        return found, run

    def found_in(self, doc: Document, regions: list[tuple[int, int]]) -> tuple[LetterFound, LLMRun]:
        """Ask the model about each of ``regions`` of ``doc`` in turn; locate what it says.

        Letter-level values come from the first region that states them; items from all.
        """
        run = LLMRun(chunks=len(regions), deadline=Deadline.after(self.config.letter_seconds))
        merged: LetterFound | None = None
        for part, region in enumerate(regions, start=1):
            answer = self._answer(doc, region, part, len(regions), run)
            found = to_letter_found(answer, doc.text, self.prompt_ref, region)
            if merged is None:
                merged = found
            else:
                _fill_letter_fields(merged, found)
                merged.items.extend(found.items)
        assert merged is not None, "no regions to read"
        return merged, run

    def info(self, run: LLMRun, backend: Backend = Backend.LLM, **extra: Any) -> ExtractorInfo:
        return ExtractorInfo(
            backend=backend,
            schema_hash=schema_hash(),
            model=self.config.model,
            mode=self.config.resolve_mode().value,
            prompt=self.prompt_ref,
            attempts=run.attempts,
            chunks=run.chunks,
            usage=run.usage,
            cost_usd=self.config.cost_usd(run.usage.prompt_tokens, run.usage.completion_tokens),
            cached=run.cached_chunks == run.chunks,
            **extra,
        )

    def __call__(self, doc: Document) -> LetterRecord:
        refuse_several_letters(doc)
        layout, _ = layouts.detect(doc.text)
        found, run = self.found(doc)
        if not found.items:
            err = NoDecisionsError(doc.path or doc.name, "the model found no decisions")
            err.usage = run.usage  # the answer still cost tokens: the run summary counts them
            raise err
        info = self.info(run)
        return verified_record(doc, layout.name, found, Method.LLM, info)


def _fill_letter_fields(into: LetterFound, found: LetterFound) -> None:
    """Letter-level values ``into`` lacks, from a later part."""
    if into.case_number is None:
        into.case_number = found.case_number
    if into.priority is None:
        into.priority = found.priority
    for name, value in found.dates.items():
        into.dates.setdefault(name, value)
    if into.reviewer.empty():
        into.reviewer = found.reviewer
    if into.patient.age is None:
        into.patient.age = found.patient.age
    if into.patient.sex is None:
        into.patient.sex = found.patient.sex
