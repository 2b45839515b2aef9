"""Which payouts' transactions Stripe can list: ``balance_transactions?payout=`` is "for
automatic Stripe payouts only", and an automatic payout's transactions are all listed once
its ``reconciliation_status`` is ``completed`` ("for most payouts, within a few minutes of
payout creation"). Reading a payout earlier would attribute part of it, once, for good; a
manual payout can't be attributed at all. Against the local Stripe sandbox, which models
both."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
import requests

from tests.fixtures.payouts import PartnerBooks, core_app


def keep_reconciliation_in_progress(books: PartnerBooks, seconds: int) -> None:
    world = books.stripe_box.world
    world.settings = replace(world.settings, payout_reconciliation_delay_s=seconds)


def manual_payout(books: PartnerBooks, amount_cents: int) -> str:
    answer = requests.post(f"{books.stripe_box.api_base}/v1/payouts",
                           data={"amount": str(amount_cents), "currency": "usd"},
                           auth=(books.stripe_box.api_key, ""), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["automatic"] is False and answer.json()["reconciliation_status"] == "not_applicable"
    return str(answer.json()["id"])


def test_a_payout_still_being_reconciled_at_stripe_is_read_whole_at_a_later_run(books: PartnerBooks) -> None:
    keep_reconciliation_in_progress(books, 600)
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    payout = books.payout()
    assert payout["reconciliation_status"] == "in_progress"

    waiting = books.run("reconcile")

    assert waiting.counts["payouts_waiting"] == 1 and waiting.counts["payouts"] == 0
    assert books.stripe_box.calls("GET /v1/balance_transactions") == 0  # not read in part
    with books.uow() as uow:
        assert uow.payouts.list(books.org_id) == []
        state = uow.sync_state.get(books.org_id, "stripe_payouts")
    assert state is None or state.cursor is None  # the cursor stays before it
    row = books.reconciliation(order)
    assert row is None or row.payout_ids in (None, [])

    books.stripe_box.advance_clock(seconds=600)  # Stripe completes the payout's reconciliation
    done = books.run("reconcile")

    assert done.counts["payouts"] == 1 and done.counts["payouts_waiting"] == 0
    row = books.reconciliation(order)
    assert row.actual_payout == Decimal("7260.00") and row.discrepancy is None
    assert [p["payout_id"] for p in row.payout_ids] == [payout["id"]]
    assert books.stripe_box.events("payout.reconciliation_completed")[0]["data"]["object"]["id"] == payout["id"]


def test_a_later_payout_does_not_carry_the_cursor_past_one_still_waiting(books: PartnerBooks) -> None:
    first_order, second_order = books.an_order(), books.an_order(core_app(2))
    books.invoice(first_order)
    books.pay_with_share_deducted(first_order)
    keep_reconciliation_in_progress(books, 3 * 86_400)
    first = books.payout()  # still in progress when the second is made and read
    keep_reconciliation_in_progress(books, 0)
    books.invoice(second_order)
    books.pay_with_share_deducted(second_order)
    second = books.payout()
    assert (first["reconciliation_status"], second["reconciliation_status"]) == ("in_progress", "completed")

    books.run("reconcile")
    with books.uow() as uow:
        assert [p.stripe_payout_id for p in uow.payouts.list(books.org_id)] == [second["id"]]
        cursor = uow.sync_state.get(books.org_id, "stripe_payouts").cursor
    assert cursor is None or cursor.timestamp() < first["created"]

    books.stripe_box.advance_clock(days=3)
    books.run("reconcile")
    assert [p["payout_id"] for p in books.reconciliation(first_order).payout_ids] == [first["id"]]
    assert [p["payout_id"] for p in books.reconciliation(second_order).payout_ids] == [second["id"]]


def test_a_manual_payout_is_a_letter_and_is_never_listed_by_payout(books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    books.stripe_box.advance_clock(days=2)  # the balance is available
    payout_id = manual_payout(books, 100_000)

    outcome = books.run("reconcile")

    assert outcome.counts["payouts"] == 1 and outcome.counts["errors"] == 1
    assert books.stripe_box.calls("GET /v1/balance_transactions") == 0
    [letter] = books.open_letters("payouts")
    assert (letter.error_code, letter.record_id) == ("MANUAL_PAYOUT", payout_id)
    assert "made by hand" in letter.reason and "1000.00" in letter.reason
    assert books.run("reconcile").counts["errors"] == 0  # recorded once: not a new letter each run


def test_the_sandbox_refuses_the_payout_filter_for_a_manual_payout_as_stripe_documents(
        books: PartnerBooks) -> None:
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    books.stripe_box.advance_clock(days=2)
    payout_id = manual_payout(books, 100_000)

    answer = requests.get(f"{books.stripe_box.api_base}/v1/balance_transactions", params={"payout": payout_id},
                          auth=(books.stripe_box.api_key, ""), timeout=10)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "payout"


@pytest.mark.parametrize("delay", [0, 600])
def test_the_sandbox_lists_an_automatic_payouts_transactions_once_reconciled(books: PartnerBooks,
                                                                           delay: int) -> None:
    keep_reconciliation_in_progress(books, delay)
    order = books.an_order()
    books.invoice(order)
    books.pay_with_share_deducted(order)
    payout = books.payout()

    def listed() -> list[str]:
        answer = requests.get(f"{books.stripe_box.api_base}/v1/balance_transactions",
                              params={"payout": payout["id"]}, auth=(books.stripe_box.api_key, ""), timeout=10)
        assert answer.status_code == 200, answer.text
        return sorted(t["type"] for t in answer.json()["data"])

    assert listed() == (["charge", "payout"] if delay == 0 else ["payout"])
    books.stripe_box.advance_clock(seconds=delay)
    assert listed() == ["charge", "payout"]
    fetched = requests.get(f"{books.stripe_box.api_base}/v1/payouts/{payout['id']}",
                           auth=(books.stripe_box.api_key, ""), timeout=10).json()
    assert fetched["reconciliation_status"] == "completed"
