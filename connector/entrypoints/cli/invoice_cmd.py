"""`gtm-connector invoice` (send the invoices that are due) and `gtm-connector
invoice-status` (refresh open invoices no webhook has updated lately).

``invoice --dry-run`` prints the plan of every billable order — lines, totals, when it is
due, or why it would be quarantined — without calling Stripe or writing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import ConfigDirOpt, ConfigOpt, DryRunOpt, JsonOpt, OrgOpt, Orgs, make_console
from connector.entrypoints.cli._output import emit_orgs, make_table, outcome_doc, outcome_line, print_table


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
    rows: list[tuple[str, ...]] = [(label, start, when, plan.customer_email, format_money(plan.total),
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
    (NET invoicing.days_until_due, default 30), finalized and sent, exactly once. Prints
    each invoice created (or adopted). --dry-run shows the plans and calls nothing."""
    failed = False
    docs: list[dict[str, Any]] = []
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        one_failed, doc = _dry_run(runtime, as_json) if dry_run else _run(runtime, as_json)
        failed |= one_failed
        docs.append(doc)
    if as_json:
        emit_orgs(docs)
    orgs.exit(failed)


def _dry_run(runtime: Any, as_json: bool) -> tuple[bool, dict[str, Any]]:
    from connector.services.invoicing import build_invoicing

    candidates = build_invoicing(runtime, with_billing=False).plans()
    doc = {"org": runtime.alias, "dry_run": True, "plans": [{
        "order_id": c.order_id, "order_number": c.order_number, "due": c.due,
        "service_start": c.service_start.isoformat() if c.service_start else None,
        "total": str(c.plan.total) if c.plan else None, "lines": len(c.plan.lines) if c.plan else 0,
        "error": {"code": c.error.code, "reason": c.error.reason} if c.error else None,
    } for c in candidates]}
    if as_json:
        return False, doc
    table = make_table("order", "service start", "invoice", "customer / line", "amount", "plan",
                       title=f"{runtime.alias}: invoice plans (dry run, nothing sent)",
                       keys=("order", "service start", "customer / line"), amounts=("amount",))
    for candidate in candidates:
        for row in _plan_rows(candidate, runtime.config.invoicing.lead_days):
            table.add_row(*row)
    print_table(make_console(), table, empty=f"{runtime.alias}: no billable order waiting for an invoice")
    return False, doc


def invoice_rows(runtime: Any, order_ids: list[str]) -> list[dict[str, Any]]:
    """The local invoice of each order in ``order_ids``: number, amount, due date, status."""
    from connector.domain import format_money

    rows = []
    with runtime.uow() as uow:
        orders = uow.mirror("order")
        for order_id in order_ids:
            inv = uow.invoices.get(runtime.org_id, order_id)
            order = orders.get(runtime.org_id, order_id) or {}
            rows.append({
                "order_id": order_id, "order_number": order.get("order_number"),
                "invoice_id": inv.stripe_invoice_id if inv else None, "number": inv.number if inv else None,
                "amount": format_money(inv.amount_due) if inv and inv.amount_due is not None else None,
                "due_date": inv.due_date.isoformat() if inv and inv.due_date else None,
                "status": inv.status if inv else None})
    return rows


def _run(runtime: Any, as_json: bool) -> tuple[bool, dict[str, Any]]:
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import run_job
    from connector.services.invoicing import build_invoicing

    holder: dict[str, Any] = {}

    def job(rt: Any, *, log: Any, dry_run: bool = False) -> dict[str, int]:
        report = build_invoicing(rt, log=log).run()
        holder["report"] = report
        return {"considered": report.considered, "invoices_created": len(report.invoiced),
                "not_due": report.not_due, "quarantined": len(report.quarantined), "resumed": report.resumed}

    outcome = run_job(runtime, "invoicing", instance_id=default_instance_id(), registry={"invoicing": job})
    report = holder.get("report")
    invoices = invoice_rows(runtime, list(report.invoiced)) if report else []
    doc = {**outcome_doc(outcome), "invoices": invoices,
           "quarantined": [{"order_id": order_id, "code": code, "reason": reason}
                           for order_id, code, reason in (report.quarantined if report else [])]}
    if not as_json:
        console = make_console()
        console.print(outcome_line(outcome))
        if invoices:
            table = make_table("order", "invoice", "amount", "due date", "status",
                               title=f"{runtime.alias}: invoices created or adopted",
                               keys=("order", "invoice", "due date"), amounts=("amount",))
            for inv in invoices:
                table.add_row(inv["order_number"] or inv["order_id"], inv["number"] or inv["invoice_id"] or "-",
                              inv["amount"] or "-", inv["due_date"] or "-", inv["status"] or "-")
            print_table(console, table)
        for order_id, code, reason in (report.quarantined if report else []):
            console.print(f"{runtime.alias}: order {order_id} not invoiced: {code}: {reason}", style="red")
    return outcome.status == "failed", doc


def invoice_status(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    all_: Annotated[bool, typer.Option("--all", help="check every open invoice now, however recently updated")] = False,
    orders: Annotated[list[str] | None, typer.Option(
        "--order", help="check this order's invoice now, whatever its status (repeat for several)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Poll Stripe for open invoices no webhook has updated within
    invoicing.poll_after_minutes (default 60), and apply what changed. --all and --order
    check now, without waiting."""
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import run_job
    from connector.services.invoice_status import build_invoice_status

    if all_ and orders:
        raise typer.BadParameter("give --all or --order, not both", param_hint="--all/--order")

    def job(rt: Any, *, log: Any, dry_run: bool = False) -> dict[str, int]:
        report = build_invoice_status(rt, log=log).poll(force=all_, order_ids=orders or None)
        return {"checked": report.checked, "changed": report.changed, "anomalies": report.anomalies}

    registry = {"invoice_status": job} if all_ or orders else None
    failed = False
    docs = []
    console = make_console()
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        outcome = run_job(runtime, "invoice_status", instance_id=default_instance_id(), registry=registry)
        docs.append(outcome_doc(outcome))
        if not as_json:
            console.print(outcome_line(outcome, "invoice-status"))
        failed |= outcome.status == "failed"
    if as_json:
        emit_orgs(docs)
    orgs.exit(failed)


def register(app: typer.Typer) -> None:
    app.command("invoice")(invoice)
    app.command("invoice-status")(invoice_status)
