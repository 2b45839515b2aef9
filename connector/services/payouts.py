"""Payout reconciliation job: Stripe payouts against each order's expected payout.

Per org, one run:

1. lists the Stripe payouts created since the ``sync_state`` cursor (object
   ``stripe_payouts``), re-listing the last ``RELIST`` days so status changes
   (pending -> paid, failed) are seen;
2. for each payout not seen before, oldest first (an automatic one once Stripe's
   ``reconciliation_status`` is ``completed``: until then it is left for a later run and
   the cursor stays before it; a manual one is a ``MANUAL_PAYOUT`` letter, since Stripe
   lists the transactions of automatic payouts only), reads its balance transactions (traced
   to invoices by the adapter), attributes them to orders (``domain.reconciliation``) and,
   in ONE unit of work, stores the payout, the orders' contributions and the cursor — so
   a crash leaves either all of a payout or none of it, and re-running adds nothing;
   transactions that trace to no order of the org become dead letters (source
   ``payouts``: ``UNKNOWN_CHARGE`` / ``ADJUSTMENT``), never absorbed;
3. re-evaluates every invoiced order (expected from the mirror + domain, actual from the
   stored contributions, invoice facts from ``invoices``) and writes the rows that changed,
   so "missing from payout" appears once its grace days pass even without new payouts;
4. matches mirrored ``SfdcPartnerPayout`` records (``org_payouts``) by Stripe payout id,
   flagging an amount the org reports differently.

Taxes on an invoice pass through the payouts (the customer pays subtotal + tax): the
domain takes them out of the net, so ``actual_payout`` is the partner's money ex tax and
``payout_reconciliation.tax`` what passed through for the tax authority.

``payout_reconciliation.payout_ids`` holds, per payout, what it carried for the order
(gross, refunded, fees, net, transactions): the ids plus the figures a later refund or
payment must be added to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.domain import ProrationPolicy, format_money, from_cents, order_payout, to_cents, to_money
from connector.domain.reconciliation import (
    ZERO,
    Contribution,
    Expected,
    InvoiceFacts,
    OrderReconciliation,
    Policy,
    StripePayout,
    Unattributed,
    attribute,
    merge,
    reconcile_order,
)
from connector.domain.validation import SUPPORTED_CURRENCY, UNSUPPORTED_CURRENCY, parse_currency
from connector.errors import RecordError
from connector.services.attention import read_attention
from connector.services.dry_run import dry_run_counts
from connector.services.orders import OrderReader
from connector.services.ports import OrgContext, PayoutsGateway, UnitOfWork

# An order's figures are kept in the store's money columns, NUMERIC(18, 2): an amount of 10^16
# or more cannot be kept, and trying failed the whole run at the commit (one absurd order
# stopped every other order's reconciliation). Such an order is a bad record instead.
AMOUNT_LIMIT = Decimal(10) ** 16
OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE"
CURSOR_OBJECT = "stripe_payouts"
RELIST = timedelta(days=7)
RECONCILED = "completed"  # a payout's reconciliation_status once Stripe lists all its transactions
MANUAL_PAYOUT = "MANUAL_PAYOUT"
DEAD_PAYOUT_STATUSES = frozenset({"failed", "canceled"})
SOURCE = "payouts"


# ------------------------------------------------------------------ stored contributions
def contributions_to_json(contributions: Iterable[Contribution]) -> list[dict[str, Any]]:
    return [
        {"payout_id": c.payout_id, "arrival_date": c.arrival_date.isoformat(), "gross": format_money(c.gross),
         "refunded": format_money(c.refunded), "fees": format_money(c.fees), "stripe_fees": format_money(c.stripe_fees),
         "net": format_money(c.net), "transactions": list(c.transaction_ids)}
        for c in contributions
    ]


def contributions_from_json(value: Any) -> tuple[Contribution, ...]:
    """The contributions stored in ``payout_ids`` (plain ids from elsewhere carry none)."""
    out = []
    for item in value or []:
        if not isinstance(item, Mapping):
            continue
        out.append(Contribution(
            payout_id=str(item["payout_id"]), arrival_date=date.fromisoformat(item["arrival_date"]),
            gross=to_money(item["gross"]), refunded=to_money(item["refunded"]), fees=to_money(item["fees"]),
            stripe_fees=to_money(item.get("stripe_fees", "0")), net=to_money(item["net"]),
            transaction_ids=tuple(item.get("transactions", ())),
        ))
    return tuple(out)


def payout_ids_of(value: Any) -> list[str]:
    """Just the payout ids of a ``payout_ids`` column value."""
    return [str(i["payout_id"]) if isinstance(i, Mapping) else str(i) for i in value or []]


# ------------------------------------------------------------------------- expectations
class OrderBook:
    """Expected payouts of an org's orders: read by the one order reader
    (``services.orders``, catalog rows once per book), computed by the domain
    (``order_payout``, with the add-on rule)."""

    def __init__(self, uow: UnitOfWork, org_id: str, proration_policy: str, mapping: Any) -> None:
        self.orders = OrderReader(uow, org_id, mapping)
        self.policy = ProrationPolicy(proration_policy)

    def expected(self, order_id: str) -> Expected:
        """Subtotal, revenue share and expected payout; ``RecordError`` naming what is missing."""
        estimate = order_payout(self.orders.read(order_id), self.policy)
        # The subtotal is the largest figure: shares and payout lie between 0 and it.
        if estimate.subtotal >= AMOUNT_LIMIT:
            raise RecordError(f"subtotal {format_money(estimate.subtotal)} is beyond the largest amount the connector "
                              f"keeps ({format_money(AMOUNT_LIMIT - Decimal('0.01'))})", record_id=order_id,
                              code=OUT_OF_RANGE)
        return Expected(estimate.subtotal, estimate.revenue_share, estimate.expected_payout)


def orders_by_invoice(uow: UnitOfWork, org_id: str) -> dict[str, str]:
    """Stripe invoice id -> order id: the invoices recorded locally, plus every invoice the
    GTM app's billing junction links (an order may have several; Salesforce issues them)."""
    links = {r["stripe_invoice_id"]: r["order_id"] for r in uow.mirror("billing_link").list(org_id)
             if r.get("stripe_invoice_id") and r.get("order_id") and not r.get("is_deleted")}
    links.update({i.stripe_invoice_id: i.order_id for i in uow.invoices.list(org_id) if i.stripe_invoice_id})
    return links


