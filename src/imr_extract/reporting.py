"""One way to write a report (``evaluate``'s or ``compare``'s): a rich table, JSON or CSV.

A report says what it holds three ways (``Report``); this module only chooses and writes, so the
CLI and library callers get identical output for the same report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol, TextIO

from rich.console import Console, RenderableType


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class Report(Protocol):
    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        ...

    def csv_rows(self) -> tuple[Sequence[str], list[dict[str, Any]]]:
        """The column names and one row per field."""
        ...

    def renderable(self, limit: int = 50) -> RenderableType:
        """Rich tables; at most ``limit`` rows of misses or disagreements."""
        ...


def ratio(value: float | None, digits: int = 3) -> str:
    """A rate for a table cell; ``-`` where it is undefined (nothing to divide by)."""
    return "-" if value is None else f"{value:.{digits}f}"


def listing(names: Sequence[str], shown: int = 5) -> str:
    """A count and the first few names, for a summary cell: ``2: a.pdf, b.pdf``."""
    if not names:
        return "0"
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)}: {', '.join(names[:shown])}{more}"


def write_report(report: Report, fmt: ReportFormat, stream: TextIO, *, limit: int = 50) -> None:
    """Write ``report`` to ``stream`` as a table (for people), JSON or CSV (for programs)."""
    if fmt is ReportFormat.JSON:
        json.dump(report.to_dict(), stream, indent=2)
        stream.write("\n")
    elif fmt is ReportFormat.CSV:
        columns, rows = report.csv_rows()
        writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
    else:
        # markup/emoji off: values such as "[verified]" or ":" runs are data, not styling.
        console = Console(file=stream, width=140, highlight=False, markup=False, emoji=False)
        console.print(report.renderable(limit))
    stream.flush()
