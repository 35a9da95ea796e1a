"""The ``imr-extract`` command: a thin layer that parses options, calls the library, renders.

Exit codes: 0 every letter extracted; 1 some letters failed (each is named on stderr with its
cause, and the rest of the batch is still written); 2 usage errors (bad option, nothing to read).
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__, layouts
from .extract import Extractor, Outcome, extract_document, extract_one
from .ingest import PDF_ENGINES, iter_paths
from .llm.config import LLMMode
from .output import OutputFormat, make_writer
from .schema import Backend, Decision, Usage, json_schema_text

app = typer.Typer(
    name="imr-extract",
    help="Extract structured, verified records from California IMR final determination letters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imr-extract {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Extract structured, verified records from California IMR final determination letters."""


class BatchSummary:
    """Counts for the end-of-run summary."""

    def __init__(self) -> None:
        self.letters = 0
        self.failures: list[Outcome] = []
        self.items = 0
        self.decisions: Counter[str] = Counter()
        self.layouts: Counter[str] = Counter()
        self.warnings = 0
        self.usage = Usage()
        self.cost_usd: float | None = None
        self.attempts = 0

    def add(self, outcome: Outcome) -> None:
        self.letters += 1
        if outcome.record is None:
            self.failures.append(outcome)
            spent = getattr(outcome.error, "usage", None)
            if isinstance(spent, Usage):  # a failed model call still cost tokens
                self.usage = self.usage + spent
            return
        rec = outcome.record
        if not rec.extractor.cached:
            self.usage = self.usage + rec.extractor.usage
        self.attempts += rec.extractor.attempts
        if rec.extractor.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + rec.extractor.cost_usd
        self.items += len(rec.items)
        self.decisions.update(item.decision.value for item in rec.items)
        self.layouts[rec.layout] += 1
        self.warnings += len(rec.warnings)

    def table(self) -> Table:
        t = Table(title="imr-extract summary", show_header=False, title_justify="left")
        t.add_column("what")
        t.add_column("count", justify="right")
        t.add_row("letters", str(self.letters))
        t.add_row("extracted", str(self.letters - len(self.failures)))
        t.add_row("failed", str(len(self.failures)))
        t.add_row("items", str(self.items))
        t.add_row("upheld", str(self.decisions[Decision.UPHELD.value]))
        t.add_row("overturned", str(self.decisions[Decision.OVERTURNED.value]))
        t.add_row("warnings", str(self.warnings))
        if self.usage.requests or self.attempts:
            t.add_row("model requests", str(self.usage.requests))
            t.add_row("prompt tokens", str(self.usage.prompt_tokens))
            t.add_row("completion tokens", str(self.usage.completion_tokens))
            if self.cost_usd is not None:
                t.add_row("estimated cost (USD)", f"{self.cost_usd:.4f}")
        for name, n in sorted(self.layouts.items()):
            t.add_row(f"layout {name}", str(n))
        return t


def _open_out(stack: ExitStack, out: Path | None) -> TextIO:
    if out is None or str(out) == "-":
        return sys.stdout
    out.parent.mkdir(parents=True, exist_ok=True)
    return stack.enter_context(out.open("w", encoding="utf-8", newline=""))


def _llm_option(help_text: str) -> Any:
    return typer.Option(help=help_text, rich_help_panel="LLM")


