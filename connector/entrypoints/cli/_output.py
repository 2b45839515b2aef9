"""How every command prints: one console, one kind of table, one JSON convention.

* **Not a terminal** (a pipe, a file, CI): no width limit. Nothing is truncated or wrapped;
  a table is as wide as its widest row, an error line stays one line.
* **A terminal**: tables fit the window by wrapping free text (reasons, details); key
  columns (ids, invoice numbers, amounts, dates) are never cut or wrapped — if they can't
  fit, the table is printed wider than the window rather than cut.
* **Empty tables** print ``<title>: none`` instead of an empty frame.
* **--json**: every command prints exactly one JSON document on stdout (one line, an
  object); messages and logs go to stderr. Commands acting on orgs give
  ``{"orgs": [{"org": ALIAS, ...}, ...]}``. Amounts are two-decimal strings, times ISO 8601.
  ``payout-estimate`` is the one stream: one JSON line per order, as they are computed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

# Width of a console that does not write to a terminal: wide enough for any line we print.
UNLIMITED_WIDTH = 100_000
# In a terminal, a wrapping column is never squeezed below this many cells.
FREE_TEXT_MIN_WIDTH = 16


def make_console(**options: Any) -> Console:
    """The one way commands print for people. Markup is off: record values, error texts and
    config keys such as ``[stripe] api_base`` are data and print as they are (with markup on,
    rich swallows bracketed words and fails on a stray ``[/x]``); colour goes through
    ``styled`` or ``style=``. Off a terminal the width is unlimited (see the module doc)."""
    from rich.console import Console

    console = Console(markup=False, **options)
    if "width" not in options and not console.is_terminal:
        console = Console(markup=False, width=UNLIMITED_WIDTH, **options)
    return console


def styled(text: object, style: str | None) -> Text | str:
    """``text`` in ``style`` (e.g. "red") for a table cell or a print; unstyled if None."""
    from rich.text import Text

    return Text(str(text), style=style) if style else str(text)


def make_table(*columns: str, title: str | None = None, keys: Iterable[str] = (),
               amounts: Iterable[str] = ()) -> Table:
    """A table whose ``keys`` columns (ids, numbers, dates) and ``amounts`` columns (right
    aligned) are never cut or wrapped; other columns wrap their text when space is short."""
    from rich.table import Table

    keys, amounts = set(keys), set(amounts)
    table = Table(title=title)
    for name in columns:
        if name in amounts:
            table.add_column(name, justify="right", no_wrap=True)
        elif name in keys:
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold")
    return table


def print_table(console: Console, table: Table, *, empty: str | None = None) -> None:
    """Print ``table``; ``<title>: none`` (or ``empty``) when it has no rows."""
    from rich.cells import cell_len
    from rich.measure import Measurement
    from rich.text import Text

    if table.row_count == 0:
        console.print(empty or (f"{table.title}: none" if table.title else "none"))
        return
    for column in table.columns:
        widest = max(cell_len(c.plain if isinstance(c, Text) else str(c)) for c in [column.header, *column.cells])
        # key columns whole; free text keeps at least a readable strip to wrap in
        column.min_width = widest if column.no_wrap else min(widest, FREE_TEXT_MIN_WIDTH)
    needed = Measurement.get(console, console.options.update_width(UNLIMITED_WIDTH), table).minimum
    if needed <= console.width:
        console.print(table)
        return
    # Too narrow a terminal for the key columns: print wider than the window (the terminal
    # wraps the lines) rather than cut an id or an amount.
    width = console.width
    console.width = needed
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


# ---------------------------------------------------------------------------- JSON


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(doc: Any) -> str:
    return json.dumps(doc, default=_default, ensure_ascii=False)


def emit_json(doc: Mapping[str, Any]) -> None:
    """Print the command's one JSON document (see the module doc)."""
    typer.echo(dumps(doc))


def emit_orgs(docs: Iterable[Mapping[str, Any]], **extra: Any) -> None:
    """The document of a command acting on orgs: ``{"orgs": [...], **extra}``."""
    emit_json({"orgs": list(docs), **extra})


def outcome_doc(outcome: Any) -> dict[str, Any]:
    """One job run (``connector.jobs.JobOutcome``) as a JSON object."""
    return {"org": outcome.org, "job": outcome.job, "status": outcome.status, "counts": dict(outcome.counts),
            "error": outcome.error, "duration_s": outcome.duration_s, "run_id": outcome.run_id,
            "api_calls": outcome.api_calls}


def outcome_line(outcome: Any, label: str | None = None) -> str:
    """One job run for people: ``acme: invoicing ok (invoices_created=1, not_due=2)``;
    a run with nothing to count says so instead of ``(-)``."""
    counts = ", ".join(f"{k}={v}" for k, v in outcome.counts.items())
    text = f"{outcome.org}: {label or outcome.job} {outcome.status}"
    if counts:
        text += f" ({counts})"
    if outcome.error:
        text += f": {outcome.error}"
    elif not counts and outcome.status == "ok":
        text += " (nothing to do)"
    return text
