"""The sandbox org against Salesforce's documented REST API, third round: what the second
round found missing. Each test names the documented behaviour it pins.

Sources: Object Reference (Organization, User); Bulk API 2.0 Developer Guide (Get Results
for a Query Job; Use Compression for Bulk API 2.0 Query Responses); API Query Cursor Limits;
REST API Developer Guide (Create Records Using sObject Basic Information, Update Records
Using sObject Rows: "Formats: JSON, XML", Content-Type ``application/xml``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

import pytest
from simple_salesforce import Salesforce

from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import Wire

V = "/services/data/v66.0"


# ------------------------------------------------------------------ Organization and User


def test_simple_salesforce_is_sandbox_reads_the_organization(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    # simple-salesforce's is_sandbox() runs SELECT IsSandbox FROM Organization LIMIT 1.
    assert simple_sf.is_sandbox() is True
    # Object Reference, Organization: one record, its Id the org's id; NamespacePrefix null
    # for an org without a namespace; a sandbox has IsSandbox true and no TrialExpirationDate
    # (a scratch org has one).
    [org] = simple_sf.query("SELECT Id, Name, IsSandbox, OrganizationType, InstanceName, NamespacePrefix, "
                            "TrialExpirationDate, IsReadOnly, LanguageLocaleKey FROM Organization")["records"]
    assert org["Id"] == sandbox_org.org_id
    assert org["IsSandbox"] is True and org["IsReadOnly"] is False
    assert org["NamespacePrefix"] is None and org["TrialExpirationDate"] is None
    assert org["Name"] and org["OrganizationType"] and org["InstanceName"]
    assert org["attributes"]["type"] == "Organization"


def test_organization_and_user_are_described_and_read_only(wire: Wire, sandbox_org: SandboxOrg) -> None:
    listed = {o["name"]: o for o in wire("GET", f"{V}/sobjects").json()["sobjects"]}
    assert listed["Organization"]["keyPrefix"] == "00D" and listed["User"]["keyPrefix"] == "005"
    assert listed["Organization"]["queryable"] is True and listed["Organization"]["createable"] is False
    assert listed["Organization"]["deletable"] is False and listed["Organization"]["searchable"] is False
    fields = {f["name"]: f for f in wire("GET", f"{V}/sobjects/Organization/describe").json()["fields"]}
    assert fields["IsSandbox"]["type"] == "boolean" and fields["InstanceName"]["length"] == 5
    assert "IsDeleted" not in fields  # an org is never in a recycle bin
    record = wire("GET", f"{V}/sobjects/Organization/{sandbox_org.org_id}")
    assert record.status_code == 200 and record.json()["IsSandbox"] is True
    refused = wire("POST", f"{V}/sobjects/Organization", json={"Name": "Another"})
    assert refused.status_code == 400
    assert wire("DELETE", f"{V}/sobjects/User/{sandbox_org.user_id}").status_code == 400


def test_the_user_the_identity_answers_name_is_a_user_record(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # UserInfo and the identity URL name the user (user_id); sobjects/User/{id} reads it.
    info = wire("GET", "/services/oauth2/userinfo").json()
    identity = wire("GET", info["sub"].removeprefix(sandbox_org.login_url)).json()
    assert info["user_id"] == identity["user_id"] == sandbox_org.user_id
    user = wire("GET", f"{V}/sobjects/User/{info['user_id']}")
    assert user.status_code == 200, user.text
    record = user.json()
    assert record["Username"] == info["preferred_username"] == sandbox_org.username
    assert record["Email"] == info["email"] and record["Name"] == info["name"]
    assert record["IsActive"] is True and record["LanguageLocaleKey"] == info["language"]
    queried = wire("GET", f"{V}/query", params={"q": f"SELECT Id, Username FROM User WHERE Id = '{info['user_id']}'"})
    assert queried.json()["totalSize"] == 1


# ------------------------------------------------------------------ Bulk API 2.0 query results


def _finished_job(wire: Wire, soql: str, version: str = V, **options: Any) -> str:
    job = wire("POST", f"{version}/jobs/query", json={"operation": "query", "query": soql, **options})
    assert job.status_code == 200, job.text
    for _ in range(20):
        if wire("GET", f"{version}/jobs/query/{job.json()['id']}").json()["state"] == "JobComplete":
            return str(job.json()["id"])
    raise AssertionError("the job never completed")


def test_bulk_results_are_gzip_compressed_only_when_gzip_is_accepted(wire: Wire) -> None:
    # Use Compression for Bulk API 2.0 Query Responses: Accept-Encoding gzip gets a gzip body
    # and Content-Encoding: gzip; "a value other than gzip, the encoding type is ignored, and
    # the response isn't compressed". The body is CSV, "Content-Type: text/csv; charset=UTF-8".
    job = _finished_job(wire, "SELECT Id, Name FROM SfdcPartnerOrder")
    url = f"{V}/jobs/query/{job}/results"
    gzipped = wire("GET", url, headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers["Content-Encoding"] == "gzip" and gzipped.text.startswith('"Id","Name"\n')
    for other in ("deflate", "br", "identity"):
        plain = wire("GET", url, headers={"Accept-Encoding": other}, stream=True)
        assert "Content-Encoding" not in plain.headers, other
        assert plain.raw.read(decode_content=False).startswith(b'"Id","Name"\n'), other
    media, _, params = gzipped.headers["Content-Type"].partition(";")
    assert media.strip() == "text/csv" and params.strip().lower() == "charset=utf-8"


def test_bulk_result_columns_are_alphabetical_before_api_v50(wire: Wire) -> None:
    # Get Results for a Query Job: "In API version 50.0 and later, the order of the columns
    # returned by the query is the same as the order you requested them. In version 49.0 and
    # earlier, the order of the columns is returned alphabetically."
    soql = "SELECT Order_Id__c, Name, Id FROM GTM_Order_Billing__c"
    old = _finished_job(wire, soql, "/services/data/v49.0")
    new = _finished_job(wire, soql, "/services/data/v50.0")
    assert wire("GET", f"/services/data/v49.0/jobs/query/{old}/results").text.splitlines()[0] == \
        '"Id","Name","Order_Id__c"'
    assert wire("GET", f"/services/data/v50.0/jobs/query/{new}/results").text.splitlines()[0] == \
        '"Order_Id__c","Name","Id"'


def test_bulk_query_jobs_refuse_fields_functions(wire: Wire) -> None:
    # Create a Query Job: Bulk API 2.0 doesn't support "Compound data, such as ... FIELDS()".
    resp = wire("POST", f"{V}/jobs/query", json={"operation": "query",
                                                  "query": "SELECT FIELDS(STANDARD) FROM SfdcPartnerOrder"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "INVALIDJOB"


# ------------------------------------------------------------------ query locators and memory


def test_open_locators_hold_a_bounded_number_of_rows_the_least_recently_used_dropped() -> None:
    # API Query Cursor Limits: cursors are not capped and last 2 days; the org still bounds
    # the rows its open locators hold (a client that starts many big queries and never
    # finishes them must not grow it without end). Past the budget the least recently used
    # locator goes, and using it is the documented INVALID_QUERY_LOCATOR.
    with SandboxOrg.start(data=None) as org:
        org.insert("GTM_Order_Billing__c", [{"Order_Id__c": f"MEM-{i:04d}"} for i in range(450)])
        org.set_locator_row_budget(1000)
        wire = Wire(org)
        options = {"Sforce-Query-Options": "batchSize=200"}
        soql = {"q": "SELECT Id FROM GTM_Order_Billing__c"}
        first, second = (wire("GET", f"{V}/query", params=soql, headers=options).json() for _ in range(2))
        assert wire("GET", first["nextRecordsUrl"].rsplit("-", 1)[0] + "-100").status_code == 200  # first: used
        third = wire("GET", f"{V}/query", params=soql, headers=options).json()  # 1,350 rows > 1,000: one goes
        dropped = wire("GET", second["nextRecordsUrl"])
        assert (dropped.status_code, dropped.json()[0]["errorCode"]) == (400, "INVALID_QUERY_LOCATOR")
        for kept in (first, third):
            rest = wire("GET", kept["nextRecordsUrl"])
            assert rest.status_code == 200 and len(rest.json()["records"]) == 200
        # One query larger than the whole budget still pages to its end.
        org.set_locator_row_budget(100)
        big = wire("GET", f"{V}/query", params=soql, headers=options).json()
        middle = wire("GET", big["nextRecordsUrl"]).json()
        assert len(wire("GET", middle["nextRecordsUrl"]).json()["records"]) == 50


# ------------------------------------------------------------------ XML request bodies

XML = {"Content-Type": "application/xml"}
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def test_a_record_is_created_updated_and_upserted_from_an_xml_body(wire: Wire, sandbox_org: SandboxOrg) -> None:
    # Create Records Using sObject Basic Information, Update Records Using sObject Rows:
    # "Formats: JSON, XML"; Content-Type "specifies the format for the request and response":
    # application/xml. The record is an element holding one element per field.
    url = f"{V}/sobjects/GTM_Order_Billing__c"
    body = ('<?xml version="1.0" encoding="UTF-8"?><GTM_Order_Billing__c><Order_Id__c>XML-1</Order_Id__c>'
            '<Invoice_Amount__c>12.50</Invoice_Amount__c><Invoice_Due_Date__c>2026-01-31</Invoice_Due_Date__c>'
            '<Invoice_Number__c>INV-1 &amp; co</Invoice_Number__c></GTM_Order_Billing__c>')
    created = wire("POST", url, data=body.encode(), headers=XML)
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"].startswith("application/xml")  # answered in the request's format
    result = ElementTree.fromstring(created.content)
    assert result.tag == "Result" and result.findtext("success") == "true"
    rid = result.findtext("id")
    assert rid is not None
    row = sandbox_org.get("GTM_Order_Billing__c", rid)
    assert row is not None and row["Invoice_Amount__c"] == Decimal("12.50")
    assert (row["Invoice_Due_Date__c"], row["Invoice_Number__c"]) == ("2026-01-31", "INV-1 & co")
    # An update: the root element's name is the record's (sObject here); xsi:nil sets null.
    patch = (f'<sObject {XSI}><Invoice_Status__c>paid</Invoice_Status__c>'
             '<Invoice_Number__c xsi:nil="true"/></sObject>')
    updated = wire("PATCH", f"{url}/{rid}", data=patch.encode(), headers=XML)
    assert updated.status_code == 204, updated.text
    row = sandbox_org.get("GTM_Order_Billing__c", rid)
    assert row is not None and (row["Invoice_Status__c"], row["Invoice_Number__c"]) == ("paid", None)
    # Upsert by external ID, JSON asked for explicitly in Accept.
    upsert = wire("PATCH", f"{url}/Order_Id__c/XML-2", data=b"<GTM_Order_Billing__c><Invoice_Status__c>open"
                  b"</Invoice_Status__c></GTM_Order_Billing__c>", headers={**XML, "Accept": "application/json"})
    assert upsert.status_code == 201 and upsert.json()["created"] is True
    # Field errors are the API's own, in XML.
    wrong = wire("POST", url, data=b"<GTM_Order_Billing__c><Order_Id__c>XML-3</Order_Id__c>"
                 b"<Invoice_Amount__c>lots</Invoice_Amount__c></GTM_Order_Billing__c>", headers=XML)
    assert wrong.status_code == 400 and ElementTree.fromstring(wrong.content).tag == "Errors"


@pytest.mark.parametrize("body", [
    # Billion laughs: entities expanding exponentially.
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    '<GTM_Order_Billing__c><Order_Id__c>&d;</Order_Id__c></GTM_Order_Billing__c>',
    # An external entity: the server's files.
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
    '<GTM_Order_Billing__c><Order_Id__c>&x;</Order_Id__c></GTM_Order_Billing__c>',
    "<GTM_Order_Billing__c><Order_Id__c>unclosed</GTM_Order_Billing__c>",
    "<GTM_Order_Billing__c><Order_Id__c>X-1</Order_Id__c><Order_Id__c>X-2</Order_Id__c></GTM_Order_Billing__c>",
])
def test_unsafe_or_malformed_xml_bodies_are_refused(wire: Wire, sandbox_org: SandboxOrg, body: str) -> None:
    resp = wire("POST", f"{V}/sobjects/GTM_Order_Billing__c", data=body.encode(),
                headers={**XML, "Accept": "application/json"})
    assert (resp.status_code, resp.json()[0]["errorCode"]) == (400, "XML_PARSER_ERROR"), resp.text
    assert sandbox_org.records("GTM_Order_Billing__c") == []
