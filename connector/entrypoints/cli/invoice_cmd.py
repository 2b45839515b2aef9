"""`gtm-connector invoice` (send the invoices that are due) and `gtm-connector
invoice-status` (refresh open invoices no webhook has updated lately).

``invoice --dry-run`` prints the plan of every billable order — lines, totals, when it is
due, or why it would be quarantined — without calling Stripe or writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from connector.entrypoints.cli._common import ConfigDirOpt, ConfigOpt, DryRunOpt, JsonOpt, OrgOpt, Orgs, make_console


def _plan_rows(candidate: Any, lead_days: int) -> list[tuple[str, ...]]:
    from datetime import timedelta

    from connector.domain import format_money

    label = candidate.order_number or candidate.order_id
    start = candidate.service_start.isoformat() if candidate.service_start else "-"
    if candidate.error is not None:
        when = "due now" if candidate.due else f"from {candidate.service_start - timedelta(days=lead_days)}"
        return [(label, start, when, "-", "-", f"quarantine {candidate.error.code}: {candidate.error.reason}")]
    plan = candidate.plan
    when = "due now" if candidate.due else f"from {candidate.service_start - timedelta(days=lead_days)}"
    rows = [(label, start, when, plan.customer_email, format_money(plan.total),
             f"{plan.metadata.get('gtm_order_type', 'initial')}, {len(plan.lines)} line(s), NET{plan.days_until_due}")]
    for line in plan.lines:
        rows.append(("", "", "", f"  {line.quantity} x {format_money(line.unit_amount)}", format_money(line.amount),
                     f"  {line.description}"))
    return rows


def invoice(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Invoice every activated order due within the lead window: one Stripe invoice each
    (NET invoicing.days_until_due, default 30), finalized and sent, exactly once. --dry-run
    shows the plans and calls nothing."""
    from connector.logging import configure

    configure(json=as_json or None)
    failed = False
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        failed |= _dry_run(runtime, as_json) if dry_run else _run(runtime, as_json)
    orgs.exit(failed)


def _dry_run(runtime: Any, as_json: bool) -> bool:
    from rich.table import Table

    from connector.services.invoicing import build_invoicing

    candidates = build_invoicing(runtime, with_billing=False).plans()
    if as_json:
        for c in candidates:
            typer.echo(json.dumps({
                "org": runtime.alias, "order_id": c.order_id, "order_number": c.order_number, "due": c.due,
                "service_start": c.service_start.isoformat() if c.service_start else None,
                "total": str(c.plan.total) if c.plan else None, "lines": len(c.plan.lines) if c.plan else 0,
                "error": {"code": c.error.code, "reason": c.error.reason} if c.error else None,
            }))
        return False
    table = Table("order", "service start", "invoice", "customer / line", "amount", "plan",
                  title=f"{runtime.alias}: invoice plans (dry run, nothing sent)")
    for candidate in candidates:
        for row in _plan_rows(candidate, runtime.config.invoicing.lead_days):
            table.add_row(*row)
    make_console().print(table if candidates else f"{runtime.alias}: no billable order waiting for an invoice")
    return False


def _run(runtime: Any, as_json: bool) -> bool:
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import run_job

    outcome = run_job(runtime, "invoicing", instance_id=default_instance_id())
    if as_json:
        typer.echo(json.dumps({"org": outcome.org, "status": outcome.status, "counts": dict(outcome.counts),
                               "error": outcome.error}))
    else:
        counts = ", ".join(f"{k}={v}" for k, v in outcome.counts.items()) or "-"
        typer.echo(f"{outcome.org}: invoicing {outcome.status} ({counts}){': ' + outcome.error if outcome.error else ''}")
    return outcome.status == "failed"


def invoice_status(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    as_json: JsonOpt = False,
) -> None:
    """Poll Stripe for open invoices no webhook has updated within
    invoicing.poll_after_minutes (default 60), and apply what changed."""
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import run_job
    from connector.logging import configure

    configure(json=as_json or None)
    failed = False
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        outcome = run_job(runtime, "invoice_status", instance_id=default_instance_id())
        counts = ", ".join(f"{k}={v}" for k, v in outcome.counts.items()) or "-"
        if as_json:
            typer.echo(json.dumps({"org": outcome.org, "status": outcome.status, "counts": dict(outcome.counts),
                                   "error": outcome.error}))
        else:
            typer.echo(f"{outcome.org}: invoice-status {outcome.status} ({counts})"
                       f"{': ' + outcome.error if outcome.error else ''}")
        failed |= outcome.status == "failed"
    orgs.exit(failed)


def register(app: typer.Typer) -> None:
    app.command("invoice")(invoice)
    app.command("invoice-status")(invoice_status)
