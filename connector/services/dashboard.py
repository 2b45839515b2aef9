"""What the dashboard shows, read from the local model only (no API calls): per org, each
job's last run and schedule, the API budget, open dead letters and anomalies, invoices by
status, discrepancies and missing invoices, payouts expected against received this month;
and one order with everything the connector knows about it.

Dry runs are listed, marked, among the runs (a job's last run may be one); a job's last
success is its last real one.

The figures come from the same places as ``status`` and ``report`` (``services.report``
builds the month's totals and the flagged rows), so the page and the commands never
disagree. What only the running daemon knows (next fire time, runs in flight) is passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.services.report import MonthTotal, ReportRow, build_report

if TYPE_CHECKING:
    from connector.adapters.store.records import (
        Anomaly,
        DeadLetter,
        Invoice,
        JobRun,
        Payout,
        Reconciliation,
        WritebackState,
    )
    from connector.bootstrap import OrgRuntime

RECENT = 50  # dead letters, anomalies and runs listed on an org's page


@dataclass(frozen=True)
class JobView:
    job: str
    last: JobRun | None
    last_success: datetime | None
    next_run: datetime | None
    running: bool

    @property
    def duration_s(self) -> float | None:
        if self.last is None or self.last.finished_at is None:
            return None
        return (self.last.finished_at - self.last.started_at).total_seconds()

    @property
    def counts(self) -> str:
        counts = self.last.counts if self.last and isinstance(self.last.counts, Mapping) else {}
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)


@dataclass(frozen=True)
class StatusTotal:
    """Invoices of one status and currency: how many, and what they come to (amount due)."""

    status: str
    currency: str
    count: int
    amount: Decimal


@dataclass(frozen=True)
class OrgOverview:
    alias: str
    org_id: str
    jobs: list[JobView]
    api_used: int | None
    api_limit: int | None
    api_budget_percent: int
    dead_letters: list[DeadLetter]
    dead_letters_open: int
    dead_letters_by_source: dict[str, int]
    anomalies: list[Anomaly]
    anomalies_total: int
    invoices: list[Invoice]
    invoice_totals: list[StatusTotal]
    flagged: list[ReportRow]  # discrepancies, missing or differing invoices, ended orders
    month: MonthTotal
    runs: list[JobRun] = field(default_factory=list)
    order_numbers: dict[str, str] = field(default_factory=dict)

    @property
    def api_percent(self) -> float | None:
        if self.api_used is None or not self.api_limit:
            return None
        return 100.0 * self.api_used / self.api_limit

    @property
    def discrepancies(self) -> list[ReportRow]:
        return [r for r in self.flagged if r.discrepancy is not None]

    @property
    def invoice_issues(self) -> list[ReportRow]:
        return [r for r in self.flagged if r.invoice_issue is not None]


@dataclass(frozen=True)
class OrderView:
    alias: str
    order_id: str
    order: dict[str, Any]
    items: list[dict[str, Any]]
    invoice: Invoice | None
    reconciliation: Reconciliation | None
    payouts: list[Payout]
    writeback: WritebackState | None
    dead_letters: list[DeadLetter]
    anomalies: list[Anomaly]


def org_overview(runtime: OrgRuntime, *, jobs: Iterable[str], next_runs: Mapping[str, datetime | None],
                 month: date) -> OrgOverview:
    """The org's page; ``month`` is any day of the month whose payouts are compared."""
    org_id = runtime.org_id
    with runtime.uow() as uow:
        runs = uow.job_runs.list(org_id, limit=RECENT)
        # scheduled jobs first, then any other job that ran (a one-off, or one now unscheduled)
        names = list(dict.fromkeys([*jobs, *sorted({r.job for r in runs})]))
        views = []
        for job in names:
            last = uow.job_runs.list(org_id, job=job, limit=1)
            success = uow.job_runs.last_success(org_id, job)
            views.append(JobView(job, last[0] if last else None, success.started_at if success else None,
                                 next_runs.get(job), bool(last and last[0].status == "running")))
        measured = next((r for r in uow.job_runs.list(org_id, limit=200) if r.api_used is not None), None)
        letters = uow.dead_letters.open(org_id)
        anomalies = uow.anomalies.list(org_id)
        invoices = uow.invoices.list(org_id)
        numbers = {o["sf_id"]: o.get("order_number") or o["sf_id"]
                   for o in uow.mirror("order").get_many(org_id, [i.order_id for i in invoices]).values()} \
            if invoices else {}
    totals: dict[tuple[str, str], StatusTotal] = {}
    for inv in invoices:
        key = (inv.status or "unknown", (inv.currency or "").upper())
        prior = totals.get(key)
        amount = inv.amount_due or Decimal("0.00")
        totals[key] = StatusTotal(key[0], key[1], (prior.count if prior else 0) + 1,
                                  (prior.amount if prior else Decimal("0.00")) + amount)
    report = build_report([runtime])
    this_month = month.strftime("%Y-%m")
    total = next((m for m in report.months if m.month == this_month), MonthTotal(this_month))
    by_source = Counter(letter.source for letter in letters)
    return OrgOverview(
        alias=runtime.alias, org_id=org_id, jobs=views,
        api_used=measured.api_used if measured else None, api_limit=measured.api_limit if measured else None,
        api_budget_percent=runtime.config.api_budget_percent,
        dead_letters=letters[:RECENT], dead_letters_open=len(letters),
        dead_letters_by_source=dict(sorted(by_source.items())),
        anomalies=sorted(anomalies, key=lambda a: a.observed_at, reverse=True)[:RECENT], anomalies_total=len(anomalies),
        invoices=sorted(invoices, key=lambda i: i.created_at, reverse=True),
        invoice_totals=sorted(totals.values(), key=lambda t: (t.status, t.currency)),
        flagged=[r for r in report.rows if r.flagged], month=total, runs=runs, order_numbers=numbers,
    )


def order_view(runtime: OrgRuntime, order_id: str) -> OrderView | None:
    """Everything known locally about one order, or None when the connector has never seen it."""
    org_id = runtime.org_id
    with runtime.uow() as uow:
        order = uow.mirror("order").get(org_id, order_id)
        invoice = uow.invoices.get(org_id, order_id)
        rec = uow.reconciliation.get(org_id, order_id)
        if order is None and invoice is None and rec is None:
            return None
        items = uow.mirror("order_item").list(org_id, order_id=order_id)
        payout_ids = _payout_ids(rec)
        payouts = [p for p in uow.payouts.list(org_id) if p.stripe_payout_id in payout_ids]
        letters = [letter for letter in uow.dead_letters.open(org_id) if letter.record_id == order_id]
        anomalies = uow.anomalies.list(org_id)
        writeback = uow.writeback_state.get(org_id, order_id)
    return OrderView(runtime.alias, order_id, order or {}, sorted(items, key=lambda i: str(i.get("sf_id"))),
                     invoice, rec, payouts, writeback, letters, [a for a in anomalies if a.record_id == order_id])


def _payout_ids(rec: Reconciliation | None) -> set[str]:
    from connector.services.payouts import payout_ids_of

    return set(payout_ids_of(rec.payout_ids)) if rec is not None else set()
