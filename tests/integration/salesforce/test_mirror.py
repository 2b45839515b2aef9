"""The mirror against the sandbox org over HTTPS (unmodified simple-salesforce underneath),
with the local model on SQLite and on PostgreSQL: first mirror, incremental changes,
shared stamps across page boundaries, changes during pagination, expired sessions, API
limits and the budget guard, quarantine, anomalies, full re-sync, idle cycles."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg, build_org_gateway
from connector.errors import ApiLimitReached
from connector.mappings import load_mapping
from connector.services.mirror import MirrorService
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import sandbox_config

MAPPING = load_mapping("gtm-v2")
OBJECTS = {o.sobject: o.name for o in MAPPING.objects.values()}


@pytest.fixture
def mirror(sandbox_org: SandboxOrg, gateway: SalesforceOrg,
           uow_factory: Callable[..., Any]) -> Callable[..., MirrorService]:
    def build(org: SalesforceOrg | None = None, lookback_seconds: int = 300, **kwargs: Any) -> MirrorService:
        return MirrorService(org or gateway, uow_factory, MAPPING, sandbox_org.org_id,
                             lookback_seconds=lookback_seconds, **kwargs)

    return build


def local(uow_factory: Callable[..., Any], key: str, org_id: str,
          include_deleted: bool = False) -> dict[str, dict[str, Any]]:
    with uow_factory() as uow:
        return {r["sf_id"]: r for r in uow.mirror(key).list(org_id, include_deleted=include_deleted)}


def org_ids(sandbox_org: SandboxOrg, sobject: str) -> set[str]:
    return {r["Id"] for r in sandbox_org.records(sobject)}


def test_first_mirror_brings_every_object(mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg,
                                          uow_factory: Callable[..., Any]) -> None:
    sizes = {s: len(sandbox_org.records(s)) for s in OBJECTS}
    sandbox_org.reset_counters()
    report = mirror().run()
    org = sandbox_org.org_id
    for sobject, key in OBJECTS.items():
        expected = org_ids(sandbox_org, sobject)
        if sobject == "SfdcPartnerOrderItem":
            expected.discard(sandbox_org.demo_ids["malformed_order_item"])
        assert set(local(uow_factory, key, org)) == expected, sobject
    assert sandbox_org.api_calls <= sum(math.ceil(n / 2000) + 1 for n in sizes.values())
    assert report.api_calls == sandbox_org.api_calls
    order = local(uow_factory, "order", org)[sandbox_org.demo_ids["acme_order"]]
    assert order["status"] == "Activated" and order["order_type"] == "Initial"  # as the org spells them
    assert order["subtotal"] == Decimal("8400.00") and order["currency"] == "USD"
    ppc = local(uow_factory, "ppc", org)[sandbox_org.demo_ids["ppc_core"]]
    assert ppc["revenue_share_percent"] == Decimal("15")
    with uow_factory() as uow:
        states = {s.object_name: s for s in uow.sync_state.all(org)}
    assert set(states) == set(OBJECTS)
    assert states["SfdcPartnerPayout"].cursor is not None  # empty object: idle checks cover it too


def test_first_mirror_asks_for_every_first_page_in_one_call_and_reads_on_page_by_page(
    sandbox_org: SandboxOrg, tmp_path: Path, uow_factory: Callable[..., Any]
) -> None:
    sandbox_org.reset(3000)  # 750 orders and 2,250 items: several pages of 200 each
    sizes = {s: len(sandbox_org.records(s)) for s in OBJECTS}
    org = build_org_gateway(sandbox_config(sandbox_org, f"sqlite:///{tmp_path}/x.db", sync={"page_size": 200}))
    sandbox_org.reset_counters()
    report = MirrorService(org, uow_factory, MAPPING, sandbox_org.org_id).run()
    # One /composite/batch call for the first pages of all 11 objects, then the others.
    assert sandbox_org.api_calls == 1 + sum(max(0, math.ceil(n / 200) - 1) for n in sizes.values())
    assert {o.sobject: o.fetched for o in report.objects} == sizes
    assert {o.sobject: o.pages for o in report.objects} == {s: max(1, math.ceil(n / 200)) for s, n in sizes.items()}
    for sobject, key in OBJECTS.items():
        assert len(local(uow_factory, key, sandbox_org.org_id)) + sum(o.quarantined for o in report.objects
                                                                      if o.sobject == sobject) == sizes[sobject]


def test_idle_cycle_costs_at_most_two_api_calls_and_writes_nothing(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    mirror().run()
    with uow_factory() as uow:
        letters_before = uow.dead_letters.count_open(sandbox_org.org_id)
    sandbox_org.reset_counters()
    second = mirror().run()
    assert sandbox_org.api_calls == 1  # all 11 objects' checks in one /composite/batch call
    assert sandbox_org.calls("composite_batch") == 1 and sandbox_org.calls("query") == 0
    assert second.written == 0 and all(o.idle for o in second.objects)
    with uow_factory() as uow:
        assert uow.dead_letters.count_open(sandbox_org.org_id) == letters_before == 1
        assert uow.anomalies.count(sandbox_org.org_id) == 0


def test_incremental_after_inserts_updates_and_deletes(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, gateway: SalesforceOrg,
    uow_factory: Callable[..., Any]
) -> None:
    mirror().run()
    ids = sandbox_org.demo_ids
    new_offer = gateway.create("SfdcPartnerOffer", {"Name": "Wayne Initial offer", "Status": "Draft",
                                                    "OfferType": "Initial", "CurrencyIsoCode": "USD",
                                                    "ContractTerm": 12})
    sandbox_org.update("SfdcPartnerOrder", [{"Id": ids["acme_order"], "Status": "Expired"}])
    sandbox_org.update("SfdcPartnerProvisionProduct", [{"Id": ids["ppp_premium"], "Name": "Premium Add-On (2025)"}])
    gateway_delete = sandbox_org.demo_ids["offer_draft"]
    sandbox_org.delete("SfdcPartnerOffer", [gateway_delete])
    sandbox_org.reset_counters()
    report = mirror().run()
    org = sandbox_org.org_id
    offers = local(uow_factory, "offer", org, include_deleted=True)
    assert offers[new_offer]["status"] == "Draft" and not offers[new_offer]["is_deleted"]
    assert offers[gateway_delete]["is_deleted"] is True
    assert local(uow_factory, "order", org)[ids["acme_order"]]["status"] == "Expired"
    assert local(uow_factory, "ppp", org)[ids["ppp_premium"]]["name"] == "Premium Add-On (2025)"
    synced = {o.sobject for o in report.objects if not o.idle}
    assert synced == {"SfdcPartnerOffer", "SfdcPartnerOrder", "SfdcPartnerProvisionProduct"}
    assert sandbox_org.api_calls == 1 + len(synced)  # the idle check, then one page each
    assert mirror().run().written == 0  # and the cycle after that is idle again


def test_five_thousand_records_sharing_one_stamp_across_page_boundaries(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    sandbox_org.reset(None)
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    ids = sandbox_org.insert("SfdcPartnerTermSet",
                             [{"Name": f"Term set {i}", "DefaultBillingFrequency": 12} for i in range(5000)],
                             stamp=stamp)
    # The run stops after the first page (the org refuses the second): 2000 rows and the
    # cursor (= the shared stamp) are committed together.
    sandbox_org.fail("query_more", status=403, error_code="REQUEST_LIMIT_EXCEEDED")
    with pytest.raises(ApiLimitReached):
        mirror(lookback_seconds=0).run(["term_set"])
    assert len(local(uow_factory, "term_set", sandbox_org.org_id)) == 2000
    with uow_factory() as uow:
        state = uow.sync_state.get(sandbox_org.org_id, "SfdcPartnerTermSet")
    assert state.last_status == "stopped"
    # Even with no lookback, resuming at the shared stamp reads it again: nothing is missed.
    report = mirror(lookback_seconds=0).run(["term_set"])
    assert set(local(uow_factory, "term_set", sandbox_org.org_id)) == set(ids)
    assert report.objects[0].inserted == 3000 and report.objects[0].unchanged == 2000


def test_records_changed_during_pagination_are_not_missed(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    sandbox_org.reset(10000)  # 2500 orders, 7500 items
    orders = sorted(sandbox_org.records("SfdcPartnerOrder"), key=lambda r: (r["SystemModstamp"], r["Id"]))
    early, late = orders[10]["Id"], orders[-10]["Id"]

    def change_while_paging() -> None:  # between page 1 and page 2 of the orders
        sandbox_org.update("SfdcPartnerOrder", [{"Id": early, "Status": "Expired"}, {"Id": late, "Status": "Error"}])

    sandbox_org.before("query_more", change_while_paging)
    mirror().run(["ppc", "ppp", "order"])
    mirror().run(["ppc", "ppp", "order"])
    stored = local(uow_factory, "order", sandbox_org.org_id)
    assert len(stored) == 2500
    assert stored[early]["status"] == "Expired" and stored[late]["status"] == "Error"


def test_session_expiring_mid_pagination(mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg,
                                         gateway: SalesforceOrg, uow_factory: Callable[..., Any]) -> None:
    sandbox_org.reset(10000)
    sandbox_org.fail("query_more", status=401)  # the session dies between page 1 and page 2
    mirror().run(["ppc", "ppp", "order"])
    assert len(local(uow_factory, "order", sandbox_org.org_id)) == 2500
    assert gateway.reauthentications == 1


def test_request_limit_exceeded_ends_the_cycle_and_the_next_resumes(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    sandbox_org.reset(10000)
    # Orders (2 pages) go through; the limit strikes on the order items' second page.
    sandbox_org.fail("query_more", status=403, error_code="REQUEST_LIMIT_EXCEEDED", skip=1)
    with pytest.raises(ApiLimitReached):
        mirror().run(["ppc", "ppp", "order", "order_item"])
    assert len(local(uow_factory, "order", sandbox_org.org_id)) == 2500
    assert len(local(uow_factory, "order_item", sandbox_org.org_id)) == 2000  # the committed page
    with uow_factory() as uow:
        assert uow.sync_state.get(sandbox_org.org_id, "SfdcPartnerOrderItem").last_status == "stopped"
    sandbox_org.reset_counters()
    report = mirror().run(["ppc", "ppp", "order", "order_item"])
    assert len(local(uow_factory, "order_item", sandbox_org.org_id)) == 7500
    by_key = {o.key: o for o in report.objects}
    assert by_key["order"].idle and by_key["order_item"].inserted == 5500
    assert sandbox_org.api_calls == 1 + 4  # the idle check, then items from cursor - lookback (4 pages)


def test_budget_guard_stops_the_mirror_before_the_limit(
    sandbox_org: SandboxOrg, tmp_path: Path, uow_factory: Callable[..., Any]
) -> None:
    sandbox_org.reset(10000)
    sandbox_org.set_batch_size(500)
    org = build_org_gateway(sandbox_config(sandbox_org, f"sqlite:///{tmp_path}/x.db", api_budget_percent=50))
    # The first pages of all 11 objects come in one /composite/batch call (used 10 -> 11): the
    # second page of orders is the call the guard refuses, so the mirror stops half way.
    sandbox_org.set_limits(max=22, used=10)
    service = MirrorService(org, uow_factory, MAPPING, sandbox_org.org_id)
    with pytest.raises(ApiLimitReached, match="budget"):
        service.run()
    assert sandbox_org.counters()["api_usage"]["used"] == 11  # stopped at 50%, not at the org's limit
    assert 0 < len(local(uow_factory, "order", sandbox_org.org_id)) < 2500


def test_malformed_record_is_quarantined_while_the_rest_lands(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    bad = sandbox_org.demo_ids["malformed_order_item"]
    report = mirror().run()
    items = local(uow_factory, "order_item", sandbox_org.org_id)
    globex = [i for i in items.values() if i["order_id"] == sandbox_org.demo_ids["globex_order"]]
    assert bad not in items and len(globex) == 1
    assert {o.key: o.quarantined for o in report.objects}["order_item"] == 1
    with uow_factory() as uow:
        [letter] = uow.dead_letters.open(sandbox_org.org_id, source="mirror")
    assert (letter.object_name, letter.record_id, letter.error_code) == ("SfdcPartnerOrderItem", bad, "INVALID_RECORD")
    assert "Quantity" in letter.reason or "quantity" in letter.reason
    assert "-2" in letter.reason
    # Fixed in the org: the next cycle mirrors it and closes the letter.
    sandbox_org.update("SfdcPartnerOrderItem", [{"Id": bad, "Quantity": 2}])
    mirror().run()
    assert local(uow_factory, "order_item", sandbox_org.org_id)[bad]["quantity"] == 2
    with uow_factory() as uow:
        assert uow.dead_letters.count_open(sandbox_org.org_id) == 0


def test_unknown_picklist_value_and_wrong_currency_are_record_errors(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    ids = sandbox_org.demo_ids
    sandbox_org.update("SfdcPartnerOffer", [{"Id": ids["offer_sent"], "Status": "Withdrawn"}])
    sandbox_org.update("SfdcPartnerOrder", [{"Id": ids["addon_order"], "CurrencyIsoCode": "EUR"}])
    mirror().run()
    with uow_factory() as uow:
        letters = {(d.record_id, d.error_code): d.reason for d in uow.dead_letters.open(sandbox_org.org_id)}
    assert (ids["offer_sent"], "UNKNOWN_PICKLIST_VALUE") in letters
    assert "USD" in letters[(ids["addon_order"], "INVALID_RECORD")]
    assert ids["offer_sent"] not in local(uow_factory, "offer", sandbox_org.org_id)


def test_illegal_status_jump_is_applied_and_recorded_as_an_anomaly(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    order = sandbox_org.demo_ids["acme_order"]
    mirror().run()
    sandbox_org.update("SfdcPartnerOrder", [{"Id": order, "Status": "New"}])  # Activated -> New
    report = mirror().run()
    assert local(uow_factory, "order", sandbox_org.org_id)[order]["status"] == "New"  # the org wins
    with uow_factory() as uow:
        [anomaly] = uow.anomalies.list(sandbox_org.org_id)
    observed = (anomaly.record_id, anomaly.machine, anomaly.from_state, anomaly.to_state)
    assert observed == (order, "order", "activated", "new")
    assert sum(o.anomalies for o in report.objects) == 1
    assert mirror().run().written == 0  # seen again in the lookback window: not a second anomaly
    with uow_factory() as uow:
        assert uow.anomalies.count(sandbox_org.org_id) == 1


def test_full_resync_soft_deletes_records_gone_beyond_the_recycle_bin(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    mirror().run()
    gone = sandbox_org.demo_ids["offer_rejected"]
    sandbox_org.delete("SfdcPartnerOffer", [gone], purge=True)
    mirror().run()
    assert not local(uow_factory, "offer", sandbox_org.org_id, include_deleted=True)[gone]["is_deleted"]
    report = mirror().run(["offer"], full=True)
    assert local(uow_factory, "offer", sandbox_org.org_id, include_deleted=True)[gone]["is_deleted"] is True
    assert report.objects[0].deleted == 1


def test_dry_run_reads_but_writes_nothing(mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg,
                                          uow_factory: Callable[..., Any]) -> None:
    report = mirror().run(dry_run=True)
    assert report.written > 0
    assert local(uow_factory, "order", sandbox_org.org_id) == {}
    with uow_factory() as uow:
        assert uow.sync_state.all(sandbox_org.org_id) == []
        assert uow.dead_letters.count_open(sandbox_org.org_id) == 0


def test_a_dry_run_on_a_new_database_quarantines_what_the_real_run_does(
        mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]) -> None:
    """Issue 12.3: the dry run resolved references against the (empty) store, so every order
    item's PPP was "unknown" (16 quarantined instead of the demo data's 1 malformed item)."""
    dry = mirror().run(dry_run=True)
    real = mirror().run()
    assert [(o.key, o.quarantined, o.inserted) for o in dry.objects] == \
        [(o.key, o.quarantined, o.inserted) for o in real.objects]
    assert dry.counts()["would_quarantine"] == real.counts()["quarantined"] == 1
    with uow_factory() as uow:
        (letter,) = uow.dead_letters.open(sandbox_org.org_id, "mirror")
    assert letter.record_id == sandbox_org.demo_ids["malformed_order_item"]


def test_pages_are_logged_with_context(mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg) -> None:
    import structlog

    from connector.logging import job_logger

    with structlog.testing.capture_logs() as logs:
        mirror(log=job_logger("acme", "mirror", "run-1")).run(["term_set"])
    [page] = [e for e in logs if e["event"] == "page.committed"]
    assert page["org"] == "acme" and page["job"] == "mirror" and page["run_id"] == "run-1"
    assert page["object"] == "SfdcPartnerTermSet" and page["records"] == 1


def test_an_object_the_org_does_not_have_is_reported_and_the_rest_mirrored(
    tmp_path: Path, uow_factory: Callable[..., Any]
) -> None:
    with SandboxOrg.start(data="demo", dropped=("SfdcPartnerPayout",)) as org:
        gateway = build_org_gateway(sandbox_config(org, f"sqlite:///{tmp_path}/x.db"))
        service = MirrorService(gateway, uow_factory, MAPPING, org.org_id)
        first = {o.sobject: o for o in service.run().objects}
        assert first["SfdcPartnerPayout"].status == "unavailable"
        assert first["SfdcPartnerOrder"].inserted == 3
        org.reset_counters()
        second = {o.sobject: o for o in service.run().objects}
        assert second["SfdcPartnerPayout"].status == "unavailable"
        assert org.api_calls <= 2  # still an idle cycle


def test_a_first_mirror_never_reads_back_what_it_writes_and_stored_rows_take_the_usual_path(
    mirror: Callable[..., MirrorService], sandbox_org: SandboxOrg, uow_factory: Callable[..., Any], db_engine: Any
) -> None:
    """An object whose table holds nothing of the org's inserts its pages without asking
    what is stored (the store checks, see ``upsert_many(new=True)``); an object with rows
    already (here one order written before any mirror, as a replay may) reads them, so
    its state machine still sees where the order was."""
    from tests.integration.store.helpers import an_order, statements

    org = sandbox_org.org_id
    acme = sandbox_org.demo_ids["acme_order"]
    with uow_factory() as uow:
        uow.mirror("order").upsert_many(org, [an_order(0, sf_id=acme, status="Expired")])
        uow.commit()
    with statements(db_engine) as log:
        report = mirror().run()
    by_key = {o.key: o for o in report.objects}

    def reads_of_ids(table: str) -> int:  # beyond the one "anything stored?" (LIMIT 1) per object
        return sum(1 for s in log.statements if s.startswith("SELECT") and f"FROM {table} " in s and "LIMIT" not in s)

    assert reads_of_ids("order_items") == 0 and by_key["order_item"].inserted > 0
    assert reads_of_ids("orders") > 0
    assert (by_key["order"].updated, by_key["order"].anomalies) == (1, 1)
    with uow_factory() as uow:
        [anomaly] = uow.anomalies.list(org)
        assert uow.mirror("order").get(org, acme)["status"] == "Activated"
    assert (anomaly.record_id, anomaly.from_state, anomaly.to_state) == (acme, "expired", "activated")
    again = mirror().run(full=True)
    assert again.written == 0 and sum(o.anomalies for o in again.objects) == 0


def test_the_collector_runs_less_often_while_pages_are_read_and_as_before_afterwards(
    mirror: Callable[..., MirrorService],
) -> None:
    import gc

    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    mirror(progress=lambda page: during.append(gc.get_threshold())).run()
    assert during and all(t[0] >= 50_000 and t[1:] == before[1:] for t in during)
    assert gc.get_threshold() == before
