"""The fault matrix: every Salesforce and Stripe fault the sandboxes can inject, on every call
kind, then the fault cleared and the job run again. The rerun must converge to the state of
a clean run, compared table by table (and against the sandboxes' own records), with nothing
made twice.

Each row is injected through the sandboxes' control APIs (``SandboxOrg.fail`` / ``before`` /
``set_latency`` / ``fail_records``, ``StripeSandbox.fail_next`` / ``advance_clock``), never by
patching the connector. ``times`` either lets the in-run retry absorb the fault (1) or
outlasts it so the run fails (many); either way the next run finishes the work.

Salesforce (mirror, offers push, write-back): 401 once / twice mid-pagination, 5xx on each
call kind, timeouts (latency past the client timeout) on each call kind, once and for good,
REQUEST_LIMIT_EXCEEDED, UNABLE_TO_LOCK_ROW per call and per record, latency past the client
timeout on every write. Stripe (invoicing): 429, 5xx, a connection reset before and after
the call is applied, on every step, and each step's answer lost for good with the 24-hour
idempotency key expired before the rerun.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg
from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory, upgrade
from connector.adapters.stripe_billing import StripeBilling, build_client
from connector.errors import ConnectorError
from connector.jobs import run_job
from connector.mappings import load_mapping
from connector.services import writeback
from connector.services.invoicing import InvoicingService, InvoicingSettings
from connector.services.mirror import MirrorService
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import PartnerBooks, billing_records, invoiced_orders
from tests.integration.stripe.gtm import ORG, Clock, GtmOrg, order_id
from tests.reliability.test_crash_points import drafts, offer_items, pusher, wayne_offers, write_draft  # noqa: F401

pytestmark = pytest.mark.slow
MAPPING = load_mapping("gtm-v2")
TIMEOUT_S = 1.0
FOR_GOOD = 40  # outlasts every retry of one run
VOLATILE = {"first_seen_at", "updated_at", "deleted_at"}


def impatient_gateway(gateway: SalesforceOrg) -> SalesforceOrg:
    return SalesforceOrg(dataclasses.replace(gateway.settings, timeout_seconds=TIMEOUT_S, retry_max_wait_s=0.2))


def sleep(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def fresh_uow(tmp_path: Path, name: str) -> Callable[[], SqlUnitOfWork]:
    url = f"sqlite:///{tmp_path / name}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    return lambda: SqlUnitOfWork(factory)


def local_state(uow: Callable[[], SqlUnitOfWork], org_id: str) -> dict[str, Any]:
    """Every mirror table, open dead letters and cursors, without the local timestamps."""
    state: dict[str, Any] = {}
    with uow() as unit:
        for key in MAPPING.objects:
            state[key] = {r["sf_id"]: {k: v for k, v in r.items() if k not in VOLATILE}
                          for r in unit.mirror(key).list(org_id, include_deleted=True)}
        state["dead_letters"] = sorted((d.source, d.object_name, d.record_id, d.error_code)
                                       for d in unit.dead_letters.open(org_id))
        state["cursors"] = {s.object_name: s.cursor for s in unit.sync_state.all(org_id)}
        state["finished"] = {s.object_name: s.last_status for s in unit.sync_state.all(org_id)}
    return state


# ------------------------------------------------------------------------------ Salesforce: mirror

# (id, endpoint, how): how is ("status", code, times[, error_code]) or ("latency", seconds, "once"|"always")
MIRROR_FAULTS = [
    ("401-once-mid-page", "query_more", ("status", 401, 1)),
    ("401-twice-mid-page", "query_more", ("status", 401, 2)),
    ("503-query-once", "queryAll", ("status", 503, 1)),
    ("503-query-for-good", "queryAll", ("status", 503, FOR_GOOD)),
    ("500-query-more-once", "query_more", ("status", 500, 1)),
    ("500-query-more-for-good", "query_more", ("status", 500, FOR_GOOD)),
    ("503-composite-idle-check", "composite", ("status", 503, FOR_GOOD)),
    ("limit-exceeded-mid-page", "query_more", ("status", 403, 1, "REQUEST_LIMIT_EXCEEDED")),
    ("limit-exceeded-idle-check", "composite", ("status", 403, 1, "REQUEST_LIMIT_EXCEEDED")),
    ("lock-row-per-call", "query_more", ("status", 503, 2, "UNABLE_TO_LOCK_ROW")),
    ("timeout-query-once", "queryAll", ("latency", TIMEOUT_S + 0.5, "once")),
    ("timeout-query-more-once", "query_more", ("latency", TIMEOUT_S + 0.5, "once")),
    ("timeout-query-more-for-good", "query_more", ("latency", TIMEOUT_S + 0.3, "always")),
    ("timeout-composite-for-good", "composite", ("latency", TIMEOUT_S + 0.3, "always")),
    ("timeout-token", "oauth_token", ("latency", TIMEOUT_S + 0.5, "once")),
]


def inject_org(org: SandboxOrg, endpoint: str, how: tuple[Any, ...]) -> None:
    if how[0] == "status":
        org.fail(endpoint, status=how[1], times=how[2], error_code=how[3] if len(how) > 3 else None)
    elif how[2] == "once":
        org.before(endpoint, sleep(how[1]))
    else:
        org.set_latency(how[1], endpoint)


def settle_for(how: Any) -> float:
    """How long requests the client gave up on may still run in the org."""
    return TIMEOUT_S + 0.6 if isinstance(how, tuple) and how[0] == "latency" else 0.0


def clear_org(org: SandboxOrg, settle_s: float = 0.0) -> None:
    org.clear_faults()
    org.set_latency(0, "*")
    for endpoint in ("query_more", "queryAll", "composite", "oauth_token", "collections_upsert"):
        org.set_latency(0, endpoint)
    time.sleep(settle_s)  # requests the client gave up on finish in the org first


@pytest.fixture
def paged_org(sandbox_org: SandboxOrg) -> Iterator[SandboxOrg]:
    sandbox_org.reset(80)  # 20 orders with 3 items each, pages of 20
    sandbox_org.set_batch_size(20)
    yield sandbox_org
    clear_org(sandbox_org, settle_s=0)


@pytest.mark.parametrize(("endpoint", "how"), [(e, h) for _, e, h in MIRROR_FAULTS],
                         ids=[i for i, _, _ in MIRROR_FAULTS])
def test_mirror_converges_after_every_salesforce_fault(
    endpoint: str, how: tuple[Any, ...], paged_org: SandboxOrg, gateway: SalesforceOrg, tmp_path: Path,
) -> None:
    org = paged_org
    uow = fresh_uow(tmp_path, "faulted.sqlite3")
    sf = impatient_gateway(gateway)
    try:
        MirrorService(sf, uow, MAPPING, org.org_id).run()  # a first, clean cycle
        orders = MAPPING.objects["order"]
        changed = [r["Id"] for r in org.records(orders.sobject)[:15]]
        org.update(orders.sobject, [{"Id": record_id, orders.sf_field_for("name"): f"Renamed {n}"}
                                    for n, record_id in enumerate(changed)])
        item_sobject = MAPPING.objects["order_item"].sobject
        org.delete(item_sobject, [org.records(item_sobject)[0]["Id"]])

        inject_org(org, endpoint, how)
        try:
            MirrorService(sf, uow, MAPPING, org.org_id).run()
        except ConnectorError:
            pass  # the fault outlasted the run's retries: the next cycle finishes it
        clear_org(org, settle_for(how))
        MirrorService(sf, uow, MAPPING, org.org_id).run()

        clean = fresh_uow(tmp_path, "clean.sqlite3")
        MirrorService(sf, clean, MAPPING, org.org_id).run()
    finally:
        sf.close()
    faulted, expected = local_state(uow, org.org_id), local_state(clean, org.org_id)
    for table in expected:
        if table in ("cursors", "finished"):
            continue
        if table in MAPPING.objects:  # the clean run never saw the deleted item: compare live rows
            live = {k: v for k, v in faulted[table].items() if not v["is_deleted"]}
            assert live == {k: v for k, v in expected[table].items() if not v["is_deleted"]}, table
        else:
            assert faulted[table] == expected[table], table
    assert set(faulted["finished"].values()) <= {"ok", "unavailable"}
    assert faulted["cursors"] == expected["cursors"]


# ------------------------------------------------------------------------------ Salesforce: offers push

OFFER_FAULTS = [
    ("503-once", ("status", 503, 1)),
    ("503-for-good", ("status", 503, FOR_GOOD)),
    ("lock-row-per-call", ("status", 503, 2, "UNABLE_TO_LOCK_ROW")),
    ("limit-exceeded", ("status", 403, 1, "REQUEST_LIMIT_EXCEEDED")),
    ("401-once", ("status", 401, 1)),
    ("write-slower-than-timeout-once", ("latency", TIMEOUT_S + 0.8, "once")),
    ("write-slower-than-timeout-always", ("latency", TIMEOUT_S + 0.3, "always")),
]


@pytest.mark.parametrize("how", [h for _, h in OFFER_FAULTS], ids=[i for i, _ in OFFER_FAULTS])
def test_offers_push_converges_to_one_offer_after_every_fault(
    how: tuple[Any, ...], drafts: Path, sandbox_org: SandboxOrg, gateway: SalesforceOrg,  # noqa: F811
    uow_factory: Callable[..., Any],
) -> None:
    sf = impatient_gateway(gateway)
    write_draft(drafts)
    try:
        inject_org(sandbox_org, "composite", how)
        try:
            pusher(sf, uow_factory, sandbox_org, drafts).push()
        except ConnectorError:
            pass
        clear_org(sandbox_org, settle_for(how))
        for _ in range(2):  # an unsure create is looked up (and adopted) by the next push
            pusher(sf, uow_factory, sandbox_org, drafts).push()
        [result] = pusher(sf, uow_factory, sandbox_org, drafts).push().results
    finally:
        clear_org(sandbox_org, settle_s=0)
        sf.close()
    [offer] = wayne_offers(sandbox_org)
    assert (result.action, result.sf_id) == ("unchanged", offer["Id"])
    assert len(offer_items(sandbox_org, offer["Id"])) == 2


# ------------------------------------------------------------------------------ Salesforce: write-back

WRITEBACK_FAULTS = [
    ("503-once", "call", ("status", 503, 1)),
    ("503-for-good", "call", ("status", 503, FOR_GOOD)),
    ("lock-row-per-call", "call", ("status", 503, 2, "UNABLE_TO_LOCK_ROW")),
    ("limit-exceeded", "call", ("status", 403, 1, "REQUEST_LIMIT_EXCEEDED")),
    ("401-twice", "call", ("status", 401, 2)),
    ("lock-row-per-record-once", "record", 3),
    ("lock-row-per-record-for-good", "record", FOR_GOOD),
    ("write-slower-than-timeout-once", "call", ("latency", TIMEOUT_S + 0.5, "once")),
    ("write-slower-than-timeout-always", "call", ("latency", TIMEOUT_S + 0.3, "always")),
]


@pytest.fixture
def wb_books(sandbox_org: SandboxOrg, books_on: Callable[..., PartnerBooks], sqlite_url: str) -> PartnerBooks:
    books = books_on(sqlite_url, org=sandbox_org, extra={"salesforce": {"timeout_seconds": TIMEOUT_S}})
    return books


@pytest.mark.parametrize(("kind", "how"), [(k, h) for _, k, h in WRITEBACK_FAULTS],
                         ids=[i for i, _, _ in WRITEBACK_FAULTS])
def test_writeback_converges_after_every_fault(kind: str, how: Any, wb_books: PartnerBooks,
                                               sandbox_org: SandboxOrg) -> None:
    orders = invoiced_orders(wb_books, 12)
    if kind == "record":
        sandbox_org.fail_records("GTM_Order_Billing__c", times=how, error_code="UNABLE_TO_LOCK_ROW")
    else:
        inject_org(sandbox_org, "collections_upsert", how)
    run_job(wb_books.runtime, "writeback", instance_id="faulted")
    clear_org(sandbox_org, settle_for(how))
    for _ in range(2):
        outcome = run_job(wb_books.runtime, "writeback", instance_id="rerun")
        assert outcome.status == "ok", outcome.error

    records = billing_records(sandbox_org)
    assert sorted(records) == sorted(o.order_id for o in orders)  # one record per order, none twice
    assert len(sandbox_org.records("GTM_Order_Billing__c")) == len(orders)
    assert writeback.plan(wb_books.runtime).to_send == []  # the org holds what a clean run writes
    assert wb_books.open_letters("writeback") == []


# ------------------------------------------------------------------------------ Stripe: invoicing

STEPS = {  # every call a clean run makes (a known customer is not looked up; send finalizes)
    "search": "GET /v1/invoices/search",
    "customer": "POST /v1/customers",
    "invoice": "POST /v1/invoices",
    "lines": "POST /v1/invoices/{id}/add_lines",
    "send": "POST /v1/invoices/{id}/send",
}
STRIPE_FAULTS = [(f"{step}-{fault}-{'once' if times == 1 else 'for-good'}{'-key-expired' if expire else ''}",
                  endpoint, fault, times, expire)
                 for step, endpoint in STEPS.items()
                 for fault, times, expire in [(429, 1, False), (500, 1, False), ("reset_before", 1, False),
                                              ("reset", 1, False), (503, FOR_GOOD, False),
                                              ("reset_before", FOR_GOOD, False), ("reset", FOR_GOOD, False),
                                              ("reset", FOR_GOOD, True)]]


def stripe_state(box: StripeSandbox, uow: Callable[[], SqlUnitOfWork]) -> dict[str, Any]:
    invoices = box.invoices()
    with uow() as unit:
        rows = {r.order_id: (r.status, r.amount_due, r.sent_at is not None, r.stripe_invoice_id is not None)
                for r in unit.invoices.list(ORG)}
        pending = [e.idempotency_key for e in unit.outbox.pending(ORG)]
        letters = [(d.record_id, d.error_code) for d in unit.dead_letters.open(ORG)]
    return {
        "customers": len(box.objects("customer")),
        "invoices": sorted((i["metadata"]["gtm_order_id"], i["status"], i["total"], len(i["lines"]["data"]),
                            len(box.invoice_sends(i["id"]))) for i in invoices),
        "local": rows,
        "pending_outbox": pending,
        "letters": letters,
    }


@pytest.fixture(scope="module")
def clean_invoicing_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a fault-free run leaves: two orders, each one invoice with two lines, sent once."""
    box = StripeSandbox.start()
    try:
        uow = fresh_uow(tmp_path_factory.mktemp("clean"), "clean.sqlite3")
        GtmOrg(uow).catalogue()
        GtmOrg(uow).order(1, start=date(2026, 1, 1))
        GtmOrg(uow).order(2, start=date(2026, 1, 1))
        billing = StripeBilling(build_client(box.api_key, api_base=box.api_base, timeout_s=5))
        an_invoicing(uow, billing).run()
        return stripe_state(box, uow)
    finally:
        box.stop()


