"""The ``imr-extract`` command: a thin layer that parses options, calls the library, renders.

Exit codes: 0 every letter extracted; 1 some letters failed (each is named on stderr with its
cause, and the rest of the batch is still written); 2 usage errors (bad option, nothing to read);
3 ``batch collect --no-wait``: not ended yet; 4 an output file cannot be written; 5 the run store
cannot be used; 6 the run is running in another process. Every problem with a file is one line
on stderr naming the file and the cause, and no output file is emptied before every one of them
(and the run store) is known to be usable.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import sys
import time
import traceback
import typing
from collections import Counter
from contextlib import ExitStack, chdir
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from . import __version__, layouts
from .backends import ModelOptions, build_backend, default_backend, model_configured
from .errors import ImrExtractError
from .extract import Outcome, extract_document
from .ingest import PDF_ENGINES, iter_paths
from .limits import DEFAULT_LIMITS, Limits
from .llm.config import LLMConfig as _Defaults
from .llm.config import LLMMode
from .names import escape_name
from .output import (
    SUFFIX_FORMATS,
    ExportFormat,
    JsonlWriter,
    OutputError,
    OutputFiles,
    OutputFormat,
    View,
    format_for,
    make_parent,
    make_writer,
    stdout_stream,
)
from .redact import redact
from .schema import Backend, Decision, json_schema_text
from .store import DEFAULT_STORE, RecordRow, StoreUnusableError
from .verify.external import FITS_SCHEMA, ExternalOutcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .fields import RecordLike
    from .runner import BatchOutcome
    from .runs import RunSummary


class _Commands(TyperGroup):
    """Every command: an output file or a run store that fails is one line naming the file and
    the cause, with its exit code (the commands handle what they expect; this is the net)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        plain_help(self)

    def invoke(self, ctx: Any) -> Any:  # a typer (click) Context
        try:
            return super().invoke(ctx)
        except OutputError as exc:
            raise _file_error(exc, EXIT_OUTPUT) from None
        except StoreUnusableError as exc:
            raise _file_error(exc, EXIT_STORE) from None


app = typer.Typer(
    cls=_Commands,
    name="imr-extract",
    help="Extract structured, verified records from California IMR final determination letters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
#: (3, ``EXIT_PENDING``: ``batch collect --no-wait`` on a batch that has not ended; see below.)
#: An output file (``-o``, ``--errors``, ``--log-file``, a review page) cannot be made or written.
EXIT_OUTPUT = 4
#: The run store cannot be opened, read or written (corrupt, not a store, read-only, disk full).
EXIT_STORE = 5
#: The run is running in another process now (``--resume`` of a run that has not stopped).
EXIT_BUSY = 6


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
    # A library's warning with no handler to take it goes to stderr: redacted there too.
    last = logging.lastResort
    if last is not None and not any(isinstance(f, _Redact) for f in last.filters):
        last.addFilter(_Redact([]))


def summary_table(s: RunSummary) -> Table:
    """The end-of-run summary, as ``extract`` and ``batch collect`` print it."""
    t = Table(title="imr-extract summary", show_header=False, title_justify="left")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("letters", str(s.letters))
    t.add_row("extracted", str(s.letters - s.failed))
    t.add_row("failed", str(s.failed))
    if s.reused:
        t.add_row("from the run store (not redone)", str(s.reused))
    t.add_row("items", str(s.items))
    t.add_row("upheld", str(s.decisions[Decision.UPHELD.value]))
    t.add_row("overturned", str(s.decisions[Decision.OVERTURNED.value]))
    t.add_row("warnings", str(s.warnings))
    for status in ("verified", "unverified", "contradicted"):
        t.add_row(f"values {status}", str(s.status[status]))
    t.add_row("novel layouts", str(s.novel))
    for route, n in sorted(s.routed.items()):
        t.add_row(f"sent to the model: {route}", str(n))
    if s.model_errors:
        t.add_row("model failed (rules kept)", str(s.model_errors))
    if s.usage.requests or s.attempts:
        t.add_row("model requests", str(s.usage.requests))
        t.add_row("prompt tokens", str(s.usage.prompt_tokens))
        t.add_row("completion tokens", str(s.usage.completion_tokens))
        if s.cost_usd is not None:
            t.add_row("estimated cost (USD)", f"{s.cost_usd:.4f}")
    for name, n in sorted(s.layouts.items()):
        t.add_row(f"layout {name}", str(n))
    elapsed = time.monotonic() - s.started
    t.add_row("seconds", f"{elapsed:.1f}")
    # What this run extracted itself: not what it served from the store, nor what failed.
    done = s.letters - s.reused - s.failed
    if done > 0 and elapsed > 0:
        t.add_row("letters/s (extracted)", f"{done / elapsed:,.1f}")
    return t


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (then `extract` shows a table, not JSON Lines)."""
    return Console().is_terminal


class LetterTable:
    """`extract` on a terminal: one compact line per letter, the full records in the run store.

    Holds a few counts per letter (never a record); shows at most ``shown`` lines.
    """

    shown = 200

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.more = 0

    def add(self, outcome: Outcome | BatchOutcome) -> None:
        if len(self.rows) >= self.shown:
            self.more += 1
            return
        name = escape_name(Path(outcome.source).name if outcome.source != "-" else "-")
        if not outcome.ok:
            code = outcome.error.code if outcome.error is not None else "error"
            self.rows.append((name, code, "", "", "", "", "", "", code))
            return
        row = getattr(outcome, "row", None)
        if row is None:
            assert outcome.record is not None
            row = RecordRow.of(outcome.record)
        decided = Counter(row.decisions)
        self.rows.append(
            (
                row.letter,
                row.case_number or "-",
                str(len(row.items)),
                str(decided[Decision.UPHELD.value]),
                str(decided[Decision.OVERTURNED.value]),
                *(str(n) for n in row.statuses),
                "",
            )
        )

    #: Column headers, short enough for 80 columns; the legend under the table spells them out.
    columns = ("letter", "case", "items", "upheld", "overt.", "verif.", "unver.", "contra.")
    legend = (
        "overt.: overturned; verif./unver./contra.: values verified, unverified, contradicted; "
        "a failed letter: its error code (the cause is on stderr)"
    )

    def print(self, console: Console, run_id: str | None, store: str | None) -> None:
        t = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
        for i, name in enumerate(self.columns):
            t.add_column(name, justify="right" if i >= 2 else "left", overflow="fold")
        for row in self.rows:
            failed = bool(row[-1])
            t.add_row(*row[:-1], style="red" if failed else None)
        console.print(t)
        console.print(self.legend, markup=False, style="dim")
        if self.more:
            console.print(f"... and {self.more} more letters", markup=False)
        if store is not None:
            console.print(
                f"Full records: run {run_id} in {escape_name(str(store))}; write them out with\n"
                f"  imr-extract export --run {run_id} -o records.jsonl  (or .json, .csv)",
                markup=False,
                soft_wrap=True,
            )
        else:
            console.print(
                "Full records: not kept (--no-store); -o FILE or a pipe writes them.",
                markup=False,
                soft_wrap=True,
            )


def _note_skipped(skipped: list[str]) -> None:
    """One line on stderr: the files the directories held that are not read (not letters)."""
    if not skipped:
        return
    shown = ", ".join(escape_name(p) for p in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    err.print(
        f"note: {len(skipped)} file{'s' if len(skipped) != 1 else ''} skipped (not .pdf or "
        f".txt): {shown}{more}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _output_format(out: Path | None, fmt: OutputFormat | None) -> OutputFormat:
    """``format_for``, saying so on stderr when ``-o``'s extension names no format (the
    records are then JSON Lines, whatever the name suggests)."""
    chosen = format_for(out, fmt)
    suffix = out.suffix.lower() if out is not None and str(out) != "-" else ""
    if fmt is None and suffix and suffix not in SUFFIX_FORMATS:
        err.print(
            f"note: {escape_name(str(out))}: {suffix} names no format; writing JSON Lines "
            f"(-f jsonl|json|csv, or name the file {', '.join(sorted(SUFFIX_FORMATS))})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return chosen


def _open_out(stack: ExitStack, out: Path | None) -> TextIO:
    """``-o``: a file (its directory made), or standard output; a failure names it."""
    return _open_outputs(stack, out)[0]


def _open_outputs(stack: ExitStack, *paths: Path | None) -> list[TextIO]:
    """Each output (None or ``-``: standard output), opened all before any is emptied.

    Raises:
        OutputError: one cannot be made or written (none has been emptied).
    """
    files = OutputFiles()
    stack.callback(files.abandon)  # a no-op once committed
    wanted = [p is not None and str(p) != "-" for p in paths]
    for path, want in zip(paths, wanted, strict=True):
        if want:
            assert path is not None
            files.open(path)
    opened = iter(files.commit())
    streams = [next(opened) if want else stdout_stream() for want in wanted]
    for stream in streams:
        stack.enter_context(stream)
    return streams


def model_config(**settings: Any) -> Any:  # an LLMConfig (imported only when a model is used)
    """The model's settings (flags over the environment), its key checked (``require_key``)."""
    from .llm import LLMConfig

    config = LLMConfig.from_env(**settings)
    require_key(config)
    return config


