"""The sandbox org against Salesforce's documented REST API, second round: what an unseen
client (simple-salesforce, requests, curl) meets first and the first round left out. Each
test names the documented behaviour it pins.

Sources: REST API Developer Guide (Compression Headers; Status Codes and Error Responses;
Update a Record, the ``_HttpMethod`` override) and the SOQL and SOSL Reference (FIELDS();
Date Formats and Date Literals in WHERE)."""

from __future__ import annotations

import calendar
import csv
import gzip
import io
import json
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import Wire, tls_session

V = "/services/data/v66.0"


def _error(resp: requests.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()[0]["errorCode"]


# ------------------------------------------------------------------ compression


def test_a_compressed_request_body_is_decompressed_before_processing(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Compression Headers: "Include a Content-Encoding: gzip or Content-Encoding: deflate
    # header to compress a request. REST API decompresses any requests before processing."
    url = f"{V}/sobjects/GTM_Order_Billing__c"
    json_type = {"Content-Type": "application/json"}
    gzipped = wire("POST", url, data=gzip.compress(json.dumps({"Order_Id__c": "GZ-1"}).encode()),
                   headers={**json_type, "Content-Encoding": "gzip"})
    deflated = wire("POST", url, data=zlib.compress(json.dumps({"Order_Id__c": "DF-1"}).encode()),
                    headers={**json_type, "Content-Encoding": "deflate"})
    assert (gzipped.status_code, deflated.status_code) == (201, 201), (gzipped.text, deflated.text)
    assert sorted(r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c")) == ["DF-1", "GZ-1"]
    # A body that isn't what its Content-Encoding says is the client's error, not a 500.
    broken = wire("POST", url, data=b"not gzip", headers={**json_type, "Content-Encoding": "gzip"})
    assert broken.status_code == 400


def test_responses_are_compressed_when_the_client_accepts_it(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Compression Headers: Salesforce compresses a response if the request has
    # Accept-Encoding: gzip or deflate, and then names the algorithm in Content-Encoding.
    offer = sandbox_org.demo_ids["offer_draft"]
    url = f"{V}/sobjects/SfdcPartnerOffer/{offer}"
    for encoding, decompress in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
        resp = wire("GET", url, headers={"Accept-Encoding": encoding}, stream=True)
        raw = resp.raw.read(decode_content=False)
        assert resp.headers["Content-Encoding"] == encoding
        assert int(resp.headers["Content-Length"]) == len(raw)
        assert json.loads(decompress(raw))["Id"] == offer
    plain = wire("GET", url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.json()["Id"] == offer
    # A client that decodes transparently (requests asks for gzip by default) sees JSON.
    query = wire("GET", f"{V}/query", params={"q": "SELECT Id FROM SfdcPartnerOffer"})
    assert query.headers["Content-Encoding"] == "gzip" and query.json()["totalSize"] == 8


# ------------------------------------------------------------------ methods and media types


def test_a_wrong_method_is_a_405_naming_the_resources_methods(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Status Codes and Error Responses: 405, the method in the Request-Line isn't allowed
    # for the resource. The answer names the methods the resource does take.
    offer = sandbox_org.demo_ids["offer_draft"]
    cases = {
        ("PUT", f"{V}/sobjects/SfdcPartnerOffer/{offer}"): "HEAD,GET,PATCH,DELETE",
        ("POST", f"{V}/sobjects/SfdcPartnerOffer/{offer}"): "HEAD,GET,PATCH,DELETE",
        ("POST", f"{V}/query"): "HEAD,GET",
        ("GET", f"{V}/composite"): "POST",
        ("DELETE", f"{V}/sobjects/SfdcPartnerOffer"): "HEAD,GET,POST",
    }
    for (method, path), allowed in cases.items():
        resp = wire(method, path, json={})
        assert resp.status_code == 405, (method, path)
        assert resp.json() == [{"message": f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
                                "errorCode": "METHOD_NOT_ALLOWED"}], (method, path)
        assert resp.headers["Allow"] == allowed.replace(",", ", ")


def test_head_answers_as_get_without_a_body(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Status Codes and Error Responses: 200 is the success code "for GET, HEAD".
    offer = sandbox_org.demo_ids["offer_draft"]
    for path in (f"{V}/sobjects/SfdcPartnerOffer/{offer}", f"{V}/sobjects/SfdcPartnerOffer/describe", f"{V}/limits"):
        get = wire("GET", path, headers={"Accept-Encoding": "identity"})
        head = wire("HEAD", path, headers={"Accept-Encoding": "identity"})
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["Content-Length"] == get.headers["Content-Length"]
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
    missing = wire("HEAD", f"{V}/sobjects/SfdcPartnerOffer/1OF5g00000000ZZ")
    assert missing.status_code == 404


def test_post_with_the_http_method_override_patches(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Update a Record: a library that can't send PATCH sends a POST with the query string
    # parameter _HttpMethod=PATCH.
    [rid] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "OVR-1", "Invoice_Status__c": "open"}])
    resp = wire("POST", f"{V}/sobjects/GTM_Order_Billing__c/{rid}", params={"_HttpMethod": "PATCH"},
                json={"Invoice_Status__c": "paid"})
    assert (resp.status_code, resp.content) == (204, b"")
    assert sandbox_org.get("GTM_Order_Billing__c", rid)["Invoice_Status__c"] == "paid"  # type: ignore[index]
    upsert = wire("POST", f"{V}/sobjects/GTM_Order_Billing__c/Order_Id__c/OVR-2", params={"_HttpMethod": "PATCH"},
                  json={"Invoice_Status__c": "open"})
    assert upsert.status_code == 201 and upsert.json()["created"] is True


def test_a_body_in_an_unsupported_media_type_is_a_415(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Status Codes and Error Responses: 415, the entity in the request is in a format that's
    # not supported by the specified method (curl's -d default is a form, not JSON).
    url = f"{V}/sobjects/GTM_Order_Billing__c"
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        resp = wire("POST", url, data='{"Order_Id__c": "MT-1"}', headers={"Content-Type": content_type})
        assert _error(resp) == (415, "UNSUPPORTED_MEDIA_TYPE"), content_type
    assert sandbox_org.records("GTM_Order_Billing__c") == []
    for i, content_type in enumerate(("application/json", "application/json; charset=UTF-8", "application/JSON")):
        created = wire("POST", url, data=json.dumps({"Order_Id__c": f"MT-{i}"}),
                       headers={"Content-Type": content_type})
        assert created.status_code == 201, content_type


# ------------------------------------------------------------------ SOQL


def test_fields_function_selects_groups_of_fields(simple_sf: Salesforce, wire: Wire,
                                                  sandbox_org: SandboxOrg) -> None:
    # SOQL SELECT, FIELDS(): FIELDS(ALL), FIELDS(CUSTOM) and FIELDS(STANDARD) in the field
    # list, alone or with other fields (API v51.0+); ALL and CUSTOM need a LIMIT of at most
    # 200; a field named twice is "duplicate field selected".
    sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "FLD-1", "Invoice_Status__c": "open"}])
    described = simple_sf.GTM_Order_Billing__c.describe()["fields"]
    every = [f["name"] for f in described]
    custom = [f["name"] for f in described if f["custom"]]
    standard = [f["name"] for f in described if not f["custom"]]

    def columns(soql: str) -> list[str]:
        [record] = simple_sf.query(soql)["records"]
        return [k for k in record if k != "attributes"]

    assert columns("SELECT FIELDS(ALL) FROM GTM_Order_Billing__c LIMIT 200") == every
    assert columns("SELECT FIELDS(CUSTOM) FROM GTM_Order_Billing__c LIMIT 10") == custom
    assert columns("SELECT FIELDS(STANDARD) FROM GTM_Order_Billing__c") == standard
    assert columns("select fields(standard), Order_Id__c from GTM_Order_Billing__c") == standard + ["Order_Id__c"]
    for soql, message in (
        ("SELECT FIELDS(ALL) FROM GTM_Order_Billing__c", "LIMIT of at most 200"),
        ("SELECT FIELDS(CUSTOM) FROM GTM_Order_Billing__c LIMIT 201", "LIMIT of at most 200"),
        ("SELECT Id, FIELDS(ALL) FROM GTM_Order_Billing__c LIMIT 200", "duplicate field selected: Id"),
        ("SELECT FIELDS(EVERYTHING) FROM GTM_Order_Billing__c LIMIT 200", ""),
    ):
        with pytest.raises(SalesforceMalformedRequest) as err:
            simple_sf.query(soql)
        assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY", soql
        assert message in err.value.content[0]["message"], soql
    old = wire("GET", "/services/data/v50.0/query", params={"q": "SELECT FIELDS(STANDARD) FROM GTM_Order_Billing__c"})
    assert _error(old) == (400, "MALFORMED_QUERY")


def _start_of_week(d: date) -> date:
    return d - timedelta(days=(d.weekday() + 1) % 7)  # weeks start on Sunday (en_US)


def _add_months(d: date, n: int) -> date:
    month = d.year * 12 + d.month - 1 + n
    return date(month // 12, month % 12 + 1, 1)


def _expected_ranges(today: date) -> dict[str, tuple[date, date]]:
    """Each date literal's [start, end) in days, from the SOQL reference's table."""
    week = _start_of_week(today)
    month = today.replace(day=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = date(today.year, 1, 1)
    one = timedelta(days=1)
    return {
        "LAST_WEEK": (week - 7 * one, week),
        "THIS_WEEK": (week, week + 7 * one),
        "NEXT_WEEK": (week + 7 * one, week + 14 * one),
        "LAST_MONTH": (_add_months(month, -1), month),
        "THIS_MONTH": (month, _add_months(month, 1)),
        "NEXT_MONTH": (_add_months(month, 1), _add_months(month, 2)),
        "LAST_90_DAYS": (today - 90 * one, today + one),
        "NEXT_90_DAYS": (today + one, today + 91 * one),
        "N_DAYS_AGO:3": (today - 3 * one, today - 2 * one),
        "NEXT_N_WEEKS:2": (week + 7 * one, week + 21 * one),
        "LAST_N_WEEKS:2": (week - 14 * one, week),
        "N_WEEKS_AGO:2": (week - 14 * one, week - 7 * one),
        "NEXT_N_MONTHS:2": (_add_months(month, 1), _add_months(month, 3)),
        "LAST_N_MONTHS:2": (_add_months(month, -2), month),
        "N_MONTHS_AGO:2": (_add_months(month, -2), _add_months(month, -1)),
        "THIS_QUARTER": (quarter, _add_months(quarter, 3)),
        "LAST_QUARTER": (_add_months(quarter, -3), quarter),
        "NEXT_QUARTER": (_add_months(quarter, 3), _add_months(quarter, 6)),
        "NEXT_N_QUARTERS:2": (_add_months(quarter, 3), _add_months(quarter, 9)),
        "LAST_N_QUARTERS:2": (_add_months(quarter, -6), quarter),
        "N_QUARTERS_AGO:2": (_add_months(quarter, -6), _add_months(quarter, -3)),
        "THIS_YEAR": (year, year.replace(year=year.year + 1)),
        "LAST_YEAR": (year.replace(year=year.year - 1), year),
        "NEXT_YEAR": (year.replace(year=year.year + 1), year.replace(year=year.year + 2)),
        "NEXT_N_YEARS:2": (year.replace(year=year.year + 1), year.replace(year=year.year + 3)),
        "LAST_N_YEARS:2": (year.replace(year=year.year - 2), year),
        "N_YEARS_AGO:2": (year.replace(year=year.year - 2), year.replace(year=year.year - 1)),
        # The fiscal year of an org that never changed it is the calendar year.
        "THIS_FISCAL_QUARTER": (quarter, _add_months(quarter, 3)),
        "LAST_FISCAL_QUARTER": (_add_months(quarter, -3), quarter),
        "NEXT_N_FISCAL_QUARTERS:2": (_add_months(quarter, 3), _add_months(quarter, 9)),
        "N_FISCAL_QUARTERS_AGO:1": (_add_months(quarter, -3), quarter),
        "THIS_FISCAL_YEAR": (year, year.replace(year=year.year + 1)),
        "LAST_N_FISCAL_YEARS:1": (year.replace(year=year.year - 1), year),
        "N_FISCAL_YEARS_AGO:1": (year.replace(year=year.year - 1), year),
    }


def test_every_calendar_date_literal_is_a_range_of_the_orgs_days(sandbox_org: SandboxOrg) -> None:
    # Date Formats and Date Literals in WHERE: each literal is a range relative to today;
    # = matches inside it, < before its start, > after its end; on date and dateTime fields.
    today = sandbox_org.today()
    days = sorted({today + timedelta(days=n) for n in range(-800, 801, 3)} | {
        d for lo, hi in _expected_ranges(today).values() for d in (lo - timedelta(days=1), lo, hi - timedelta(days=1),
                                                                   hi)})
    ids = sandbox_org.insert("GTM_Order_Billing__c", [
        {"Order_Id__c": f"DL-{d.isoformat()}", "Invoice_Due_Date__c": d.isoformat()} for d in days])
    stamps = {}
    for rid, d in zip(ids, days, strict=True):
        stamps[rid] = d
        sandbox_org.update("GTM_Order_Billing__c", [{"Id": rid}], stamp=f"{d.isoformat()}T23:59:59.000Z")
    wire = Wire(sandbox_org)

    def matching(where: str) -> set[date]:
        soql = f"SELECT Id FROM GTM_Order_Billing__c WHERE {where}"
        resp = wire("GET", f"{V}/query", params={"q": soql})
        assert resp.status_code == 200, (where, resp.text)
        return {stamps[r["Id"]] for r in resp.json()["records"]}

    for literal, (lo, hi) in _expected_ranges(today).items():
        inside = {d for d in days if lo <= d < hi}
        assert matching(f"Invoice_Due_Date__c = {literal}") == inside, literal
        assert matching(f"SystemModstamp = {literal}") == inside, literal
        assert matching(f"Invoice_Due_Date__c < {literal}") == {d for d in days if d < lo}, literal
        assert matching(f"Invoice_Due_Date__c > {literal}") == {d for d in days if d >= hi}, literal
    assert calendar.SUNDAY == 6  # the week's first day above is Sunday, the en_US user's locale
    bad = wire("GET", f"{V}/query", params={"q": "SELECT Id FROM GTM_Order_Billing__c WHERE "
                                                 "Invoice_Due_Date__c = LAST_N_WEEKS"})
    assert _error(bad) == (400, "MALFORMED_QUERY")


def test_a_malformed_query_names_the_row_and_column(wire: Wire) -> None:
    # A malformed SOQL statement is a 400 MALFORMED_QUERY whose message quotes the
    # statement and points at the offending token: "ERROR at Row:1:Column:N".
    cases = {
        "SELECT Id FROM SfdcPartnerOffer WHERE": 38,
        "SELECT Id FROM SfdcPartnerOffer WHERE Name = 'a' LIMIT x": 56,
        "SELECT Id FROM SfdcPartnerOffer\nWHERE Name == 'a'": (2, 13),
    }
    for soql, where in cases.items():
        row, col = where if isinstance(where, tuple) else (1, where)
        resp = wire("GET", f"{V}/query", params={"q": soql})
        assert _error(resp) == (400, "MALFORMED_QUERY"), soql
        message = resp.json()[0]["message"]
        assert message.startswith(f"\n{soql}\n"), message
        assert f"\nERROR at Row:{row}:Column:{col}\n" in message, message


def test_parent_fields_through_relationships_nest_the_parent(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    # SOQL Relationship Queries (child-to-parent): a parent's field by the relationship name
    # (describe's relationshipName), several levels up, in SELECT, WHERE and ORDER BY; each
    # record nests the parent with its own attributes, or null when there is none. Alias
    # Notation: FROM Object alias, then alias.Field.
    orders = {r["Id"]: r for r in sandbox_org.records("SfdcPartnerOrder")}
    offers = {r["Id"]: r for r in sandbox_org.records("SfdcPartnerOffer")}
    items = {r["Id"]: r for r in sandbox_org.records("SfdcPartnerOrderItem")}
    records = simple_sf.query("SELECT Id, PartnerOrder.Name, Name, PartnerOrder.PartnerOffer.Name, "
                              "PartnerOrder.Status FROM SfdcPartnerOrderItem ORDER BY PartnerOrder.Name DESC, Id")
    assert records["totalSize"] == len(items)
    for rec in records["records"]:
        order = orders[items[rec["Id"]]["PartnerOrderId"]]
        assert list(rec) == ["attributes", "Id", "PartnerOrder", "Name"]
        parent = rec["PartnerOrder"]
        assert list(parent) == ["attributes", "Name", "PartnerOffer", "Status"]
        assert parent["attributes"] == {"type": "SfdcPartnerOrder",
                                        "url": f"{V}/sobjects/SfdcPartnerOrder/{order['Id']}"}
        assert (parent["Name"], parent["Status"]) == (order["Name"], order["Status"])
        offer = offers.get(order["PartnerOfferId"] or "")
        assert parent["PartnerOffer"] == (None if offer is None else {
            "attributes": {"type": "SfdcPartnerOffer", "url": f"{V}/sobjects/SfdcPartnerOffer/{offer['Id']}"},
            "Name": offer["Name"]})
    names = [r["PartnerOrder"]["Name"] for r in records["records"]]
    assert names == sorted(names, key=str.lower, reverse=True)
    with_initial = simple_sf.query("SELECT Id, InitialOrder.Name FROM SfdcPartnerOffer")["records"]
    assert {r["Id"]: r["InitialOrder"] is None for r in with_initial} == {
        rid: offer["InitialOrderId"] is None for rid, offer in offers.items()}
    name = names[-1]
    wanted = {rid for rid, item in items.items() if orders[item["PartnerOrderId"]]["Name"] == name}
    found = simple_sf.query(f"SELECT i.Id FROM SfdcPartnerOrderItem i WHERE i.PartnerOrder.Name = '{name}'")
    assert {r["Id"] for r in found["records"]} == wanted
    with pytest.raises(SalesforceMalformedRequest) as err:
        simple_sf.query("SELECT Id, PartnerOrdr.Name FROM SfdcPartnerOrderItem")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "Didn't understand relationship 'PartnerOrdr'" in err.value.content[0]["message"]


def test_bulk_query_jobs_take_parent_fields_as_path_columns(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Understanding Bulk API 2.0 Query: child-to-parent relationship queries are supported;
    # a parent's field is a column named by its path.
    job = wire("POST", f"{V}/jobs/query", json={"operation": "query", "query": "SELECT Id, PartnerOrder.Name, "
                                                "PartnerOrder.CreatedDate FROM SfdcPartnerOrderItem ORDER BY Id"})
    assert job.status_code == 200, job.text
    for _ in range(20):
        if wire("GET", f"{V}/jobs/query/{job.json()['id']}").json()["state"] == "JobComplete":
            break
    results = wire("GET", f"{V}/jobs/query/{job.json()['id']}/results")
    table = list(csv.reader(io.StringIO(results.text)))
    orders = {r["Id"]: r for r in sandbox_org.records("SfdcPartnerOrder")}
    items = sorted(sandbox_org.records("SfdcPartnerOrderItem"), key=lambda r: r["Id"])
    assert table[0] == ["Id", "PartnerOrder.Name", "PartnerOrder.CreatedDate"]
    assert table[1:] == [[r["Id"], orders[r["PartnerOrderId"]]["Name"],
                          orders[r["PartnerOrderId"]]["CreatedDate"].replace("+0000", "Z")] for r in items]


def test_aggregate_functions_answer_aggregate_result_records(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    # SOQL Aggregate Functions and GROUP BY: COUNT(field), COUNT_DISTINCT, SUM, AVG, MIN,
    # MAX, one AggregateResult record per group (attributes without a url); an unaliased
    # aggregate is exprN, numbered among the unaliased ones; a selected field must be
    # grouped; ORDER BY may name an aggregate; HAVING filters groups; LIMIT needs a GROUP BY.
    offers = sandbox_org.records("SfdcPartnerOffer")
    assert simple_sf.query("SELECT COUNT(Id) FROM SfdcPartnerOffer") == {
        "totalSize": 1, "done": True, "records": [{"attributes": {"type": "AggregateResult"}, "expr0": len(offers)}]}
    by_status: dict[str, list[dict[str, Any]]] = {}
    for offer in offers:
        by_status.setdefault(offer["Status"], []).append(offer)
    result = simple_sf.query("SELECT Status, COUNT(Id) n, SUM(Subtotal), MAX(Name), COUNT_DISTINCT(OfferType) "
                             "FROM SfdcPartnerOffer GROUP BY Status ORDER BY COUNT(Id) DESC, Status")
    assert result["totalSize"] == len(by_status) and result["done"] is True
    expected = sorted(by_status.items(), key=lambda kv: (-len(kv[1]), kv[0].lower()))
    assert [r["Status"] for r in result["records"]] == [status for status, _ in expected]
    for record, (_, members) in zip(result["records"], expected, strict=True):
        assert list(record) == ["attributes", "Status", "n", "expr0", "expr1", "expr2"]
        assert record["attributes"] == {"type": "AggregateResult"}
        assert record["n"] == len(members)
        assert record["expr0"] == sum((m["Subtotal"] for m in members if m["Subtotal"] is not None), Decimal(0))
        assert record["expr1"] == max((m["Name"] for m in members), key=str.lower)
        assert record["expr2"] == len({m["OfferType"].lower() for m in members if m["OfferType"]})
    paged = simple_sf.query("SELECT Status, COUNT(Id) FROM SfdcPartnerOffer GROUP BY Status LIMIT 2 OFFSET 1")
    assert [r["Status"] for r in paged["records"]] == sorted(by_status, key=str.lower)[1:3]
    # HAVING filters the groups: an aggregate or a grouped field compared with a value.
    having = simple_sf.query("SELECT Status, COUNT(Id) FROM SfdcPartnerOffer GROUP BY Status "
                             "HAVING COUNT(Id) > 1 OR Status = 'draft'")
    assert {r["Status"] for r in having["records"]} == {s for s, m in by_status.items()
                                                        if len(m) > 1 or s.lower() == "draft"}
    for soql in ("SELECT Name, COUNT(Id) FROM SfdcPartnerOffer GROUP BY Status",
                 "SELECT Status FROM SfdcPartnerOffer WHERE COUNT(Id) > 1 GROUP BY Status",
                 "SELECT SUM(Name) FROM SfdcPartnerOffer", "SELECT MAX(CreatedDate) FROM SfdcPartnerOffer LIMIT 1"):
        with pytest.raises(SalesforceMalformedRequest) as err:
            simple_sf.query(soql)
        assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY", soql


def test_sobject_tree_creates_all_records_or_none(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Tree (composite/tree/{obj}): records with attributes type and referenceId,
    # created all or none; 201 with each referenceId and id, or 400 naming the record that
    # failed with its errors, nothing created; one result per instance of a duplicate
    # referenceId.
    url = f"{V}/composite/tree/GTM_Order_Billing__c"

    def record(ref: str, **values: Any) -> dict[str, Any]:
        return {"attributes": {"type": "GTM_Order_Billing__c", "referenceId": ref}, **values}

    created = wire("POST", url, json={"records": [record("ref1", Order_Id__c="TREE-1"),
                                                  record("ref2", Order_Id__c="TREE-2", Invoice_Status__c="open")]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["hasErrors"] is False and [r["referenceId"] for r in body["results"]] == ["ref1", "ref2"]
    stored = {r["Id"]: r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c")}
    assert {r["id"]: stored[r["id"]] for r in body["results"]} == {body["results"][0]["id"]: "TREE-1",
                                                                  body["results"][1]["id"]: "TREE-2"}
    failed = wire("POST", url, json={"records": [record("ok", Order_Id__c="TREE-3"), record("bad")]})
    assert failed.status_code == 400
    assert failed.json() == {"hasErrors": True, "results": [{"referenceId": "bad", "errors": [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Order_Id__c]",
         "fields": ["Order_Id__c"]}]}]}
    assert sorted(stored.values()) == sorted(r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c"))
    twice = wire("POST", url, json={"records": [record("same", Order_Id__c="TREE-4"),
                                                record("same", Order_Id__c="TREE-5")]})
    assert twice.status_code == 400 and [r["referenceId"] for r in twice.json()["results"]] == ["same", "same"]
    wrong_root = wire("POST", url, json={"records": [{"attributes": {"type": "SfdcPartnerOffer", "referenceId": "o"},
                                                      "Name": "x"}]})
    assert wrong_root.status_code == 400
    assert len(sandbox_org.records("GTM_Order_Billing__c")) == 2


def test_bulk_ingest_jobs_through_simple_salesforce(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    # Bulk API 2.0 Ingest (API 41.0+): create a job, upload CSV, UploadComplete, poll to
    # JobComplete; successfulResults (sf__Id, sf__Created, the row), failedResults (sf__Id,
    # sf__Error, the row), one record failing alone. simple-salesforce's bulk2 drives it.
    billing = simple_sf.bulk2.GTM_Order_Billing__c
    [inserted] = billing.insert(records=[{"Order_Id__c": "BLK-1", "Invoice_Amount__c": "12.50"},
                                         {"Order_Id__c": "BLK-2", "Invoice_Status__c": "open"},
                                         {"Invoice_Status__c": "no order id"}], wait=0)
    assert (inserted["numberRecordsProcessed"], inserted["numberRecordsFailed"]) == (3, 1)
    stored = {r["Order_Id__c"]: r for r in sandbox_org.records("GTM_Order_Billing__c")}
    assert stored["BLK-1"]["Invoice_Amount__c"] == Decimal("12.50") and set(stored) == {"BLK-1", "BLK-2"}
    successes = list(csv.DictReader(io.StringIO(billing.get_successful_records(inserted["job_id"]))))
    assert [(r["sf__Id"], r["sf__Created"], r["Order_Id__c"]) for r in successes] == [
        (stored["BLK-1"]["Id"], "true", "BLK-1"), (stored["BLK-2"]["Id"], "true", "BLK-2")]
    [failure] = csv.DictReader(io.StringIO(billing.get_failed_records(inserted["job_id"])))
    assert failure["sf__Error"].startswith("REQUIRED_FIELD_MISSING:") and failure["Invoice_Status__c"] == "no order id"
    [upserted] = billing.upsert(records=[{"Order_Id__c": "BLK-1", "Invoice_Status__c": "paid"},
                                         {"Order_Id__c": "BLK-3", "Invoice_Status__c": "open"}],
                                external_id_field="Order_Id__c", wait=0)
    created = [r["sf__Created"] for r in csv.DictReader(io.StringIO(billing.get_successful_records(
        upserted["job_id"])))]
    assert created == ["false", "true"]
    billing.update(records=[{"Id": stored["BLK-2"]["Id"], "Invoice_Status__c": "#N/A"}], wait=0)
    billing.delete(records=[{"Id": stored["BLK-1"]["Id"]}], wait=0)
    assert {r["Order_Id__c"]: r["Invoice_Status__c"] for r in sandbox_org.records("GTM_Order_Billing__c")} == {
        "BLK-2": None, "BLK-3": "open"}


def test_bulk_ingest_job_states_on_the_wire(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Create a Job: state Open and a contentUrl; Upload Job Data: 201; a header naming a
    # field the object lacks fails the job; an aborted job's rows are unprocessed.
    def create() -> dict[str, Any]:
        resp = wire("POST", f"{V}/jobs/ingest", json={"object": "GTM_Order_Billing__c", "operation": "insert"})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    job = create()
    assert (job["state"], job["contentUrl"]) == ("Open", f"services/data/v66.0/jobs/ingest/{job['id']}/batches")
    upload = wire("PUT", f"{V}/jobs/ingest/{job['id']}/batches", data="Order_Id__c,Nope__c\nX-1,1\n",
                  headers={"Content-Type": "text/csv"})
    assert (upload.status_code, upload.content) == (201, b"")
    wire("PATCH", f"{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    for _ in range(5):
        info = wire("GET", f"{V}/jobs/ingest/{job['id']}").json()
    assert info["state"] == "Failed" and "Nope__c" in info["errorMessage"]
    assert sandbox_org.records("GTM_Order_Billing__c") == []
    aborted = create()
    wire("PUT", f"{V}/jobs/ingest/{aborted['id']}/batches", data="Order_Id__c\nX-2\n",
         headers={"Content-Type": "text/csv"})
    assert wire("PATCH", f"{V}/jobs/ingest/{aborted['id']}", json={"state": "Aborted"}).json()["state"] == "Aborted"
    unprocessed = wire("GET", f"{V}/jobs/ingest/{aborted['id']}/unprocessedrecords")
    assert list(csv.reader(io.StringIO(unprocessed.text))) == [["Order_Id__c"], ["X-2"]]
    late = wire("PUT", f"{V}/jobs/ingest/{aborted['id']}/batches", data="Order_Id__c\nX-3\n",
                headers={"Content-Type": "text/csv"})
    assert late.status_code >= 400
    assert wire("GET", "/services/data/v40.0/jobs/ingest").status_code == 404


def test_sobject_relationships_reach_a_records_parent(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # sObject Relationships (API 36.0+): sobjects/X/{id}/{relationship} is the parent a
    # child-to-parent relationship points to: GET it (fields= for some), PATCH or DELETE
    # it; a record without that parent is a 404. The external ID path is unchanged.
    items = sandbox_org.records("SfdcPartnerOrderItem")
    item = items[0]
    order = sandbox_org.get("SfdcPartnerOrder", item["PartnerOrderId"])
    assert order is not None
    got = wire("GET", f"{V}/sobjects/SfdcPartnerOrderItem/{item['Id']}/PartnerOrder")
    assert got.status_code == 200, got.text
    assert got.json()["attributes"] == {"type": "SfdcPartnerOrder",
                                        "url": f"{V}/sobjects/SfdcPartnerOrder/{order['Id']}"}
    assert (got.json()["Id"], got.json()["Name"]) == (order["Id"], order["Name"])
    some = wire("GET", f"{V}/sobjects/SfdcPartnerOrderItem/{item['Id']}/partnerorder", params={"fields": "Name"})
    assert [k for k in some.json() if k != "attributes"] == ["Name"]
    offers = sandbox_org.records("SfdcPartnerOffer")
    orphan = next(o for o in offers if o["InitialOrderId"] is None)
    assert wire("GET", f"{V}/sobjects/SfdcPartnerOffer/{orphan['Id']}/InitialOrder").status_code == 404
    [child] = sandbox_org.insert("SfdcPartnerProvisionProduct", [{"Name": "v2"}])
    [parent] = sandbox_org.insert("SfdcPartnerProvisionProduct", [{"Name": "v1"}])
    sandbox_org.update("SfdcPartnerProvisionProduct", [{"Id": child, "LatestProductId": parent}])
    url = f"{V}/sobjects/SfdcPartnerProvisionProduct/{child}/LatestProduct"
    assert wire("PATCH", url, json={"Name": "v1 renamed"}).status_code == 204
    assert sandbox_org.get("SfdcPartnerProvisionProduct", parent)["Name"] == "v1 renamed"  # type: ignore[index]
    assert wire("DELETE", url).status_code == 204
    assert sandbox_org.get("SfdcPartnerProvisionProduct", parent)["IsDeleted"] is True  # type: ignore[index]
    [billing] = sandbox_org.insert("GTM_Order_Billing__c", [{"Order_Id__c": "REL-1"}])
    assert wire("GET", f"{V}/sobjects/GTM_Order_Billing__c/Order_Id__c/REL-1").json()["Id"] == billing


def test_semi_joins_and_anti_joins(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    # SOQL Comparison Operators, Semi-Joins with IN and Anti-Joins with NOT IN: an ID or
    # reference field IN / NOT IN (SELECT one ID or reference field FROM ... WHERE ...).
    orders = {r["Id"] for r in sandbox_org.records("SfdcPartnerOrder")}
    items = sandbox_org.records("SfdcPartnerOrderItem")
    priced = {i["PartnerOrderId"] for i in items if (i["CustomerUnitPricePerMonth"] or 0) > 60}
    assert priced and priced != orders

    def ids(soql: str) -> set[str]:
        return {r["Id"] for r in simple_sf.query_all(soql)["records"]}

    sub = "SELECT PartnerOrderId FROM SfdcPartnerOrderItem WHERE CustomerUnitPricePerMonth > 60"
    assert ids(f"SELECT Id FROM SfdcPartnerOrder WHERE Id IN ({sub})") == priced
    assert ids(f"SELECT Id FROM SfdcPartnerOrder WHERE Id NOT IN ({sub})") == orders - priced
    with pytest.raises(SalesforceMalformedRequest) as err:
        simple_sf.query("SELECT Id FROM SfdcPartnerOrder WHERE Id IN (SELECT Name FROM SfdcPartnerOrderItem)")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_xml_answers_for_a_client_that_asks_for_them(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Each REST resource's Formats: JSON, XML; Accept: application/xml picks XML: a record
    # named by its type with type and url attributes (null as xsi:nil), a QueryResult,
    # Errors of Error, a save Result.
    nil = "{http://www.w3.org/2001/XMLSchema-instance}nil"
    xml = {"Accept": "application/xml"}
    offer = sandbox_org.demo_ids["offer_draft"]
    record = wire("GET", f"{V}/sobjects/SfdcPartnerOffer/{offer}", params={"fields": "Name,InitialOrderId"},
                  headers=xml)
    assert record.headers["Content-Type"].startswith("application/xml")
    root = ElementTree.fromstring(record.content)
    assert (root.tag, root.get("type"), root.get("url")) == (
        "SfdcPartnerOffer", "SfdcPartnerOffer", f"{V}/sobjects/SfdcPartnerOffer/{offer}")
    assert root.findtext("Name") == sandbox_org.get("SfdcPartnerOffer", offer)["Name"]  # type: ignore[index]
    assert root.find("InitialOrderId").get(nil) == "true"  # type: ignore[union-attr]
    query = ElementTree.fromstring(wire("GET", f"{V}/query", params={"q": "SELECT Id FROM SfdcPartnerOffer"},
                                        headers=xml).content)
    assert (query.tag, query.findtext("totalSize"), query.findtext("done")) == ("QueryResult", "8", "true")
    assert [r.get("type") for r in query.findall("records")] == ["SfdcPartnerOffer"] * 8
    missing = wire("GET", f"{V}/sobjects/SfdcPartnerOffer/1OF5g00000000ZZ", headers=xml)
    errors = ElementTree.fromstring(missing.content)
    assert (missing.status_code, errors.tag, errors.findtext("Error/errorCode")) == (404, "Errors", "NOT_FOUND")
    created = ElementTree.fromstring(wire("POST", f"{V}/sobjects/GTM_Order_Billing__c", json={"Order_Id__c": "X-1"},
                                          headers=xml).content)
    assert (created.tag, created.findtext("success")) == ("Result", "true")
    assert wire("GET", f"{V}/limits", headers={"Accept": "application/json"}).json()["DailyApiRequests"]


def test_composite_graph_runs_each_graph_all_or_none(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Composite Graph (API 50.0+): graphs of composite subrequests with references, each
    # graph all or none on its own; each answer has graphId, graphResponse.compositeResponse
    # and isSuccessful.
    def create(ref: str, order_id: str | None) -> dict[str, Any]:
        return {"method": "POST", "url": f"{V}/sobjects/GTM_Order_Billing__c", "referenceId": ref,
                "body": {} if order_id is None else {"Order_Id__c": order_id}}

    resp = wire("POST", f"{V}/composite/graph", json={"graphs": [
        {"graphId": "good", "compositeRequest": [
            create("first", "GR-1"),
            {"method": "PATCH", "url": f"{V}/sobjects/GTM_Order_Billing__c/@{{first.id}}", "referenceId": "paid",
             "body": {"Invoice_Status__c": "paid"}}]},
        {"graphId": "bad", "compositeRequest": [create("kept", "GR-2"), create("broken", None)]},
    ]})
    assert resp.status_code == 200, resp.text
    good, bad = resp.json()["graphs"]
    assert (good["graphId"], good["isSuccessful"], bad["graphId"], bad["isSuccessful"]) == ("good", True, "bad", False)
    assert [r["httpStatusCode"] for r in good["graphResponse"]["compositeResponse"]] == [201, 204]
    assert [r["referenceId"] for r in bad["graphResponse"]["compositeResponse"]] == ["kept", "broken"]
    assert {r["Order_Id__c"]: r["Invoice_Status__c"] for r in sandbox_org.records("GTM_Order_Billing__c")} == {
        "GR-1": "paid"}
    assert wire("POST", "/services/data/v49.0/composite/graph", json={"graphs": []}).status_code == 404


def test_sosl_search_and_parameterized_search(simple_sf: Salesforce, wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Search for a String: search?q=SOSL answers {"searchRecords": [...]} (API 37.0+), each
    # record with attributes and the RETURNING fields (Id without RETURNING);
    # parameterizedSearch takes q, sobject, X.fields, X.limit. A malformed statement is a
    # 400 MALFORMED_SEARCH.
    offers = sandbox_org.records("SfdcPartnerOffer")
    acme = sorted((o["Name"] for o in offers if "acme" in o["Name"].lower()), key=str.lower)
    assert acme
    found = simple_sf.quick_search("Acme")["searchRecords"]
    assert {r["attributes"]["type"] for r in found} >= {"SfdcPartnerOffer"}
    assert all(list(r) == ["attributes", "Id"] for r in found)
    named = simple_sf.search("FIND {acm*} IN NAME FIELDS RETURNING SfdcPartnerOffer(Id, Name ORDER BY Name)")
    assert [r["Name"] for r in named["searchRecords"]] == acme
    limited = wire("GET", f"{V}/parameterizedSearch", params={"q": "Acme", "sobject": "SfdcPartnerOffer",
                                                               "SfdcPartnerOffer.fields": "Id,Name",
                                                               "SfdcPartnerOffer.limit": "1"})
    [one] = limited.json()["searchRecords"]
    assert one["Name"] in acme and one["attributes"]["type"] == "SfdcPartnerOffer"
    bad = wire("GET", f"{V}/search", params={"q": "FIND Acme"})
    assert _error(bad) == (400, "MALFORMED_SEARCH")


def test_the_openid_userinfo_endpoint(sandbox_org: SandboxOrg) -> None:
    # OpenID Connect UserInfo endpoint (/services/oauth2/userinfo, GET or POST with the
    # access token): the user's claims, sub being the identity URL the token response named.
    session = tls_session(sandbox_org)
    token = session.post(sandbox_org.login_url + "/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": sandbox_org.client_id,
        "client_secret": sandbox_org.client_secret}).json()
    url = sandbox_org.login_url + "/services/oauth2/userinfo"
    info = session.get(url, headers={"Authorization": "Bearer " + token["access_token"]})
    assert info.status_code == 200, info.text
    body = info.json()
    assert (body["sub"], body["user_id"], body["organization_id"], body["preferred_username"]) == (
        token["id"], sandbox_org.user_id, sandbox_org.org_id, sandbox_org.username)
    assert body["urls"]["rest"] == sandbox_org.instance_url + "/services/data/v{version}/"
    assert session.post(url, headers={"Authorization": "Bearer " + token["access_token"]}).json()["sub"] == token["id"]
    assert (session.get(url).status_code, session.get(url).text) == (403, "Missing_OAuth_Token")
    assert session.get(url, headers={"Authorization": "Bearer 00D!nope"}).text == "Bad_OAuth_Token"


def test_soql_optional_clauses_in_their_places(simple_sf: Salesforce) -> None:
    # SOQL SELECT syntax: USING SCOPE, WITH SECURITY_ENFORCED, FOR VIEW / REFERENCE and
    # UPDATE TRACKING / VIEWSTAT in their places are accepted (the integration user sees
    # everything); anything else there is a MALFORMED_QUERY.
    soql = ("SELECT Id FROM SfdcPartnerOffer USING SCOPE Everything WHERE Status = 'Draft' WITH SECURITY_ENFORCED "
            "ORDER BY Name LIMIT 5 FOR VIEW")
    assert simple_sf.query(soql)["totalSize"] == 1
    assert simple_sf.query("SELECT Id FROM SfdcPartnerOffer FOR REFERENCE")["totalSize"] == 8
    assert simple_sf.query("SELECT Id FROM SfdcPartnerOffer UPDATE VIEWSTAT")["totalSize"] == 8
    for bad in ("SELECT Id FROM SfdcPartnerOffer WITH NONSENSE", "SELECT Id FROM SfdcPartnerOffer FOR VIEW LIMIT 1",
                "SELECT Id FROM SfdcPartnerOffer USING SCOPE Nobody"):
        with pytest.raises(SalesforceMalformedRequest) as err:
            simple_sf.query(bad)
        assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY", bad


# ------------------------------------------------------------------ odd input


def test_odd_input_to_the_new_resources_is_the_clients_error_not_a_500(wire: Wire) -> None:
    # Status Codes and Error Responses: a request the org can't take is a 4xx with an error
    # body; a 500 with a traceback in the log would be the sandbox's own bug.
    graph = {"graphs": [{"graphId": "g1", "compositeRequest": [
        {"referenceId": "r1", "method": "POST", "url": f"{V}/sobjects/GTM_Order_Billing__c",
         "body": {"Order_Id__c": "G-1"}, "httpHeaders": "not an object"}]}]}
    assert wire("POST", f"{V}/composite/graph", json=graph).status_code == 400
    composite = {"compositeRequest": graph["graphs"][0]["compositeRequest"]}
    assert wire("POST", f"{V}/composite", json=composite).status_code == 400
    for settings in ({"columnDelimiter": []}, {"lineEnding": {}}):
        ingest = wire("POST", f"{V}/jobs/ingest", json={"object": "GTM_Order_Billing__c", "operation": "insert",
                                                        **settings})
        query = wire("POST", f"{V}/jobs/query", json={"operation": "query", "query": "SELECT Id FROM SfdcPartnerOffer",
                                                      **settings})
        assert (_error(ingest), _error(query)) == ((400, "INVALIDJOB"), (400, "INVALIDJOB")), settings
    job = wire("POST", f"{V}/jobs/ingest", json={"object": "GTM_Order_Billing__c", "operation": "insert"}).json()
    # Python's csv reader refuses a field past 128 KB: a long value is bad data, not a crash.
    upload = wire("PUT", f"{V}/jobs/ingest/{job['id']}/batches", data="Order_Id__c\n" + "x" * 200_000 + "\n",
                  headers={"Content-Type": "text/csv"})
    assert _error(upload) == (400, "INVALIDJOB")
    for literal in ("LAST_N_DAYS:99999999999", "NEXT_N_YEARS:99999999", "N_WEEKS_AGO:99999999999999"):
        resp = wire("GET", f"{V}/query", params={"q": f"SELECT Id FROM SfdcPartnerOffer WHERE CreatedDate = {literal}"})
        assert _error(resp) == (400, "MALFORMED_QUERY"), literal


def test_an_ingest_job_closing_while_a_composite_reads_jobs_does_not_deadlock(wire: Wire,
                                                                              sandbox_org: SandboxOrg) -> None:
    # The org serves requests on many threads: a composite request holds the data lock for
    # its subrequests and one of them reads ingest jobs (the bulk lock), while closing an
    # ingest job writes its records (the data lock) from the bulk side. Both orders at once
    # must not wait on each other forever. The on_write hook holds the composite inside its
    # first write until the job's close has started.
    job = wire("POST", f"{V}/jobs/ingest", json={"object": "GTM_Order_Billing__c", "operation": "insert"}).json()
    wire("PUT", f"{V}/jobs/ingest/{job['id']}/batches", data="Order_Id__c\nLOCK-1\n",
         headers={"Content-Type": "text/csv"})
    data, bulk = sandbox_org.data, sandbox_org.control.api.bulk
    composite_writing = threading.Event()
    seen = data.on_write

    def hold_until_the_close_started(sobject: str) -> None:
        if not composite_writing.is_set():
            composite_writing.set()
            deadline = time.monotonic() + 2
            while not bulk.lock.locked() and time.monotonic() < deadline:
                time.sleep(0.01)
        if seen is not None:
            seen(sobject)

    data.on_write = hold_until_the_close_started
    composite = {"compositeRequest": [
        {"referenceId": "w", "method": "POST", "url": f"{V}/sobjects/GTM_Order_Billing__c",
         "body": {"Order_Id__c": "LOCK-0"}},
        {"referenceId": "r", "method": "GET", "url": f"{V}/jobs/ingest/{job['id']}"}]}
    closer = Wire(sandbox_org)
    with ThreadPoolExecutor(2) as pool:
        composite_done = pool.submit(wire, "POST", f"{V}/composite", json=composite, timeout=20)
        assert composite_writing.wait(10)
        close_done = pool.submit(closer, "PATCH", f"{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"},
                                 timeout=20)
        assert composite_done.result().status_code == 200
        assert close_done.result().status_code == 200
    data.on_write = seen
    assert {r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c")} == {"LOCK-0", "LOCK-1"}


def test_sosl_wildcards_match_in_linear_time(wire: Wire) -> None:
    # A term of many wildcards ("a*a*a*a*a*a*b") against a long field of a's made the
    # regular expression backtrack for minutes on one of the org's threads; a wildcard
    # matches as SOSL documents it (* any characters, ? one), in time linear in the text.
    wire("POST", f"{V}/sobjects/GTM_Order_Billing__c", json={"Order_Id__c": "WILD-1", "Last_Error__c": "a" * 255})
    started = time.monotonic()
    for term, hits in (("a*a*a*a*a*a*a*a*b", 0), ("a*a*a*a*a*a*a*a", 1), ("WIL?-*", 1), ("a?a*a*x*", 0)):
        resp = wire("GET", f"{V}/search", params={"q": f"FIND {{{term}}} RETURNING GTM_Order_Billing__c(Order_Id__c)"},
                    timeout=20)
        assert len(resp.json()["searchRecords"]) == hits, term
    assert time.monotonic() - started < 5


def test_soql_like_wildcards_match_in_linear_time(wire: Wire) -> None:
    # The same for LIKE: '%a%a%a%a%a%a%a%a%b' against a field of 255 a's backtracked for
    # minutes; % matches any run of characters, _ one, each part at its first occurrence.
    wire("POST", f"{V}/sobjects/GTM_Order_Billing__c", json={"Order_Id__c": "LIKE-1", "Last_Error__c": "a" * 255})
    started = time.monotonic()
    for pattern, hits in (("%a%a%a%a%a%a%a%a%b", 0), ("%a%a%a%a%a%a%a%a", 1), ("a_a%a", 1), ("%b%", 0)):
        soql = f"SELECT Id FROM GTM_Order_Billing__c WHERE Last_Error__c LIKE '{pattern}'"
        assert wire("GET", f"{V}/query", params={"q": soql}, timeout=20).json()["totalSize"] == hits, pattern
    assert time.monotonic() - started < 5


def test_a_grouped_field_takes_an_alias_in_an_aggregate_query(simple_sf: Salesforce) -> None:
    # SOQL, Using Aliases with GROUP BY: "You can use an alias for any field or aggregated
    # field in a SELECT statement" of an aggregate query (SELECT Name n, MAX(Amount) max ...
    # GROUP BY Name); elsewhere "Only aggregate expressions use field aliasing".
    result = simple_sf.query("SELECT Status s, COUNT(Id) n FROM SfdcPartnerOffer GROUP BY Status HAVING COUNT(Id) > 1")
    assert [{k: v for k, v in r.items() if k != "attributes"} for r in result["records"]] == [{"s": "Accepted", "n": 3}]
    with pytest.raises(SalesforceMalformedRequest) as err:
        simple_sf.query("SELECT Name n FROM SfdcPartnerOffer")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_an_ingest_jobs_uploads_stop_at_the_jobs_size_limit(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Bulk API 2.0 limits: a job's data is at most 150 MB. Each upload to an Open job was
    # kept without end; past the limit an upload is refused and the job keeps what it has.
    # (The limit is lowered here, as poll_steps is, so the test uploads bytes, not 150 MB.)
    sandbox_org.control.api.bulk.ingest_max_bytes = 40
    job = wire("POST", f"{V}/jobs/ingest", json={"object": "GTM_Order_Billing__c", "operation": "insert"}).json()
    upload = f"{V}/jobs/ingest/{job['id']}/batches"
    csv_type = {"Content-Type": "text/csv"}
    for n in (1, 2):
        assert wire("PUT", upload, data=f"Order_Id__c\nCAP-{n}\n", headers=csv_type).status_code == 201
    assert _error(wire("PUT", upload, data="Order_Id__c\nCAP-3\n", headers=csv_type)) == (400, "INVALIDJOB")
    wire("PATCH", f"{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    assert sorted(r["Order_Id__c"] for r in sandbox_org.records("GTM_Order_Billing__c")) == ["CAP-1", "CAP-2"]
