"""The sandbox org against Salesforce's documented REST API, as an unseen client sees it:
unmodified simple-salesforce, and raw requests where simple-salesforce hides the wire
(status codes, headers, exact bodies). Each test names the documented behaviour it pins.

Sources: REST API Developer Guide (query, queryAll more results, sObject rows, upsert by
external id, sObject Collections, composite and its allOrNone interplay, limits, status
codes and errors) and the SOQL/SOSL reference (date formats and literals, ORDER BY,
LIKE, quoted string escapes)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.org.ids import make_id
from tests.fixtures.org import Wire, client_credentials_token, tls_session

V = "/services/data/v66.0"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
NOT_FOUND = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def _sf(org: SandboxOrg, version: str) -> Salesforce:
    session = tls_session(org)
    return Salesforce(instance_url=org.instance_url, session_id=client_credentials_token(org, session),
                      session=session, version=version, parse_float=Decimal)


def _error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.content[0]["errorCode"])


def _billing(order_id: str | None = None, **values: object) -> dict[str, object]:
    rec: dict[str, object] = {"attributes": {"type": "GTM_Order_Billing__c"}, **values}
    if order_id is not None:
        rec["Order_Id__c"] = order_id
    return rec


# ------------------------------------------------------------------ versions


def test_versions_list_is_public_and_labels_each_release(sandbox_org: SandboxOrg) -> None:
    resp = tls_session(sandbox_org).get(sandbox_org.instance_url + "/services/data/")  # no session needed
    versions = {v["version"]: v for v in resp.json()}
    assert resp.status_code == 200
    assert all(set(v) == {"label", "url", "version"} for v in versions.values())
    assert versions["62.0"] == {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}
    assert versions["40.0"]["label"] == "Summer '17"
    assert versions["46.0"]["label"] == "Summer '19"
    assert versions["60.0"]["label"] == "Spring '24"


# ------------------------------------------------------------------ query shape and pagination


def test_query_response_and_record_shape(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    draft = sandbox_org.demo_ids["offer_draft"]
    result = simple_sf.query(f"SELECT Id, Name, CreatedDate, ServiceStartDate, Subtotal FROM SfdcPartnerOffer "
                             f"WHERE Id = '{draft[:15]}'")  # a 15-character id matches too
    assert set(result) == {"totalSize", "done", "records"}  # no nextRecordsUrl when done
    assert result["totalSize"] == 1 and result["done"] is True
    [record] = result["records"]
    assert list(record) == ["attributes", "Id", "Name", "CreatedDate", "ServiceStartDate", "Subtotal"]
    assert record["attributes"] == {"type": "SfdcPartnerOffer", "url": f"{V}/sobjects/SfdcPartnerOffer/{draft}"}
    assert record["Id"] == draft and len(record["Id"]) == 18
    assert STAMP.match(record["CreatedDate"])  # 2025-01-31T12:00:00.000+0000
    assert date.fromisoformat(record["ServiceStartDate"])
    assert isinstance(record["Subtotal"], Decimal)


def test_count_returns_total_size_and_no_records(simple_sf: Salesforce) -> None:
    everything = simple_sf.query("SELECT COUNT() FROM SfdcPartnerOffer")
    drafts = simple_sf.query("SELECT COUNT() FROM SfdcPartnerOffer WHERE Status = 'Draft'")
    assert everything == {"totalSize": 8, "done": True, "records": []}
    assert drafts == {"totalSize": 1, "done": True, "records": []}


def test_limit_spanning_pages_with_next_records_url(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(1000)  # 250 orders, 750 order items
    soql = "SELECT Id FROM SfdcPartnerOrderItem ORDER BY SystemModstamp, Id LIMIT 450"
    first = simple_sf.query(soql, headers={"Sforce-Query-Options": "batchSize=200"})
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert re.fullmatch(rf"{V}/query/01g[A-Za-z0-9]{{15}}-200", first["nextRecordsUrl"])
    second = simple_sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    third = simple_sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert second["nextRecordsUrl"].endswith("-400") and second["totalSize"] == 450
    assert (third["done"], len(third["records"])) == (True, 50) and "nextRecordsUrl" not in third
    ids = [r["Id"] for page in (first, second, third) for r in page["records"]]
    assert len(set(ids)) == 450
    assert len(list(simple_sf.query_all_iter(soql))) == 450


def test_query_all_pages_are_served_under_query_and_query_all(wire: Wire, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(1000)
    items = sorted(sandbox_org.records("SfdcPartnerOrderItem"), key=lambda r: (r["SystemModstamp"], r["Id"]))
    gone = [r["Id"] for r in items[300:310]]  # deleted rows that land on the second page
    sandbox_org.delete("SfdcPartnerOrderItem", gone, stamp=items[300]["SystemModstamp"])
    soql = "SELECT Id, IsDeleted FROM SfdcPartnerOrderItem ORDER BY SystemModstamp, Id"
    first = wire("GET", f"{V}/queryAll", params={"q": soql}, headers={"Sforce-Query-Options": "batchSize=200"}).json()
    # The docs: a queryAll nextRecordsUrl says "query", and either resource serves the locator.
    assert first["totalSize"] == 750 and first["nextRecordsUrl"].startswith(f"{V}/query/01g")
    via_query = wire("GET", first["nextRecordsUrl"]).json()
    via_query_all = wire("GET", first["nextRecordsUrl"].replace("/query/", "/queryAll/")).json()
    assert via_query == via_query_all
    assert sorted(r["Id"] for r in via_query["records"] if r["IsDeleted"]) == sorted(gone)
    live = wire("GET", f"{V}/query", params={"q": soql}).json()
    assert live["totalSize"] == 740


def test_query_locators_are_not_capped_and_last_two_days(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # API Query Cursor Limits: since API v56.0 (for every version) there is no limit on open
    # cursors; a locator and its results are available for 2 days after the query ran.
    sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": f"LOC-{i:04d}"} for i in range(250)])
    options = {"Sforce-Query-Options": "batchSize=200"}
    soql = {"q": "SELECT Id FROM GTM_Order_Billing__c"}
    firsts = [wire("GET", f"{V}/query", params=soql, headers=options).json() for _ in range(12)]
    for first in firsts:  # twelve cursors open at once, the oldest first
        rest = wire("GET", first["nextRecordsUrl"])
        assert rest.status_code == 200, rest.text
        assert len(first["records"]) + len(rest.json()["records"]) == first["totalSize"]
    with SandboxOrg.start(data=None) as own:  # its own org: the shared one's clock must not move on
        own.insert("GTM_Order_Billing__c", [{"Order_Id__c": f"LOC-{i:04d}"} for i in range(450)])
        own_wire = Wire(own)
        old = own_wire("GET", f"{V}/query", params=soql, headers=options).json()
        own.advance_clock(days=1)
        assert own_wire("GET", old["nextRecordsUrl"]).json()["done"] is False  # a middle page: still open
        own.advance_clock(days=1, seconds=1)
        expired = own_wire("GET", old["nextRecordsUrl"])
        assert (expired.status_code, expired.json()[0]["errorCode"]) == (400, "INVALID_QUERY_LOCATOR")


def test_order_by_puts_nulls_first_ascending_and_last_descending(simple_sf: Salesforce,
                                                                 sandbox_org: SandboxOrg) -> None:
    addon = sandbox_org.demo_ids["addon_offer"]  # the only offer with an InitialOrderId

    def ids(order_by: str) -> list[str]:
        return [r["Id"] for r in simple_sf.query(f"SELECT Id FROM SfdcPartnerOffer ORDER BY {order_by}")["records"]]

    assert ids("InitialOrderId, Name")[-1] == addon  # ASC: nulls first
    assert ids("InitialOrderId DESC, Name")[0] == addon  # DESC: nulls last
    assert ids("InitialOrderId ASC NULLS LAST, Name")[0] == addon
    assert ids("InitialOrderId DESC NULLS FIRST, Name")[-1] == addon
    names = [r["Name"] for r in simple_sf.query("SELECT Name FROM SfdcPartnerOffer ORDER BY Name DESC")["records"]]
    assert names == sorted(names, key=str.lower, reverse=True)


# ------------------------------------------------------------------ SOQL literals


def test_like_is_case_insensitive_with_wildcards(simple_sf: Salesforce) -> None:
    def names(where: str) -> set[str]:
        return {r["Name"] for r in simple_sf.query(f"SELECT Name FROM SfdcPartnerOffer WHERE {where}")["records"]}

    assert names("Name LIKE 'acme%'") == {"Acme Corp Initial offer", "Acme Corp Add-On offer"}
    assert names("Name LIKE '%ADD-ON OFFER'") == {"Acme Corp Add-On offer"}
    assert names("Name LIKE 'H_oli%'") == {"Hooli Initial offer"}
    assert names("Status = 'draft'") == {"Initech Initial offer"}  # = on text ignores case too


def test_string_escapes(simple_sf: Salesforce) -> None:
    for name in ("Bob's 50% off_deal", "Café offer", "back\\slash"):
        simple_sf.SfdcPartnerOffer.create({"Name": name, "Status": "Draft", "OfferType": "Initial"})

    def names(where: str) -> set[str]:
        return {r["Name"] for r in simple_sf.query(f"SELECT Name FROM SfdcPartnerOffer WHERE {where}")["records"]}

    assert names(r"Name = 'Bob\'s 50% off_deal'") == {"Bob's 50% off_deal"}
    assert names(r"Name = 'Caf\u00e9 offer'") == {"Café offer"}
    assert names(r"Name = 'back\\slash'") == {"back\\slash"}
    # \% and \_ are literal characters in LIKE patterns, and only there.
    assert names(r"Name LIKE 'bob\'s 50\% off\_deal'") == {"Bob's 50% off_deal"}
    assert names(r"Name LIKE '%50\%%'") == {"Bob's 50% off_deal"}
    assert names(r"Name LIKE '%50\_%'") == set()
    for where in (r"Name = 'Bob\'s 50\% off_deal'", r"Name = 'a\x'", r"Name LIKE 'a\q%'"):
        with pytest.raises(SalesforceMalformedRequest) as err:
            simple_sf.query(f"SELECT Id FROM SfdcPartnerOffer WHERE {where}")
        assert _error_code(err) == "MALFORMED_QUERY", where


def test_datetime_literals_in_utc_or_with_an_offset(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    [rid] = sandbox_org.insert("SfdcPartnerTermSet", [{"Name": "stamped"}], stamp="2025-01-01T10:00:00.000Z")

    def ids(where: str) -> list[str]:
        return [r["Id"] for r in simple_sf.query(f"SELECT Id FROM SfdcPartnerTermSet WHERE {where}")["records"]]

    for literal in ("2025-01-01T10:00:00Z", "2025-01-01T12:00:00+02:00", "2025-01-01T05:00:00-05:00"):
        assert ids(f"SystemModstamp = {literal}") == [rid], literal
    assert ids("SystemModstamp >= 2025-01-01T10:00:00Z AND SystemModstamp < 2025-01-01T10:00:01Z") == [rid]
    assert ids("SystemModstamp > 2025-01-01T10:00:00Z AND SystemModstamp < 2025-06-01T00:00:00Z") == []
    record = simple_sf.SfdcPartnerTermSet.get(rid)
    assert record["SystemModstamp"] == record["CreatedDate"] == "2025-01-01T10:00:00.000+0000"
    # A date value filters date fields only, a dateTime value dateTime fields only; no quotes.
    for where in ("SystemModstamp > 2025-01-01", "SystemModstamp > '2025-01-01T10:00:00Z'"):
        with pytest.raises(SalesforceMalformedRequest) as err:
            simple_sf.query(f"SELECT Id FROM SfdcPartnerTermSet WHERE {where}")
        assert _error_code(err) == "INVALID_FIELD", where


def test_date_literals_follow_the_orgs_clock(sandbox_org: SandboxOrg) -> None:
    # TODAY, LAST_N_DAYS:n ... are the org's days: an org whose clock was moved on (as the
    # sandbox's billing tests do) answers them from its own today, as CreatedDate is stamped.
    with SandboxOrg.start(data=None) as own:
        own.advance_clock(days=3)
        own.insert("GTM_Order_Billing__c", [{"Order_Id__c": "DAY-1"}])
        own_wire = Wire(own)

        def count(where: str) -> int:
            soql = f"SELECT COUNT() FROM GTM_Order_Billing__c WHERE {where}"
            return int(own_wire("GET", f"{V}/query", params={"q": soql}).json()["totalSize"])

        assert count("CreatedDate = TODAY") == 1
        assert count("CreatedDate = LAST_N_DAYS:1") == 1
        assert count("CreatedDate = TOMORROW") == 0


def test_date_literals_and_date_lists(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    noon_yesterday = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    [old] = sandbox_org.insert("SfdcPartnerTermSet", [{"Name": "yesterday"}], stamp=noon_yesterday.isoformat())

    def ids(sobject: str, where: str) -> set[str]:
        return {r["Id"] for r in simple_sf.query(f"SELECT Id FROM {sobject} WHERE {where}")["records"]}

    assert ids("SfdcPartnerTermSet", "CreatedDate = YESTERDAY") == {old}
    assert old not in ids("SfdcPartnerTermSet", "CreatedDate = TODAY")
    assert old in ids("SfdcPartnerTermSet", "CreatedDate = LAST_N_DAYS:1")
    assert ids("SfdcPartnerTermSet", "CreatedDate < TODAY") == {old}
    # Demo offers start today (Acme), in 30 days (the rest) and in 90 days (the add-on); the
    # org's "today" is the UTC date.
    demo = sandbox_org.demo_ids
    today = datetime.now(UTC).date()
    in_list = f"ServiceStartDate IN ({today.isoformat()}, {(today + timedelta(days=90)).isoformat()})"
    everything = ids("SfdcPartnerOffer", "Id != null")
    assert ids("SfdcPartnerOffer", in_list) == {demo["acme_offer"], demo["addon_offer"]}
    assert ids("SfdcPartnerOffer", "ServiceStartDate = TODAY") == {demo["acme_offer"]}
    assert ids("SfdcPartnerOffer", "ServiceStartDate = NEXT_N_DAYS:30") == everything - {demo["acme_offer"],
                                                                                        demo["addon_offer"]}


# ------------------------------------------------------------------ sObject rows


def test_create_update_delete_status_codes_and_bodies(wire: Wire) -> None:
    offer = {"Name": "Wire", "Status": "Draft", "OfferType": "Initial"}
    created = wire("POST", f"{V}/sobjects/SfdcPartnerOffer", json=offer)
    rid = created.json()["id"]
    assert created.status_code == 201 and created.json() == {"id": rid, "success": True, "errors": []}
    updated = wire("PATCH", f"{V}/sobjects/SfdcPartnerOffer/{rid}", json={"Name": "Wire v2"})
    assert (updated.status_code, updated.content) == (204, b"")
    deleted = wire("DELETE", f"{V}/sobjects/SfdcPartnerOffer/{rid}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    again = wire("DELETE", f"{V}/sobjects/SfdcPartnerOffer/{rid}")
    assert again.status_code == 404 and again.json()[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_an_update_by_id_refuses_the_id_in_its_body(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # The URL names the record; an Id in the body of a PATCH on sObject Rows is refused (as
    # the docs say of upserts), however it matches. A collections update carries it instead.
    [rid] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "ID-1", "Invoice_Status__c": "open"}])
    refused = wire("PATCH", f"{V}/sobjects/GTM_Order_Billing__c/{rid}", json={"Id": rid, "Invoice_Status__c": "paid"})
    assert (refused.status_code, refused.json()[0]["errorCode"]) == (400, "INVALID_FIELD")
    assert sandbox_org.get("GTM_Order_Billing__c", rid)["Invoice_Status__c"] == "open"  # type: ignore[index]
    collection = wire("PATCH", f"{V}/composite/sobjects",
                      json={"records": [_billing(id=rid, Invoice_Status__c="paid")]})
    assert collection.json()[0]["success"] is True


def test_record_rows_honour_the_weak_conditional_headers(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Conditional Request Headers: If-Modified-Since and If-Unmodified-Since compare with the
    # record's last modified date (GET: 304 when unchanged; GET or PATCH: 412 when changed
    # since); an invalid If-Unmodified-Since on a PATCH is a 400.
    [rid] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "CND-1", "Invoice_Status__c": "open"}])
    url = f"{V}/sobjects/GTM_Order_Billing__c/{rid}"
    before, after = "Mon, 01 Jan 2001 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"
    unchanged = wire("GET", url, headers={"If-Modified-Since": after})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert wire("GET", url, headers={"If-Modified-Since": before}).json()["Id"] == rid
    assert wire("GET", url, headers={"If-Unmodified-Since": before}).status_code == 412
    stale = wire("PATCH", url, json={"Invoice_Status__c": "paid"}, headers={"If-Unmodified-Since": before})
    assert stale.status_code == 412
    assert sandbox_org.get("GTM_Order_Billing__c", rid)["Invoice_Status__c"] == "open"  # type: ignore[index]
    bad = wire("PATCH", url, json={"Invoice_Status__c": "paid"}, headers={"If-Unmodified-Since": "yesterday"})
    assert bad.status_code == 400
    fresh = wire("PATCH", url, json={"Invoice_Status__c": "paid"}, headers={"If-Unmodified-Since": after})
    assert fresh.status_code == 204
    assert sandbox_org.get("GTM_Order_Billing__c", rid)["Invoice_Status__c"] == "paid"  # type: ignore[index]


def test_get_updated_and_deleted_ignore_the_seconds_of_start_and_end(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Get Updated / Get Deleted: the API ignores the seconds of start and end
    # (12:30:15 is taken as 12:30:00 UTC).
    [rid] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "UPD-1"}], stamp="2026-12-01T12:30:10.000Z")
    sandbox_org.delete("GTM_Order_Billing__c", [rid], stamp="2026-12-01T12:30:20.000Z")
    window = {"start": "2026-12-01T12:30:45+00:00", "end": "2026-12-01T12:31:15+00:00"}
    deleted = wire("GET", f"{V}/sobjects/GTM_Order_Billing__c/deleted", params=window).json()
    assert [r["id"] for r in deleted["deletedRecords"]] == [rid]
    assert deleted["latestDateCovered"] == "2026-12-01T12:31:00.000+0000"
    [live] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "UPD-2"}], stamp="2026-12-01T12:30:10.000Z")
    updated = wire("GET", f"{V}/sobjects/GTM_Order_Billing__c/updated", params=window).json()
    assert updated == {"ids": [live], "latestDateCovered": "2026-12-01T12:31:00.000+0000"}


def test_not_found_is_a_list_of_errors(simple_sf: Salesforce, wire: Wire) -> None:
    with pytest.raises(SalesforceResourceNotFound) as missing:
        simple_sf.SfdcPartnerOffer.get("1OF5g00000000ZZ")
    assert missing.value.content == NOT_FOUND
    assert wire("GET", f"{V}/sobjects/NoSuchObject__c/describe").json() == NOT_FOUND
    assert wire("GET", "/services/data/v99.0/limits").status_code == 404
    bad_field = wire("PATCH", f"{V}/sobjects/GTM_Order_Billing__c/Nope__c/A1", json={"Name": "x"})
    assert bad_field.status_code == 404 and bad_field.json()[0]["errorCode"] == "NOT_FOUND"


def test_upsert_answers_by_api_version(sandbox_org: SandboxOrg, simple_sf: Salesforce) -> None:
    # v46.0 and later: 201 + created true, then 200 + created false.
    billing = simple_sf.GTM_Order_Billing__c
    new = billing.upsert("Order_Id__c/ORD-62", {"Invoice_Status__c": "open"}, raw_response=True)
    same = billing.upsert("Order_Id__c/ORD-62", {"Invoice_Status__c": "paid"}, raw_response=True)
    rid = new.json()["id"]
    assert new.status_code == 201 and new.json() == {"id": rid, "success": True, "errors": [], "created": True}
    assert same.status_code == 200 and same.json() == {"id": rid, "success": True, "errors": [], "created": False}
    # v45.0 and earlier: no "created" flag, and an update is 204 with no body.
    old_billing = _sf(sandbox_org, "45.0").GTM_Order_Billing__c
    created = old_billing.upsert("Order_Id__c/ORD-45", {"Invoice_Status__c": "open"}, raw_response=True)
    updated = old_billing.upsert("Order_Id__c/ORD-45", {"Invoice_Status__c": "paid"}, raw_response=True)
    assert created.status_code == 201 and created.json() == {"id": created.json()["id"], "success": True, "errors": []}
    assert (updated.status_code, updated.content) == (204, b"")
    assert billing.get_by_custom_id("Order_Id__c", "ORD-45")["Invoice_Status__c"] == "paid"


def test_a_post_to_the_id_external_id_creates(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Rows by External ID: from API v37.0 a POST to /sobjects/X/Id creates a record
    # (Id as the external ID field, its value null), for clients that upsert by several fields.
    created = wire("POST", f"{V}/sobjects/GTM_Order_Billing__c/Id", json={"Order_Id__c": "POST-ID"})
    assert created.status_code == 201
    rid = created.json()["id"]
    assert created.json() == {"id": rid, "success": True, "errors": []}
    assert sandbox_org.get("GTM_Order_Billing__c", rid)["Order_Id__c"] == "POST-ID"  # type: ignore[index]
    assert wire("POST", f"{V}/sobjects/GTM_Order_Billing__c/Order_Id__c", json={}).status_code == 405


def test_upsert_refuses_the_external_id_or_id_in_its_body(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Rows by External ID: don't specify Id or an external ID field in the request
    # body, or an error is generated (the URL names the record). Collections upsert, where
    # the body is the only place for it, is another matter (see below).
    url = f"{V}/sobjects/GTM_Order_Billing__c/Order_Id__c/ORD-B1"
    for body in ({"Order_Id__c": "ORD-B1", "Invoice_Status__c": "open"},
                 {"order_id__c": "ORD-B2", "Invoice_Status__c": "open"},
                 {"Id": "a0B5g0000000001EAA", "Invoice_Status__c": "open"}):
        refused = wire("PATCH", url, json=body)
        assert refused.status_code == 400, body
        assert refused.json()[0]["errorCode"] == "INVALID_FIELD"
    assert not [r for r in sandbox_org.records("GTM_Order_Billing__c") if r["Order_Id__c"] in ("ORD-B1", "ORD-B2")]
    assert wire("PATCH", url, json={"Invoice_Status__c": "open"}).status_code == 201


# ------------------------------------------------------------------ sObject Collections


def test_collections_failed_records_carry_no_id(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    created = simple_sf.restful("composite/sobjects", method="POST", json={
        "allOrNone": False, "records": [_billing("C1"), _billing(Invoice_Status__c="open")]})
    assert created[0] == {"id": created[0]["id"], "success": True, "errors": []}
    assert created[1] == {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                                                        "message": "Required fields are missing: [Order_Id__c]",
                                                        "fields": ["Order_Id__c"]}]}
    updated = simple_sf.restful("composite/sobjects", method="PATCH", json={
        "allOrNone": False, "records": [_billing(id=created[0]["id"], Invoice_Status__c="paid"), _billing(id="xyz")]})
    assert updated[0] == {"id": created[0]["id"], "success": True, "errors": []}
    assert "id" not in updated[1] and updated[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert updated[1]["errors"][0]["fields"] == ["Id"]


def test_collections_delete_names_well_formed_ids_only(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    [live, gone] = [simple_sf.restful("composite/sobjects", method="POST", json={"records": [_billing(o)]})[0]["id"]
                    for o in ("D1", "D2")]
    simple_sf.GTM_Order_Billing__c.delete(gone)
    result = simple_sf.restful("composite/sobjects", method="DELETE",
                               params={"ids": f"{live},{gone},001RM000003oLrB000", "allOrNone": "false"})
    assert result[0] == {"id": live, "success": True, "errors": []}
    assert result[1]["id"] == gone and result[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert "id" not in result[2] and result[2]["errors"][0] == {
        "statusCode": "MALFORMED_ID", "message": "malformed id 001RM000003oLrB000", "fields": []}


def test_collections_all_or_none_keeps_ids_of_rolled_back_updates(simple_sf: Salesforce,
                                                                   sandbox_org: SandboxOrg) -> None:
    [rid] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "R1", "Invoice_Status__c": "open"}])
    updated = simple_sf.restful("composite/sobjects", method="PATCH", json={
        "allOrNone": True, "records": [_billing(id=rid, Invoice_Status__c="paid"), _billing(id="xyz")]})
    created = simple_sf.restful("composite/sobjects", method="POST", json={
        "allOrNone": True, "records": [_billing("R2"), _billing()]})
    assert updated[0]["id"] == rid and updated[0]["success"] is False
    assert updated[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert "id" not in created[0] and created[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sandbox_org.get("GTM_Order_Billing__c", rid)["Invoice_Status__c"] == "open"  # type: ignore[index]
    assert [r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c")] == ["R1"]


def test_collections_upsert_reports_created_per_record(simple_sf: Salesforce) -> None:
    path = "composite/sobjects/GTM_Order_Billing__c/Order_Id__c"
    first = simple_sf.restful(path, method="PATCH", json={"allOrNone": False, "records": [_billing("U1")]})
    both = simple_sf.restful(path, method="PATCH", json={"allOrNone": False, "records": [
        _billing("U2", Invoice_Status__c="open"), _billing("U1", Invoice_Status__c="paid")]})
    assert both[0] == {"id": both[0]["id"], "success": True, "errors": [], "created": True}
    assert both[1] == {"id": first[0]["id"], "success": True, "errors": [], "created": False}


def test_collections_process_at_most_ten_chunks_of_one_type(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Collections create / update: records of several types are processed in chunks
    # of consecutive records of one type, at most 10 chunks a request.
    def offer(i: int) -> dict[str, object]:
        return {"attributes": {"type": "SfdcPartnerOffer"}, "Name": f"Chunk {i}", "Status": "Draft",
                "OfferType": "Initial"}

    ten = [rec for i in range(5) for rec in (_billing(f"CH-{i}"), offer(i))]
    assert all(r["success"] for r in wire("POST", f"{V}/composite/sobjects", json={"records": ten}).json())
    eleven = [rec for i in range(5, 10) for rec in (_billing(f"CH-{i}"), offer(i))] + [_billing("CH-10")]
    refused = wire("POST", f"{V}/composite/sobjects", json={"records": eleven})
    assert refused.status_code == 400
    assert not [r for r in sandbox_org.records("GTM_Order_Billing__c") if r["Order_Id__c"] == "CH-5"]
    grouped = sorted(eleven, key=lambda r: str(r["attributes"]["type"]))  # type: ignore[index]
    assert all(r["success"] for r in wire("POST", f"{V}/composite/sobjects", json={"records": grouped}).json())


def test_collections_retrieve_takes_one_to_2000_ids(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Collections retrieve: ids is required; a POST retrieves up to 2,000 records.
    [rid] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "G1"}])
    url = f"{V}/composite/sobjects/GTM_Order_Billing__c"
    got = wire("POST", url, json={"ids": [rid] * 2000, "fields": ["Order_Id__c"]})
    assert got.status_code == 200 and len(got.json()) == 2000
    too_many = wire("POST", url, json={"ids": [rid] * 2001, "fields": ["Order_Id__c"]})
    assert (too_many.status_code, too_many.json()[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    for none in (wire("POST", url, json={"ids": [], "fields": ["Id"]}), wire("GET", url, params={"fields": "Id"})):
        assert (none.status_code, none.json()[0]["errorCode"]) == (400, "MISSING_ARGUMENT")


def test_collections_exist_from_their_api_versions(sandbox_org: SandboxOrg, wire: Wire) -> None:
    body = {"records": [_billing("V1")]}
    assert wire("POST", "/services/data/v41.0/composite/sobjects", json=body).json() == NOT_FOUND
    assert wire("POST", "/services/data/v42.0/composite/sobjects", json=body).status_code == 200
    upsert = "/sobjects/GTM_Order_Billing__c/Order_Id__c"
    assert wire("PATCH", f"/services/data/v45.0/composite{upsert}", json=body).json() == NOT_FOUND
    assert wire("PATCH", f"/services/data/v46.0/composite{upsert}", json=body).json()[0]["created"] is False


def test_gtm_objects_are_absent_below_their_api_version_on_every_path(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Object Reference: SfdcPartnerOffer exists from v66.0. At v65.0 no resource may reach it,
    # by external id or through sObject Collections, as describe and query already refuse it.
    offer = {"Name": "Versioned", "Status": "Draft", "OfferType": "Initial"}
    rid = wire("POST", f"{V}/sobjects/SfdcPartnerOffer", json=offer).json()["id"]
    old = "/services/data/v65.0"
    assert wire("GET", f"{old}/sobjects/SfdcPartnerOffer/Id/{rid}").json() == NOT_FOUND
    assert wire("PATCH", f"{old}/sobjects/SfdcPartnerOffer/Id/{rid}", json={"Name": "x"}).json() == NOT_FOUND
    assert wire("DELETE", f"{old}/sobjects/SfdcPartnerOffer/Id/{rid}").json() == NOT_FOUND
    typed = {"attributes": {"type": "SfdcPartnerOffer"}}
    created = wire("POST", f"{old}/composite/sobjects", json={"records": [{**typed, **offer}]}).json()
    updated = wire("PATCH", f"{old}/composite/sobjects", json={"records": [{**typed, "Id": rid, "Name": "x"}]}).json()
    deleted = wire("DELETE", f"{old}/composite/sobjects", params={"ids": rid}).json()
    assert [r["success"] for r in created + updated + deleted] == [False, False, False]
    assert [(r["Id"], r["Name"]) for r in sandbox_org.records("SfdcPartnerOffer") if r["Name"] in ("x", "Versioned")] \
        == [(rid, "Versioned")]  # nothing created, renamed or deleted
    # At v66.0 the same calls reach it.
    assert wire("GET", f"{V}/sobjects/SfdcPartnerOffer/Id/{rid}").json()["Id"] == rid
    assert wire("POST", f"{V}/composite/sobjects", json={"records": [{**typed, **offer}]}).json()[0]["success"]


# ------------------------------------------------------------------ composite


def test_composite_subresults_and_references(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    result = simple_sf.restful("composite", method="POST", json={"allOrNone": False, "compositeRequest": [
        {"method": "POST", "url": f"{V}/sobjects/SfdcPartnerOffer", "referenceId": "offer",
         "body": {"Name": "Composite", "Status": "Draft", "OfferType": "Initial"}},
        {"method": "PATCH", "url": f"{V}/sobjects/SfdcPartnerOffer/@{{offer.id}}", "referenceId": "rename",
         "body": {"Name": "Composite v2"}},
        {"method": "GET", "url": f"{V}/query?q=SELECT+Id,Name+FROM+SfdcPartnerOffer+WHERE+Name+=+'Composite+v2'",
         "referenceId": "find"},
        {"method": "GET", "url": f"{V}/sobjects/SfdcPartnerOffer/@{{find.records[0].Id}}?fields=Name",
         "referenceId": "read"},
        {"method": "GET", "url": f"{V}/sobjects/SfdcPartnerOffer/@{{nothing.id}}", "referenceId": "dangling"},
    ]})["compositeResponse"]
    by_ref = {r["referenceId"]: r for r in result}
    assert [r["referenceId"] for r in result] == ["offer", "rename", "find", "read", "dangling"]
    assert all(set(r) == {"body", "httpHeaders", "httpStatusCode", "referenceId"} for r in result)
    offer_id = by_ref["offer"]["body"]["id"]
    assert by_ref["offer"]["httpStatusCode"] == 201
    assert by_ref["offer"]["httpHeaders"] == {"Location": f"{V}/sobjects/SfdcPartnerOffer/{offer_id}"}
    assert (by_ref["rename"]["httpStatusCode"], by_ref["rename"]["body"]) == (204, None)
    assert by_ref["find"]["body"]["totalSize"] == 1
    assert by_ref["read"]["body"]["Name"] == "Composite v2"
    assert by_ref["dangling"]["httpStatusCode"] == 400  # a reference to nothing fails only its subrequest


def _composite_with_collection(all_or_none: bool) -> dict[str, Any]:
    return {"allOrNone": all_or_none, "compositeRequest": [
        {"method": "POST", "url": f"{V}/composite/sobjects", "referenceId": "billing",
         "body": {"allOrNone": False, "records": [_billing("K1"), _billing()]}},
        {"method": "POST", "url": f"{V}/sobjects/SfdcPartnerOffer", "referenceId": "offer",
         "body": {"Name": "After the collection", "Status": "Draft", "OfferType": "Initial"}},
    ]}


def test_composite_all_or_none_rolls_back_a_partly_failed_collection(simple_sf: Salesforce,
                                                                       sandbox_org: SandboxOrg) -> None:
    offers = len(sandbox_org.records("SfdcPartnerOffer"))
    result = simple_sf.restful("composite", method="POST", json=_composite_with_collection(True))["compositeResponse"]
    # The docs' case 4 (outer allOrNone true, inner false): the collection reports per record,
    # the rest is halted, and everything is rolled back, the "successful" record included.
    assert result[0]["httpStatusCode"] == 200
    assert [r["success"] for r in result[0]["body"]] == [True, False]
    assert result[1]["httpStatusCode"] == 400 and result[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert sandbox_org.records("GTM_Order_Billing__c") == []
    assert len(sandbox_org.records("SfdcPartnerOffer")) == offers
    # Case 1 (both false): the good record and the offer stay.
    kept = simple_sf.restful("composite", method="POST", json=_composite_with_collection(False))["compositeResponse"]
    assert [r["httpStatusCode"] for r in kept] == [200, 201]
    assert [r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c")] == ["K1"]


# ------------------------------------------------------------------ limits and sessions


def test_limits_and_the_limit_info_header(simple_sf: Salesforce, wire: Wire, sandbox_org: SandboxOrg) -> None:
    sandbox_org.set_limits(max=5000, used=17)
    resp = wire("GET", f"{V}/limits")
    assert resp.headers["Sforce-Limit-Info"] == "api-usage=18/5000"
    assert resp.json()["DailyApiRequests"] == {"Max": 5000, "Remaining": 4982}
    assert all(set(v) >= {"Max", "Remaining"} for v in resp.json().values())
    assert simple_sf.restful("limits")["DailyApiRequests"]["Max"] == 5000
    assert simple_sf.api_usage["api-usage"] == (19, 5000)
    query = wire("GET", f"{V}/query", params={"q": "SELECT Id FROM SfdcPartnerTermSet"})
    error = wire("GET", f"{V}/query", params={"q": "SELECT Nope FROM SfdcPartnerTermSet"})
    assert query.headers["Sforce-Limit-Info"] == "api-usage=20/5000"
    assert error.status_code == 400 and error.headers["Sforce-Limit-Info"] == "api-usage=21/5000"


def test_the_identity_url_of_the_token_answers(sandbox_org: SandboxOrg) -> None:
    # Identity URLs: the token response's id is a URL a client GETs with the access token for
    # the user and org (API URLs keep "{version}" unless ?version= names one); a missing or
    # bad token is a 403 Missing_OAuth_Token / Bad_OAuth_Token, another org's id Wrong_Org.
    session = tls_session(sandbox_org)
    token = session.post(sandbox_org.login_url + "/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": sandbox_org.client_id,
        "client_secret": sandbox_org.client_secret}).json()
    me = session.get(token["id"], headers={"Authorization": "Bearer " + token["access_token"]})
    assert me.status_code == 200
    body = me.json()
    assert (body["id"], body["user_id"], body["organization_id"], body["username"]) == (
        token["id"], sandbox_org.user_id, sandbox_org.org_id, sandbox_org.username)
    assert body["urls"]["rest"] == sandbox_org.instance_url + "/services/data/v{version}/"
    pinned = session.get(token["id"], params={"version": "66.0", "oauth_token": token["access_token"]}).json()
    assert pinned["urls"]["query"] == sandbox_org.instance_url + "/services/data/v66.0/query/"
    assert (session.get(token["id"]).status_code, session.get(token["id"]).text) == (403, "Missing_OAuth_Token")
    bad = session.get(token["id"], headers={"Authorization": "Bearer 00D!nope"})
    assert (bad.status_code, bad.text) == (403, "Bad_OAuth_Token")
    other = token["id"].replace(sandbox_org.org_id, make_id("00D", 99, pod="Sb"))
    wrong = session.get(other, headers={"Authorization": "Bearer " + token["access_token"]})
    assert (wrong.status_code, wrong.text) == (403, "Wrong_Org")


def test_invalid_session_body(sandbox_org: SandboxOrg) -> None:
    session = tls_session(sandbox_org)
    url = f"{sandbox_org.instance_url}{V}/query"
    params = {"q": "SELECT Id FROM SfdcPartnerTermSet"}
    for headers in ({"Authorization": "Bearer 00D!not-a-session"}, {}):
        resp = session.get(url, params=params, headers=headers)
        assert resp.status_code == 401
        assert resp.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


# ------------------------------------------------------------------ request size limits


def _ids_in(n: int) -> str:
    return ",".join(f"'ORD-{i:014d}'" for i in range(n))


def test_a_uri_over_16384_bytes_is_a_414_and_with_the_headers_a_431(wire: Wire) -> None:
    # Status Codes and Error Responses: 414 when the URI exceeds 16,384 bytes, 431 when the
    # URI and headers together do. A query the sandbox would serve a real org refuses.
    def query(n: int, **headers: str) -> requests.Response:
        soql = f"SELECT Id FROM GTM_Order_Billing__c WHERE Order_Id__c IN ({_ids_in(n)})"
        return wire("GET", f"{V}/query", params={"q": soql}, headers=headers)

    fits, too_long = query(500), query(800)
    assert len(fits.request.path_url) < 16384 < len(too_long.request.path_url)
    assert fits.status_code == 200
    assert too_long.status_code == 414
    assert query(500, **{"X-Padding": "p" * 4000}).status_code == 431


def test_soql_over_100000_characters_is_a_malformed_query(wire: Wire) -> None:
    # SOQL limits: a statement is at most 100,000 characters, however it reaches the org
    # (in a composite/batch body or a Bulk API 2.0 job, where the URI limit doesn't apply).
    long_soql = f"SELECT Id FROM GTM_Order_Billing__c WHERE Order_Id__c IN ({_ids_in(5000)})"
    assert len(long_soql) > 100_000
    batch = wire("POST", f"{V}/composite/batch", json={"batchRequests": [
        {"method": "GET", "url": "v66.0/query?q=" + requests.utils.quote(long_soql)}]}).json()
    assert batch["results"][0]["statusCode"] == 400
    assert batch["results"][0]["result"][0]["errorCode"] == "MALFORMED_QUERY"
    job = wire("POST", f"{V}/jobs/query", json={"operation": "query", "query": long_soql})
    assert job.status_code == 400
    short = f"SELECT Id FROM GTM_Order_Billing__c WHERE Order_Id__c IN ({_ids_in(4000)})"
    assert len(short) < 100_000
    assert wire("POST", f"{V}/jobs/query", json={"operation": "query", "query": short}).status_code == 200


def test_subrequests_at_an_unsupported_api_version_are_not_found(wire: Wire) -> None:
    # A subrequest's URL names its API version; one the org doesn't serve is NOT_FOUND there
    # as on its own.
    batch = wire("POST", f"{V}/composite/batch", json={"batchRequests": [
        {"method": "GET", "url": "v99.0/limits"}, {"method": "GET", "url": "v39.0/limits"},
        {"method": "GET", "url": "v66.0/limits"}]}).json()
    assert [r["statusCode"] for r in batch["results"]] == [404, 404, 200]
    assert batch["results"][0]["result"] == NOT_FOUND
    composite = wire("POST", f"{V}/composite", json={"compositeRequest": [
        {"method": "GET", "url": "/services/data/v99.0/limits", "referenceId": "future"}]}).json()
    assert composite["compositeResponse"][0]["httpStatusCode"] == 404
    assert composite["compositeResponse"][0]["body"] == NOT_FOUND
