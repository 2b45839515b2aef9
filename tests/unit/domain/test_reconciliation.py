"""Payout reconciliation, pure: the partner's payouts against seed 003's expected payout."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from connector.domain.reconciliation import (
    ADJUSTMENT,
    AMOUNT_DIFFERS,
    FEE_DIFFERS,
    MISSING_FROM_PAYOUT,
    PARTIAL_PAYMENT,
    REFUND,
    UNKNOWN_CHARGE,
    BalanceTxn,
    Expected,
    InvoiceFacts,
    Policy,
    attribute,
    merge,
    reconcile_order,
    summarize,
    tax_share,
)

ORG = "00D5g000004ExAmPLE"
OTHER_ORG = "00D5g000004OtHeRAA"
ACME = "a1O5g0000000AcMeAA"
GLOBEX = "a1O5g0000000GlObAA"
SEED_003 = Expected(Decimal("8400.00"), Decimal("1140.00"), Decimal("7260.00"))
PAID_ON = date(2025, 3, 3)
ARRIVAL = date(2025, 3, 6)
DEFAULT_POLICY = Policy()
_n = iter(range(10**6))


def charge(amount: int, fee: int, *, invoice: str | None = "in_acme", payout: str = "po_1", stripe_fee: int = 0,
           arrival: date = ARRIVAL, org: str | None = ORG, order: str | None = None) -> BalanceTxn:
    return BalanceTxn(id=f"txn_{next(_n)}", type="charge", amount_cents=amount, fee_cents=fee, net_cents=amount - fee,
                      payout_id=payout, arrival_date=arrival, stripe_fee_cents=stripe_fee, source_id=f"ch_{next(_n)}",
                      invoice_id=invoice, order_id=order, org_id=org if invoice else None)


def refund(amount: int, *, invoice: str = "in_acme", payout: str = "po_2") -> BalanceTxn:
    return BalanceTxn(id=f"txn_{next(_n)}", type="refund", amount_cents=-amount, fee_cents=0, net_cents=-amount,
                      payout_id=payout, arrival_date=ARRIVAL + timedelta(days=1), source_id=f"re_{next(_n)}",
                      invoice_id=invoice, org_id=ORG)


def acme_invoice(paid: str = "8400.00", status: str = "paid") -> InvoiceFacts:
    return InvoiceFacts("in_acme", status, Decimal("8400.00"), Decimal(paid), PAID_ON)


def reconcile(txns: list[BalanceTxn], invoice: InvoiceFacts | None = None, *, today: date = ARRIVAL,
              policy: Policy = DEFAULT_POLICY):  # type: ignore[no-untyped-def]
    attribution = attribute(txns, org_id=ORG, invoice_orders={"in_acme": ACME})
    return reconcile_order(ACME, SEED_003, [invoice or acme_invoice()], attribution.by_order.get(ACME, ()),
                           today=today, policy=policy)


def test_payout_net_of_the_revenue_share_matches_the_expected_payout_exactly() -> None:
    result = reconcile([charge(840_000, 114_000)])
    assert result.actual_payout == Decimal("7260.00")
    assert result.difference == Decimal("0.00")
    assert result.discrepancy is None and result.matched
    assert result.payout_ids == ("po_1",) and result.payout_date == ARRIVAL


def test_stripe_processing_fee_on_top_of_the_share_is_flagged_fee_differs() -> None:
    # 2.9 % + 30¢ of 8,400.00 = 243.90 deducted as well as the share
    result = reconcile([charge(840_000, 114_000 + 24_390, stripe_fee=24_390)])
    assert result.actual_payout == Decimal("7016.10")
    assert result.difference == Decimal("-243.90")
    assert result.reason == FEE_DIFFERS
    assert result.discrepancy == ("fee differs: deducted 1383.90 (revenue share 1140.00, Stripe fee 243.90); "
                                  "expected revenue share 1140.00")


def test_plain_stripe_account_without_the_share_is_fee_differs_not_a_windfall() -> None:
    result = reconcile([charge(840_000, 24_390, stripe_fee=24_390)])
    assert result.difference == Decimal("896.10")
    assert result.reason == FEE_DIFFERS


def test_customer_paid_half_is_partial_payment() -> None:
    result = reconcile([charge(420_000, 57_000)], acme_invoice(paid="4200.00", status="open"))
    assert result.actual_payout == Decimal("3630.00")
    assert result.reason == PARTIAL_PAYMENT
    assert result.detail == "4200.00 paid of 8400.00 invoiced"


def test_partial_payments_in_two_payouts_reconcile_once_both_landed() -> None:
    first = charge(420_000, 57_000, payout="po_1")
    second = charge(420_000, 57_000, payout="po_2", arrival=ARRIVAL + timedelta(days=3))
    result = reconcile([first, second])
    assert result.matched
    assert result.payout_ids == ("po_1", "po_2")
    assert result.payout_date == ARRIVAL + timedelta(days=3)


def test_refund_in_a_later_payout_is_flagged_refund() -> None:
    result = reconcile([charge(840_000, 114_000), refund(100_000)])
    assert result.actual_payout == Decimal("6260.00")
    assert result.difference == Decimal("-1000.00")
    assert result.reason == REFUND
    assert result.detail == "1000.00 refunded of 8400.00 paid"


def test_invoice_total_other_than_the_subtotal_is_amount_differs() -> None:
    invoice = InvoiceFacts("in_acme", "paid", Decimal("8500.00"), Decimal("8500.00"), PAID_ON)
    result = reconcile([charge(850_000, 114_000)], invoice)
    assert result.reason == AMOUNT_DIFFERS


def test_paid_invoice_in_no_payout_is_missing_only_after_the_grace_days() -> None:
    policy = Policy(missing_after_days=7)
    assert reconcile([], today=PAID_ON + timedelta(days=7), policy=policy).discrepancy is None
    late = reconcile([], today=PAID_ON + timedelta(days=8), policy=policy)
    assert late.reason == MISSING_FROM_PAYOUT
    assert late.actual_payout is None
    assert late.detail == "8400.00 paid on 2025-03-03, in no payout after 7 days"


def test_open_invoice_without_payout_is_simply_pending() -> None:
    result = reconcile([], InvoiceFacts("in_acme", "open", Decimal("8400.00")), today=PAID_ON + timedelta(days=60))
    assert result.reason is None and not result.matched


def test_tolerance_absorbs_nothing_beyond_it() -> None:
    one_cent_short = [charge(840_000, 114_001)]
    assert reconcile(one_cent_short).reason == FEE_DIFFERS
    assert reconcile(one_cent_short, policy=Policy(tolerance=Decimal("0.01"))).matched


def test_a_payout_spanning_several_invoices_is_split_per_order() -> None:
    txns = [
        charge(840_000, 114_000, invoice="in_acme"),
        charge(180_000, 27_000, invoice="in_globex"),
        BalanceTxn("txn_po", "payout", -879_000, 0, -879_000, "po_1", ARRIVAL, source_id="po_1"),
    ]
    attribution = attribute(txns, org_id=ORG, invoice_orders={"in_acme": ACME, "in_globex": GLOBEX})
    assert set(attribution.by_order) == {ACME, GLOBEX}
    assert attribution.by_order[ACME][0].net == Decimal("7260.00")
    assert attribution.by_order[GLOBEX][0].net == Decimal("1530.00")
    assert attribution.unattributed == ()


def test_charge_tracing_to_no_known_order_is_reported_per_org() -> None:
    stray = charge(5_000, 175, invoice=None)
    booked = BalanceTxn("txn_adj", "adjustment", -1_500, 0, -1_500, "po_1", ARRIVAL, description="Dispute fee")
    attribution = attribute([charge(840_000, 114_000), stray, booked], org_id=ORG, invoice_orders={"in_acme": ACME})
    assert [(u.reason, u.txn.id) for u in attribution.unattributed] == [(UNKNOWN_CHARGE, stray.id),
                                                                       (ADJUSTMENT, "txn_adj")]
    assert "traces to no invoice and no known order" in attribution.unattributed[0].detail
    summary = summarize([], attribution.unattributed)
    assert summary.counts[UNKNOWN_CHARGE] == 1 and summary.counts["discrepancies"] == 2


def test_invoice_metadata_names_the_order_when_the_invoice_is_not_stored_locally() -> None:
    txn = charge(840_000, 114_000, invoice="in_elsewhere", order=ACME)
    attribution = attribute([txn], org_id=ORG, invoice_orders={}, known_orders=[ACME])
    assert list(attribution.by_order) == [ACME]


def test_another_orgs_charge_on_a_shared_stripe_account_is_not_ours() -> None:
    theirs = charge(100_000, 3_200, invoice="in_theirs", org=OTHER_ORG, order="a1O5g0000000ThEiRS")
    attribution = attribute([theirs], org_id=ORG, invoice_orders={})
    assert attribution.by_order == {} and attribution.unattributed == () and attribution.foreign == (theirs,)


def test_seeing_the_same_payout_twice_changes_nothing() -> None:
    txns = [charge(840_000, 114_000)]
    once = attribute(txns, org_id=ORG, invoice_orders={"in_acme": ACME}).by_order[ACME]
    twice = merge(once, attribute(txns, org_id=ORG, invoice_orders={"in_acme": ACME}).by_order[ACME])
    assert twice == once
    assert reconcile_order(ACME, SEED_003, [acme_invoice()], twice, today=ARRIVAL) == \
        reconcile_order(ACME, SEED_003, [acme_invoice()], once, today=ARRIVAL)


def test_summary_lists_discrepancies_first() -> None:
    ok = reconcile([charge(840_000, 114_000)])
    bad = reconcile([charge(840_000, 114_000), refund(1_000)])
    bad = replace(bad, order_id="a1O5g0000000ZzZzAA")
    summary = summarize([ok, bad])
    assert [o.order_id for o in summary.orders] == ["a1O5g0000000ZzZzAA", ACME]
    assert summary.counts == {"orders": 2, "matched": 1, "pending": 0, REFUND: 1, "discrepancies": 1}


# ------------------------------------------------------------------------------ properties
cents = st.integers(min_value=1, max_value=5_000_000)


@st.composite
def payouts(draw: st.DrawFn) -> list[BalanceTxn]:
    txns = []
    for _ in range(draw(st.integers(1, 12))):
        amount = draw(cents)
        fee = draw(st.integers(0, amount))
        invoice = draw(st.sampled_from(["in_acme", "in_globex", "in_unknown", None]))
        payout = draw(st.sampled_from(["po_1", "po_2", "po_3"]))
        txns.append(charge(amount, fee, invoice=invoice, payout=payout))
    return txns


@given(payouts())
def test_every_cent_paid_out_is_attributed_or_reported(txns: list[BalanceTxn]) -> None:
    attribution = attribute(txns, org_id=ORG, invoice_orders={"in_acme": ACME, "in_globex": GLOBEX})
    attributed = sum(c.net for cs in attribution.by_order.values() for c in cs)
    reported = sum(Decimal(u.txn.net_cents) / 100 for u in attribution.unattributed)
    assert attributed + reported == Decimal(sum(t.net_cents for t in txns)) / 100


@given(st.lists(st.tuples(cents, st.integers(0, 10_000)), min_size=1, max_size=6), st.integers(0, 3))
def test_actual_is_the_sum_of_nets_however_the_payment_is_split(parts: list[tuple[int, int]], shift: int) -> None:
    txns = [charge(a, min(f, a), payout=f"po_{(i + shift) % 3}") for i, (a, f) in enumerate(parts)]
    total_paid = Decimal(sum(a for a, _ in parts)) / 100
    invoice = InvoiceFacts("in_acme", "paid", total_paid, total_paid, PAID_ON)
    result = reconcile(txns, invoice)
    assert result.actual_payout == Decimal(sum(t.net_cents for t in txns)) / 100
    assert result.difference == result.actual_payout - SEED_003.expected_payout
    assert (result.reason is None) == (result.difference == 0)


# -- taxes ---------------------------------------------------------------------------------
TAX = Decimal("745.50")  # 8.875 % of 8,400.00


def taxed_invoice(paid: str = "9145.50", status: str = "paid", tax: Decimal = TAX) -> InvoiceFacts:
    return InvoiceFacts("in_acme", status, Decimal("8400.00") + tax, Decimal(paid), PAID_ON, tax=tax)


def test_tax_passes_through_the_payout_and_is_never_a_difference() -> None:
    # The customer pays 8,400.00 + 745.50 tax; the share is deducted; the net carries the tax.
    result = reconcile([charge(914_550, 114_000)], taxed_invoice())
    assert (result.tax, result.tax_paid_out) == (TAX, TAX)
    assert result.actual_payout == Decimal("7260.00") and result.difference == Decimal("0.00")
    assert result.discrepancy is None and result.matched


def test_a_fee_difference_on_a_taxed_order_is_measured_ex_tax() -> None:
    result = reconcile([charge(914_550, 114_000 + 26_552, stripe_fee=26_552)], taxed_invoice())
    assert result.reason == FEE_DIFFERS and result.difference == Decimal("-265.52")
    assert result.tax_paid_out == TAX


def test_a_partial_payment_carries_its_share_of_the_tax_half_up() -> None:
    # Half of 9,145.50 paid: 372.75 of its tax passed through, the rest is the partner's.
    result = reconcile([charge(457_275, 57_000)], taxed_invoice(paid="4572.75", status="open"))
    assert result.reason == PARTIAL_PAYMENT and result.tax_paid_out == Decimal("372.75")
    assert result.actual_payout == Decimal("4572.75") - Decimal("570.00") - Decimal("372.75")
    one_third = reconcile([charge(304_850, 0)], taxed_invoice(paid="3048.50", status="open"))
    assert one_third.tax_paid_out == Decimal("248.50")
    assert tax_share(Decimal("0.01"), Decimal("2.00"), Decimal("1.00")) == Decimal("0.01")  # 0.005 half-up
    assert tax_share(Decimal("0.03"), Decimal("2.00"), Decimal("1.00")) == Decimal("0.02")  # 0.015 half-up


def test_a_refund_takes_its_tax_back_out_of_what_passed_through() -> None:
    result = reconcile([charge(914_550, 114_000), refund(914_550)], taxed_invoice())
    assert result.reason == REFUND and result.tax_paid_out == Decimal("0.00")


def test_inclusive_tax_inside_the_subtotal_is_an_amount_difference_named_as_tax() -> None:
    # A tax-inclusive invoice of 8,400.00 holds 684.86 of tax: the partner keeps less than
    # the order expects, and the detail says why.
    tax = Decimal("684.86")
    invoice = InvoiceFacts("in_acme", "paid", Decimal("8400.00"), Decimal("8400.00"), PAID_ON, tax=tax)
    result = reconcile([charge(840_000, 114_000)], invoice)
    assert result.reason == AMOUNT_DIFFERS and result.difference == -tax
    assert result.detail == "paid 7715.14 (+ tax 684.86) against a subtotal of 8400.00"


def test_void_invoices_carry_no_tax() -> None:
    result = reconcile([], taxed_invoice(paid="0.00", status="void"))
    assert result.tax == Decimal("0.00") and result.actual_payout is None
