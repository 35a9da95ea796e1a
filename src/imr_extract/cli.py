"""The ``imr-extract`` command: a thin layer that parses options, calls the library, renders.

Exit codes: 0 every letter extracted; 1 some letters failed (each is named on stderr with its
cause, and the rest of the batch is still written); 2 usage errors (bad option, nothing to read).
"""

from __future__ import annotations

import json
import logging
import os
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
        self.status: Counter[str] = Counter()
        self.novel = 0
        self.routed: Counter[str] = Counter()
        self.model_errors = 0

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
        v = rec.verification
        if v is not None:
            self.status.update(verified=v.verified, unverified=v.unverified)
            self.status.update(contradicted=v.contradicted)
            self.novel += v.novel_layout
        if rec.extractor.routed is not None:
            self.routed[rec.extractor.routed] += 1
        self.model_errors += rec.extractor.model_error is not None

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
        for status in ("verified", "unverified", "contradicted"):
            t.add_row(f"values {status}", str(self.status[status]))
        t.add_row("novel layouts", str(self.novel))
        for route, n in sorted(self.routed.items()):
            t.add_row(f"sent to the model: {route}", str(n))
        if self.model_errors:
            t.add_row("model failed (rules kept)", str(self.model_errors))
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


#: Environment variables whose presence means a model is configured (hybrid becomes the default).
MODEL_ENV = ("IMR_LLM_MODEL", "OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY")


def model_configured(model: str | None, base_url: str | None) -> bool:
    return bool(model or base_url or any(os.environ.get(name) for name in MODEL_ENV))


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
        Backend | None,
        typer.Option(
            help="rules: deterministic rules; llm: a language model; hybrid: rules, and the model "
            "only for what they cannot verify. Default: hybrid when a model is configured "
            "(--model/--base-url, IMR_LLM_MODEL, OPENAI_MODEL, OPENAI_BASE_URL or "
            "OPENAI_API_KEY), else rules."
        ),
    ] = None,
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
    if backend is None:
        backend = Backend.HYBRID if model_configured(model, base_url) else Backend.RULES
    if backend is not Backend.RULES:
        # instructor logs every failed attempt at ERROR; the CLI reports each failure itself.
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
        from .hybrid import HybridExtractor
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
        llm = LLMExtractor(config)
        extractor = HybridExtractor(llm) if backend is Backend.HYBRID else llm
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


_REPORT_FORMATS = ("table", "json", "csv")
_RESULT_SUFFIXES = (".jsonl", ".json", ".ndjson")


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def _report_format(fmt: str) -> Any:
    from .reporting import ReportFormat

    if fmt not in _REPORT_FORMATS:
        raise _usage_error(f"--format must be one of {', '.join(_REPORT_FORMATS)}, not {fmt!r}")
    return ReportFormat(fmt)


_FORMAT_HELP = "table: for people; json: everything; csv: one row per field."


@app.command(name="eval")
def eval_command(
    results: Annotated[
        list[str],
        typer.Argument(help="Result files written by `extract` (JSON Lines or JSON), or '-'."),
    ],
    gold: Annotated[
        Path, typer.Option("--gold", help="Directory of gold files, one <letter stem>.json each.")
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help=_FORMAT_HELP)] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report here (default: stdout).")
    ] = None,
    score_missing: Annotated[
        bool,
        typer.Option(
            "--score-missing/--skip-missing",
            help="Count gold letters without a result as all-FN (default: list them only).",
        ),
    ] = False,
    limit: Annotated[int, typer.Option(help="Misses listed in the table.")] = 50,
) -> None:
    """Score results against gold: precision, recall and F1 per field, item scores, misses."""
    from .evaluate import evaluate
    from .fields import RecordsError, load_records
    from .reporting import write_report

    report_format = _report_format(fmt)
    try:
        records = [r for path in results for r in load_records(path)]
        report = evaluate(records, gold, score_missing=score_missing)
    except RecordsError as exc:
        raise _usage_error(str(exc)) from None
    with ExitStack() as stack:
        write_report(report, report_format, _open_out(stack, out), limit=limit)


