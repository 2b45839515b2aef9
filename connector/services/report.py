"""The reconciliation report: orders x invoices x payouts, discrepancies and attention flags
first, with totals per month. Read-only over the local model.

Attention (``services.attention``): an order that ended after its invoice was issued has
its flag on its row; sold PPPs that cannot be provisioned are listed once per PPP (per
org, whatever the date range: they are about the catalog, not a month).

Taxes are shown apart: ``tax`` is the invoice's tax (inside ``invoiced``), ``tax_paid_out``
what of it passed through the payouts; ``actual_payout`` and ``difference`` are ex tax.

A row's month is its payout date when paid out, else its invoice's due date, else the day
the invoice was created. Money in payouts that belongs to no order (open ``payouts`` dead
letters about balance transactions) is listed too: it is part of what Stripe paid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.domain import format_money, to_money
from connector.services.attention import read_attention
from connector.services.payouts import payout_ids_of

if TYPE_CHECKING:
    from connector.bootstrap import OrgRuntime

ZERO = Decimal("0.00")
# Invoicing letters that are about Salesforce's invoice (issuer = salesforce), as the report names them.
INVOICE_ISSUES = {"INVOICE_MISSING": "invoice missing", "INVOICE_MISMATCH": "invoice differs"}


@dataclass(frozen=True)
class ReportRow:
    org: str
    order_id: str | None
    order_number: str | None
    customer: str | None
    invoice_number: str | None
    invoice_status: str | None
    due_date: date | None
    invoiced: Decimal | None
    subtotal: Decimal | None
    revenue_share: Decimal | None
    expected_payout: Decimal | None
    actual_payout: Decimal | None
    difference: Decimal | None
    payout_date: date | None
    payout_ids: tuple[str, ...]
    discrepancy: str | None
    day: date | None  # what the row is filed under
    tax: Decimal | None = None  # tax on the invoice (inside ``invoiced``, never the partner's)
    tax_paid_out: Decimal | None = None  # of which passed through the payouts (not in ``actual_payout``)
    attention: str | None = None  # the order ended (Error / Expired) after its invoice was issued
    invoice_issue: str | None = None  # Salesforce's invoice missing, or differing from the order

    @property
    def flagged(self) -> bool:
        return self.discrepancy is not None or self.attention is not None or self.invoice_issue is not None

    @property
    def month(self) -> str:
        return self.day.strftime("%Y-%m") if self.day else "-"

    def as_json(self) -> dict[str, Any]:
        def money(v: Decimal | None) -> str | None:
            return None if v is None else format_money(v)

        return {
            "org": self.org, "order_id": self.order_id, "order_number": self.order_number, "customer": self.customer,
            "invoice_number": self.invoice_number, "invoice_status": self.invoice_status,
            "due_date": self.due_date.isoformat() if self.due_date else None, "invoiced": money(self.invoiced),
            "subtotal": money(self.subtotal), "revenue_share": money(self.revenue_share),
            "expected_payout": money(self.expected_payout), "actual_payout": money(self.actual_payout),
            "difference": money(self.difference),
            "payout_date": self.payout_date.isoformat() if self.payout_date else None,
            "payout_ids": list(self.payout_ids), "discrepancy": self.discrepancy, "month": self.month,
            "tax": money(self.tax), "tax_paid_out": money(self.tax_paid_out), "attention": self.attention,
            "invoice_issue": self.invoice_issue,
        }


@dataclass
class MonthTotal:
    month: str
    orders: int = 0
    invoiced: Decimal = ZERO
    tax: Decimal = ZERO  # of ``invoiced``
    expected_payout: Decimal = ZERO
    actual_payout: Decimal = ZERO
    difference: Decimal = ZERO  # over the orders already paid out
    unattributed: Decimal = ZERO
    discrepancies: int = 0
    attention: int = 0  # orders flagged for attention

    def as_json(self) -> dict[str, Any]:
        return {"month": self.month, "orders": self.orders, "invoiced": format_money(self.invoiced),
                "tax": format_money(self.tax),
                "expected_payout": format_money(self.expected_payout),
                "actual_payout": format_money(self.actual_payout),
                "difference": format_money(self.difference), "unattributed": format_money(self.unattributed),
                "discrepancies": self.discrepancies, "attention": self.attention}


@dataclass(frozen=True)
class ProvisioningFlag:
    """A sold PPP without a product license (per org; not tied to one month)."""

    org: str
    ppp_id: str
    ppp_name: str | None
    orders: tuple[str, ...]
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"org": self.org, "ppp_id": self.ppp_id, "ppp_name": self.ppp_name, "orders": list(self.orders),
                "message": self.message}


@dataclass
class Report:
    rows: list[ReportRow] = field(default_factory=list)
    months: list[MonthTotal] = field(default_factory=list)
    not_provisionable: list[ProvisioningFlag] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"rows": [r.as_json() for r in self.rows], "months": [m.as_json() for m in self.months],
                "sold_not_provisionable": [f.as_json() for f in self.not_provisionable]}


def rows_for(runtime: OrgRuntime, flags: list[ProvisioningFlag] | None = None) -> list[ReportRow]:
    """The org's rows; its sold-but-not-provisionable PPPs are appended to ``flags``."""
    org = runtime.alias
    rows: list[ReportRow] = []
    with runtime.uow() as uow:
        attention = read_attention(uow, runtime.org_id, runtime.mapping, today=runtime.clock().astimezone(UTC).date())
        if flags is not None:
            flags.extend(ProvisioningFlag(org, u.ppp_id, u.ppp_name, u.orders, u.message)
                         for u in attention.unprovisionable)
        flagged = attention.by_order
        invoices = {i.order_id: i for i in uow.invoices.list(runtime.org_id)}
        recs = {r.order_id: r for r in uow.reconciliation.list(runtime.org_id)}
        issues = {letter.record_id: f"{INVOICE_ISSUES[letter.error_code]}: {letter.reason}"
                  for letter in uow.dead_letters.open(runtime.org_id, "invoicing")
                  if letter.error_code in INVOICE_ISSUES}
        orders = uow.mirror("order")
        for order_id in sorted(set(invoices) | set(recs) | set(issues)):
            inv, rec = invoices.get(order_id), recs.get(order_id)
            order = orders.get(runtime.org_id, order_id) or {}
            day = (rec.payout_date if rec and rec.payout_date else None) or (inv.due_date if inv else None) \
                or (inv.created_at.date() if inv else None) or order.get("service_start_date")
            rows.append(ReportRow(
                org=org, order_id=order_id, order_number=order.get("order_number"),
                customer=order.get("customer_name"), invoice_number=inv.number if inv else None,
                invoice_status=inv.status if inv else None, due_date=inv.due_date if inv else None,
                invoiced=inv.amount_due if inv else None, subtotal=rec.subtotal if rec else None,
                revenue_share=rec.revenue_share if rec else None,
                expected_payout=rec.expected_payout if rec else None, actual_payout=rec.actual_payout if rec else None,
                difference=rec.difference if rec else None, payout_date=rec.payout_date if rec else None,
                payout_ids=tuple(payout_ids_of(rec.payout_ids)) if rec else (),
                discrepancy=rec.discrepancy if rec else None, day=day,
                tax=inv.tax if inv else None, tax_paid_out=rec.tax if rec else None,
                attention=flagged[order_id].message if order_id in flagged else None,
                invoice_issue=issues.get(order_id),
            ))
        for letter in uow.dead_letters.open(runtime.org_id, "payouts"):
            if letter.object_name != "balance_transaction":
                continue
            payload: Mapping[str, Any] = letter.payload if isinstance(letter.payload, Mapping) else {}
            arrival = payload.get("arrival_date")
            rows.append(ReportRow(
                org=org, order_id=None, order_number=None, customer=None, invoice_number=None, invoice_status=None,
                due_date=None, invoiced=None, subtotal=None, revenue_share=None, expected_payout=None,
                actual_payout=to_money(payload["net"]) if payload.get("net") else None, difference=None,
                payout_date=date.fromisoformat(arrival) if arrival else None,
                payout_ids=(str(payload["payout_id"]),) if payload.get("payout_id") else (),
                discrepancy=letter.reason, day=date.fromisoformat(arrival) if arrival else letter.created_at.date(),
            ))
    return rows


def build_report(runtimes: Iterable[OrgRuntime], *, since: date | None = None, until: date | None = None) -> Report:
    """Every org's rows within ``[since, until]`` (by the row's day), discrepancies first,
    then by month and order number; totals per month."""
    flags: list[ProvisioningFlag] = []
    rows = [r for rt in runtimes for r in rows_for(rt, flags)
            if (since is None or (r.day is not None and r.day >= since))
            and (until is None or (r.day is not None and r.day <= until))]
    rows.sort(key=lambda r: (not r.flagged, r.month, r.org, r.order_number or "", r.order_id or ""))
    months: dict[str, MonthTotal] = {}
    for r in rows:
        m = months.setdefault(r.month, MonthTotal(r.month))
        if r.order_id is None:
            m.unattributed += r.actual_payout or ZERO
        else:
            m.orders += 1
            m.invoiced += r.invoiced or ZERO
            m.tax += r.tax or ZERO
            m.expected_payout += r.expected_payout or ZERO
            m.actual_payout += r.actual_payout or ZERO
            m.difference += r.difference or ZERO
        m.discrepancies += int(r.discrepancy is not None)
        m.attention += int(r.attention is not None)
    return Report(rows, [months[k] for k in sorted(months)], flags)