def _in_usd(payout: StripePayout) -> bool:
    try:
        parse_currency(payout.currency)
    except ValueError:
        return False
    return True


def invoice_facts(invoice: Any) -> InvoiceFacts:
    return InvoiceFacts(
        invoice_id=invoice.stripe_invoice_id or "",
        status=invoice.status,
        total=invoice.amount_due if invoice.amount_due is not None else ZERO,
        amount_paid=invoice.amount_paid or ZERO,
        paid_on=invoice.paid_at.astimezone(UTC).date() if invoice.paid_at else None,
        tax=invoice.tax or ZERO,
    )


def retrace_letters(runtime: OrgContext, letters: Sequence[Any], *, log: Any) -> int:
    """Replay of ``payouts`` letters about unattributed money (see ``Reconciler.retrace``)."""
    return Reconciler(runtime, runtime.payouts(), log=log).retrace(letters)


# ------------------------------------------------------------------------------- the job
@dataclass
class Counts:
    payouts: int = 0
    payouts_updated: int = 0
    transactions: int = 0
    orders_written: int = 0
    unknown_charges: int = 0
    payouts_waiting: int = 0  # automatic payouts whose reconciliation at Stripe is still in progress
    org_payouts_matched: int = 0
    org_payouts_differing: int = 0
    errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