@app.command(name="compare")
def compare_command(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Two result files (.jsonl, .json) to compare, or letters (.pdf, .txt, "
            "directories) to read with both the rules and the LLM."
        ),
    ] = None,
    left: Annotated[Path | None, typer.Option("--left", help="Left-hand result file.")] = None,
    right: Annotated[Path | None, typer.Option("--right", help="Right-hand result file.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=_FORMAT_HELP)] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report here (default: stdout).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Disagreements listed in the table.")] = 50,
    pdf_engine: Annotated[
        str | None, typer.Option(help=f"PDF text engine: {', '.join(PDF_ENGINES)}.")
    ] = None,
    model: Annotated[str | None, _llm_option("Model name (env IMR_LLM_MODEL).")] = None,
    base_url: Annotated[
        str | None, _llm_option("OpenAI-compatible endpoint (env OPENAI_BASE_URL).")
    ] = None,
    mode: Annotated[
        LLMMode | None, _llm_option("How the schema is sent; auto picks per endpoint.")
    ] = None,
    max_tokens: Annotated[int | None, _llm_option("Longest answer per request.")] = None,
    timeout: Annotated[float | None, _llm_option("Seconds per request.")] = None,
    cache: Annotated[
        bool,
        typer.Option("--cache/--no-cache", help="Reuse cached answers.", rich_help_panel="LLM"),
    ] = True,
    cache_dir: Annotated[Path | None, _llm_option("Answer cache (env IMR_CACHE_DIR).")] = None,
) -> None:
    """Compare two extractions: per-field agreement, decision kappa, every disagreement.

    Two result files (PATHS or --left/--right) are compared as they are.

    Letters are read with the rules (left) and the language model (right) first.

    Exit code 1: a letter failed with one of them (named on stderr); the rest is still compared.
    """
    from .compare import compare
    from .fields import RecordsError, load_records
    from .reporting import write_report

    report_format = _report_format(fmt)
    paths = paths or []
    if (left is None) != (right is None):
        raise _usage_error("--left and --right go together")
    is_results = [Path(p).suffix.lower() in _RESULT_SUFFIXES for p in paths]
    failed = 0
    try:
        if left is not None and right is not None:
            if paths:
                raise _usage_error("give either PATHS or --left/--right, not both")
            sides = [(str(left), load_records(left)), (str(right), load_records(right))]
        elif len(paths) == 2 and all(is_results):
            sides = [(p, load_records(p)) for p in paths]
        elif any(is_results):
            raise _usage_error(
                "PATHS must be exactly two result files (.jsonl, .json) or only letters"
            )
        elif not paths:
            raise _usage_error("nothing to compare: give two result files or letters")
        else:
            if pdf_engine is not None and pdf_engine not in PDF_ENGINES:
                raise _usage_error(f"--pdf-engine must be one of {', '.join(PDF_ENGINES)}")
            files = list(iter_paths(paths))
            if not files:
                raise _usage_error(f"no letters (.pdf, .txt) found under {' '.join(paths)}")
            if "-" in files:
                raise _usage_error("compare reads each letter twice: standard input cannot be used")
            from .extract import extract_many
            from .llm import LLMConfig, LLMExtractor

            logging.getLogger("instructor").setLevel(logging.CRITICAL)
            config = LLMConfig.from_env(
                model=model,
                base_url=base_url,
                mode=mode,
                max_tokens=max_tokens,
                timeout_s=timeout,
                use_cache=cache,
                cache_dir=cache_dir,
            )
            sides = []
            for name, extractor in (("rules", extract_document), ("llm", LLMExtractor(config))):
                records = []
                for outcome in extract_many(files, pdf_engine, extractor):
                    if outcome.record is not None:
                        records.append(outcome.record)
                    else:
                        failed += 1
                        typer.echo(f"error: {name}: {outcome.error}", err=True)
                sides.append((name, records))
        (left_name, left_records), (right_name, right_records) = sides
        comparison = compare(
            left_records, right_records, left_name=left_name, right_name=right_name
        )
    except RecordsError as exc:
        raise _usage_error(str(exc)) from None
    with ExitStack() as stack:
        write_report(comparison, report_format, _open_out(stack, out), limit=limit)
    raise typer.Exit(EXIT_FAILURES if failed else EXIT_OK)


