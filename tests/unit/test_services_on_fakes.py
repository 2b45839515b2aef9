"""Service logic on the in-memory fakes of the ports (``tests/fakes.py``): no database, no
server. The same services run on the real store and the sandboxes in tests/integration."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from connector.errors import ApiLimitReached
from connector.jobs import Job, run_job
from connector.mappings import load_mapping
from connector.metrics import DaemonMetrics
from connector.services.billing_port import BillingEvent
from connector.services.invoice_status import InvoiceStatusService
from connector.services.replay import replay
from tests.fakes import FakeBilling, FakeRuntime, FakeStore, FakeUnitOfWork, an_invoice
from tests.fixtures.daemon import org_config

LOG = structlog.get_logger("test")
ORG = "00D000000000001AAA"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def runtime(tmp_path: Path) -> FakeRuntime:
    config = org_config("acme", ORG, f"sqlite:///{tmp_path}/never-opened.db", tmp_path)
    return FakeRuntime(config, load_mapping(config.mapping), clock=lambda: NOW)


def runs(runtime: FakeRuntime) -> list[Any]:
    return sorted(runtime.store.job_runs.values(), key=lambda r: r.id)


# ------------------------------------------------------------------------ run_job
def test_a_run_is_recorded_with_the_api_calls_it_made(runtime: FakeRuntime) -> None:
    def mirror(rt: Any, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        org = rt.salesforce()
        org.get("SfdcPartnerOrder", "801A")
        org.get("SfdcPartnerOrder", "801B")
        return {"order": 2}

    metrics = DaemonMetrics()
    outcome = run_job(runtime, "mirror", instance_id="test", registry={"mirror": mirror}, metrics=metrics)

    assert (outcome.status, dict(outcome.counts), outcome.api_calls) == ("ok", {"order": 2}, 2)
    [row] = runs(runtime)
    assert (row.job, row.status, row.counts, row.instance) == ("mirror", "ok", {"order": 2}, "test")
    mirrored = metrics.registry.get_sample_value("gtm_connector_records_mirrored_total",
                                                 {"org": "acme", "object": "order"})
    assert mirrored == 2


def test_the_daily_limit_stops_the_cycle_and_is_not_a_failure(runtime: FakeRuntime) -> None:
    def limited(rt: Any, *, log: Any, dry_run: bool = False) -> Mapping[str, int]:
        raise ApiLimitReached("acme: 80% of the daily API limit used")

    outcome = run_job(runtime, "mirror", instance_id="test", registry={"mirror": limited})

    assert outcome.status == "stopped" and outcome.ok
    assert runs(runtime)[0].error.startswith("Salesforce API limit reached")


def test_a_job_held_elsewhere_is_skipped_and_not_recorded(runtime: FakeRuntime) -> None:
    runtime.held.add("invoicing")
    outcome = run_job(runtime, "invoicing", instance_id="test", registry={"invoicing": lambda rt, **kw: {}})
    assert (outcome.status, outcome.error) == ("skipped", "locked by another instance")
    assert runs(runtime) == []


def test_a_tick_served_once_and_a_dead_holders_row_closed(runtime: FakeRuntime) -> None:
    with runtime.uow() as uow:  # a run whose instance was killed
        uow.job_runs.start(ORG, "mirror", "dead", instance="killed", started_at=NOW - timedelta(hours=1))
        uow.commit()
    job = {"mirror": lambda rt, **kw: {"order": 0}}
    tick = NOW - timedelta(seconds=5)

    first = run_job(runtime, "mirror", instance_id="a", tick=tick, registry=job)
    second = run_job(runtime, "mirror", instance_id="b", tick=tick, registry=job)

    assert (first.status, second.status, second.error) == ("ok", "skipped", "already ran this tick")
    dead, ran = runs(runtime)
    assert dead.status == "failed" and dead.error.startswith("abandoned") and "found by a" in dead.error
    assert ran.status == "ok"


def test_stop_reaches_a_job_that_takes_it_and_ends_the_run_as_stopped(runtime: FakeRuntime) -> None:
    seen: list[Any] = []

    def paged(rt: Any, *, log: Any, dry_run: bool = False, stop: threading.Event | None = None) -> Mapping[str, int]:
        seen.append(stop)
        assert stop is not None
        stop.set()
        return {"order": 1}

    stop = threading.Event()
    stoppable = run_job(runtime, "mirror", instance_id="t", stop=stop, registry={"mirror": Job(paged, stoppable=True)})
    plain = run_job(runtime, "invoicing", instance_id="t", stop=threading.Event(),
                    registry={"invoicing": lambda rt, *, log, dry_run=False: {"x": 1}})

    assert seen == [stop] and stoppable.status == "stopped"
    assert plain.status == "ok"


# ------------------------------------------------------------------------ invoice status
def status_service(store: FakeStore, billing: FakeBilling | None = None) -> InvoiceStatusService:
    return InvoiceStatusService(uow=lambda: FakeUnitOfWork(store, lambda: NOW), billing=billing, clock=lambda: NOW,
                                org_id=ORG, log=LOG)


def an_open_invoice(store: FakeStore, invoice_id: str = "in_1", order_id: str = "801A") -> None:
    uow = FakeUnitOfWork(store, lambda: NOW)
    with uow:
        uow.invoices.upsert(ORG, order_id, stripe_invoice_id=invoice_id, status="open")
        uow.commit()


def event(event_id: str, status: str, created: int, invoice_id: str = "in_1") -> BillingEvent:
    kind = {"paid": "invoice.paid", "open": "invoice.finalized", "void": "invoice.voided"}[status]
    return BillingEvent(event_id, kind, created, "invoice", invoice=an_invoice(invoice_id, status))


def test_a_paid_event_applies_once_and_its_redelivery_is_a_duplicate() -> None:
    store = FakeStore()
    an_open_invoice(store)
    service = status_service(store)

    assert service.handle_event(event("evt_1", "paid", 100)) == "applied"
    assert service.handle_event(event("evt_1", "paid", 100)) == "duplicate"

    row = store.invoices[(ORG, "801A")]
    assert (row.status, row.amount_remaining, row.last_event_id) == ("paid", 0, "evt_1")
    assert store.stripe_events["evt_1"]["outcome"] == "applied"


def test_a_late_older_event_never_moves_an_invoice_back() -> None:
    store = FakeStore()
    an_open_invoice(store)
    service = status_service(store)
    service.handle_event(event("evt_paid", "paid", 200))

    assert service.handle_event(event("evt_finalized", "open", 100)) == "stale"
    assert store.invoices[(ORG, "801A")].status == "paid"


def test_a_jump_no_path_allows_is_an_anomaly_kept_not_applied() -> None:
    store = FakeStore()
    an_open_invoice(store)
    service = status_service(store)
    service.handle_event(event("evt_paid", "paid", 200))

    assert service.handle_event(event("evt_void", "void", 300)) == "anomaly"
    assert store.invoices[(ORG, "801A")].status == "paid"
    [anomaly] = store.anomalies
    assert (anomaly["record_id"], anomaly["from"], anomaly["to"]) == ("801A", "paid", "void")


def test_an_event_about_an_invoice_not_ours_is_recorded_as_unknown() -> None:
    store = FakeStore()
    assert status_service(store).handle_event(event("evt_x", "paid", 1, invoice_id="in_other")) == "unknown_invoice"
    assert store.invoices == {} and store.stripe_events["evt_x"]["outcome"] == "unknown_invoice"


def test_polling_fetches_a_forced_invoice_and_applies_stripes_word() -> None:
    store = FakeStore()
    an_open_invoice(store)
    billing = FakeBilling()
    billing.invoices["in_1"] = an_invoice("in_1", "paid")

    report = status_service(store, billing).poll(force=True)

    assert (report.checked, report.changed) == (1, 1) and billing.calls == ["retrieve in_1"]
    assert store.invoices[(ORG, "801A")].status == "paid"


# ------------------------------------------------------------------------ replay
def a_letter(runtime: FakeRuntime, source: str, record_id: str, object_name: str = "order") -> int:
    with runtime.uow() as uow:
        letter_id = uow.dead_letters.add(ORG, source, object_name, record_id, "E", "refused")
        uow.commit()
    return letter_id


def test_replay_dry_run_lists_the_letters_and_runs_nothing(runtime: FakeRuntime) -> None:
    a_letter(runtime, "payouts", "801A")
    ran: list[str] = []

    report = replay(runtime, dry_run=True, log=LOG, run_job=lambda rt, job: ran.append(job))

    assert [(i.record_id, i.outcome) for i in report.items] == [("801A", "would replay")]
    assert ran == []


def test_replay_runs_the_job_it_is_handed_and_reads_back_what_resolved(runtime: FakeRuntime) -> None:
    letter = a_letter(runtime, "payouts", "801A", object_name="payout")

    def reconcile(rt: Any, job: str) -> Any:
        with rt.uow() as uow:  # the job traced the charge this time
            uow.dead_letters.resolve(letter)
            uow.commit()
        return job

    report = replay(runtime, log=LOG, run_job=reconcile)

    assert [(i.record_id, i.outcome) for i in report.items] == [("801A", "resolved")]


def test_replay_stops_early_when_the_orgs_limit_is_reached(runtime: FakeRuntime) -> None:
    a_letter(runtime, "payouts", "801A", object_name="payout")

    def limited(rt: Any, job: str) -> Any:
        raise ApiLimitReached("acme: limit")

    report = replay(runtime, log=LOG, run_job=limited)

    assert [i.outcome for i in report.items] == ["stopped early"] and report.stopped_early
    assert runtime.store.dead_letters[1].is_open
