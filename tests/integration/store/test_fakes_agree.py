"""The in-memory repositories of ``tests/fakes.py`` answer as the SQL ones do: each script
below runs once on ``SqlUnitOfWork`` (SQLite and PostgreSQL) and once on ``FakeUnitOfWork``,
under one clock, and both must return the same rows. A service test on the fakes is only
worth what this agreement is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.adapters.store.alerts import API_LIMIT_ERROR_PREFIX
from connector.services.ports import UnitOfWork
from tests.fakes import FakeStore, FakeUnitOfWork

from .helpers import ORG, OTHER_ORG, T0, order_id

Script = Callable[[Callable[[], UnitOfWork], "Clock"], list[Any]]


class Clock:
    """Time moves only when the script says so (fake and SQL may read it a different number of times)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 60) -> None:
        self.now += timedelta(seconds=seconds)


def attempt(call: Callable[[], Any]) -> Any:
    """The call's answer, or the name of what it raised."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the error is the answer compared
        return type(exc).__name__


def sync_state(new: Callable[[], UnitOfWork], clock: Clock) -> list[Any]:
    out: list[Any] = []
    with new() as uow:
        out.append(uow.sync_state.advance(ORG, "Order", T0 + timedelta(hours=1), 5))
        out.append(uow.sync_state.begin(ORG, "Order"))
        uow.commit()
    clock.tick()
    with new() as uow:
        out.append(uow.sync_state.advance(ORG, "Order", T0, 2))  # earlier: the cursor stays
        out.append(uow.sync_state.mark_run(ORG, "Item", "failed"))
        uow.commit()
    clock.tick()
    with new() as uow:
        out.append(uow.sync_state.begin(ORG, "Item"))  # after a failed run: its start is kept
        out.append(uow.sync_state.set_status(ORG, "Item", "stopped"))
        out.append(uow.sync_state.unfinished_since(ORG, ["Order", "Item"]))
        out.append(uow.sync_state.unfinished_since(ORG, ["Payout"]))
        out.append(uow.sync_state.mark_run(ORG, "Order", "ok", full=True))
        out.append(uow.sync_state.advance(OTHER_ORG, "Order", None))
        uow.commit()
    with new() as uow:
        out += [uow.sync_state.all(ORG), uow.sync_state.get(ORG, "Item"), uow.sync_state.get(ORG, "Payout")]
    return out


def outbox(new: Callable[[], UnitOfWork], clock: Clock) -> list[Any]:
    key, old_key = f"{ORG}:create:v2", "legacy:create"
    out: list[Any] = []
    with new() as uow:
        out.append(uow.outbox.record_intent(ORG, key, "invoice.create", order_id(1), {"lines": 2}))
        out.append(uow.outbox.record_intent(ORG, old_key, "customer", order_id(1), None))
        uow.commit()
    clock.tick()
    with new() as uow:
        out.append(uow.outbox.record_intent(ORG, key, "invoice.create", order_id(1), {"lines": 3}))  # the first stays
        out.append(uow.outbox.record_result(key, {"id": "in_1"}))
        out.append(attempt(lambda: uow.outbox.record_result(key, None, status="lost")))
        out.append(attempt(lambda: uow.outbox.record_result("never-recorded", None)))
        out.append(uow.outbox.record_result(old_key, None, status="failed", error="card declined"))
        uow.commit()
    with new() as uow:
        out += [uow.outbox.get(key), uow.outbox.get("never-recorded"), uow.outbox.for_subject(ORG, order_id(1)),
                uow.outbox.for_subject(OTHER_ORG, order_id(1)), uow.outbox.has_other_keys(ORG, "customer", ORG),
                uow.outbox.has_other_keys(ORG, "invoice.create", ORG)]
        out.append(uow.outbox.record_result(old_key, None, status="pending"))
        uow.commit()
    with new() as uow:
        out.append(uow.outbox.for_subject(ORG, order_id(1)))
    return out


def keyed(new: Callable[[], UnitOfWork], clock: Clock) -> list[Any]:
    out: list[Any] = []
    with new() as uow:
        for n, (arrives, status) in enumerate([(date(2026, 3, 9), "in_transit"), (date(2026, 3, 2), "paid")]):
            out.append(uow.payouts.upsert(ORG, f"po_{n}", amount=Decimal("120.50"), currency="usd",
                                          arrival_date=arrives, status=status, created=1_700_000_000 + n))
        out.append(uow.reconciliation.upsert(ORG, order_id(1), subtotal=Decimal("100.00"),
                                             revenue_share=Decimal("15.00"), expected_payout=Decimal("85.00"),
                                             payout_ids=["po_1"], payout_date=date(2026, 3, 2)))
        out.append(uow.reconciliation.upsert(ORG, order_id(2), subtotal=Decimal("10.00"), revenue_share=Decimal("1.50"),
                                             expected_payout=Decimal("8.50"), discrepancy="missing"))
        out.append(uow.writeback_state.upsert(ORG, order_id(1), payload={"Paid__c": True}, payload_hash="h1",
                                              last_written_at=T0, last_result="ok"))
        out.append(uow.offer_drafts.upsert(ORG, "acme-q2", status="creating", payload={"creating": 1}))
        out.append(uow.offer_drafts.upsert(ORG, "acme-q1", status="pushed", sf_id="a0X000000000001"))
        out.append(uow.mapping_checks.upsert(ORG, "gtm", mapping_hash="abc", checked_at=T0))
        out.append(attempt(lambda: uow.payouts.upsert(ORG, "po_9", colour="red")))
        uow.commit()
    clock.tick()
    with new() as uow:
        out.append(uow.payouts.upsert(ORG, "po_0", status="paid"))
        out.append(uow.reconciliation.upsert(ORG, order_id(2), discrepancy=None, actual_payout=Decimal("8.50")))
        out.append(uow.offer_drafts.upsert(ORG, "acme-q2", status="pushed", last_error=None))
        out.append(uow.mapping_checks.upsert(ORG, "gtm", describe_last_modified="Tue, 03 Mar 2026 10:00:00 GMT"))
        uow.commit()
    with new() as uow:
        out += [uow.payouts.list(ORG), uow.payouts.get(ORG, "po_1"), uow.payouts.get(OTHER_ORG, "po_1"),
                uow.reconciliation.list(ORG), uow.reconciliation.list(ORG, discrepancies_only=True),
                uow.writeback_state.list(ORG), uow.writeback_state.get(ORG, order_id(1)),
                uow.offer_drafts.list(ORG), uow.offer_drafts.list(ORG, status="creating"),
                uow.offer_drafts.get(ORG, "acme-q1"), uow.mapping_checks.get(ORG, "gtm")]
    return out


def alerts(new: Callable[[], UnitOfWork], clock: Clock) -> list[Any]:
    out: list[Any] = []
    with new() as uow:
        out += [uow.alerts.record(ORG, "failed:mirror:1", "job_failed", {"job": "mirror"}),
                uow.alerts.record(ORG, "budget:1", "api_budget", {}, now=T0 - timedelta(hours=1)),
                uow.alerts.record(OTHER_ORG, "budget:1", "api_budget", {})]
        uow.commit()
    clock.tick()
    with new() as uow:
        out.append(uow.alerts.record(ORG, "failed:mirror:1", "job_failed", {"again": True}))  # recorded before
        first, second = (a.id for a in uow.alerts.pending(ORG))
        out += [uow.alerts.pending(ORG, limit=1), uow.alerts.claim(first), uow.alerts.claim(first)]
        uow.alerts.mark_failed(first, "connection refused")
        out += [uow.alerts.claim(second, now=T0), uow.alerts.count_pending(ORG)]
        uow.alerts.mark_sent(second)
        out += [uow.alerts.claim(second), uow.alerts.count_pending(ORG), uow.alerts.count_pending(OTHER_ORG)]
        uow.commit()
    with new() as uow:
        out.append(uow.alerts.pending(ORG))
    return out


def alert_facts(new: Callable[[], UnitOfWork], clock: Clock) -> list[Any]:
    runs = [("mirror", "failed", None, False), ("mirror", "ok", None, False), ("mirror", "failed", "boom", False),
            ("mirror", "failed", "dry", True), ("mirror", "skipped", None, False), ("mirror", "failed", "again", False),
            ("invoicing", "stopped", f"{API_LIMIT_ERROR_PREFIX}: 100 of 100", False),
            ("invoicing", "stopped", "shutdown requested", False)]
    with new() as uow:
        for n, (job, status, error, dry_run) in enumerate(runs):
            run = uow.job_runs.start(ORG, job, f"run-{n}", dry_run=dry_run)
            clock.tick()
            uow.job_runs.finish(run, status, None, error)
        uow.job_runs.start(OTHER_ORG, "writeback", "run-x")
        uow.commit()
    with new() as uow:
        return [uow.alert_facts.jobs(ORG), uow.alert_facts.jobs(OTHER_ORG),
                uow.alert_facts.failed_streak(ORG, "mirror", 5), uow.alert_facts.failed_streak(ORG, "mirror", 1),
                uow.alert_facts.failed_streak(ORG, "invoicing", 5),
                uow.alert_facts.budget_stops_since(ORG, T0), uow.alert_facts.budget_stops_since(ORG, clock())]


@pytest.mark.parametrize("script", [sync_state, outbox, keyed, alerts, alert_facts], ids=lambda s: s.__name__)
def test_the_fake_repositories_answer_as_the_sql_ones(script: Script, uow_factory: Any) -> None:
    sql_clock, fake_clock = Clock(), Clock()
    store = FakeStore()
    from_sql = script(lambda: uow_factory(clock=sql_clock), sql_clock)
    from_fake = script(lambda: FakeUnitOfWork(store, fake_clock), fake_clock)
    assert from_fake == from_sql
