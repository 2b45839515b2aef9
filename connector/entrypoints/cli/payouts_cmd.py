"""`gtm-connector reconcile` (payouts against expected payouts, through ``run_job``) and
`gtm-connector report` (orders x invoices x payouts, discrepancies first, month totals).

    gtm-connector reconcile --org acme [--dry-run] [--json]
    gtm-connector report --org acme --from 2025-01-01 --to 2025-03-31 --format csv
    gtm-connector report --org acme --json           # (--format json is the old spelling)
"""

from __future__ import annotations

import csv
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import (
    ConfigDirOpt,
    ConfigOpt,
    DryRunOpt,
    JsonOpt,
    OrgOpt,
    Orgs,
    make_console,
    styled,
)
from connector.entrypoints.cli._output import emit_json, emit_orgs, make_table, outcome_doc, print_table


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"  # the old spelling of --json, still accepted


def run_org_job(job: str, config: list[Path] | None, org: str | None, config_dir: Path, *, dry_run: bool,
                as_json: bool) -> tuple[Orgs, list[Any]]:
    """Run ``job`` once per selected org through ``connector.jobs.run_job``; print outcomes.
    The caller ends with ``orgs.exit(...)``."""
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import run_job

    orgs = Orgs(config, org, config_dir)
    outcomes = [run_job(runtime, job, instance_id=default_instance_id(), dry_run=dry_run, stop=orgs.stop)
                for runtime in orgs]
    if not orgs.opened:
        orgs.exit()
    if as_json:
        emit_orgs([{**outcome_doc(o), "dry_run": dry_run} for o in outcomes])
    else:
        print_outcomes(outcomes, title=f"{job}{' (dry run)' if dry_run else ''}")
    return orgs, outcomes


def print_outcomes(outcomes: list[Any], title: str | None = None) -> None:
    """Job runs for people, one row per org (what ``reconcile``, ``writeback`` and
    ``run-job`` print)."""
    table = make_table("org", "job", "status", "counts", "duration", "note", title=title,
                       keys=("org", "job", "status"), amounts=("duration",))
    for o in outcomes:
        counts = (", ".join(f"{k}={v}" for k, v in o.counts.items() if v)
                  or ("nothing to do" if o.status == "ok" else ""))
        table.add_row(o.org, o.job, o.status, counts, f"{o.duration_s:.1f}s", o.error or "")
    print_table(make_console(), table)


def reconcile(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reconcile Stripe payouts against each order's expected payout; flag discrepancies.

    Exit 1 if a run failed."""
    orgs, outcomes = run_org_job("reconcile", config, org, config_dir, dry_run=dry_run, as_json=as_json)
    orgs.exit(any(o.status == "failed" for o in outcomes))


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date YYYY-MM-DD, got {value!r}", param_hint=option) from None


def report(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    since: Annotated[str | None, typer.Option("--from", help="first day (YYYY-MM-DD), by payout or due date")] = None,
    until: Annotated[str | None, typer.Option("--to", help="last day (YYYY-MM-DD)")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or csv (json: same as --json)")] = Format.table,
    as_json: JsonOpt = False,
) -> None:
    """Orders x invoices x payouts reconciliation: discrepancies first, totals per month.
    Amounts are two-decimal strings in csv and json."""
    from connector.services.report import build_report

    first, last = _day(since, "--from"), _day(until, "--to")
    if first and last and first > last:
        raise typer.BadParameter(f"--from {first} is after --to {last}", param_hint="--from/--to")
    if as_json and fmt is Format.csv:
        raise typer.BadParameter("give --json or --format csv, not both", param_hint="--json/--format")
    orgs = Orgs(config, org, config_dir, local_only=True)
    with orgs.all_open() as runtimes:
        if not runtimes:
            orgs.exit()
        result = build_report(runtimes, since=first, until=last)
    if as_json or fmt is Format.json:
        emit_json(result.as_json())
    elif fmt is Format.csv:
        _write_csv(result)
    else:
        print_report(result)
    orgs.exit()


CSV_COLUMNS = ("row_type", "org", "month", "order_id", "order_number", "customer", "invoice_number", "invoice_status",
               "due_date", "invoiced", "tax", "tax_paid_out", "subtotal", "revenue_share", "expected_payout",
               "actual_payout", "difference", "payout_date", "payout_ids", "discrepancy", "attention", "invoice_issue",
               "orders", "unattributed", "discrepancies")


def _write_csv(result: Any) -> None:
    out = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    out.writeheader()
    for row in result.rows:
        data = row.as_json()
        out.writerow({**data, "row_type": "order" if row.order_id else "unattributed",
                      "payout_ids": " ".join(data["payout_ids"])})
    for month in result.months:
        out.writerow({**month.as_json(), "row_type": "month_total"})
    for flag in result.not_provisionable:
        out.writerow({"row_type": "sold_not_provisionable", "org": flag.org, "attention": flag.message,
                      "orders": " ".join(flag.orders)})


def print_report(result: Any, console: Any = None) -> None:
    console = console or make_console()
    money = ("invoiced", "tax", "expected", "actual", "difference")
    rows = make_table("org", "order", "invoice", "status", "due", *money, "payout date", "discrepancy",
                      title="Reconciliation: orders x invoices x payouts (discrepancies first)",
                      keys=("org", "order", "invoice", "due", "payout date"), amounts=money)
    for r in result.rows:
        d = r.as_json()
        rows.add_row(r.org, r.order_number or r.order_id or "(no order)", r.invoice_number or "-",
                     r.invoice_status or "-", d["due_date"] or "-", d["invoiced"] or "-", d["tax"] or "-",
                     d["expected_payout"] or "-",
                     d["actual_payout"] or "-", d["difference"] or "-", d["payout_date"] or "-",
                     styled(r.discrepancy, "red") if r.discrepancy else
                     styled(r.invoice_issue, "red") if r.invoice_issue else
                     styled("attention", "yellow") if r.attention else styled("ok", "green"))
    print_table(console, rows)
    for r in result.rows:
        if r.attention:
            console.print(styled(f"attention ({r.org}): {r.attention}", "yellow"))
    for flag in result.not_provisionable:
        console.print(styled(f"attention ({flag.org}): {flag.message}", "yellow"))
    months = make_table("month", "orders", *money, "unattributed", "discrepancies", title="Totals per month",
                        keys=("month",), amounts=("orders", *money, "unattributed", "discrepancies"))
    for m in result.months:
        d = m.as_json()
        months.add_row(m.month, str(m.orders), d["invoiced"], d["tax"], d["expected_payout"], d["actual_payout"],
                       d["difference"], d["unattributed"], str(m.discrepancies))
    print_table(console, months)


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)
    app.command("report")(report)

