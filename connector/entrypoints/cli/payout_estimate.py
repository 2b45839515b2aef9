"""`gtm-connector payout-estimate`: expected payout per order (seed 003), offline.

Input: JSON lines, or one JSON array, from stdin or ``--input FILE`` (``-`` = stdin). Each
order: ``{"id", "contract_term_months", "items": [{"quantity", "unit_price_per_month",
"revenue_share_percent"}], "initial_start_date"?, "initial_end_date"?, "addon_start_date"?,
"currency"?}``. Numbers are parsed from their JSON text as Decimals, never floats. An add-on
needs ``addon_start_date`` and the initial term: its start, its end, or both (then they
must agree: end = start + 12 months - 1 day).

Output: one JSON line per order, in input order::

    {"id": "o-1", "lines": [{"line_total": "6000.00", "revenue_share": "900.00"}, ...],
     "subtotal": "8400.00", "revenue_share": "1140.00", "expected_payout": "7260.00"}

or ``{"id": ..., "error": "items[1].quantity: must be a positive integer, got -3"}``. A bad
order never stops the others; the exit code is 1 if any order was bad. JSON lines are
streamed (memory stays flat); a JSON array is loaded whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import typer

from connector.domain import Order, OrderItem, ProrationPolicy, format_money, initial_end_date, order_payout
from connector.domain.money import total
from connector.domain.proration import check_service_date, initial_start_for_end, remaining_days
from connector.domain.validation import LINE_RULES, check_fields, parse_currency, parse_term, show
from connector.entrypoints.cli._common import make_console
from connector.entrypoints.cli._output import print_table as show_table
from connector.errors import RecordError

DATE_FIELDS = ("initial_start_date", "initial_end_date", "addon_start_date")
T = TypeVar("T")


@dataclass(frozen=True)
class Unparseable:
    """A line (or array) that is not JSON: reported, then the next one is read."""

    reason: str


@dataclass
class Summary:
    orders: int = 0
    bad: int = 0


def _loads(text: str) -> object:
    # parse_float keeps "50.10" exact; parse_constant turns NaN/Infinity into Decimals
    # that the validators then refuse by field, instead of floats slipping through.
    return json.loads(text, parse_float=Decimal, parse_constant=Decimal)


def read_orders(stream: TextIO) -> Iterator[tuple[str, object]]:
    """``(where, order)`` pairs; ``where`` is ``"line N"`` or ``"orders[i]"`` for messages."""
    lineno = 0
    for line in stream:
        lineno += 1
        if not line.strip():
            continue
        if line.lstrip().startswith("["):
            yield from _read_array(line + stream.read(), lineno)
            return
        yield from _read_lines(line, lineno, stream)
        return


def _read_lines(first: str, first_lineno: int, rest: Iterable[str]) -> Iterator[tuple[str, object]]:
    lineno = first_lineno
    for line in _chain_first(first, rest):
        if line.strip():
            try:
                yield f"line {lineno}", _loads(line)
            except ValueError as exc:
                yield f"line {lineno}", Unparseable(f"line {lineno}: invalid JSON: {_json_reason(exc)}")
        lineno += 1


def _chain_first(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def _read_array(text: str, first_lineno: int) -> Iterator[tuple[str, object]]:
    try:
        orders = _loads(text)
    except ValueError as exc:
        yield "input", Unparseable(f"input: invalid JSON array starting on line {first_lineno}: {_json_reason(exc)}")
        return
    if not isinstance(orders, list):
        yield "input", Unparseable("input: expected a JSON array of orders")
        return
    for index, order in enumerate(orders):
        yield f"orders[{index}]", order


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        where = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno}, column {exc.colno}"
        return f"{exc.msg} ({where})"
    return str(exc)


def _parse_date(raw: dict[str, object], field: str, problems: list[str]) -> date | None:
    value = raw.get(field)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        problems.append(f"{field}: must be a date like 2025-01-31, got {show(value)}")
        return None
    try:
        # Terms add and subtract months from it: 9999-12-31 would overflow, not be reported.
        return check_service_date(day, field)
    except RecordError as exc:
        problems.append(exc.reason)
        return None


def _parse_items(raw: dict[str, object], problems: list[str]) -> list[OrderItem]:
    items = raw.get("items")
    if not isinstance(items, list) or not items:
        got = show(items) if not isinstance(items, list) else "[]"
        problems.append(f"items: must be a non-empty list of items, got {got}")
        return []
    lines: list[OrderItem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"items[{index}]: must be an object, got {show(item)}")
            continue
        values = {field: item.get(field) for field in LINE_RULES}
        clean, found = check_fields(values, LINE_RULES, prefix=f"items[{index}].")
        problems.extend(found)
        if not found:
            lines.append(OrderItem(_as(int, clean["quantity"]), _as(Decimal, clean["unit_price_per_month"]),
                                   _as(Decimal, clean["revenue_share_percent"])))
    return lines


def _as(kind: type[T], value: object) -> T:
    """A value ``check_fields`` has already parsed to ``kind``."""
    assert isinstance(value, kind)
    return value


def _parse_add_on(raw: dict[str, object], problems: list[str]) -> tuple[date, date] | None:
    """(initial order's start, add-on's start) for an add-on, None for an initial order
    (or after noting problems)."""
    known = len(problems)
    start, end, addon = (_parse_date(raw, field, problems) for field in DATE_FIELDS)
    if len(problems) > known:
        return None  # a date given but unusable: said once, not again as "required"
    if start is None and end is not None:
        # The end date alone fixes the term: the 12 months ending that day.
        start = initial_start_for_end(end)
        if start is None:
            problems.append(
                f"initial_end_date: no 12-month term ends on {end.isoformat()} "
                "(initial_start_date + 12 months - 1 day); give initial_start_date"
            )
            return None
    if start is None:
        if addon is not None:
            problems.append("initial_start_date: is required when addon_start_date is given")
        return None
    if end is not None and end != initial_end_date(start):
        problems.append(
            f"initial_end_date: must be {initial_end_date(start).isoformat()} "
            f"(initial_start_date + 12 months - 1 day), got {end.isoformat()}"
        )
        return None
    if addon is None:
        return None
    try:
        remaining_days(addon, start)
    except RecordError as exc:
        problems.append(exc.reason)
        return None
    return start, addon


def parse_order(raw: dict[str, object], problems: list[str]) -> Order | None:
    """The input order as the domain ``Order`` (the type the mirror reader gives
    reconciliation), or None after noting every problem in ``problems``."""
    order_id = raw.get("id")
    if order_id is None or order_id == "":
        problems.append("id: is required")
    terms = {"contract_term_months": raw.get("contract_term_months")}
    if "currency" in raw:
        terms["currency"] = raw["currency"]
    clean, found = check_fields(terms, {"contract_term_months": parse_term, "currency": parse_currency})
    problems.extend(found)
    items = _parse_items(raw, problems)
    add_on = _parse_add_on(raw, problems)
    if problems:
        return None
    return Order(order_id=str(order_id), items=tuple(items), is_add_on=add_on is not None,
                 initial_start_date=add_on[0] if add_on else None, service_start_date=add_on[1] if add_on else None,
                 contract_term_months=_as(int, clean["contract_term_months"]),
                 currency=_as(str, clean["currency"]) if "currency" in clean else None)


def estimate_order(raw: object, where: str, policy: ProrationPolicy = ProrationPolicy.DAILY) -> dict[str, object]:
    """One output record for one input order: the estimate, or ``{"id", "error"}``."""
    if isinstance(raw, Unparseable):
        return {"id": None, "error": raw.reason}
    if not isinstance(raw, dict):
        return {"id": None, "error": f"{where}: an order must be a JSON object, got {show(raw)}"}
    order_id = raw.get("id")
    problems: list[str] = []
    order = parse_order(raw, problems)
    if order is not None:
        try:
            estimate = order_payout(order, policy)
        except RecordError as exc:
            problems.append(exc.reason)
    if problems:
        error = "; ".join(problems)
        return {"id": order_id, "error": error if order_id not in (None, "") else f"{where}: {error}"}
    return {
        "id": order_id,
        "lines": [
            {"line_total": format_money(line.line_total), "revenue_share": format_money(line.revenue_share)}
            for line in estimate.lines
        ],
        "subtotal": format_money(estimate.subtotal),
        "revenue_share": format_money(estimate.revenue_share),
        "expected_payout": format_money(estimate.expected_payout),
    }


def estimate_orders(stream: TextIO, policy: ProrationPolicy = ProrationPolicy.DAILY) -> Iterator[dict[str, object]]:
    """Lazily estimate every order read from ``stream``."""
    for where, raw in read_orders(stream):
        yield estimate_order(raw, where, policy)


def _dumps(record: dict[str, object]) -> str:
    return json.dumps(record, default=str, ensure_ascii=False)


def run(stream: TextIO, out: TextIO, policy: ProrationPolicy = ProrationPolicy.DAILY) -> Summary:
    """The command's core: JSON lines out, one per order, as they are computed."""
    summary = Summary()
    write = out.write
    for record in estimate_orders(stream, policy):
        summary.orders += 1
        summary.bad += "error" in record
        write(_dumps(record) + "\n")
    return summary