def org_payout_differences(record: Mapping[str, Any], payout: Any, mapping: Any) -> tuple[str, list[str]]:
    """(error code, differences) between the org's payout record and Stripe's payout. An org
    record that still says Pending or In_Transit for a paid payout only lags: not a difference."""
    differences: list[str] = []
    code = "PAYOUT_RECORD_DIFFERS"
    if record.get("amount") is not None and record["amount"] != payout.amount:
        code = "PAYOUT_AMOUNT_DIFFERS"
        differences.append(f"the org says {format_money(record['amount'])}, Stripe paid {format_money(payout.amount)}")
    if record.get("payout_date") is not None and payout.arrival_date is not None \
            and record["payout_date"] != payout.arrival_date:
        differences.append(f"arrival {record['payout_date'].isoformat()} in the org, "
                           f"{payout.arrival_date.isoformat()} at Stripe")
    org_failed = mapping.to_state("payout_status", record.get("status")) == "failed" \
        if "payout_status" in mapping.vocabularies else False
    stripe_failed = (payout.status or "") in ("failed", "canceled")
    if org_failed != stripe_failed:
        differences.append(f"the org says {record.get('status')}, Stripe says {payout.status}")
    return code, differences


# What a reconcile writes, as a dry run names it (see connector.jobs.dry_run_counts).
DRY_RUN_NAMES = {"payouts_updated": "would_update_payouts", "orders_written": "would_write_orders"}


def run_reconcile_job(runtime: OrgContext, *, log: Any, dry_run: bool = False,
                      stop: threading.Event | None = None) -> Mapping[str, int]:
    """The ``reconcile`` job (see the module docstring). ``dry_run`` reads and computes,
    writes nothing."""
    return Reconciler(runtime, runtime.payouts(), log=log, dry_run=dry_run, stop=stop).run()


