"""The sandbox org's Bulk API 2.0 query jobs against Salesforce's documented shapes, over
raw HTTPS (Bulk API 2.0 Developer Guide: Create a Query Job, Get Information About a Query
Job, Get Results for a Query Job, Abort, Delete, Get Information About All Query Jobs)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

import pytest
import requests

from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import Wire as OrgWire
from tests.fixtures.org import tls_session

V = "/services/data/v66.0"
ORDER_FIELDS = "Id, Name, Status, ContractTerm, Subtotal, ServiceStartDate, SystemModstamp, IsDeleted"
SOQL = f"SELECT {ORDER_FIELDS} FROM SfdcPartnerOrder ORDER BY SystemModstamp, Id"


class Wire(OrgWire):
    """The shared raw client, with a timeout and the query job steps these tests repeat."""

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return super().__call__(method, path, **{"timeout": 60, **kwargs})

    def create(self, soql: str = SOQL, operation: str = "query", **extra: Any) -> dict[str, Any]:
        resp = self("POST", f"{V}/jobs/query", json={"operation": operation, "query": soql, **extra})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def wait(self, job_id: str) -> dict[str, Any]:
        for _ in range(20):
            info = dict(self("GET", f"{V}/jobs/query/{job_id}").json())
            if info["state"] in ("JobComplete", "Failed", "Aborted"):
                return info
        raise AssertionError("job never finished")

    def results(self, job_id: str, max_records: int | None = None) -> tuple[list[list[str]], list[requests.Response]]:
        rows: list[list[str]] = []
        answers = []
        locator = None
        while True:
            params: dict[str, Any] = {}
            if max_records:
                params["maxRecords"] = max_records
            if locator:
                params["locator"] = locator
            resp = self("GET", f"{V}/jobs/query/{job_id}/results", params=params)
            assert resp.status_code == 200, resp.text
            answers.append(resp)
            table = list(csv.reader(io.StringIO(resp.text)))
            rows.extend(table[1:])
            locator = resp.headers["Sforce-Locator"]
            if locator == "null":
                return rows, answers


@pytest.fixture
def wire(sandbox_org: SandboxOrg) -> Wire:
    return Wire(sandbox_org)


def _rest_rows(wire: Wire, soql: str, resource: str = "query") -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    page = json.loads(wire("GET", f"{V}/{resource}", params={"q": soql}).text, parse_float=Decimal)
    while True:
        records.extend(page["records"])
        if page["done"]:
            return records
        page = json.loads(wire("GET", page["nextRecordsUrl"]).text, parse_float=Decimal)


def _as_csv(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    text = str(value)
    return text[:-5] + "Z" if text.endswith("+0000") else text


def test_a_query_job_goes_upload_complete_in_progress_job_complete(wire: Wire, sandbox_org: SandboxOrg) -> None:
    job = wire.create()
    assert job["state"] == "UploadComplete"
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert {k: job[k] for k in ("operation", "object", "contentType", "jobType", "lineEnding", "columnDelimiter",
                                "concurrencyMode")} == {
        "operation": "query", "object": "SfdcPartnerOrder", "contentType": "CSV", "jobType": "V2Query",
        "lineEnding": "LF", "columnDelimiter": "COMMA", "concurrencyMode": "Parallel"}
    assert job["createdById"] == sandbox_org.user_id
    first = wire("GET", f"{V}/jobs/query/{job['id']}").json()
    assert first["state"] == "InProgress"
    done = wire("GET", f"{V}/jobs/query/{job['id']}").json()
    assert done["state"] == "JobComplete"
    assert done["numberRecordsProcessed"] == len(sandbox_org.records("SfdcPartnerOrder"))


def test_results_equal_the_rest_query_rows_page_by_page(wire: Wire, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(3000)  # generated: 750 orders
    job = wire.create()
    assert wire.wait(job["id"])["state"] == "JobComplete"
    rows, answers = wire.results(job["id"], max_records=200)
    rest = _rest_rows(wire, SOQL)
    fields = [f.strip() for f in ORDER_FIELDS.split(",")]
    assert len(rows) == len(rest) == 750
    assert rows == [[_as_csv(r[f]) for f in fields] for r in rest]
    assert [int(a.headers["Sforce-NumberOfRecords"]) for a in answers] == [200, 200, 200, 150]
    assert all(a.headers["Content-Type"].startswith("text/csv") for a in answers)
    assert list(csv.reader(io.StringIO(answers[0].text)))[0] == fields  # header row, in SELECT order


def test_a_locator_can_be_read_again_and_query_all_includes_deleted_rows(wire: Wire, sandbox_org: SandboxOrg) -> None:
    orders = sandbox_org.records("SfdcPartnerOrder")
    sandbox_org.delete("SfdcPartnerOrder", [orders[0]["Id"]])
    job = wire.create(operation="queryAll")
    wire.wait(job["id"])
    first = wire("GET", f"{V}/jobs/query/{job['id']}/results", params={"maxRecords": 1})
    locator = first.headers["Sforce-Locator"]
    again = [wire("GET", f"{V}/jobs/query/{job['id']}/results", params={"maxRecords": 1, "locator": locator}).text
             for _ in range(2)]
    assert again[0] == again[1]
    rows, _ = wire.results(job["id"])
    assert len(rows) == len(orders)
    assert [r[-1] for r in rows].count("true") == 1  # IsDeleted of the deleted one
    live, _ = wire.results(wire.wait(wire.create()["id"])["id"])
    assert len(live) == len(orders) - 1


def test_delimiter_and_line_ending_are_honoured(wire: Wire) -> None:
    job = wire.create("SELECT Id, Name FROM SfdcPartnerOrder", columnDelimiter="PIPE", lineEnding="CRLF")
    wire.wait(job["id"])
    text = wire("GET", f"{V}/jobs/query/{job['id']}/results").text
    assert text.startswith('"Id"|"Name"\r\n')
    assert all(line.count('"|"') == 1 for line in text.split("\r\n") if line)


def test_invalid_soql_and_unsupported_queries_are_invalidjob(wire: Wire) -> None:
    bad = wire("POST", f"{V}/jobs/query", json={"operation": "query", "query": "SELECT Nope FROM SfdcPartnerOrder"})
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "INVALIDJOB"
    assert "No such column 'Nope'" in bad.json()[0]["message"]
    count = wire("POST", f"{V}/jobs/query",
                 json={"operation": "query", "query": "SELECT COUNT() FROM SfdcPartnerOrder"})
    assert (count.status_code, count.json()[0]["errorCode"]) == (400, "INVALIDJOB")
    op = wire("POST", f"{V}/jobs/query", json={"operation": "insert", "query": SOQL})
    assert (op.status_code, op.json()[0]["errorCode"]) == (400, "INVALIDJOB")


def test_a_failed_job_carries_its_error_message_and_has_no_results(wire: Wire, sandbox_org: SandboxOrg) -> None:
    sandbox_org.fail_bulk_jobs("QUERY_TIMEOUT: Your query request was running for too long.")
    job = wire.create()
    info = wire.wait(job["id"])
    assert info["state"] == "Failed"
    assert info["errorMessage"].startswith("QUERY_TIMEOUT")
    resp = wire("GET", f"{V}/jobs/query/{job['id']}/results")
    assert (resp.status_code, resp.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    assert wire.wait(wire.create()["id"])["state"] == "JobComplete"  # only the next one failed


def test_abort_delete_and_list(wire: Wire) -> None:
    job = wire.create()
    early = wire("GET", f"{V}/jobs/query/{job['id']}/results")
    assert (early.status_code, early.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    aborted = wire("PATCH", f"{V}/jobs/query/{job['id']}", json={"state": "Aborted"})
    assert (aborted.status_code, aborted.json()["state"]) == (200, "Aborted")
    again = wire("PATCH", f"{V}/jobs/query/{job['id']}", json={"state": "Aborted"})
    assert again.status_code == 400
    other = wire.create()
    listed = wire("GET", f"{V}/jobs/query").json()
    assert listed["done"] is True and listed["nextRecordsUrl"] is None
    assert {j["id"] for j in listed["records"]} == {job["id"], other["id"]}
    assert wire("DELETE", f"{V}/jobs/query/{job['id']}").status_code == 204
    assert wire("GET", f"{V}/jobs/query/{job['id']}").status_code == 404
    assert wire("DELETE", f"{V}/jobs/query/{other['id']}").status_code == 400  # still running: abort first


def test_deleting_an_unfinished_job_is_the_documented_api_error(wire: Wire) -> None:
    # Delete a Query Job: only a JobComplete, Aborted or Failed job; otherwise 400 API_ERROR.
    job = wire.create()
    refused = wire("DELETE", f"{V}/jobs/query/{job['id']}")
    assert (refused.status_code, refused.json()[0]["errorCode"]) == (400, "API_ERROR")
    assert wire("GET", f"{V}/jobs/query/{job['id']}").status_code == 200  # still there
    wire.wait(job["id"])
    assert wire("DELETE", f"{V}/jobs/query/{job['id']}").status_code == 204


def test_query_jobs_exist_from_api_v47(wire: Wire) -> None:
    # Bulk API 2.0 query resources are available in API version 47.0 and later.
    body = {"operation": "query", "query": "SELECT Id FROM GTM_Order_Billing__c"}
    old = wire("POST", "/services/data/v46.0/jobs/query", json=body)
    assert (old.status_code, old.json()[0]["errorCode"]) == (404, "NOT_FOUND")
    assert wire("GET", "/services/data/v46.0/jobs/query").status_code == 404
    job = wire("POST", "/services/data/v47.0/jobs/query", json=body)
    assert job.status_code == 200
    assert wire("GET", f"/services/data/v46.0/jobs/query/{job.json()['id']}").status_code == 404


def test_every_bulk_request_is_one_api_call_and_faults_apply(wire: Wire, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset_counters()
    before = sandbox_org.api_calls
    job = wire.create()
    wire.wait(job["id"])  # two polls
    sandbox_org.fail("bulk_query_results", status=503)
    assert wire("GET", f"{V}/jobs/query/{job['id']}/results").status_code == 503
    assert wire("GET", f"{V}/jobs/query/{job['id']}/results").status_code == 200
    assert sandbox_org.api_calls - before == 5
    assert sandbox_org.calls("bulk_query_create") == 1 and sandbox_org.calls("bulk_query_job") == 2
    assert sandbox_org.calls("bulk_query_results") == 2


def test_a_job_without_a_session_is_refused(sandbox_org: SandboxOrg) -> None:
    session = tls_session(sandbox_org)
    resp = session.post(sandbox_org.instance_url + f"{V}/jobs/query", json={"operation": "query", "query": SOQL})
    assert resp.status_code == 401


def test_the_control_api_plants_a_failing_job_and_sets_the_polls(wire: Wire, sandbox_org: SandboxOrg) -> None:
    control = tls_session(sandbox_org)
    assert control.post(sandbox_org.instance_url + "/_sandbox/bulk/poll-steps", json={"steps": 3}).status_code == 204
    assert control.post(sandbox_org.instance_url + "/_sandbox/bulk/fail",
                        json={"message": "INVALIDJOB: planted"}).status_code == 204
    job = wire.create()
    states = [wire("GET", f"{V}/jobs/query/{job['id']}").json()["state"] for _ in range(4)]
    assert states == ["InProgress", "InProgress", "InProgress", "Failed"]
    assert wire("GET", f"{V}/jobs/query/{job['id']}").json()["errorMessage"] == "INVALIDJOB: planted"


def test_limits_count_the_days_query_jobs(wire: Wire) -> None:
    # Limits: DailyBulkV2QueryJobs is the day's allowance of Bulk API 2.0 query jobs; each
    # job created uses one.
    before = wire("GET", f"{V}/limits").json()["DailyBulkV2QueryJobs"]
    wire.create()
    wire.create()
    after = wire("GET", f"{V}/limits").json()["DailyBulkV2QueryJobs"]
    assert after == {"Max": before["Max"], "Remaining": before["Remaining"] - 2}
