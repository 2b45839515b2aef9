"""The connector's own tables, as the services use them."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from .helpers import ORG, OTHER_ORG, T0, order_id

KEY = "00D000000000ACMEAA:a0B000000000000001:invoice.create:v1"


def test_outbox_intent_then_result(uow_factory) -> None:
    request = {"customer": "cus_1", "lines": [{"amount": Decimal("6000.00")}]}
    with uow_factory() as uow:
        entry = uow.outbox.record_intent(ORG, KEY, "invoice.create", order_id(1), request)
        uow.commit()
    assert entry.status == "pending" and entry.attempts == 0
    with uow_factory() as uow:
        assert [e.idempotency_key for e in uow.outbox.pending(ORG)] == [KEY]
        done = uow.outbox.record_result(KEY, {"id": "in_123"})
        uow.commit()
    assert done.status == "done" and done.result == {"id": "in_123"} and done.attempts == 1
    with uow_factory() as uow:
        assert uow.outbox.pending(ORG) == []
        assert [e.id for e in uow.outbox.for_subject(ORG, order_id(1))] == [entry.id]


def test_crash_after_intent_resumes_with_the_same_entry(uow_factory) -> None:
    with uow_factory() as uow:
        first = uow.outbox.record_intent(ORG, KEY, "invoice.create", order_id(1), {"v": 1})
        uow.commit()
    # the process died before the Stripe call returned; the next run records intent again
    with uow_factory() as uow:
        again = uow.outbox.record_intent(ORG, KEY, "invoice.create", order_id(1), {"v": 2})
        uow.commit()
    assert again == first and again.request == {"v": 1}
    with uow_factory() as uow:
        failed = uow.outbox.record_result(KEY, None, status="failed", error="card_declined")
        assert failed.status == "failed" and failed.error == "card_declined"
        with pytest.raises(ValueError, match="outbox status"):
            uow.outbox.record_result(KEY, None, status="maybe")
        with pytest.raises(KeyError, match="no intent"):
            uow.outbox.record_result("unknown-key", None)


def test_dead_letter_for_the_same_record_is_refreshed_not_duplicated(uow_factory) -> None:
    with uow_factory() as uow:
        first = uow.dead_letters.add(ORG, "writeback", "GTM_Order_Billing__c", order_id(1),
                                     "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Amount must be positive",
                                     {"a": 1})  # fmt: skip
        second = uow.dead_letters.add(ORG, "writeback", "GTM_Order_Billing__c", order_id(1),
                                      "UNABLE_TO_LOCK_ROW", "row locked", {"a": 2})  # fmt: skip
        other = uow.dead_letters.add(ORG, "invoicing", "order", order_id(1), "NO_BILLING_EMAIL", "no email")
        uow.commit()
    assert second == first and other != first
    with uow_factory() as uow:
        letter = uow.dead_letters.get(first)
        assert letter is not None
        assert (letter.attempts, letter.error_code, letter.reason, letter.payload) == (
            2, "UNABLE_TO_LOCK_ROW", "row locked", {"a": 2})  # fmt: skip
        assert uow.dead_letters.count_open(ORG) == 2
        assert uow.dead_letters.count_open(ORG, source="writeback") == 1
        assert [d.id for d in uow.dead_letters.open(source="invoicing")] == [other]
        assert [d.id for d in uow.dead_letters.open(ORG, ids=[first])] == [first]


def test_resolved_letter_makes_room_for_a_new_one(uow_factory) -> None:
    with uow_factory() as uow:
        first = uow.dead_letters.add(ORG, "mirror", "SfdcPartnerOrder", order_id(1), "INVALID_VALUE", "bad")
        assert uow.dead_letters.resolve(first) is True
        assert uow.dead_letters.resolve(first) is False
        second = uow.dead_letters.add(ORG, "mirror", "SfdcPartnerOrder", order_id(1), "INVALID_VALUE", "bad again")
        assert second != first
        assert uow.dead_letters.resolve_for(ORG, "mirror", "SfdcPartnerOrder", order_id(1)) is True
        assert uow.dead_letters.count_open(ORG) == 0
        with pytest.raises(ValueError, match="source"):
            uow.dead_letters.add(ORG, "elsewhere", "x", "y", "c", "r")
        uow.commit()


def test_database_refuses_two_open_letters_for_one_record(uow_factory) -> None:
    from connector.adapters.store import tables

    with uow_factory() as uow:
        uow.dead_letters.add(ORG, "mirror", "SfdcPartnerOrder", order_id(1), "INVALID_VALUE", "bad")
        with pytest.raises(IntegrityError):
            uow.session.execute(
                tables.dead_letter.insert().values(
                    org_id=ORG, source="mirror", object_name="SfdcPartnerOrder", record_id=order_id(1),
                    error_code="X", reason="dup", attempts=1, created_at=T0, updated_at=T0))  # fmt: skip


def test_duplicate_stripe_event_is_recognised(uow_factory) -> None:
    with uow_factory() as uow:
        assert uow.stripe_events.seen("evt_1") is False
        assert uow.stripe_events.add("evt_1", type="invoice.paid", created=1_772_000_000, payload={"id": "evt_1"},
                                     org_id=ORG) is True  # fmt: skip
        uow.commit()
    with uow_factory() as uow:
        assert uow.stripe_events.add("evt_1", type="invoice.paid", created=1_772_000_000) is False
        assert uow.stripe_events.seen("evt_1") is True
        assert [e.event_id for e in uow.stripe_events.unprocessed(ORG)] == ["evt_1"]
        uow.stripe_events.mark_processed("evt_1", "applied")
        uow.commit()
        event = uow.stripe_events.get("evt_1")
    assert event is not None and event.outcome == "applied" and event.processed_at is not None


def test_invoice_is_created_once_and_then_updated(uow_factory) -> None:
    times = iter([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)])
    with uow_factory(clock=lambda: next(times)) as uow:
        created = uow.invoices.upsert(ORG, order_id(1), stripe_invoice_id="in_1", status="open", status_source="create",
                                      amount_due=Decimal("8400.00"), due_date=date(2026, 4, 1))  # fmt: skip
        paid = uow.invoices.upsert(ORG, order_id(1), status="paid", status_source="webhook", last_event_created=17,
                                   amount_paid=Decimal("8400.00"), paid_at=T0 + timedelta(days=3))  # fmt: skip
        uow.commit()
    assert created.created_at == T0 and paid.created_at == T0 and paid.updated_at == T0 + timedelta(hours=1)
    assert paid.amount_due == Decimal("8400.00") and paid.due_date == date(2026, 4, 1)
    with uow_factory() as uow:
        assert uow.invoices.get_by_stripe_id("in_1") == paid
        assert uow.invoices.list(ORG, status="paid") == [paid]
        assert uow.invoices.list(ORG, status="open") == []
        with pytest.raises(TypeError, match="unknown column"):
            uow.invoices.upsert(ORG, order_id(1), colour="blue")
        with pytest.raises(ValueError, match="status_source"):
            uow.invoices.upsert(ORG, order_id(1), status_source="guess")


def test_payouts_and_reconciliation(uow_factory) -> None:
    with uow_factory() as uow:
        uow.payouts.upsert(ORG, "po_1", amount=Decimal("7260.00"), currency="usd", arrival_date=date(2026, 5, 1),
                           status="paid", created=1)  # fmt: skip
        uow.reconciliation.upsert(ORG, order_id(1), subtotal=Decimal("8400.00"), revenue_share=Decimal("1140.00"),
                                  expected_payout=Decimal("7260.00"), actual_payout=Decimal("7250.00"),
                                  difference=Decimal("-10.00"), payout_ids=["po_1"],
                                  discrepancy="short by 10.00")  # fmt: skip
        uow.reconciliation.upsert(ORG, order_id(2), subtotal=Decimal("100.00"), revenue_share=Decimal("15.00"),
                                  expected_payout=Decimal("85.00"))  # fmt: skip
        uow.commit()
    with uow_factory() as uow:
        assert [p.stripe_payout_id for p in uow.payouts.list(ORG)] == ["po_1"]
        assert uow.payouts.get(ORG, "po_1").amount == Decimal("7260.00")  # type: ignore[union-attr]
        flagged = uow.reconciliation.list(ORG, discrepancies_only=True)
        assert [(r.order_id, r.difference, r.payout_ids) for r in flagged] == [
            (order_id(1), Decimal("-10.00"), ["po_1"])]  # fmt: skip
        assert len(uow.reconciliation.list(ORG)) == 2


def test_writeback_state_and_offer_drafts(uow_factory) -> None:
    with uow_factory() as uow:
        uow.writeback_state.upsert(ORG, order_id(1), payload={"Invoice_Status__c": "paid"}, payload_hash="h1",
                                   last_written_at=T0, last_result="ok")  # fmt: skip
        uow.offer_drafts.upsert(ORG, "acme-renewal", payload={"lines": 2}, payload_hash="d1", status="draft")
        uow.offer_drafts.upsert(ORG, "acme-renewal", sf_id="a0O000000000000001", status="pushed", pushed_at=T0)
        uow.commit()
    with uow_factory() as uow:
        state = uow.writeback_state.get(ORG, order_id(1))
        assert state is not None and state.payload_hash == "h1"
        assert uow.writeback_state.list(OTHER_ORG) == []
        draft = uow.offer_drafts.get(ORG, "acme-renewal")
        assert draft is not None and draft.status == "pushed" and draft.payload == {"lines": 2}
        assert uow.offer_drafts.list(ORG, status="draft") == []


def test_job_runs_record_the_last_success(uow_factory) -> None:
    times = iter([T0 + timedelta(minutes=m) for m in range(10)])
    with uow_factory(clock=lambda: next(times)) as uow:
        ok = uow.job_runs.start(ORG, "mirror", "run-1", instance="host-a")
        uow.job_runs.finish(ok, "ok", counts={"orders": 12})
        failed = uow.job_runs.start(ORG, "mirror", "run-2", instance="host-a")
        finished = uow.job_runs.finish(failed, "failed", error="TransientError: timeout")
        uow.job_runs.start(ORG, "invoicing", "run-3")
        uow.commit()
    assert finished.finished_at is not None and finished.error == "TransientError: timeout"
    with uow_factory() as uow:
        last = uow.job_runs.last_success(ORG, "mirror")
        assert last is not None and last.run_id == "run-1" and last.counts == {"orders": 12}
        assert [r.run_id for r in uow.job_runs.list(ORG)] == ["run-3", "run-2", "run-1"]
        assert [r.status for r in uow.job_runs.list(ORG, job="invoicing")] == ["running"]
        with pytest.raises(ValueError):
            uow.job_runs.finish(ok, "running")


def test_anomalies_are_kept(uow_factory) -> None:
    with uow_factory() as uow:
        uow.anomalies.add(ORG, "order", order_id(1), "order", "activated", "new", "went back to New")
        uow.anomalies.add(ORG, "invoice", "in_1", "invoice", "paid", "open")
        uow.commit()
    with uow_factory() as uow:
        assert uow.anomalies.count(ORG) == 2
        assert [a.to_state for a in uow.anomalies.list(ORG, object_name="order")] == ["new"]
        assert uow.anomalies.count(OTHER_ORG) == 0