def _label(record: dict[str, object]) -> str:
    return "-" if record["id"] is None else str(record["id"])


def print_table(records: Iterable[dict[str, object]], out: TextIO) -> Summary:
    """For people: one row per order, totals of the good ones underneath."""
    from rich.table import Table

    summary = Summary()
    amounts: dict[str, list[Decimal]] = {"subtotal": [], "revenue_share": [], "expected_payout": []}
    table = Table(title="Expected payout per order", show_footer=True)
    table.add_column("Order", footer="Total")
    money_columns = (("subtotal", "Subtotal"), ("revenue_share", "Salesforce share"),
                     ("expected_payout", "Expected payout"))
    for _, title in money_columns:
        table.add_column(title, justify="right")
    table.add_column("Problem", style="red", overflow="fold")
    for record in records:
        summary.orders += 1
        if "error" in record:
            summary.bad += 1
            table.add_row(_label(record), "", "", "", str(record["error"]))
            continue
        for key, figures in amounts.items():
            figures.append(Decimal(str(record[key])))
        table.add_row(_label(record), *(str(record[key]) for key, _ in money_columns), "")
    for column, (key, _) in zip(table.columns[1:4], money_columns, strict=True):
        try:
            column.footer = format_money(total(amounts[key]))  # exact: sum() would round past 28 digits
        except ValueError:
            column.footer = "too large"
    for column in table.columns[:4]:
        column.no_wrap = True  # ids and amounts are never cut (see _output.print_table)
    show_table(make_console(file=out), table)
    return summary


