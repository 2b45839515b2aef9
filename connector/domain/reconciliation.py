"""Payout reconciliation: what each order should have paid out against what Stripe paid out.

How the two sides relate in this model
--------------------------------------
*Expected* (seed 003, ``connector.domain.payouts``): the order's subtotal minus Salesforce's
revenue share, ``8,400.00 - 1,140.00 = 7,260.00``.

*Actual*: Stripe pays settled money out in payouts (daily, net of fees). Each payout is a
set of balance transactions; a charge's transaction has ``amount`` (what the customer
paid), ``fee`` (everything deducted on the way) and ``net = amount - fee``. A refund's
transaction is negative. The actual payout of an order is the sum of ``net`` over the
transactions that trace to its invoice(s) — in cents on the wire, ``Decimal`` here.

The invoice total is the order subtotal (upfront annual billing), so a fully paid order
that matches exactly has ``net == expected``, i.e. ``fee == revenue share``. That is the
GTM app's model: Salesforce's revenue share is deducted *from the payout*, like a Connect
application fee on the charge, and the Stripe processing fee is not the partner's to
carry. Stripe reports both inside ``fee`` (``fee_details`` of type ``application_fee``
and ``stripe_fee``), and this module keeps the two apart in its explanation. Where the
deductions differ from the share — e.g. a plain Stripe account that only charges its
2.9 % + 30 ¢ processing fee, and no share is deducted at all — the order is flagged
``fee differs`` with both figures, never absorbed. (The demo's Stripe sandbox deducts
the share as the fee of each payment so its payout can match exactly; see
``connector/demo.py``.)

Taxes: an invoice may carry tax (Stripe's ``total_taxes``). The customer pays subtotal +
tax, so the payout's gross carries the tax too; it is the tax authority's money, not the
partner's. It is never a payout difference: the share of the order's tax in what was paid
(pro rata of the invoice total, half-up to the cent; all of it once the invoice is paid in
full) is taken out of the net, and the partner's money ex tax is compared with the
expected payout. Where Salesforce collects the tax itself (the GTM reference describes a
payout as net of "Salesforce's share and taxes"), a fully paid order's deductions are
exactly the revenue share plus the tax: then no tax passed through and the net is the
partner's as it is. ``OrderReconciliation.tax`` says what the invoices charged and
``tax_paid_out`` how much of it passed through the payouts.

Discrepancy reasons (first that applies; only when ``|difference| > tolerance`` unless
noted):

``refund``              money of the order went back to the customer.
``partial payment``     the customer paid less than the invoice total.
``fee differs``         fully paid and paid out; the amounts differ only by the deductions.
``amount differs``      fully paid and paid out, but the invoice total is not the subtotal.
``missing from payout`` the invoice is paid but (part of) its money is in no payout
                        ``missing_after_days`` after payment (flagged whatever the tolerance).
``unknown charge``      per org, not per order: a transaction in a payout that traces to
                        no known order or invoice (``unattributed``); adjustments Stripe
                        books (no source) are reported the same way as ``adjustment``.

Everything here is pure: plain values in, plain values out. Re-attributing the same
payout replaces its contribution (keyed by payout id), so reconciling twice changes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from connector.domain.money import format_money, from_cents, ratio_half_up_cents, round_half_up_cents, to_cents

ZERO = Decimal("0.00")

REFUND = "refund"
PARTIAL_PAYMENT = "partial payment"
FEE_DIFFERS = "fee differs"
AMOUNT_DIFFERS = "amount differs"
MISSING_FROM_PAYOUT = "missing from payout"
UNKNOWN_CHARGE = "unknown charge"
ADJUSTMENT = "adjustment"
REASONS = (REFUND, PARTIAL_PAYMENT, FEE_DIFFERS, AMOUNT_DIFFERS, MISSING_FROM_PAYOUT, UNKNOWN_CHARGE, ADJUSTMENT)

# Balance transaction types, as Stripe names them. The payout's own transaction (type
# "payout") moves the money out and belongs to no order.
CHARGE_TYPES = frozenset({"charge", "payment"})
REFUND_TYPES = frozenset({"refund", "payment_refund", "payment_failure_refund"})
PAYOUT_TYPES = frozenset({"payout", "payout_cancel", "payout_failure"})


@dataclass(frozen=True)
class StripePayout:
    """One Stripe payout (a deposit to the partner's bank), as read from Stripe or rebuilt
    from the local ``payouts`` table. Amount in Stripe's integer cents."""

    id: str
    amount_cents: int
    currency: str
    arrival_date: date
    status: str
    created: int
    automatic: bool = True
    # Stripe's ``reconciliation_status``: an automatic payout's transactions are all listed
    # once it is ``completed`` (``in_progress`` for minutes after creation); a manual
    # payout's is ``not_applicable``: Stripe can't say which transactions it carried.
    reconciliation_status: str = "completed"


@dataclass(frozen=True)
class BalanceTxn:
    """One balance transaction of a payout, traced as far as the adapter could.

    ``invoice_id``/``order_id``/``org_id`` come from the charge's invoice and its metadata
    (``None`` when the trail ends). Amounts are Stripe's integer cents."""

    id: str
    type: str
    amount_cents: int
    fee_cents: int
    net_cents: int
    payout_id: str
    arrival_date: date
    stripe_fee_cents: int = 0  # the part of ``fee_cents`` that is Stripe's processing fee
    source_id: str | None = None
    invoice_id: str | None = None
    order_id: str | None = None
    org_id: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Contribution:
    """What one payout carried for one order."""

    payout_id: str
    arrival_date: date
    gross: Decimal = ZERO  # sum of charge amounts
    refunded: Decimal = ZERO  # sum of refunds, as a positive amount
    fees: Decimal = ZERO  # everything deducted (revenue share as application fee + Stripe's fee)
    stripe_fees: Decimal = ZERO  # of which Stripe's processing fee
    net: Decimal = ZERO
    transaction_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unattributed:
    """A transaction in a payout that belongs to no known order of the org."""

    txn: BalanceTxn
    reason: str  # UNKNOWN_CHARGE | ADJUSTMENT
    detail: str


@dataclass(frozen=True)
class Attribution:
    by_order: Mapping[str, tuple[Contribution, ...]]
    unattributed: tuple[Unattributed, ...]
    foreign: tuple[BalanceTxn, ...] = ()  # traced to another org's invoice: not ours to judge


@dataclass(frozen=True)
class InvoiceFacts:
    invoice_id: str
    status: str | None  # draft | open | paid | void | uncollectible
    total: Decimal  # amount due on the invoice (tax included)
    amount_paid: Decimal = ZERO
    paid_on: date | None = None
    tax: Decimal = ZERO  # part of ``total``: passes through, never the partner's


@dataclass(frozen=True)
class Expected:
    subtotal: Decimal
    revenue_share: Decimal
    expected_payout: Decimal


@dataclass(frozen=True)
class OrderReconciliation:
    order_id: str
    subtotal: Decimal
    revenue_share: Decimal
    expected_payout: Decimal
    actual_payout: Decimal | None  # the partner's money ex tax; None: nothing of this order paid out yet
    difference: Decimal | None  # actual - expected (both ex tax)
    payout_date: date | None  # latest arrival date among its payouts
    contributions: tuple[Contribution, ...] = ()
    reason: str | None = None
    detail: str | None = None
    tax: Decimal = ZERO  # tax on the order's invoices
    tax_paid_out: Decimal = ZERO  # of which carried by its payouts (in their net, taken out of actual_payout)

    @property
    def payout_ids(self) -> tuple[str, ...]:
        return tuple(c.payout_id for c in self.contributions)

    @property
    def discrepancy(self) -> str | None:
        """``"fee differs: …"``: the reason and its figures, or None when it reconciles."""
        if self.reason is None:
            return None
        return f"{self.reason}: {self.detail}" if self.detail else self.reason

    @property
    def matched(self) -> bool:
        return self.reason is None and self.actual_payout is not None


@dataclass(frozen=True)
class Policy:
    tolerance: Decimal = ZERO
    missing_after_days: int = 7


# --------------------------------------------------------------------------- attribution
def attribute(
    txns: Iterable[BalanceTxn],
    *,
    org_id: str,
    invoice_orders: Mapping[str, str],
    known_orders: Iterable[str] = (),
) -> Attribution:
    """Group a payout's transactions by order, one ``Contribution`` per (order, payout).

    A transaction belongs to an order when its invoice is one of ``invoice_orders``
    (invoice id -> order id, the org's own invoices), or when the invoice's metadata names
    this org and an order of ``known_orders``. A transaction whose invoice metadata names
    another org is *foreign* (a shared Stripe account) and left alone. Everything else
    that is not the payout's own transaction is unattributed: never absorbed."""
    known = set(known_orders)
    parts: dict[tuple[str, str], list[BalanceTxn]] = {}
    unattributed: list[Unattributed] = []
    foreign: list[BalanceTxn] = []
    for txn in txns:
        if txn.type in PAYOUT_TYPES:
            continue
        order_id = invoice_orders.get(txn.invoice_id) if txn.invoice_id else None
        if order_id is None and txn.org_id == org_id and txn.order_id in known:
            order_id = txn.order_id
        if order_id is None and txn.org_id is not None and txn.org_id != org_id:
            foreign.append(txn)
            continue
        if order_id is None:
            unattributed.append(_unattributed(txn))
            continue
        parts.setdefault((order_id, txn.payout_id), []).append(txn)
    by_order: dict[str, list[Contribution]] = {}
    for (order_id, _), group in sorted(parts.items()):
        by_order.setdefault(order_id, []).append(contribution(group))
    return Attribution({k: tuple(v) for k, v in by_order.items()}, tuple(unattributed), tuple(foreign))


def _unattributed(txn: BalanceTxn) -> Unattributed:
    amount = format_money(from_cents(txn.amount_cents))
    if txn.type == "adjustment" or txn.source_id is None:
        return Unattributed(txn, ADJUSTMENT, f"{txn.type} {txn.id} of {amount} in payout {txn.payout_id}"
                                             f"{': ' + txn.description if txn.description else ''}")
    trail = f"invoice {txn.invoice_id}" if txn.invoice_id else "no invoice"
    return Unattributed(txn, UNKNOWN_CHARGE, f"{txn.type} {txn.source_id} of {amount} in payout {txn.payout_id} "
                                             f"traces to {trail} and no known order")


def contribution(txns: Sequence[BalanceTxn]) -> Contribution:
    """Sum one payout's transactions of one order."""
    if not txns:
        raise ValueError("a contribution needs at least one transaction")
    payout_ids = {t.payout_id for t in txns}
    if len(payout_ids) != 1:
        raise ValueError(f"transactions of several payouts in one contribution: {sorted(payout_ids)}")
    gross = sum(t.amount_cents for t in txns if t.type in CHARGE_TYPES)
    refunded = -sum(t.amount_cents for t in txns if t.type in REFUND_TYPES)
    other = sum(t.amount_cents for t in txns if t.type not in CHARGE_TYPES | REFUND_TYPES)
    return Contribution(
        payout_id=txns[0].payout_id,
        arrival_date=max(t.arrival_date for t in txns),
        gross=from_cents(gross + other),
        refunded=from_cents(refunded),
        fees=from_cents(sum(t.fee_cents for t in txns)),
        stripe_fees=from_cents(sum(t.stripe_fee_cents for t in txns)),
        net=from_cents(sum(t.net_cents for t in txns)),
        transaction_ids=tuple(sorted(t.id for t in txns)),
    )


def merge(existing: Iterable[Contribution], new: Iterable[Contribution]) -> tuple[Contribution, ...]:
    """An order's contributions after seeing ``new``: the same payout seen again replaces
    its earlier contribution (a payout is immutable once paid: seeing it twice is a re-run)."""
    by_payout = {c.payout_id: c for c in existing}
    by_payout.update({c.payout_id: c for c in new})
    return tuple(sorted(by_payout.values(), key=lambda c: (c.arrival_date, c.payout_id)))


# ------------------------------------------------------------------------ reconciliation
def reconcile_order(
    order_id: str,
    expected: Expected,
    invoices: Sequence[InvoiceFacts],
    contributions: Sequence[Contribution],
    *,
    today: date,
    policy: Policy = Policy(),
) -> OrderReconciliation:
    """Expected against actual for one order, with the discrepancy reason if any."""
    base = OrderReconciliation(
        order_id=order_id,
        subtotal=expected.subtotal,
        revenue_share=expected.revenue_share,
        expected_payout=expected.expected_payout,
        actual_payout=None,
        difference=None,
        payout_date=None,
        contributions=tuple(sorted(contributions, key=lambda c: (c.arrival_date, c.payout_id))),
    )
    billed = [i for i in invoices if i.status not in ("void", "draft")]
    total = sum((i.total for i in billed), ZERO)
    tax = sum((i.tax for i in billed), ZERO)
    base = replace(base, tax=tax)
    paid = sum((i.amount_paid for i in billed), ZERO)
    paid_on = max((i.paid_on for i in billed if i.paid_on is not None), default=None)
    overdue = paid_on is not None and today > paid_on + timedelta(days=policy.missing_after_days)

    if not contributions:
        if paid > 0 and overdue:
            return replace(base, reason=MISSING_FROM_PAYOUT,
                           detail=f"{format_money(paid)} paid on {paid_on.isoformat()}, in no payout after "  # type: ignore[union-attr]
                                  f"{policy.missing_after_days} days")
        return base

    gross = sum((c.gross for c in contributions), ZERO)
    refunded = sum((c.refunded for c in contributions), ZERO)
    fees = sum((c.fees for c in contributions), ZERO)
    stripe_fees = sum((c.stripe_fees for c in contributions), ZERO)
    # What passed through for the tax authority: its share of what was charged, less its
    # share of what was refunded; the rest of the money is the partner's.
    tax_paid_out = tax_share(tax, total, gross) - tax_share(tax, total, refunded)
    withheld = ZERO
    if tax_paid_out > 0 and not refunded and gross >= total and tax_paid_out + expected.revenue_share in (
            fees, fees - stripe_fees):
        # Salesforce collected the tax itself: its deduction is exactly its share plus the
        # tax, so the tax never reached the payout (the GTM reference: a payout is "net of
        # ... Salesforce's share and taxes"). Nothing of it to take out of the net.
        withheld, tax_paid_out = tax_paid_out, ZERO
    actual = sum((c.net for c in contributions), ZERO) - tax_paid_out
    difference = actual - expected.expected_payout
    result = replace(base, actual_payout=actual, difference=difference, tax_paid_out=tax_paid_out,
                     payout_date=max(c.arrival_date for c in contributions))
    outstanding = paid - gross  # paid by the customer, not (yet) in any payout
    # The payouts prove at least ``gross`` was paid, even if the invoice's status has not
    # caught up yet (webhook still on its way).
    paid_in_fact = max(paid, gross)
    within = abs(difference) <= policy.tolerance

    if refunded > 0 and not within:
        return replace(result, reason=REFUND, detail=f"{format_money(refunded)} refunded of {format_money(gross)} paid")
    if billed and paid_in_fact < total and not within:
        return replace(result, reason=PARTIAL_PAYMENT,
                       detail=f"{format_money(paid_in_fact)} paid of {format_money(total)} invoiced")
    if outstanding > 0:
        if overdue:
            return replace(result, reason=MISSING_FROM_PAYOUT,
                           detail=f"{format_money(outstanding)} of {format_money(paid)} paid is in no payout after "
                                  f"{policy.missing_after_days} days")
        return result  # the rest of the money is still on its way: judged when it lands
    if within:
        return result
    gross_ex_tax = gross - tax_share(tax, total, gross)
    if gross_ex_tax == expected.subtotal:
        share_fee = fees - stripe_fees - withheld
        held = f", tax {format_money(withheld)}" if withheld else ""
        return replace(result, reason=FEE_DIFFERS,
                       detail=f"deducted {format_money(fees)} (revenue share {format_money(share_fee)}{held}, "
                              f"Stripe fee {format_money(stripe_fees)}); expected revenue share "
                              f"{format_money(expected.revenue_share)}")
    taxed = f" (+ tax {format_money(gross - gross_ex_tax)})" if gross != gross_ex_tax else ""
    return replace(result, reason=AMOUNT_DIFFERS,
                   detail=f"paid {format_money(gross_ex_tax)}{taxed} against a subtotal of "
                          f"{format_money(expected.subtotal)}")


def tax_share(tax: Decimal, total: Decimal, amount: Decimal) -> Decimal:
    """The tax inside ``amount`` of an invoice ``total`` carrying ``tax``: pro rata, half-up
    to the cent; all of it when ``amount`` covers the total (Stripe applies a payment to
    the invoice as a whole, so a partial payment carries its share of the tax)."""
    if tax == ZERO or total <= ZERO or amount <= ZERO:
        return ZERO
    if amount >= total:
        return tax
    # In whole cents and integer maths: ``tax * amount`` of two 18-digit amounts has 36
    # digits, past the default context's 28, which could tip a half cent.
    return ratio_half_up_cents(to_cents(round_half_up_cents(tax)), to_cents(round_half_up_cents(amount)),
                               to_cents(round_half_up_cents(total)))


@dataclass(frozen=True)
class OrgReconciliation:
    orders: tuple[OrderReconciliation, ...]
    unattributed: tuple[Unattributed, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


def summarize(orders: Iterable[OrderReconciliation], unattributed: Iterable[Unattributed] = ()) -> OrgReconciliation:
    """The org's picture: orders (discrepancies first) and counts per outcome."""
    ordered = tuple(sorted(orders, key=lambda o: (o.reason is None, o.order_id)))
    extra = tuple(unattributed)
    counts: dict[str, int] = {"orders": len(ordered), "matched": sum(1 for o in ordered if o.matched),
                              "pending": sum(1 for o in ordered if o.reason is None and not o.matched)}
    for o in ordered:
        if o.reason:
            counts[o.reason] = counts.get(o.reason, 0) + 1
    for u in extra:
        counts[u.reason] = counts.get(u.reason, 0) + 1
    counts["discrepancies"] = sum(1 for o in ordered if o.reason) + len(extra)
    return OrgReconciliation(ordered, extra, counts)
