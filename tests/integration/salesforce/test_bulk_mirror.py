"""The mirror's Bulk API 2.0 path against the sandbox org over HTTPS, the local model on
SQLite and on PostgreSQL: the adapter's rows equal the REST rows, a bulk mirror equals a
REST mirror row for row, the threshold picks the path, a failed job falls back to REST,
and a run that dies between pages resumes without writing anything twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.adapters.salesforce import SalesforceOrg
from connector.adapters.salesforce_bulk import BulkQuery, BulkSettings, parse_csv
from connector.bootstrap import bootstrap
from connector.errors import PermanentError
from connector.jobs import run_job
from connector.mappings import load_mapping
from connector.services.bulk_mirror import BulkSource
from connector.services.mirror import MirrorService
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import sandbox_config

MAPPING = load_mapping("gtm-v2")
OTHER_ORG = "00DSb0000000BULKAA"  # the bulk mirror's rows, beside the REST mirror's in one store
LOCAL_ONLY = {"org_id", "first_seen_at", "updated_at"}
FAST = BulkSettings(page_size=500, max_records=1000, poll_s=0.01, poll_max_s=0.05)


def bulk_source(gateway: SalesforceOrg, threshold: int, settings: BulkSettings = FAST) -> BulkSource:
    return BulkSource(gateway, BulkQuery(gateway, settings), threshold)


def mirror(gateway: SalesforceOrg, uow_factory: Callable[..., Any], org_id: str,
           bulk: BulkSource | None = None) -> MirrorService:
    return MirrorService(gateway, uow_factory, MAPPING, org_id, bulk=bulk)


def stored(uow_factory: Callable[..., Any], org_id: str) -> dict[str, list[dict[str, Any]]]:
    with uow_factory() as uow:
        return {key: [{k: v for k, v in row.items() if k not in LOCAL_ONLY}
                      for row in uow.mirror(key).list(org_id, include_deleted=True)]
                for key in MAPPING.objects}


def letters(uow_factory: Callable[..., Any], org_id: str) -> list[tuple[str, str, str]]:
    with uow_factory() as uow:
        return sorted((d.object_name, d.record_id, d.reason) for d in uow.dead_letters.open(org_id, source="mirror"))


def test_the_adapter_reads_a_job_page_by_page_equal_to_the_rest_rows(sandbox_org: SandboxOrg,
                                                                     gateway: SalesforceOrg) -> None:
    sandbox_org.reset(3000)
    soql = "SELECT Id, Name, Quantity, CustomerUnitPricePerMonth, SystemModstamp FROM SfdcPartnerOrderItem " \
           "ORDER BY SystemModstamp, Id"
    rest = [r for page in gateway.query_pages(soql) for r in page.records]
    pages = list(BulkQuery(gateway, FAST).pages(soql))
    assert [len(p.records) for p in pages] == [500] * 4 + [250] and [p.done for p in pages][-2:] == [False, True]
    rows = [r for p in pages for r in p.records]
    assert [r["Id"] for r in rows] == [r["Id"] for r in rest]
    assert all(str(b["CustomerUnitPricePerMonth"]) == a["CustomerUnitPricePerMonth"]
               and str(b["Quantity"]) == a["Quantity"] for a, b in zip(rows, rest, strict=True))
    assert sandbox_org.calls("bulk_query_results") == 3  # 2,250 records: a first set of 500, then 1,000 a set
    assert sandbox_org.calls("bulk_query_delete") == 1  # the finished job is deleted


def test_csv_empty_values_are_null_and_quoted_text_survives() -> None:
    text = '"Id","Name","Note"\n"a1","Big, ""quoted""\nname",""\n'
    assert list(parse_csv(text)) == [{"Id": "a1", "Name": 'Big, "quoted"\nname', "Note": None}]


def test_bulk_mirror_equals_the_rest_mirror_row_for_row(sandbox_org: SandboxOrg, gateway: SalesforceOrg,
                                                        uow_factory: Callable[..., Any]) -> None:
    """Demo data (a malformed item, picklists, money, dates) plus a deleted order and text
    that needs CSV quoting; REST pages of 3 so every object of 4+ records takes the job."""
    orders = sandbox_org.records("SfdcPartnerOrder")
    sandbox_org.update("SfdcPartnerOrder", [{"Id": orders[1]["Id"], "CustomerName": 'Big, "quoted"\nCo'}])
    sandbox_org.delete("SfdcPartnerOrder", [orders[-1]["Id"]])
    sandbox_org.set_batch_size(3)
    org = sandbox_org.org_id
    rest = mirror(gateway, uow_factory, org).run()
    source = bulk_source(gateway, threshold=1)
    sandbox_org.reset_counters()
    bulk = mirror(gateway, uow_factory, OTHER_ORG, bulk=source).run()
    assert source.jobs >= 3 and sandbox_org.calls("bulk_query_create") == source.jobs
    assert stored(uow_factory, OTHER_ORG) == stored(uow_factory, org)
    assert [(o.key, o.fetched, o.inserted, o.deleted, o.quarantined) for o in bulk.objects] == \
           [(o.key, o.fetched, o.inserted, o.deleted, o.quarantined) for o in rest.objects]
    assert letters(uow_factory, OTHER_ORG) == letters(uow_factory, org)
    with uow_factory() as uow:
        cursors = {s.object_name: s.cursor for s in uow.sync_state.all(org)}
        bulk_cursors = {s.object_name: s.cursor for s in uow.sync_state.all(OTHER_ORG)}
    assert bulk_cursors == cursors
    # The next cycle is idle either way: the bulk mirror's local window matches the org's.
    again = mirror(gateway, uow_factory, OTHER_ORG, bulk=source).run()
    assert again.written == 0 and all(o.idle for o in again.objects)


def test_the_threshold_picks_bulk_for_big_objects_and_rest_for_the_others(
        sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]) -> None:
    sandbox_org.reset(3000)  # 750 orders, 2,250 items
    sandbox_org.reset_counters()
    source = bulk_source(gateway, threshold=1000)
    with capture_logs() as logs:
        report = mirror(gateway, uow_factory, sandbox_org.org_id, bulk=source).run()
    selected = [e["object"] for e in logs if e["event"] == "bulk.selected"]
    assert selected == ["SfdcPartnerOrderItem"] and source.jobs == 1
    by_key = {o.key: o for o in report.objects}
    assert by_key["order"].fetched == 750 and by_key["order"].pages == 1  # one REST page
    assert by_key["order_item"].fetched == 2250 and by_key["order_item"].pages == 5  # job pages of 500
    # one REST page dropped (2,000 of 2,250: its totalSize chose; the next one is never asked
    # for), create, 2 polls, 3 sets, delete
    assert sandbox_org.calls("bulk_query_create") == 1 and sandbox_org.calls("bulk_query_results") == 3
    assert sandbox_org.calls("query_more") == 0
    assert report.api_calls == sandbox_org.api_calls


def test_a_failed_job_falls_back_to_rest_in_the_same_run(sandbox_org: SandboxOrg, gateway: SalesforceOrg,
                                                         uow_factory: Callable[..., Any]) -> None:
    sandbox_org.reset(3000)
    sandbox_org.fail_bulk_jobs("QUERY_TIMEOUT: Your query request was running for too long.")
    with capture_logs() as logs:
        report = mirror(gateway, uow_factory, sandbox_org.org_id, bulk=bulk_source(gateway, threshold=1000)).run()
    failed = [e for e in logs if e["event"] == "bulk.job_failed"]
    assert len(failed) == 1 and "QUERY_TIMEOUT" in failed[0]["reason"] and failed[0]["fallback"] == "rest"
    items = {o.key: o for o in report.objects}["order_item"]
    assert items.fetched == items.inserted == 2250 and items.status == "ok"


@pytest.mark.parametrize("status", [400, 503])
def test_a_run_that_dies_between_pages_resumes_without_writing_twice(
        status: int, sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]) -> None:
    """400: the second result set is refused for good, the run fails with the first set
    (one page) committed and the job aborted; the next run goes on from the committed cursor. 503:
    the one retry policy reads the same locator again and the run completes."""
    sandbox_org.reset(3000)
    org = sandbox_org.org_id
    source = bulk_source(gateway, threshold=1000)
    sandbox_org.fail("bulk_query_results", status=status, skip=1,
                     error_code="INVALID_LOCATOR" if status == 400 else None)
    if status == 400:
        with pytest.raises(PermanentError):
            mirror(gateway, uow_factory, org, bulk=source).run()
        half = {k: len(v) for k, v in stored(uow_factory, org).items()}
        assert half["order_item"] == 500  # the first set: one page of 500, committed with its cursor
        with uow_factory() as uow:
            state = {s.object_name: s for s in uow.sync_state.all(org)}["SfdcPartnerOrderItem"]
        assert state.cursor is not None and state.last_status == "failed"
        assert sandbox_org.calls("bulk_query_abort") + sandbox_org.calls("bulk_query_delete") == 1
        second = mirror(gateway, uow_factory, org, bulk=source).run()
        items = {o.key: o for o in second.objects}["order_item"]
        assert items.inserted == 1750  # only what the first run had not written
        assert items.updated == 0  # the overlap re-read found identical rows
    else:
        first = mirror(gateway, uow_factory, org, bulk=source).run()
        items = {o.key: o for o in first.objects}["order_item"]
        assert items.inserted == items.fetched == 2250
    assert {r["sf_id"] for r in stored(uow_factory, org)["order_item"]} == \
           {r["Id"] for r in sandbox_org.records("SfdcPartnerOrderItem")}


def test_the_mirror_job_takes_the_bulk_path_from_the_config(sandbox_org: SandboxOrg, database_url: str,
                                                            tmp_path: Path) -> None:
    sandbox_org.reset(3000)
    runtime = bootstrap(sandbox_config(sandbox_org, database_url, data_dir=tmp_path, sync={"bulk_threshold": 1000}))
    try:
        outcome = run_job(runtime, "mirror", instance_id="test")
        assert outcome.status == "ok" and outcome.counts["order_item"] == 2250
        assert sandbox_org.calls("bulk_query_create") == 1
    finally:
        runtime.close()
    off = bootstrap(sandbox_config(sandbox_org, database_url, data_dir=tmp_path / "off", sync={"bulk_threshold": 0}))
    try:
        sandbox_org.reset_counters()
        assert run_job(off, "mirror", instance_id="test").status == "ok"
        assert sandbox_org.calls("bulk_query_create") == 0
    finally:
        off.close()


def test_csv_records_take_the_shape_of_rest_records_before_the_one_conversion() -> None:
    from connector.services.bulk_mirror import CsvRecords
    from connector.services.records import RecordConverter

    obj = MAPPING.objects["order_item"]
    raw = {"Id": "a0B5g0000000001AAA", "SystemModstamp": "2026-12-04T07:42:29.117Z", "IsDeleted": "false",
           **{f: None for f in obj.fields}}
    shaped, other = CsvRecords(obj).page([dict(raw), {**raw, "IsDeleted": "yes", "SystemModstamp": None}])
    assert shaped["IsDeleted"] is False and shaped["SystemModstamp"] == "2026-12-04T07:42:29.117+0000"
    assert other["IsDeleted"] == "yes" and other["SystemModstamp"] is None  # left for the converter to name
    converter = RecordConverter(MAPPING, obj, lambda key: set())
    assert converter.stamp(shaped) == converter.stamp(raw)  # the same moment either way


def test_a_stopped_run_aborts_its_job_and_the_next_run_finishes_the_object(
        sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any]) -> None:
    import threading

    sandbox_org.reset(3000)
    org = sandbox_org.org_id
    stop = threading.Event()
    source = bulk_source(gateway, threshold=1000)
    service = MirrorService(gateway, uow_factory, MAPPING, org, bulk=source, stop=stop,
                            progress=lambda p: stop.set() if p.key == "order_item" else None)
    report = service.run()
    items = {o.key: o for o in report.objects}["order_item"]
    assert items.status == "stopped" and items.fetched == 500  # one page committed, then the stop
    assert sandbox_org.calls("bulk_query_delete") == 1  # the job (complete) is not left behind
    resumed = mirror(gateway, uow_factory, org, bulk=source).run()
    again = {o.key: o for o in resumed.objects}["order_item"]
    assert again.inserted == 1750 and again.updated == 0