def an_invoicing(uow: Callable[[], SqlUnitOfWork], billing: StripeBilling) -> InvoicingService:
    return InvoicingService(org_id=ORG, uow=uow, billing=billing, mapping=MAPPING, settings=InvoicingSettings(),
                            clock=Clock(datetime(2025, 12, 31, 10, tzinfo=UTC)))


@pytest.mark.parametrize(("endpoint", "fault", "times", "expire"), [row[1:] for row in STRIPE_FAULTS],
                         ids=[row[0] for row in STRIPE_FAULTS])
def test_invoicing_converges_after_every_stripe_fault(
    endpoint: str, fault: Any, times: int, expire: bool, stripe_sandbox: StripeSandbox, tmp_path: Path,
    clean_invoicing_state: dict[str, Any],
) -> None:
    uow = fresh_uow(tmp_path, "faulted.sqlite3")
    GtmOrg(uow).catalogue()
    GtmOrg(uow).order(1, start=date(2026, 1, 1))
    GtmOrg(uow).order(2, start=date(2026, 1, 1))
    billing = StripeBilling(build_client(stripe_sandbox.api_key, api_base=stripe_sandbox.api_base, timeout_s=5))

    stripe_sandbox.fail_next(endpoint, times=times, fault=fault)
    try:
        an_invoicing(uow, billing).run()
    except ConnectorError:
        pass  # the fault outlasted the retries: the next run resumes from the outbox
    stripe_sandbox.clear_faults()
    if expire:
        stripe_sandbox.advance_clock(seconds=25 * 3600)  # Stripe forgets idempotency keys after 24 hours
    an_invoicing(uow, billing).run()
    for order in (1, 2):  # a step Stripe refused for good is retried once the cause is gone
        an_invoicing(uow, billing).retry(order_id(order))
    an_invoicing(uow, billing).run()

    assert stripe_state(stripe_sandbox, uow) == clean_invoicing_state