class _Watched:
    """The input stream, noting whether it held anything but whitespace."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.blank = True

    def __iter__(self) -> Iterator[str]:
        for line in self.stream:
            if self.blank and line.strip():
                self.blank = False
            yield line

    def read(self) -> str:
        text = self.stream.read()
        if self.blank and text.strip():
            self.blank = False
        return text


def payout_estimate(
    input_path: str = typer.Option("-", "--input", "-i", metavar="FILE",
                                   help="Orders as JSON lines or a JSON array; '-' reads stdin."),
    proration: Annotated[ProrationPolicy, typer.Option(
        "--proration", case_sensitive=False, help="How add-on orders are prorated."
    )] = ProrationPolicy.DAILY,
    table: bool = typer.Option(False, "--table", help="Print a table for people instead of JSON lines."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one per order (the default; "
                                                       "the one command whose --json streams)"),
) -> None:
    """Expected payout per order: line totals, Salesforce's revenue share, your payout (seed 003).

    Input: one order per line (JSON lines) or one JSON array of orders. Each order has:

    \b
      id                     your order id (text)
      contract_term_months   12 (the only term GTM sells)
      items                  list of lines, each with:
        quantity               whole number > 0
        unit_price_per_month   USD, as a JSON number or string ("50.00")
        revenue_share_percent  Salesforce's share, e.g. 15 for 15%
      currency               optional, "USD" only
      initial_start_date     add-ons: the initial order's start (YYYY-MM-DD)
      initial_end_date       add-ons: or its end (start + 12 months - 1 day)
      addon_start_date       add-ons: the add-on's start (YYYY-MM-DD)

    \b
    Example:
      {"id": "o-1", "contract_term_months": 12, "items": [{"quantity": 10,
       "unit_price_per_month": "50.00", "revenue_share_percent": 15}]}

    \b
    Output: one JSON line per order: lines (line_total, revenue_share), subtotal,
    revenue_share and expected_payout as two-decimal strings; or {"id", "error"}.
    Exit 1 if any order was bad, 2 if the input is empty or unreadable."""
    if table and as_json:
        raise typer.BadParameter("give --table or --json, not both", param_hint="--table/--json")
    try:
        stream = sys.stdin if input_path == "-" else Path(input_path).open(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"payout-estimate: cannot read {input_path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    source = "stdin" if input_path == "-" else input_path
    watched = _Watched(stream)
    try:
        if table:
            summary = print_table(estimate_orders(watched, proration), sys.stdout)  # type: ignore[arg-type]
        else:
            summary = run(watched, sys.stdout, proration)  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        typer.echo(f"payout-estimate: {source} is not UTF-8 text (undecodable byte 0x{exc.object[exc.start]:02x}); "
                   "expected orders as JSON lines or a JSON array", err=True)
        raise typer.Exit(2) from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    if summary.orders == 0 and watched.blank:
        # Not even `[]`: most often a pipe or a file that came out empty by mistake.
        typer.echo(f"payout-estimate: {source} is empty; expected orders as JSON lines or a JSON array", err=True)
        raise typer.Exit(2)
    if summary.bad:
        typer.echo(f"payout-estimate: {summary.bad} of {summary.orders} orders could not be estimated", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("payout-estimate")(payout_estimate)