@app.command()
def extract(
    paths: Annotated[
        list[str],
        typer.Argument(help="Letter files (.pdf, .txt), directories (read recursively), or '-'."),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write records here (default: stdout).")
    ] = None,
    fmt: Annotated[
        OutputFormat,
        typer.Option(
            "--format", "-f", help="jsonl: a record per line; json: an array; csv: a row per item."
        ),
    ] = OutputFormat.JSONL,
    errors_out: Annotated[
        Path | None,
        typer.Option("--errors", help="Also write one JSON line per failed letter to this file."),
    ] = None,
    pdf_engine: Annotated[
        str | None,
        typer.Option(
            help=f"PDF text engine: {', '.join(PDF_ENGINES)} (default: fastest available)."
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary/--no-summary", help="Summary at the end.")
    ] = True,
    backend: Annotated[
        Backend, typer.Option(help="rules: deterministic rules; llm: a language model.")
    ] = Backend.RULES,
    model: Annotated[str | None, _llm_option("Model name (env IMR_LLM_MODEL).")] = None,
    base_url: Annotated[
        str | None, _llm_option("OpenAI-compatible endpoint (env OPENAI_BASE_URL).")
    ] = None,
    mode: Annotated[
        LLMMode | None, _llm_option("How the schema is sent; auto picks per endpoint.")
    ] = None,
    max_tokens: Annotated[int | None, _llm_option("Longest answer per request.")] = None,
    max_reasks: Annotated[int | None, _llm_option("Re-asks after an invalid answer.")] = None,
    token_budget: Annotated[
        int | None, _llm_option("Tokens one letter may spend over all attempts.")
    ] = None,
    timeout: Annotated[float | None, _llm_option("Seconds per request.")] = None,
    cache: Annotated[
        bool,
        typer.Option("--cache/--no-cache", help="Reuse cached answers.", rich_help_panel="LLM"),
    ] = True,
    cache_dir: Annotated[Path | None, _llm_option("Answer cache (env IMR_CACHE_DIR).")] = None,
    verbatim_reask: Annotated[
        bool | None,
        typer.Option(
            "--verbatim-reask/--no-verbatim-reask",
            help="Re-ask when an item is not copied verbatim (costs more).",
            rich_help_panel="LLM",
        ),
    ] = None,
) -> None:
    """Extract records from letters, with the rules (default) or a language model.

    The LLM backend reads OPENAI_API_KEY from the environment (never from a flag).
    """
    if pdf_engine is not None and pdf_engine not in PDF_ENGINES:
        typer.echo(f"error: --pdf-engine must be one of {', '.join(PDF_ENGINES)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    extractor: Extractor = extract_document
    if backend is Backend.LLM:
        # instructor logs every failed attempt at ERROR; the CLI reports each failure itself.
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
        from .llm import LLMConfig, LLMExtractor

        config = LLMConfig.from_env(
            model=model,
            base_url=base_url,
            mode=mode,
            max_tokens=max_tokens,
            max_reasks=max_reasks,
            token_budget=token_budget,
            timeout_s=timeout,
            use_cache=cache,
            cache_dir=cache_dir,
            verbatim_reask=verbatim_reask,
        )
        extractor = LLMExtractor(config)
    files = list(iter_paths(paths))
    if not files:
        typer.echo(f"error: no letters (.pdf, .txt) found under {' '.join(paths)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    show_progress = err.is_terminal if progress is None else progress
    stats = BatchSummary()
    with ExitStack() as stack:
        writer = make_writer(fmt, _open_out(stack, out))
        errors = (
            stack.enter_context(errors_out.open("w", encoding="utf-8"))
            if errors_out is not None
            else None
        )
        bar = stack.enter_context(
            Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=not show_progress,
                transient=True,
            )
        )
        task = bar.add_task("extracting", total=len(files))
        for path in files:
            outcome = extract_one(path, pdf_engine, extractor)
            stats.add(outcome)
            if outcome.record is not None:
                writer.write(outcome.record)
            elif outcome.error is not None:
                typer.echo(f"error: {outcome.error}", err=True)
                if errors is not None:
                    errors.write(
                        json.dumps(
                            {
                                "letter": path,
                                "error": outcome.error.code,
                                "cause": outcome.error.cause,
                            }
                        )
                        + "\n"
                    )
            bar.advance(task)
        writer.close()
    if summary:
        err.print(stats.table())
    raise typer.Exit(EXIT_FAILURES if stats.failures else EXIT_OK)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of one output record."""
    text = json_schema_text()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


@app.command(name="layouts")
def list_layouts() -> None:
    """List the letter layouts imr-extract recognises."""
    t = Table("layout", "reader", "description")
    for layout in layouts.all_layouts():
        t.add_row(
            layout.name, "dedicated" if layout.dedicated_reader else "generic", layout.description
        )
    Console().print(t)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