def require_key(config: Any) -> None:
    """A hosted endpoint without a key is refused before any call, naming the variable that is
    not set (a local server, named with --base-url or OPENAI_BASE_URL, needs none)."""
    if config.is_openai and not config.api_key:
        raise _usage_error(
            f"OPENAI_API_KEY is not set: {config.base_url} needs a key (set it in the "
            "environment; a local server named with --base-url needs none)"
        )


def announce_model(config: Any, letters: int, what: str) -> None:
    """One line on stderr before any model call: endpoint, model, letters, and the list price
    when one is known (the cost itself depends on the letters' length)."""
    price = config.prices.get(config.model)
    cost = (
        f"; list price ${price.prompt:g} / ${price.completion:g} per 1M prompt / completion tokens"
        if price is not None
        else ""
    )
    count = f"{letters} letter{'s' if letters != 1 else ''}"
    err.print(
        redact(f"model calls: {config.model} at {config.base_url}, {what}, {count}{cost}"),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


FormatOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="jsonl: a record per line; json: an array; csv: a row per item. Default: from "
        "--out's extension (.jsonl, .ndjson, .json, .csv), else jsonl.",
    ),
]
ViewOption = Annotated[
    View,
    typer.Option(
        "--view",
        help="full: the whole record; data: the values alone (no provenance, checks or "
        "metadata); compact: provenance cut to each field's spans and status.",
    ),
]


def _llm_option(help_text: str) -> Any:
    return typer.Option(help=help_text, rich_help_panel="LLM")


# Options several commands share, declared once so their names and help stay the same.
PdfEngineOption = Annotated[
    str | None,
    typer.Option(help=f"PDF text engine: {', '.join(PDF_ENGINES)} (default: fastest available)."),
]
ModelOption = Annotated[str | None, _llm_option("Model name (env IMR_LLM_MODEL).")]
BaseUrlOption = Annotated[
    str | None, _llm_option("OpenAI-compatible endpoint (env OPENAI_BASE_URL).")
]
ModeOption = Annotated[
    LLMMode | None, _llm_option("How the schema is sent; auto picks per endpoint.")
]
MaxTokensOption = Annotated[
    int | None,
    _llm_option(f"Longest answer per request, in tokens (default {_Defaults.max_tokens})."),
]
TimeoutOption = Annotated[
    float | None,
    _llm_option(
        "Seconds per try, end to end: connect, send and the whole answer "
        f"(default {_Defaults.timeout_s:g})."
    ),
]
CacheOption = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Reuse cached answers.", rich_help_panel="LLM")
]
CacheDirOption = Annotated[Path | None, _llm_option("Answer cache (env IMR_CACHE_DIR).")]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5g``, ``65536`` (powers of 1024; ``0``: no limit).

    Raises:
        ValueError: not a size.
    """
    found = _SIZE.match(text)
    if found is None:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 2G, 0 for no limit)")
    number, unit = found.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))


def _limit_option(help_text: str, *names: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel="Limits", **kw)


_D = DEFAULT_LIMITS
MaxPagesOption = Annotated[
    int | None, _limit_option(f"Pages per PDF (default {_D.max_pages}; 0: no limit).", min=0)
]
MaxCharsOption = Annotated[
    int | None,
    _limit_option(
        f"Characters of text per letter, PDF or text (default {_D.max_chars:,}; 0: no limit).",
        min=0,
    ),
]
MaxItemsOption = Annotated[
    int | None,
    _limit_option(f"Decided items per letter (default {_D.max_items}; 0: no limit).", min=0),
]
LetterTimeoutOption = Annotated[
    float | None,
    _limit_option(
        f"Seconds per letter, wall clock, model calls included (default {_D.letter_seconds:g}; "
        "0: no limit).",
        "--letter-timeout",
        min=0,
    ),
]
WorkerMemoryOption = Annotated[
    str | None,
    _limit_option(
        f"Memory per worker process, e.g. 512M, 2G (default {_D.worker_memory // 2**30}G; "
        "0: no limit).",
        "--worker-memory",
        metavar="SIZE",
    ),
]
MaxStdinOption = Annotated[
    str | None,
    _limit_option(
        f"Bytes read from standard input, e.g. 64M (default {_D.max_stdin_bytes // 2**20}M; "
        "0: no limit).",
        "--max-stdin",
        metavar="SIZE",
    ),
]


def make_limits(
    max_pages: int | None = None,
    max_chars: int | None = None,
    max_items: int | None = None,
    letter_timeout: float | None = None,
    worker_memory: str | None = None,
    max_stdin: str | None = None,
) -> Limits:
    """``Limits`` from the limit flags (a flag not given keeps its default)."""
    given: dict[str, Any] = {
        "max_pages": max_pages,
        "max_chars": max_chars,
        "max_items": max_items,
        "letter_seconds": letter_timeout,
    }
    for name, flag, text in (
        ("worker_memory", "--worker-memory", worker_memory),
        ("max_stdin_bytes", "--max-stdin", max_stdin),
    ):
        if text is not None:
            try:
                given[name] = parse_size(text)
            except ValueError as exc:
                raise _usage_error(f"{flag}: {exc}") from None
    return replace(DEFAULT_LIMITS, **{k: v for k, v in given.items() if v is not None})


def _check_pdf_engine(pdf_engine: str | None) -> None:
    if pdf_engine is not None and pdf_engine not in PDF_ENGINES:
        raise _usage_error(f"--pdf-engine must be one of {', '.join(PDF_ENGINES)}")


class _RateColumn(ProgressColumn):
    """Letters per second since the start: letters done over time elapsed. (Rich's own speed
    is taken over its last few samples, and letters arrive in bursts -- from the store, or as a
    worker answers a chunk -- so it showed tens of thousands a second.)"""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not task.completed or not elapsed:
            return Text("-/s", "progress.data.speed")
        speed = task.completed / elapsed
        return Text(f"{speed:,.1f}/s" if speed < 10 else f"{speed:,.0f}/s", "progress.data.speed")


class _Redact(logging.Filter):
    """Masks the API key (and anything shaped like a key or token) in every log line, exception
    text included: each line passes through ``redact.redact``."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self.formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.stack_info:
            message += "\n" + record.stack_info
            record.stack_info = None
        record.msg = redact(message, self.secrets)
        record.args, record.exc_text = None, None
        return True