class Reconciler:
    def __init__(self, runtime: OrgContext, gateway: PayoutsGateway, *, log: Any, dry_run: bool = False,
                 stop: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.gateway = gateway
        self.log = log
        self.dry_run = dry_run
        self.stop = stop
        self.org_id = runtime.org_id
        cfg = runtime.config
        self.policy = Policy(tolerance=cfg.payouts.tolerance, missing_after_days=cfg.payouts.missing_after_days)
        self.proration = cfg.invoicing.proration
        self.counts = Counts()
        self._written: set[str] = set()
        self._cursor_held = False  # a payout waits for Stripe's reconciliation: the cursor stays before it

    def today(self) -> date:
        return self.runtime.clock().astimezone(UTC).date()

    def run(self) -> dict[str, int]:
        for payout in self._payouts_to_read():
            if self.stop is not None and self.stop.is_set():
                self.log.info("reconcile.interrupted", reason="shutdown")
                break
            self._ingest(payout)
        result = self._evaluate_all()
        self._match_org_payouts()
        self.counts.extra.update(result)
        self.counts.extra.update(self._attention())
        counts = self.counts.as_dict()
        if self.dry_run:
            counts = dry_run_counts(counts, DRY_RUN_NAMES)
        self.log.info("reconcile.done", dry_run=self.dry_run, **counts)
        return counts

    # -------------------------------------------------------------- 1: list
    def _payouts_to_read(self) -> list[StripePayout]:
        with self.runtime.uow() as uow:
            state = uow.sync_state.get(self.org_id, CURSOR_OBJECT)
        since = int((state.cursor - RELIST).timestamp()) if state and state.cursor else None
        payouts = list(self.gateway.list_payouts(since))
        self.log.info("payouts.listed", since=since, payouts=len(payouts))
        return payouts

    # -------------------------------------------------------------- 2: ingest
    def _ingest(self, payout: StripePayout) -> None:
        amount = from_cents(payout.amount_cents)
        with self.runtime.uow() as uow:
            stored = uow.payouts.get(self.org_id, payout.id)
            fresh = stored is None
            if not fresh and stored.status == payout.status:
                return  # seen, nothing moved
            if not fresh:
                self.counts.payouts_updated += 1
            row = dict(amount=amount, currency=payout.currency, arrival_date=payout.arrival_date,
                       status=payout.status, created=payout.created)
            if fresh and payout.status not in DEAD_PAYOUT_STATUSES:
                if not _in_usd(payout):
                    self._report_currency(uow, payout)
                elif not payout.automatic:
                    self._report_manual(uow, payout)
                elif payout.reconciliation_status != RECONCILED:
                    # Its transactions are not all listed yet: read it at a later run, whole.
                    # Nothing is stored, and the cursor stays before it so it is listed again.
                    self._cursor_held = True
                    self.counts.payouts_waiting += 1
                    self.log.info("payout.reconciliation_pending", payout=payout.id,
                                  reconciliation_status=payout.reconciliation_status)
                    return
                else:
                    self._attribute(uow, payout)
            uow.payouts.upsert(self.org_id, payout.id, **row)
            uow.sync_state.advance(self.org_id, CURSOR_OBJECT,
                                   None if self._cursor_held else datetime.fromtimestamp(payout.created, UTC),
                                   records=1 if fresh else 0)
            if fresh:
                self.counts.payouts += 1
            self._commit(uow)
        self.log.info("payout.reconciled" if fresh else "payout.updated", payout=payout.id, status=payout.status,
                      amount=format_money(amount), arrival_date=payout.arrival_date.isoformat())

    def _report_payout(self, uow: UnitOfWork, payout: StripePayout, code: str, event: str, why: str,
                       **details: Any) -> None:
        """A payout none of whose money is set against orders: a letter saying why."""
        reason = f"payout {payout.id} of {format_money(from_cents(payout.amount_cents))} {why}"
        uow.dead_letters.add(self.org_id, SOURCE, "payout", payout.id, code, reason,
                             {"payout_id": payout.id, **details})
        self.counts.errors += 1
        self.log.warning(event, payout=payout.id, **details)

    def _report_currency(self, uow: UnitOfWork, payout: StripePayout) -> None:
        """A payout in another currency: its cents are not USD cents, so its transactions are
        not set against orders' expected payouts (DESIGN: USD only)."""
        self._report_payout(uow, payout, UNSUPPORTED_CURRENCY, "payout.unsupported_currency",
                            f"{payout.currency.upper()} is not in {SUPPORTED_CURRENCY}: the GTM app bills US dollars "
                            "only, so its transactions are not reconciled against orders", currency=payout.currency)

    def _report_manual(self, uow: UnitOfWork, payout: StripePayout) -> None:
        """A payout made by hand: Stripe lists the transactions of automatic payouts only
        ("you control the timing and amount of manual payouts, so Stripe can't identify
        which transactions are included"), so none of it is set against orders."""
        self._report_payout(uow, payout, MANUAL_PAYOUT, "payout.manual",
                            "was made by hand, not by Stripe's automatic payout schedule: Stripe does not record "
                            "which transactions a manual payout carried, so its money is not reconciled against "
                            "orders; reconcile it against Stripe's balance report",
                            amount=format_money(from_cents(payout.amount_cents)))

    def _attribute(self, uow: UnitOfWork, payout: StripePayout) -> None:
        txns = list(self.gateway.transactions(payout))
        self.counts.transactions += sum(1 for t in txns if t.type != "payout")
        invoice_orders = orders_by_invoice(uow, self.org_id)
        attribution = attribute(txns, org_id=self.org_id, invoice_orders=invoice_orders,
                                known_orders=uow.mirror("order").ids(self.org_id))
        book = OrderBook(uow, self.org_id, self.proration, self.runtime.mapping)
        statuses = self._payout_statuses(uow) | {payout.id: payout.status}
        for order_id, contributions in attribution.by_order.items():
            existing = uow.reconciliation.get(self.org_id, order_id)
            merged = merge(contributions_from_json(existing.payout_ids) if existing else (), contributions)
            self._write(uow, book, order_id, merged, statuses, existing)
        for item in attribution.unattributed:
            self._report_unattributed(uow, item)
        if attribution.foreign:
            self.log.info("payout.foreign_transactions", payout=payout.id, transactions=len(attribution.foreign))

    def retrace(self, letters: Sequence[Any]) -> int:
        """Trace again the transactions of ``letters`` (unattributed money) with what is
        known now; those that now belong to an order join its reconciliation and their
        letters resolve. Returns how many resolved."""
        wanted: dict[str, set[str]] = {}
        for letter in letters:
            payout_id = (letter.payload or {}).get("payout_id") if isinstance(letter.payload, Mapping) else None
            if letter.object_name == "balance_transaction" and payout_id:
                wanted.setdefault(payout_id, set()).add(letter.record_id)
        resolved = 0
        for payout_id, txn_ids in wanted.items():
            with self.runtime.uow() as uow:
                stored = uow.payouts.get(self.org_id, payout_id)
            if stored is None:
                continue
            payout = StripePayout(stored.stripe_payout_id, to_cents(stored.amount), stored.currency,
                                   stored.arrival_date or self.today(), stored.status or "", stored.created or 0)
            txns = list(self.gateway.transactions(payout))
            with self.runtime.uow() as uow:
                invoice_orders = orders_by_invoice(uow, self.org_id)
                attribution = attribute(txns, org_id=self.org_id, invoice_orders=invoice_orders,
                                        known_orders=uow.mirror("order").ids(self.org_id))
                book = OrderBook(uow, self.org_id, self.proration, self.runtime.mapping)
                statuses = self._payout_statuses(uow)
                for order_id, contributions in attribution.by_order.items():
                    found = {t for c in contributions for t in c.transaction_ids} & txn_ids
                    if not found:
                        continue
                    existing = uow.reconciliation.get(self.org_id, order_id)
                    merged = merge(contributions_from_json(existing.payout_ids) if existing else (), contributions)
                    self._write(uow, book, order_id, merged, statuses, existing)
                    for txn_id in found:
                        closed = uow.dead_letters.resolve_for(self.org_id, SOURCE, "balance_transaction", txn_id)
                        resolved += int(closed)
                self._commit(uow)
        return resolved

    def _report_unattributed(self, uow: UnitOfWork, item: Unattributed) -> None:
        t = item.txn
        code = "UNKNOWN_CHARGE" if item.reason != "adjustment" else "ADJUSTMENT"
        payload = {"payout_id": t.payout_id, "type": t.type, "amount": format_money(from_cents(t.amount_cents)),
                   "net": format_money(from_cents(t.net_cents)), "source_id": t.source_id,
                   "invoice_id": t.invoice_id, "arrival_date": t.arrival_date.isoformat()}
        uow.dead_letters.add(self.org_id, SOURCE, "balance_transaction", t.id, code, f"{item.reason}: {item.detail}",
                             payload)
        self.counts.unknown_charges += 1
        self.log.warning("payout.unattributed", txn=t.id, reason=item.reason, payout=t.payout_id,
                         amount=payload["amount"])

    # -------------------------------------------------------------- 3: evaluate
    def _evaluate_all(self) -> dict[str, int]:
        tally: dict[str, int] = {"matched": 0, "pending": 0, "discrepancies": 0}
        with self.runtime.uow() as uow:
            book = OrderBook(uow, self.org_id, self.proration, self.runtime.mapping)
            statuses = self._payout_statuses(uow)
            existing = {r.order_id: r for r in uow.reconciliation.list(self.org_id)}
            invoiced = {i.order_id for i in uow.invoices.list(self.org_id) if i.stripe_invoice_id}
            for order_id in sorted(invoiced | set(existing)):
                row = existing.get(order_id)
                contributions = contributions_from_json(row.payout_ids) if row else ()
                result = self._write(uow, book, order_id, contributions, statuses, row)
                if result is None:
                    continue
                if result.reason:
                    key = result.reason.replace(" ", "_")
                    tally["discrepancies"] += 1
                    tally[key] = tally.get(key, 0) + 1
                else:
                    tally["matched" if result.matched else "pending"] += 1
            # money in payouts that belongs to no order stays a discrepancy until resolved
            tally["discrepancies"] += sum(1 for d in uow.dead_letters.open(self.org_id, SOURCE)
                                          if d.object_name == "balance_transaction")
            self._commit(uow)
        return tally

    def _write(self, uow: UnitOfWork, book: OrderBook, order_id: str, contributions: Sequence[Contribution],
               statuses: Mapping[str, str], existing: Any) -> OrderReconciliation | None:
        """Compute one order and write its row if anything changed; the result (None when
        the order cannot be computed: dead-lettered with the reason)."""
        try:
            expected = book.expected(order_id)
        except RecordError as exc:
            uow.dead_letters.add(self.org_id, SOURCE, "order", order_id, exc.code, exc.reason)
            self.counts.errors += 1
            self.log.warning("reconcile.order_failed", order=order_id, code=exc.code, reason=exc.reason)
            return None
        uow.dead_letters.resolve_for(self.org_id, SOURCE, "order", order_id)
        invoice = uow.invoices.get(self.org_id, order_id)
        live = [c for c in contributions if statuses.get(c.payout_id) not in DEAD_PAYOUT_STATUSES]
        result = reconcile_order(order_id, expected, [invoice_facts(invoice)] if invoice else [], live,
                                 today=self.today(), policy=self.policy)
        values = {
            "subtotal": result.subtotal, "revenue_share": result.revenue_share,
            "expected_payout": result.expected_payout, "actual_payout": result.actual_payout,
            "difference": result.difference, "payout_ids": contributions_to_json(contributions),
            "payout_date": result.payout_date, "discrepancy": result.discrepancy,
            "tax": result.tax_paid_out,  # passed through, apart from actual_payout (the partner's money)
        }
        if existing is not None and all(getattr(existing, k) == v for k, v in values.items()):
            return result
        uow.reconciliation.upsert(self.org_id, order_id, **values)
        # Orders, not writes: one order may be written when a payout is attributed and again
        # when evaluated (always so in a dry run, whose first write was rolled back).
        self._written.add(order_id)
        self.counts.orders_written = len(self._written)
        if result.reason and (existing is None or existing.discrepancy != result.discrepancy):
            self.log.warning("reconcile.discrepancy", order=order_id, reason=result.reason, detail=result.detail,
                             expected=format_money(result.expected_payout), tax=format_money(result.tax_paid_out),
                             actual=format_money(result.actual_payout) if result.actual_payout is not None else None)
        return result

    def _attention(self) -> dict[str, int]:
        """Counted every run, logged while they stand (``services.attention``): orders that
        ended after invoicing and sold PPPs without a product license."""
        with self.runtime.uow() as uow:
            attention = read_attention(uow, self.org_id, self.runtime.mapping, today=self.today())
        for flag in attention.orders:
            self.log.warning("attention.order", order=flag.order_id, code=flag.code, message=flag.message)
        for ppp in attention.unprovisionable:
            self.log.warning("attention.sold_not_provisionable", ppp=ppp.ppp_id, orders=list(ppp.orders),
                             message=ppp.message)
        return attention.counts()

    def _payout_statuses(self, uow: UnitOfWork) -> dict[str, str]:
        return {p.stripe_payout_id: p.status or "" for p in uow.payouts.list(self.org_id)}

    # -------------------------------------------------------------- 4: org payouts
    def _match_org_payouts(self) -> None:
        """The org's SfdcPartnerPayout records (ExternalId = the Stripe payout id; Amount
        converted from cents by the mapping) against Stripe's payouts: amount, arrival date
        and a failure seen on one side only are flagged per record, never absorbed."""
        with self.runtime.uow() as uow:
            ours = {p.stripe_payout_id: p for p in uow.payouts.list(self.org_id)}
            for record in uow.mirror("payout").list(self.org_id):
                stripe_id = record.get("stripe_payout_id")
                payout = ours.get(stripe_id) if stripe_id else None
                if payout is None:
                    continue
                self.counts.org_payouts_matched += 1
                code, differences = org_payout_differences(record, payout, self.runtime.mapping)
                if differences:
                    self.counts.org_payouts_differing += 1
                    uow.dead_letters.add(
                        self.org_id, SOURCE, "SfdcPartnerPayout", record["sf_id"], code,
                        f"the org's payout {record['sf_id']} (Stripe payout {stripe_id}): " + "; ".join(differences),
                        {"stripe_payout_id": stripe_id},
                    )
                else:
                    uow.dead_letters.resolve_for(self.org_id, SOURCE, "SfdcPartnerPayout", record["sf_id"])
            self._commit(uow)

    def _commit(self, uow: UnitOfWork) -> None:
        if not self.dry_run:
            uow.commit()
