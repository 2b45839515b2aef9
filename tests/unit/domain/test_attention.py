"""Attention flags, pure: orders that ended after invoicing, sold PPPs without a license."""

from __future__ import annotations

from datetime import date

from connector.domain.attention import (
    ORDER_ERROR_AFTER_INVOICE,
    ORDER_EXPIRED_AFTER_INVOICE,
    InvoicedOrder,
    SoldItem,
    order_attention,
    orders_needing_attention,
    unprovisionable,
)

TODAY = date(2026, 6, 1)
END = date(2026, 12, 31)


def order(state: str | None, invoice_status: str | None = "open", *, end: date | None = END,
          invoice: str | None = "in_1", number: str = "00000101") -> InvoicedOrder:
    label = state.capitalize() if state else None
    return InvoicedOrder("801A", number, state, label, end, invoice, "INV-0001", invoice_status)


def test_error_after_an_issued_invoice_is_flagged_whatever_the_invoice_state() -> None:
    for status in ("open", "paid", "uncollectible"):
        flag = order_attention(order("error", status), today=TODAY)
        assert flag is not None and flag.code == ORDER_ERROR_AFTER_INVOICE
        assert flag.message.startswith(f"order 00000101 is Error in the org after invoice INV-0001 ({status})")


def test_nothing_issued_or_voided_or_still_running_is_not_flagged() -> None:
    assert order_attention(order("error", "void"), today=TODAY) is None
    assert order_attention(order("error", "draft"), today=TODAY) is None
    assert order_attention(order("error", None), today=TODAY) is None
    assert order_attention(order("error", invoice=None), today=TODAY) is None
    assert order_attention(order("activated"), today=TODAY) is None
    assert order_attention(order("processing"), today=TODAY) is None


def test_expired_is_flagged_when_cut_short_or_unpaid_not_at_the_normal_end_of_a_paid_term() -> None:
    early = order_attention(order("expired", "paid"), today=TODAY)
    assert early is not None and early.code == ORDER_EXPIRED_AFTER_INVOICE
    assert "before its service end date 2026-12-31" in early.message and "still" not in early.message
    unpaid = order_attention(order("expired", "open"), today=date(2027, 1, 5))
    assert unpaid is not None and "while invoice INV-0001 is still open" in unpaid.message
    assert "service end date" not in unpaid.message
    assert order_attention(order("expired", "paid"), today=date(2027, 1, 5)) is None  # the term ran its course
    unknown_end = order_attention(order("expired", "paid", end=None), today=TODAY)
    assert unknown_end is not None and "with no service end date" in unknown_end.message


def test_orders_needing_attention_are_sorted_by_number() -> None:
    flags = orders_needing_attention([order("error", number="00000103"), order("activated", number="00000100"),
                                      order("error", number="00000102")], today=TODAY)
    assert [f.order_number for f in flags] == ["00000102", "00000103"]


def test_one_flag_per_unlicensed_ppp_naming_its_orders() -> None:
    sold = [SoldItem("0tP1", "Core App", "801A", "00000101"), SoldItem("0tP1", "Core App", "801B", "00000102"),
            SoldItem("0tP1", "Core App", "801A", "00000101"),  # two items of one order: named once
            SoldItem("0tP2", None, "801C", None), SoldItem("0tP3", "Licensed", "801A", "00000101")]
    flags = unprovisionable(sold, licensed_ppps={"0tP3"})
    assert [(f.ppp_id, f.orders) for f in flags] == [("0tP1", ("00000101", "00000102")), ("0tP2", ("801C",))]
    assert flags[0].message == ("sold but not provisionable: PPP Core App (0tP1) has no product license "
                                "(SfdcPartnerProductLicense); sold on orders 00000101, 00000102")
    assert flags[1].message.endswith("PPP 0tP2 has no product license (SfdcPartnerProductLicense); sold on order 801C")
    assert unprovisionable([]) == []