def _log_to(path: Path, level: str) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    )
    handler.addFilter(_Redact([os.environ.get("OPENAI_API_KEY", "")]))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def _batch_option(help_text: str, *names: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel="Batch", **kw)


@app.command()
def extract(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Letter files (.pdf, .txt), directories (read recursively), or '-'. With "
            "--resume and no PATHS: the resumed run's own inputs."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write records here. Default: standard output: JSON Lines when piped; on a "
            "terminal, a table per letter (the records are in the run store: `export`).",
        ),
    ] = None,
    fmt: FormatOption = None,
    view: ViewOption = View.FULL,
    errors_out: Annotated[
        Path | None,
        typer.Option("--errors", help="Also write one JSON line per failed letter to this file."),
    ] = None,
    pdf_engine: PdfEngineOption = None,
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
            "only for what they cannot verify. Default: hybrid when a model is named "
            "(--model, --base-url or IMR_LLM_MODEL), else rules: a key in the environment "
            "alone never starts model calls."
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    mode: ModeOption = None,
    max_tokens: MaxTokensOption = None,
    max_reasks: Annotated[
        int | None,
        _llm_option(f"Re-asks after an invalid answer (default {_Defaults.max_reasks})."),
    ] = None,
    token_budget: Annotated[
        int | None,
        _llm_option(
            f"Tokens one letter may spend over all attempts (default {_Defaults.token_budget:,})."
        ),
    ] = None,
    timeout: TimeoutOption = None,
    cache: CacheOption = True,
    cache_dir: CacheDirOption = None,
    verbatim_reask: Annotated[
        bool | None,
        typer.Option(
            "--verbatim-reask/--no-verbatim-reask",
            help="Re-ask when an item is not copied verbatim (costs more).",
            rich_help_panel="LLM",
        ),
    ] = None,
    store_path: Annotated[
        str | None,
        _batch_option(
            f"Run store (a SQLite file, default ./{DEFAULT_STORE}; or a postgresql:// URL): every "
            "result is kept there, and a letter already extracted the same way is not extracted "
            "again.",
            "--store",
            envvar="IMR_STORE",
            metavar="PATH|URL",
        ),
    ] = None,
    no_store: Annotated[
        bool, _batch_option("Use no run store (extract everything, keep nothing).", "--no-store")
    ] = False,
    resume: Annotated[
        str | None,
        _batch_option(
            "Continue an interrupted run (its id, or 'last'): same run id, same options.",
            "--resume",
            metavar="RUN_ID|last",
        ),
    ] = None,
    retry_model_errors: Annotated[
        bool,
        _batch_option(
            "Extract again the stored letters whose model call failed (rules kept).",
            "--retry-model-errors",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        _batch_option("Processes reading letters (default: all cores).", "--workers", min=1),
    ] = None,
    concurrency: Annotated[
        int,
        _batch_option("Model calls in flight at once (llm, hybrid).", "--concurrency", min=1),
    ] = 4,
    rpm: Annotated[
        float | None,
        _batch_option("Model requests per minute, at most (llm, hybrid).", "--rpm", min=0.001),
    ] = None,
    tpm: Annotated[
        float | None,
        _batch_option("Model tokens per minute, at most (llm, hybrid).", "--tpm", min=1),
    ] = None,
    log_file: Annotated[
        Path | None, _batch_option("Write a log here (the API key is masked).", "--log-file")
    ] = None,
    log_level: Annotated[
        str, _batch_option("Level for --log-file: DEBUG, INFO, WARNING, ERROR.", "--log-level")
    ] = "INFO",
    max_pages: MaxPagesOption = None,
    max_chars: MaxCharsOption = None,
    max_items: MaxItemsOption = None,
    letter_timeout: LetterTimeoutOption = None,
    worker_memory: WorkerMemoryOption = None,
    max_stdin: MaxStdinOption = None,
) -> None:
    """Extract records from letters, with the rules (default) or a language model.

    Results are kept in a run store (./imr-extract.sqlite unless --store/--no-store): a run
    again skips what is done, --resume continues an interrupted run, `export` writes them out.

    The LLM backend reads OPENAI_API_KEY from the environment (never from a flag).
    """
    from .runner import default_workers
    from .runs import Run, RunMismatchError
    from .store import RunBusyError, RunStore, StoreError, StoreUnusableError

    _check_pdf_engine(pdf_engine)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise _usage_error(f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}")
    if no_store and resume is not None:
        raise _usage_error("--resume needs the run store (not --no-store)")
    limits = make_limits(max_pages, max_chars, max_items, letter_timeout, worker_memory, max_stdin)
    if log_file is not None:
        _open_log(log_file, log_level)
    if backend is Backend.EXTERNAL:
        raise _usage_error("--backend external is for records made elsewhere: see `verify`")
    if backend is None:
        backend = default_backend(model, base_url)
    built = build_backend(
        backend,
        limits,
        ModelOptions(
            model=model,
            base_url=base_url,
            mode=mode,
            max_tokens=max_tokens,
            max_reasks=max_reasks,
            token_budget=token_budget,
            timeout=timeout,
            cache=cache,
            cache_dir=cache_dir,
            verbatim_reask=verbatim_reask,
            rpm=rpm,
            tpm=tpm,
        ),
        pdf_engine=pdf_engine,
        # instructor logs every failed attempt at ERROR; the CLI reports each failure itself.
        quiet_instructor=log_file is None,
    )
    settings = built.settings
    if built.uses_model:
        settings["concurrency"] = concurrency
    config = built.config  # the model's settings (None for the rules)
    skipped: list[str] = []
    if paths:
        total = sum(1 for _ in iter_paths(paths, skipped))
        if not total:
            raise _usage_error(f"no letters (.pdf, .txt) found under {' '.join(paths)}")
    elif resume is None:
        raise _usage_error("give the letters to read (files, directories or '-')")
    # A table for people only when nothing asked for records (-o, even `-o -`, or --format).
    table = fmt is None and out is None and stdout_is_terminal()
    fmt = _output_format(out, fmt)
    if backend is not Backend.RULES and resume is None:
        require_key(config)  # (a resumed run's settings are checked against it first)
    store: RunStore | None = None
    run: Run | None = None
    # Every output is opened (not emptied) and the store checked before any output is emptied.
    files = OutputFiles()
    try:
        out_at = files.open(out) if out is not None and str(out) != "-" else None
        errors_at = files.open(errors_out) if errors_out is not None else None
    except OutputError as exc:
        files.abandon()
        raise _file_error(exc, EXIT_OUTPUT) from None
    with ExitStack() as stack:
        stack.callback(files.abandon)  # a no-op once committed
        if not no_store:
            try:
                store = stack.enter_context(RunStore(store_path or DEFAULT_STORE))
                if resume is not None:
                    row = Run.resumable(store, resume, built)
                    if backend is not Backend.RULES:
                        require_key(config)
                    if not paths:
                        paths = list(row.inputs)
                        where = _resume_directory(row)
                        if where is not None:  # read them where the run was given them
                            stack.enter_context(chdir(where))
                        total = sum(1 for _ in iter_paths(paths, skipped))
                    run = Run.resume(store, row, built)
                else:
                    settings["workers"] = workers or default_workers()
                    run = Run.start(store, built, inputs=paths or [], argv=sys.argv[1:])
            except RunMismatchError as exc:
                raise _usage_error(str(exc)) from None
            except RunBusyError as exc:
                raise _file_error(exc, EXIT_BUSY) from None
            except StoreUnusableError as exc:
                raise _file_error(exc, EXIT_STORE) from None
            except StoreError as exc:
                raise _usage_error(_shown(exc)) from None
        else:
            run = Run(built)
        assert paths
        _note_skipped(skipped)
        if backend is not Backend.RULES:
            what = (
                "only for what the rules cannot verify"
                if backend is Backend.HYBRID
                else "every letter"
            )
            announce_model(config, total, f"{backend.value}: {what}")
        show_progress = err.is_terminal if progress is None else progress
        stats = run.summary
        status = "interrupted"
        failure: tuple[ImrExtractError, int] | None = None
        try:
            opened = iter(files.commit())
            stream = next(opened) if out_at is not None else stdout_stream()
            errors = next(opened) if errors_at is not None else None
            for f in (stream, errors):
                if f is not None:
                    stack.enter_context(f)
            writer = make_writer(fmt, stream, view)
            letters = LetterTable() if table else None
            bar = stack.enter_context(
                Progress(
                    TextColumn("[progress.description]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    _RateColumn(),
                    TimeElapsedColumn(),
                    TextColumn("ETA"),
                    TimeRemainingColumn(),
                    console=err,
                    disable=not show_progress,
                    transient=True,
                )
            )
            task = bar.add_task("extracting", total=total)
            outcomes = run.extract(
                paths,
                total=total,
                pdf_engine=pdf_engine,
                workers=workers or default_workers(),
                concurrency=concurrency,
                retry_model_errors=retry_model_errors,
                limits=limits,
            )
            for outcome in outcomes:
                if letters is not None:
                    letters.add(outcome)
                    if outcome.error is None:
                        bar.advance(task)
                        continue
                if outcome.record_json is not None and isinstance(writer, JsonlWriter):
                    writer.write_json(outcome.record_json)  # as made: no re-dump
                elif outcome.record is not None:
                    writer.write(outcome.record)
                elif outcome.error is not None:
                    bar.console.print(
                        redact(f"error: {escape_name(str(outcome.error))}"),
                        markup=False,
                        highlight=False,
                        soft_wrap=True,
                    )
                    if errors is not None:
                        failed = {
                            "letter": escape_name(outcome.source),
                            "error": outcome.error.code,
                            "cause": redact(outcome.error.cause),
                        }
                        errors.write(json.dumps(failed) + "\n")
                        errors.flush()
                    bar.update(task, description=f"extracting ({stats.failed} failed)")
                bar.advance(task)
            if letters is None:
                writer.close()
            for f in (stream, errors):
                if f is not None:
                    f.flush()
            status = "finished"
        except OutputError as exc:
            failure = (exc, EXIT_OUTPUT)
        except StoreUnusableError as exc:
            failure = (exc, EXIT_STORE)
        finally:
            try:
                run.finish(status)
            except StoreUnusableError as exc:
                failure = failure or (exc, EXIT_STORE)
            if failure is not None:
                with contextlib.suppress(ImrExtractError):
                    stack.close()  # a file that cannot be written cannot be closed either
    if failure is not None:
        raise _file_error(*failure)
    if letters is not None:
        letters.print(Console(highlight=False), run.id, store.where if store is not None else None)
    if summary:
        err.print(summary_table(stats))
        if store is not None:
            err.print(f"run {run.id} in {store.where}", markup=False, highlight=False)
    raise typer.Exit(EXIT_FAILURES if stats.failed else EXIT_OK)


def _shown(exc: BaseException) -> str:
    """An error as one line of text: a name that is not UTF-8 as the records write it."""
    return escape_name(str(exc)).replace("\n", " ")


def _file_error(exc: ImrExtractError, code: int) -> typer.Exit:
    """One line naming the file and the cause, and the exit code for that kind of file."""
    typer.echo(redact(f"error: {_shown(exc)}"), err=True)
    return typer.Exit(code)


def _open_log(path: Path, level: str) -> None:
    """``--log-file``: appended to (never emptied); its directory is made if missing."""
    try:
        make_parent(path)
        _log_to(path, level)
    except OutputError as exc:
        raise _file_error(exc, EXIT_OUTPUT) from None
    except OSError as exc:
        cause = f"cannot open for writing ({exc.strerror or exc})"
        raise _file_error(OutputError(escape_name(str(path)), cause), EXIT_OUTPUT) from None


def _resume_directory(run: Any) -> Path | None:
    """Where a resumed run's inputs are read from so that its letters keep the paths the run
    first gave them: the run's own directory, when that is not this one (None: stay here)."""
    if not run.cwd:
        return None
    where = Path(run.cwd)
    if where == Path.cwd() or all(p == "-" or Path(p).is_absolute() for p in run.inputs):
        return None
    if not where.is_dir():
        err.print(
            f"note: the run's directory {escape_name(run.cwd)} is gone: its inputs are read "
            "from this one",
            markup=False,
            highlight=False,
        )
        return None
    return where


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of one output record."""
    with ExitStack() as stack:
        _open_out(stack, out).write(json_schema_text())


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
    typer.echo(redact(f"error: {message}"), err=True)
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


class VerifyFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class VerifySummary:
    """Counts for the end of ``imr-extract verify``."""

    def __init__(self) -> None:
        self.records = 0
        self.errors = 0
        self.status: Counter[str] = Counter()
        self.invalid = 0
        self.novel = 0
        self.complete = 0
        self.coverage = 0.0

    def add(self, outcome: ExternalOutcome) -> None:
        self.records += 1
        record = outcome.record
        if record is None or record.verification is None:
            self.errors += 1
            return
        v = record.verification
        self.status.update(verified=v.verified, unverified=v.unverified)
        self.status.update(contradicted=v.contradicted)
        self.invalid += sum(c.name == FITS_SCHEMA for c in v.checks)
        self.novel += v.novel_layout
        self.complete += v.complete
        self.coverage += v.coverage

    def table(self) -> Table:
        t = Table(title="imr-extract verify", show_header=False, title_justify="left")
        t.add_column("what")
        t.add_column("count", justify="right")
        done = self.records - self.errors
        t.add_row("records", str(self.records))
        t.add_row("verified against their letter", str(done))
        t.add_row("failed (error rows)", str(self.errors))
        for status in ("verified", "unverified", "contradicted"):
            t.add_row(f"values {status}", str(self.status[status]))
        t.add_row("values invalid (left out)", str(self.invalid))
        t.add_row("mean coverage", f"{self.coverage / done:.3f}" if done else "-")
        t.add_row("complete (every decision held by an item)", str(self.complete))
        t.add_row("novel layouts", str(self.novel))
        return t


@app.command(name="verify")
def verify_command(
    records: Annotated[
        Path,
        typer.Argument(
            help="Records from any tool in the output shape (JSON Lines, a JSON array or one "
            "object), with or without provenance; or a .csv of item rows as `extract --format "
            "csv` writes them; '-' reads JSON from standard input."
        ),
    ],
    letters: Annotated[
        Path,
        typer.Option(
            "--letters",
            help="Directory of the letters (read recursively); a record is matched to the letter "
            "named by its 'letter' field (file name, or its stem).",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the results here (default: stdout).")
    ] = None,
    fmt: Annotated[
        VerifyFormat,
        typer.Option(
            "--format",
            "-f",
            help="jsonl: each record back with statuses, checks and coverage (an error row for a "
            "record that failed); csv: a row per value, invalid value or failed record.",
        ),
    ] = VerifyFormat.JSONL,
    pdf_engine: PdfEngineOption = None,
    summary: Annotated[
        bool, typer.Option("--summary/--no-summary", help="Summary at the end.")
    ] = True,
    max_pages: MaxPagesOption = None,
    max_chars: MaxCharsOption = None,
) -> None:
    """Verify records made by another tool against their letters.

    Each value is located in its letter and run through every check; a value that does not fit
    the schema (a US-format date, an empty source) is reported as invalid on its own and left out.

    Exit code 1: some records failed (no such letter, not a record): each is an error row in the
    output and named on stderr; the rest are still verified. 2: usage error.
    """
    import csv

    from .errors import ImrExtractError
    from .verify.external import (
        VALUE_COLUMNS,
        LetterIndex,
        iter_record_file,
        value_rows,
        verify_records,
    )

    _check_pdf_engine(pdf_engine)
    limits = make_limits(max_pages, max_chars)
    if not letters.is_dir():
        raise _usage_error(f"--letters {letters}: not a directory")
    if str(records) != "-" and not records.is_file():
        raise _usage_error(f"{records}: no such file")
    stats = VerifySummary()
    try:
        with ExitStack() as stack:
            stream = _open_out(stack, out)
            rows = csv.DictWriter(stream, fieldnames=VALUE_COLUMNS, extrasaction="raise")
            if fmt is VerifyFormat.CSV:
                rows.writeheader()
            index = LetterIndex(letters)
            for outcome in verify_records(
                iter_record_file(records), index, pdf_engine=pdf_engine, limits=limits
            ):
                stats.add(outcome)
                if outcome.error is not None:
                    typer.echo(f"error: {outcome.error}", err=True)
                if fmt is VerifyFormat.CSV:
                    rows.writerows(value_rows(outcome))
                elif outcome.record is not None:
                    stream.write(outcome.record.model_dump_json() + "\n")
                elif outcome.error is not None:
                    row = {
                        "letter": outcome.source,
                        "error": outcome.error.code,
                        "cause": outcome.error.cause,
                    }
                    stream.write(json.dumps(row) + "\n")
                stream.flush()
    except OutputError as exc:
        raise _file_error(exc, EXIT_OUTPUT) from None
    except ImrExtractError as exc:  # the records file itself cannot be read
        raise _usage_error(str(exc)) from None
    if summary:
        err.print(stats.table())
    raise typer.Exit(EXIT_FAILURES if stats.errors else EXIT_OK)


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
    pdf_engine: PdfEngineOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    mode: ModeOption = None,
    max_tokens: MaxTokensOption = None,
    timeout: TimeoutOption = None,
    cache: CacheOption = True,
    cache_dir: CacheDirOption = None,
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
    sides: list[tuple[str, Sequence[RecordLike]]]  # result files' JSON, or records made here
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
            _check_pdf_engine(pdf_engine)
            skipped: list[str] = []
            files = list(iter_paths(paths, skipped))
            _note_skipped(skipped)
            if not files:
                raise _usage_error(f"no letters (.pdf, .txt) found under {' '.join(paths)}")
            if "-" in files:
                raise _usage_error("compare reads each letter twice: standard input cannot be used")
            if not model_configured(model, base_url):
                raise _usage_error(
                    "compare reads the letters with the rules and a model: name the model "
                    "(--model, --base-url or IMR_LLM_MODEL); a key alone starts no model calls"
                )
            from .extract import extract_many
            from .llm import LLMExtractor

            logging.getLogger("instructor").setLevel(logging.CRITICAL)
            config = model_config(
                model=model,
                base_url=base_url,
                mode=mode,
                max_tokens=max_tokens,
                timeout_s=timeout,
                use_cache=cache,
                cache_dir=cache_dir,
            )
            announce_model(config, len(files), "llm: every letter")
            sides = []
            for name, extractor in (("rules", extract_document), ("llm", LLMExtractor(config))):
                records = []
                for outcome in extract_many(files, pdf_engine, extractor):
                    if outcome.record is not None:
                        records.append(outcome.record)
                    else:
                        failed += 1
                        typer.echo(redact(f"error: {name}: {outcome.error}"), err=True)
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
    pdf_engine: PdfEngineOption = None,
    llm: Annotated[
        bool | None,
        typer.Option(
            "--llm/--no-llm",
            help="Also run the model (whole letter) and the hybrid backend. Default: when a "
            "model is configured (as for `extract`).",
            rich_help_panel="LLM",
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    mode: ModeOption = None,
    timeout: TimeoutOption = None,
    max_pages: MaxPagesOption = None,
    max_chars: MaxCharsOption = None,
    max_items: MaxItemsOption = None,
    max_stdin: MaxStdinOption = None,
) -> None:
    """Write one self-contained HTML page to check a letter's records against its text.

    The letter is extracted with the rules (and, with a model configured, with the model and
    the hybrid backend, side by side); --results adds other records for it.
    """
    from .errors import ImrExtractError
    from .ingest import read_path
    from .review import label_records, load_results, write_review
    from .schema import LetterRecord

    _check_pdf_engine(pdf_engine)
    limits = make_limits(max_pages, max_chars, max_items, max_stdin=max_stdin)
    try:
        doc = read_path(letter, pdf_engine=pdf_engine, limits=limits)
    except ImrExtractError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    found: list[tuple[str, LetterRecord]] = []
    if llm if llm is not None else model_configured(model, base_url):
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
        from .hybrid import HybridExtractor
        from .llm import LLMExtractor

        config = model_config(model=model, base_url=base_url, mode=mode, timeout_s=timeout)
        announce_model(config, 1, "llm and hybrid")
        # The answer cache lets the hybrid reuse the model's answer instead of asking again.
        model_reader = LLMExtractor(config)
        for label, extractor in (
            ("hybrid", HybridExtractor(model_reader)),
            ("llm", model_reader),
        ):
            try:
                found.append((label, extractor(doc)))
            except ImrExtractError as exc:
                typer.echo(redact(f"warning: {label}: {exc}"), err=True)
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
        cause = f"cannot write ({exc.strerror or exc})"
        raise _file_error(OutputError(escape_name(str(target)), cause), EXIT_OUTPUT) from None
    typer.echo(escape_name(str(target)))


# --- batch: large LLM jobs through the OpenAI Batch API ------------------------------------------

batch_app = typer.Typer(
    name="batch",
    help="Large LLM jobs through the OpenAI Batch API: submit, status, collect (resumable).",
    no_args_is_help=True,
)
#: `batch collect --no-wait` on a batch that has not ended yet.
EXIT_PENDING = 3
_JOB_OPTION = typer.Option("--job", "-j", help="The job file (JSON) that records the job's state.")


def _batch_error(exc: Exception, code: int) -> typer.Exit:
    typer.echo(redact(f"error: {exc}"), err=True)
    return typer.Exit(code)


@batch_app.command("submit")
def batch_submit(
    paths: Annotated[
        list[str], typer.Argument(help="Letter files (.pdf, .txt) and directories (recursive).")
    ],
    job: Annotated[Path, _JOB_OPTION],
    backend: Annotated[
        str,
        typer.Option(
            help="llm: every letter to the model; hybrid: the rules first, the model only for "
            "what they cannot verify."
        ),
    ] = "llm",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    mode: ModeOption = None,
    max_tokens: MaxTokensOption = None,
    timeout: TimeoutOption = None,
    pdf_engine: PdfEngineOption = None,
) -> None:
    """Write the requests, upload them and create the batch; safe to run again.

    A job file that already has a batch id is never submitted again; one whose upload
    succeeded reuses the uploaded file. OPENAI_API_KEY is read from the environment only.
    """
    from .llm import LLMConfig
    from .llm import batch as jobs

    _check_pdf_engine(pdf_engine)
    if backend not in jobs.BACKENDS:
        raise _usage_error(f"--backend must be one of {', '.join(jobs.BACKENDS)}")
    try:
        if job.exists():
            state = jobs.BatchJob.load(job)
            if not jobs.same_inputs(state, paths):
                raise _usage_error(f"{job} was prepared from other letters; use another --job")
            if state.batch_id is not None:
                typer.echo(f"already submitted; not submitting again: {jobs.describe(state)}")
                raise typer.Exit(EXIT_OK)
            if any(v is not None for v in (model, base_url, mode, max_tokens, pdf_engine)):
                typer.echo(f"note: resuming {job} with the settings it was prepared with", err=True)
            config = jobs.job_config(state)
        else:
            config = LLMConfig.from_env(
                model=model, base_url=base_url, mode=mode, max_tokens=max_tokens, timeout_s=timeout
            )
            require_key(config)
            state = jobs.prepare_job(paths, job, config, backend=backend, pdf_engine=pdf_engine)
            readable = sum("error" not in letter for letter in state.letters)
            announce_model(config, readable, f"Batch API, {backend}")
            for letter in state.letters:
                if "error" in letter:
                    cause = letter["error"]["cause"]
                    typer.echo(f"error: {letter['path']}: {cause} (nothing sent)", err=True)
    except jobs.BatchJobError as exc:
        raise _batch_error(exc, EXIT_USAGE) from None
    try:
        jobs.submit_job(state, jobs.make_batch_client(config))
    except jobs.BatchJobError as exc:
        raise _batch_error(exc, EXIT_FAILURES) from None
    typer.echo(jobs.describe(state))


@batch_app.command("status")
def batch_status(job: Annotated[Path, _JOB_OPTION]) -> None:
    """Ask for the batch's status once (and download its results once it has ended)."""
    from .llm import batch as jobs

    try:
        state = jobs.BatchJob.load(job)
    except jobs.BatchJobError as exc:
        raise _batch_error(exc, EXIT_USAGE) from None
    if state.batch_id is not None and not state.finished:
        try:
            jobs.refresh_job(state, jobs.make_batch_client(jobs.job_config(state)))
        except jobs.BatchJobError as exc:
            raise _batch_error(exc, EXIT_FAILURES) from None
    typer.echo(jobs.describe(state))


@batch_app.command("cancel")
def batch_cancel(job: Annotated[Path, _JOB_OPTION]) -> None:
    """Cancel the batch; `collect` then writes what was answered before it stopped."""
    from .llm import batch as jobs

    try:
        state = jobs.BatchJob.load(job)
        jobs.cancel_job(state, jobs.make_batch_client(jobs.job_config(state)))
    except jobs.BatchJobError as exc:
        raise _batch_error(exc, EXIT_FAILURES) from None
    typer.echo(jobs.describe(state))


@batch_app.command("collect")
def batch_collect(
    job: Annotated[Path, _JOB_OPTION],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write records here (default: stdout).")
    ] = None,
    fmt: FormatOption = None,
    view: ViewOption = View.FULL,
    fallback: Annotated[
        str | None,
        typer.Option(
            help="rules: a letter whose request failed gets the rules' record (the cause in "
            "extractor.model_error). Hybrid jobs always do."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Poll until the batch ends (default) or ask once."),
    ] = True,
    poll_interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 30.0,
    errors_out: Annotated[
        Path | None,
        typer.Option("--errors", help="Also write one JSON line per failed letter to this file."),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary/--no-summary", help="Summary at the end.")
    ] = True,
) -> None:
    """Wait for the batch, then write one verified record per letter.

    Exit code 1: some letters failed (each named on stderr); 3: --no-wait and not ended yet.
    """
    from .llm import batch as jobs

    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    if fallback is not None and fallback not in jobs.FALLBACKS:
        raise _usage_error(f"--fallback must be one of {', '.join(jobs.FALLBACKS)}")
    try:
        state = jobs.BatchJob.load(job)
    except jobs.BatchJobError as exc:
        raise _batch_error(exc, EXIT_USAGE) from None
    if not state.finished:
        if state.batch_id is None:
            raise _usage_error(f"{job}: not submitted yet: run `imr-extract batch submit`")
        client = jobs.make_batch_client(jobs.job_config(state))
        shown: list[str] = []

        def show(s: Any) -> None:
            line = jobs.describe(s)
            if not shown or shown[-1] != line:
                err.print(line)
                shown.append(line)

        try:
            if wait:
                jobs.wait_for_job(state, client, poll_interval_s=poll_interval, on_poll=show)
            else:
                jobs.refresh_job(state, client)
        except jobs.BatchJobError as exc:
            raise _batch_error(exc, EXIT_FAILURES) from None
        if not state.finished:
            typer.echo(f"not ended yet: {jobs.describe(state)}", err=True)
            raise typer.Exit(EXIT_PENDING)
    from .runs import RunSummary

    stats = RunSummary()
    try:
        with ExitStack() as stack:
            if errors_out is not None:
                stream, errors = _open_outputs(stack, out, errors_out)
            else:
                stream, errors = _open_out(stack, out), None
            writer = make_writer(_output_format(out, fmt), stream, view)
            for outcome in jobs.collect_job(state, fallback=fallback):
                stats.add(outcome)
                if outcome.record is not None:
                    writer.write(outcome.record)
                elif outcome.error is not None:
                    typer.echo(redact(f"error: {outcome.error}"), err=True)
                    if errors is not None:
                        failure = {
                            "letter": outcome.source,
                            "error": outcome.error.code,
                            "cause": redact(outcome.error.cause),
                        }
                        errors.write(json.dumps(failure) + "\n")
            writer.close()
    except jobs.BatchJobError as exc:
        raise _batch_error(exc, EXIT_USAGE) from None
    if summary:
        err.print(summary_table(stats))
    raise typer.Exit(EXIT_FAILURES if stats.failed else EXIT_OK)


app.add_typer(batch_app, name="batch")


@app.command()
def export(
    store_path: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="IMR_STORE",
            metavar="PATH|URL",
            help="The run store to read (a file or a postgresql:// URL).",
        ),
    ] = DEFAULT_STORE,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="RUN_ID|last",
            help="Only the letters this run extracted or served from the store.",
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="jsonl: a record per line; json: an array; csv: a row per item; parquet: "
            "letters.parquet and items.parquet in the directory -o names (the parquet extra). "
            "Default: from --out's extension (.jsonl, .ndjson, .json, .csv), else jsonl.",
        ),
    ] = None,
    view: ViewOption = View.FULL,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Write the records kept in a run store, as `extract` writes them (failures are not
    records: query the store's letters table for them; `--format parquet` has a row for each).

    --run writes the records that run extracted or served from the store (made by an earlier
    run, the same way).
    """
    from .store import RunStore, StoreError, StoreUnusableError
    from .storedb import is_url

    if not is_url(store_path) and not Path(store_path).is_file():
        raise _usage_error(f"{escape_name(store_path)}: no run store here (see --store)")
    if fmt is None and out is not None and out.suffix.lower() == ".parquet":
        raise _usage_error(
            f"{escape_name(str(out))}: Parquet is two tables: --format parquet -o DIRECTORY"
        )
    if fmt is ExportFormat.PARQUET:
        _export_parquet(store_path, run, out, view)
        return
    files = OutputFiles()
    try:
        at = files.open(out) if out is not None and str(out) != "-" else None
        # Read only: a store on read-only media, or another user's, is exported as it is.
        with RunStore(store_path, readonly=True) as store, ExitStack() as stack:
            run_id = store.run(run).id if run is not None else None
            stream = files.commit()[0] if at is not None else stdout_stream()
            stack.enter_context(stream)
            written = 0
            writer = make_writer(
                _output_format(out, OutputFormat(fmt) if fmt else None), stream, view
            )
            if isinstance(writer, JsonlWriter):  # the stored text: parsed only for a view
                for text in store.record_texts(run_id):
                    writer.write_json(text)
                    written += 1
            else:
                for record in store.records(run_id):
                    writer.write(record)
                    written += 1
            writer.close()
            if run_id is not None and not written:
                _nothing_exported(store, run_id)
    except OutputError as exc:
        raise _file_error(exc, EXIT_OUTPUT) from None
    except StoreUnusableError as exc:
        raise _file_error(exc, EXIT_STORE) from None
    except StoreError as exc:
        raise _usage_error(_shown(exc)) from None
    finally:
        files.abandon()


# --- serve: the extraction service (imr_extract.service) ---------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Service processes (each with its own letter workers).", min=1)
    ] = 1,
    store_path: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="PATH|URL",
            help=f"Run store: results and API keys (a SQLite file, default ./{DEFAULT_STORE}; "
            "or a postgresql:// URL, which several replicas may share).",
            envvar="IMR_STORE",
        ),
    ] = None,
    letters_dir: Annotated[
        Path | None,
        typer.Option(
            "--letters-dir",
            help="Where letters' bytes are kept for their review pages (default: <store>.letters "
            "next to a SQLite store; in the store itself on PostgreSQL).",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Answer requests without an API key (loopback host only)."),
    ] = False,
    letter_workers: Annotated[
        int | None,
        typer.Option(help="Isolated processes reading letters, per service process.", min=1),
    ] = None,
    max_queue: Annotated[
        int, typer.Option(help="Letters that may wait for a worker; past it, 503.", min=0)
    ] = 64,
    model_concurrency: Annotated[
        int,
        typer.Option(
            help="Model extractions at once (hybrid, llm), per service process; --max-queue "
            "more may wait; past it, 503.",
            min=1,
        ),
    ] = 4,
    rate: Annotated[
        float | None,
        typer.Option(help="Requests per minute one API key may make; past it, 429.", min=0.001),
    ] = None,
    max_body: Annotated[
        str | None,
        _limit_option(
            "Bytes of a request body, e.g. 16M (default: --max-stdin's); past it, 413.",
            "--max-body",
            metavar="SIZE",
        ),
    ] = None,
    pdf_engine: PdfEngineOption = None,
    max_pages: MaxPagesOption = None,
    max_chars: MaxCharsOption = None,
    max_items: MaxItemsOption = None,
    letter_timeout: Annotated[
        float | None,
        _limit_option(
            "Seconds per letter of a request, wall clock (default 60; 0: no limit).",
            "--letter-timeout",
            min=0,
        ),
    ] = None,
    worker_memory: WorkerMemoryOption = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="Seconds POST /v1/extract waits for a letter (default 10; its ?wait= at most "
            "this); past it, 202 and a job of that letter (GET /v1/jobs/{id}).",
            min=0,
        ),
    ] = None,
    keep_jobs: Annotated[
        str,
        typer.Option(
            "--keep-jobs",
            metavar="DURATION",
            help="How long a job is kept after it finished or was cancelled, e.g. 90s, 12h, 7d "
            "(0: forever); then it is deleted (404), its letters' records stay in the store.",
        ),
    ] = "7d",
    follow_timeout: Annotated[
        float | None,
        typer.Option(
            "--follow-timeout",
            metavar="SECONDS",
            help="Seconds a GET /v1/jobs/{id}/results?follow=true stream lasts at most (default "
            "600); it ends then even if the job has not (compare its lines with counts.done).",
            min=0.001,
        ),
    ] = None,
) -> None:
    """Run the extraction service (HTTP, OpenAPI at /openapi.json) on uvicorn.

    Callers need an API key (`imr-extract keys create`) unless --no-auth, which only a loopback
    host allows. A model (for backend=hybrid/llm) is configured by the environment
    (IMR_LLM_MODEL, OPENAI_BASE_URL, OPENAI_API_KEY). Needs the 'service' extra.
    """
    try:
        from .service.server import ServeError, check
        from .service.server import serve as run_service
        from .service.settings import (
            FOLLOW_SECONDS,
            LETTER_SECONDS,
            WAIT_SECONDS,
            Settings,
            parse_duration,
        )
    except ImportError as exc:  # pragma: no cover - the extra is not installed
        raise _usage_error(
            f"the service needs the 'service' extra: pip install 'imr-extract[service]' ({exc})"
        ) from None
    _check_pdf_engine(pdf_engine)
    timeout = LETTER_SECONDS if letter_timeout is None else letter_timeout
    limits = make_limits(max_pages, max_chars, max_items, timeout, worker_memory)
    settings = Settings(
        host=host,
        port=port,
        workers=workers,
        store=_service_store(store_path),
        letters_dir=letters_dir,
        auth=not no_auth,
        max_queue=max_queue,
        model_concurrency=model_concurrency,
        rate_per_minute=rate,
        limits=limits,
        pdf_engine=pdf_engine,
        wait=WAIT_SECONDS if wait is None else wait,
        follow_seconds=FOLLOW_SECONDS if follow_timeout is None else follow_timeout,
    )
    try:
        settings = replace(settings, keep_jobs=parse_duration(keep_jobs))
    except ValueError as exc:
        raise _usage_error(f"--keep-jobs: {exc}") from None
    if letter_workers is not None:
        settings = replace(settings, letter_workers=letter_workers)
    if max_body is not None:
        try:
            settings = replace(settings, max_body=parse_size(max_body))
        except ValueError as exc:
            raise _usage_error(f"--max-body: {exc}") from None
    try:
        check(settings)
    except ServeError as exc:
        raise _usage_error(str(exc)) from None
    if model_configured(None, None):  # hybrid/llm offered: a hosted endpoint needs its key now
        model_config()
    if settings.auth:
        from .service.keys import KeyStore

        if not KeyStore(settings.store).active_count():
            err.print(
                "warning: no API keys: every request will be refused (401) until one is made "
                "with `imr-extract keys create`",
                markup=False,
                highlight=False,
            )
    err.print(f"serving on http://{host}:{port}", markup=False, highlight=False)
    run_service(settings)


keys_app = typer.Typer(
    name="keys",
    help="API keys for the service's callers: create (shown once), list, revoke.",
    no_args_is_help=True,
)
_KEYS_STORE = typer.Option(
    "--store",
    help=f"Run store holding the keys (default ./{DEFAULT_STORE}; or a postgresql:// URL).",
    envvar="IMR_STORE",
    metavar="PATH|URL",
)


def _service_store(store_path: str | None) -> Path | str:
    """``--store`` for the service and its keys: a SQLite file's path, or a PostgreSQL URL."""
    from .storedb import is_url

    if store_path is None:
        return Path(DEFAULT_STORE)
    return store_path if is_url(store_path) else Path(store_path)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "default",
    store_path: Annotated[str | None, _KEYS_STORE] = None,
) -> None:
    """Make a key and print it (once: only its hash is kept)."""
    from .service.keys import KeyStore

    key, token = KeyStore(_service_store(store_path)).create(name)
    err.print(f"{key.id} ({key.name}): keep it now, it is not shown again", markup=False)
    typer.echo(token)