@app.command()
def review(
    letter: Annotated[str, typer.Argument(help="The letter to review (.pdf, .txt, or '-').")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the page here (default: <letter stem>.review.html in this directory).",
        ),
    ] = None,
    results: Annotated[
        list[Path] | None,
        typer.Option(
            "--results",
            help="Records from `extract` (JSONL or JSON) to show beside the rules; those for "
            "this letter (same sha256) are used, labelled by their backend. Repeatable.",
        ),
    ] = None,
    pdf_engine: Annotated[
        str | None,
        typer.Option(help=f"PDF text engine: {', '.join(PDF_ENGINES)} (default: fastest)."),
    ] = None,
    llm: Annotated[
        bool | None,
        typer.Option(
            "--llm/--no-llm",
            help="Also run the model (whole letter) and the hybrid backend. Default: when a "
            "model is configured (as for `extract`).",
            rich_help_panel="LLM",
        ),
    ] = None,
    model: Annotated[str | None, _llm_option("Model name (env IMR_LLM_MODEL).")] = None,
    base_url: Annotated[
        str | None, _llm_option("OpenAI-compatible endpoint (env OPENAI_BASE_URL).")
    ] = None,
    mode: Annotated[LLMMode | None, _llm_option("How the schema is sent.")] = None,
    timeout: Annotated[float | None, _llm_option("Seconds per request.")] = None,
) -> None:
    """Write one self-contained HTML page to check a letter's records against its text.

    The letter is extracted with the rules (and, with a model configured, with the model and
    the hybrid backend, side by side); --results adds other records for it.
    """
    from .errors import ImrExtractError
    from .ingest import read_path
    from .review import label_records, load_results, write_review
    from .schema import LetterRecord

    if pdf_engine is not None and pdf_engine not in PDF_ENGINES:
        typer.echo(f"error: --pdf-engine must be one of {', '.join(PDF_ENGINES)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        doc = read_path(letter, pdf_engine=pdf_engine)
    except ImrExtractError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    found: list[tuple[str, LetterRecord]] = []
    if llm if llm is not None else model_configured(model, base_url):
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
        from .hybrid import HybridExtractor
        from .llm import LLMConfig, LLMExtractor

        config = LLMConfig.from_env(model=model, base_url=base_url, mode=mode, timeout_s=timeout)
        # The answer cache lets the hybrid reuse the model's answer instead of asking again.
        model_reader = LLMExtractor(config)
        for label, extractor in (
            ("hybrid", HybridExtractor(model_reader)),
            ("llm", model_reader),
        ):
            try:
                found.append((label, extractor(doc)))
            except ImrExtractError as exc:
                typer.echo(f"warning: {label}: {exc}", err=True)
    try:
        found.append(("rules", extract_document(doc)))
    except ImrExtractError as exc:
        typer.echo(f"warning: rules: {exc}", err=True)
    for path in results or []:
        try:
            records = load_results(path)
        except ImrExtractError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        mine = [r for r in records if r.source.sha256 == doc.sha256]
        if not mine:
            other = sum(r.letter == doc.name for r in records)
            why = f" ({other} for another file of that name)" if other else ""
            typer.echo(f"warning: {path}: no record for {letter}{why}", err=True)
        found.extend((r.extractor.backend.value, r) for r in mine)
    if not found:
        typer.echo(f"error: {letter}: nothing to review (no record for this letter)", err=True)
        raise typer.Exit(EXIT_FAILURES)
    stem = Path(doc.name).stem if doc.path else "stdin"
    target = out if out is not None else Path.cwd() / f"{stem}.review.html"
    try:
        write_review(doc, label_records(found), target)
    except OSError as exc:
        typer.echo(f"error: {target}: cannot write ({exc.strerror or exc})", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(str(target))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