@keys_app.command("list")
def keys_list(store_path: Annotated[str | None, _KEYS_STORE] = None) -> None:
    """The keys: id, name, made, revoked."""
    from .service.keys import KeyStore

    for key in KeyStore(_service_store(store_path)).list():
        state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.name}\t{key.created_at}\t{state}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
    store_path: Annotated[str | None, _KEYS_STORE] = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from .service.keys import KeyStore, UnknownKeyError

    try:
        key = KeyStore(_service_store(store_path)).revoke(key_id)
    except UnknownKeyError as exc:
        raise _usage_error(str(exc)) from None
    typer.echo(f"{key.id}\trevoked {key.revoked_at}")


app.add_typer(keys_app, name="keys")


def _nothing_exported(store: Any, run_id: str) -> None:
    """`export --run` found no record of that run: say why (every letter failed, it read none,
    or it served letters from the store before the store listed what a run served)."""
    # The run's counts, as finish_run left them.
    row = store.db.execute(
        "SELECT letters, reused, errors, status FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    letters, reused, errors, status = row if row is not None else (0, 0, 0, "?")
    if reused:
        why = (
            f"its {reused} letter{'s' if reused != 1 else ''} were served from the store, made by "
            "earlier runs, and this store does not list which; `imr-extract export` without "
            "--run writes them"
        )
    elif errors:
        why = f"its {errors} letter{'s' if errors != 1 else ''} failed (see the letters table)"
    else:
        why = f"it read no letter (status {status}, {letters} inputs)"
    err.print(
        f"note: run {run_id} extracted no record: {why}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _export_parquet(store_path: str | Path, run: str | None, out: Path | None, view: View) -> None:
    """``export --format parquet``: the two tables into the directory ``out``."""
    from . import parquet
    from .store import RunStore, StoreError

    missing = parquet.unavailable()
    if missing is not None:
        raise _usage_error(missing)
    if out is None or str(out) == "-":
        raise _usage_error("--format parquet writes two files: name their directory with -o DIR")
    if view is not View.FULL:
        raise _usage_error("--view is for JSON, JSON Lines and CSV, not --format parquet")
    try:
        with RunStore(store_path, readonly=True) as store:
            run_id = store.run(run).id if run is not None else None
            written = parquet.export_store(store, out, run_id)
            if run_id is not None and not written.letters:
                _nothing_exported(store, run_id)
    except StoreError as exc:
        if isinstance(exc, StoreUnusableError):
            raise
        raise _usage_error(_shown(exc)) from None
    failed = f" ({written.failures} failed)" if written.failures else ""
    err.print(
        f"{written.letters} letters{failed} to {escape_name(str(written.letters_path))}, "
        f"{written.items} items to {escape_name(str(written.items_path))}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _reflow(text: str) -> str:
    """A docstring as help: each paragraph on one line (help keeps a docstring's line breaks)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _metavar(param: Any) -> str | None:
    """What a value is called in --help (PATH, TEXT, INTEGER, a|b|c, NAME...), nothing for a
    flag: never typer's ``<bool>``, ``<list[str]>`` or ``{name}`` placeholders."""
    if param.param_type_name == "argument":
        return str(param.name).upper()
    if getattr(param, "is_flag", False):
        return ""
    desc = getattr(param, "type_descriptor", None)  # typer's own click
    kind = getattr(param, "type", None)  # click's
    choices = getattr(desc, "choices", None) or getattr(kind, "choices", None)
    if choices:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    annotation = getattr(desc, "annotation", None)
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    plain = {Path: "PATH", str: "TEXT", int: "INTEGER", float: "NUMBER"}
    if annotation in plain:
        return plain[annotation]
    name = str(getattr(kind, "name", ""))
    for key, shown in {"path": "PATH", "integer": "INTEGER", "float": "NUMBER"}.items():
        if name.startswith(key):
            return shown
    return "TEXT"


def plain_help(command: Any) -> None:
    """``command`` and its subcommands as their help should read at 80 columns: docstrings
    reflowed (help keeps a docstring's line breaks) and each value named by ``_metavar``."""
    if command.help:
        command.help = _reflow(command.help)
    for param in command.params:
        if param.metavar is None:
            param.metavar = _metavar(param)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


def _arguments_shown_by_metavar() -> None:
    """typer shows an argument's type (``<list[str]>``) beside it even when it has a metavar,
    and a required one as ``{name}`` on the usage line: the metavar alone is shown instead,
    ``NAME`` when required, ``[NAME]`` when not (``...`` after either when it takes many); and
    a flag's ``<bool>``, nothing instead."""
    import typer.core

    argument = getattr(typer.core, "TyperArgument", None)
    shown = getattr(argument, "display_type_rich", None)
    if argument is None or shown is None or not hasattr(argument, "_usage_display_name"):
        return  # another typer: its own conventions stand

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.metavar is not None else shown(self, ctx)

    def usage_name(self: Any) -> str:
        name = self.metavar or str(self.name).upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    argument.display_type_rich = display_type_rich
    argument._usage_display_name = usage_name
    option = getattr(typer.core, "TyperOption", None)
    option_type = getattr(option, "display_type_rich", None)
    if option is not None and option_type is not None:

        def flag_type(self: Any, ctx: Any) -> str | None:
            # a flag (--help, made per call, included) takes no value: no <bool> beside it
            return None if getattr(self, "is_flag", False) else option_type(self, ctx)

        option.display_type_rich = flag_type


_arguments_shown_by_metavar()


def main() -> None:
    try:
        app()
    except Exception as exc:  # escaped every handler (a bug): its text may quote a key
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
