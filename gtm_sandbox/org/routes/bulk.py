"""Bulk API 2.0 query jobs (``/jobs/query``), as Salesforce documents them.

* ``POST jobs/query`` with ``{"operation": "query"|"queryAll", "query": SOQL, "contentType":
  "CSV", "columnDelimiter": "COMMA"|..., "lineEnding": "LF"|"CRLF"}`` creates a job (200,
  the job info, state ``UploadComplete``). The SOQL goes through the org's one engine
  (``soql.py``, ``OrgData.select``) when the job is created, so the job's rows are the
  REST query's rows, a snapshot taken then (references, as query locators keep). A query
  the engine refuses, or one Bulk API 2.0 does not support (``COUNT()``, ``OFFSET``), is a
  400 ``INVALIDJOB`` carrying the engine's message.
* ``GET jobs/query/{id}``: the job info. The job is asynchronous as in a real org: each
  poll moves it one step, ``UploadComplete`` -> ``InProgress`` (``poll_steps`` polls) ->
  ``JobComplete`` with ``numberRecordsProcessed``; a job planted to fail
  (``fail_next``: the control API's ``POST /_sandbox/bulk/fail``) ends ``Failed`` with its
  ``errorMessage`` instead.
* ``GET jobs/query/{id}/results?maxRecords=N&locator=L``: one set of results as CSV
  (header row, every value quoted, null as an empty value, booleans ``true``/``false``,
  datetimes ``2025-01-31T12:00:00.000Z``), with ``Sforce-NumberOfRecords`` and
  ``Sforce-Locator`` (the next set's locator, the string ``null`` after the last). A
  locator stays valid as long as the job exists, so a set can be read again. Content-Type
  ``text/csv; charset=UTF-8``, gzip-compressed only for an ``Accept-Encoding`` naming gzip
  (``server.py``); columns in the SELECT's order, alphabetical up to API v49.0. Only the
  requested set is encoded: a million-record job is never one string. Results of a job
  that is not ``JobComplete``: 400 ``INVALIDJOBSTATE``.
* ``PATCH jobs/query/{id}`` ``{"state": "Aborted"}`` aborts a job still ``UploadComplete``
  or ``InProgress``; ``DELETE jobs/query/{id}`` deletes a finished one (204; a running
  one is a 400 ``API_ERROR``, as documented);
  ``GET jobs/query`` lists jobs (``done``, ``records``, ``nextRecordsUrl``; 1,000 a set).

The resources exist from API v47.0 (404 ``NOT_FOUND`` below). Every request is one API
call, counted like any other (endpoint names ``bulk_query_create``,
``bulk_query_list``, ``bulk_query_job``, ``bulk_query_abort``, ``bulk_query_delete``,
``bulk_query_results``), so ``org.fail("bulk_query_results", ...)`` fails a results read.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from gtm_sandbox.org.auth import ConnectedApp
from gtm_sandbox.org.data import ApiError, OrgData, Row
from gtm_sandbox.org.ids import make_id
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes.versions import available_since
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.soql import BoundQuery, SoqlError, compile_soql, parse

T = TypeVar("T")  # a job kind of ``BulkJobs.find``

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DEFAULT_MAX_RECORDS = 50_000  # per set when the client gives no maxRecords (the org picks one)
LIST_PAGE = 1000
MAX_JOBS = 200  # the oldest finished jobs are forgotten beyond this (Salesforce deletes after 7 days)
BULK_QUERY_SINCE = 47.0  # Bulk API 2.0 query jobs appeared in API 47.0
REQUESTED_ORDER_SINCE = 50.0  # result columns in the SELECT's order; alphabetical before
CSV_TYPE = "text/csv; charset=UTF-8"  # the results' Content-Type (Use Compression for ... Query Responses)


@dataclass
class QueryJob:
    id: str
    operation: str
    sobject: str
    soql: str
    api_version: str
    created_by: str
    created: str
    delimiter_name: str
    line_ending_name: str
    fields: list[str]
    rows: list[Row]
    stamp_paths: frozenset[str] = frozenset()  # relationship-path columns holding a dateTime
    state: str = "UploadComplete"
    polls: int = 0
    modstamp: str = ""
    error_message: str | None = None
    fail_with: str | None = None

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": self.sobject, "createdById": self.created_by,
            "createdDate": self.created, "systemModstamp": self.modstamp or self.created, "state": self.state,
            "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": Decimal(self.api_version),
            "jobType": "V2Query", "lineEnding": self.line_ending_name, "columnDelimiter": self.delimiter_name,
            "numberRecordsProcessed": len(self.rows) if self.state == "JobComplete" else 0,
            "retries": 0, "totalProcessingTime": 0,
        }
        if self.error_message is not None:
            out["errorMessage"] = self.error_message
        return out


INGEST_MAX_BYTES = 150 * 1024 * 1024


@dataclass
class BulkJobs:
    """The org's query jobs and their knobs (steered by the control API and tests)."""

    jobs: OrderedDict[str, QueryJob] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: int = 0
    poll_steps: int = 1  # polls answered InProgress before JobComplete
    fail_next: list[str] = field(default_factory=list)  # errorMessages of the next jobs to fail
    created: int = 0  # jobs created since the last reset: /limits' DailyBulkV2QueryJobs used
    # Ingest jobs (routes/ingest.py), under the same lock, and their id sequence.
    ingest_jobs: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    ingest_seq: int = 0
    # Bulk API 2.0 limits: a job's data is at most 150 MB; past it the org would hold every
    # upload of an Open job in memory without end.
    ingest_max_bytes: int = INGEST_MAX_BYTES

    def find(self, jobs: Mapping[str, T], job_id: str) -> T:
        """The job of ``jobs`` (``self.jobs`` or ``self.ingest_jobs``) with that id, read
        under the lock; Salesforce's NOT_FOUND when there is none."""
        with self.lock:
            job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def reset(self) -> None:
        with self.lock:
            self.jobs.clear()
            self.ingest_jobs.clear()
            self.created = 0
            self.poll_steps = 1
            self.ingest_max_bytes = INGEST_MAX_BYTES
            self.fail_next.clear()

    def fail(self, message: str, times: int = 1) -> None:
        with self.lock:
            self.fail_next.extend([message] * times)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def csv_encoder(fields: list[str], delimiter: str, line_ending: str,
                datetime_fields: frozenset[str]) -> Callable[[Row], str]:
    """A function row -> one CSV line: every value quoted (quotes doubled), as Bulk API 2.0
    writes them; datetimes in its ``...000Z`` form."""
    columns = [(name, name in datetime_fields) for name in fields]
    joiner = '"' + delimiter + '"'
    tail = '"' + line_ending

    def enc(row: Row) -> str:
        parts = []
        for name, stamp in columns:
            v = row.get(name)
            if v is None:
                parts.append("")
                continue
            text = v if type(v) is str else _csv_value(v)
            if stamp and text.endswith("+0000"):
                text = text[:-5] + "Z"
            parts.append(text.replace('"', '""') if '"' in text else text)
        return '"' + joiner.join(parts) + tail

    return enc


def _locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str) -> int | None:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except ValueError:
        return None
    return int(text) if text.isdigit() else None


def _refuse_unsupported(bound: BoundQuery, soql: str) -> None:
    """Create a Query Job: Bulk API 2.0 doesn't take aggregate functions, OFFSET or FIELDS()."""
    if bound.count or bound.aggregate is not None:
        raise ApiError(400, "INVALIDJOB", "Aggregate Relationships and aggregate functions such as COUNT() "
                                          "are not supported in Bulk API 2.0 queries")
    if bound.offset:
        raise ApiError(400, "INVALIDJOB", "OFFSET is not supported in Bulk API 2.0 queries")
    if any(name.startswith("FIELDS(") for name in parse(soql).fields):
        raise ApiError(400, "INVALIDJOB", "FIELDS() is not supported in Bulk API 2.0 queries: name the fields")


class BulkRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, ``bulk``)."""

    bulk: BulkJobs
    data: OrgData
    app: ConnectedApp

    def _bulk_job(self, job_id: str, version: str) -> QueryJob:
        available_since(version, BULK_QUERY_SINCE)
        return self.bulk.find(self.bulk.jobs, job_id)

    def _bulk_create(self, req: Request, v: str) -> Response:
        available_since(v, BULK_QUERY_SINCE)
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "INVALIDJOB", "The request body must be a JSON object with operation and query")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation!r}; expected query or queryAll")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise ApiError(400, "INVALIDJOB", "A query must be specified")
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", f"Invalid contentType: {body.get('contentType')!r}; only CSV")
        delimiter = body.get("columnDelimiter", "COMMA")
        if not isinstance(delimiter, str) or delimiter not in DELIMITERS:  # a list isn't even hashable
            raise ApiError(400, "INVALIDJOB", f"Invalid columnDelimiter: {delimiter!r}")
        ending = body.get("lineEnding", "LF")
        if not isinstance(ending, str) or ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", f"Invalid lineEnding: {ending!r}")
        try:
            bound = compile_soql(soql, self.data.schema, v, today=self.data.clock.today(), lookup=self.data.lookup,
                                 select=lambda b: self.data.select(b, include_deleted=False))
        except SoqlError as err:
            raise ApiError(400, "INVALIDJOB", err.message.strip()) from None
        _refuse_unsupported(bound, soql)
        columns = list(bound.fields)
        if float(v) < REQUESTED_ORDER_SINCE:  # Get Results for a Query Job: alphabetical in v49.0 and earlier
            columns.sort(key=str.lower)
        rows = self.data.select(bound, include_deleted=operation == "queryAll")
        if bound.paths:  # child-to-parent fields are columns named by their path ("PartnerOrder.Name")
            rows = [{**row, **{name: bound.value(row, name) for name in bound.paths}} for row in rows]
        now = self.data.clock.now()
        with self.bulk.lock:
            self.bulk.seq += 1
            self.bulk.created += 1
            job = QueryJob(
                id=make_id("750", self.bulk.seq, pod="Sb"), operation=operation, sobject=bound.spec.name, soql=soql,
                api_version=v, created_by=self.app.user_id, created=now, delimiter_name=delimiter,
                line_ending_name=ending, fields=columns, rows=rows,
                stamp_paths=frozenset(name for name, (hops, leaf) in bound.paths.items()
                                      if self.data.schema.objects[hops[-1].target].fields[leaf].type == "datetime"),
                fail_with=self.bulk.fail_next.pop(0) if self.bulk.fail_next else None,
            )
            self.bulk.jobs[job.id] = job
            finished = [j.id for j in self.bulk.jobs.values() if j.state not in ("UploadComplete", "InProgress")]
            while len(self.bulk.jobs) > MAX_JOBS and finished:
                self.bulk.jobs.pop(finished.pop(0), None)
        return Response.json(200, job.info())

    def _bulk_info(self, req: Request, v: str, job_id: str) -> Response:
        job = self._bulk_job(job_id, v)
        with self.bulk.lock:
            if job.state in ("UploadComplete", "InProgress"):
                job.polls += 1
                job.modstamp = self.data.clock.now()
                if job.polls > self.bulk.poll_steps:
                    if job.fail_with is not None:
                        job.state, job.error_message = "Failed", job.fail_with
                        job.rows = []
                    else:
                        job.state = "JobComplete"
                else:
                    job.state = "InProgress"
            return Response.json(200, job.info())

    def _bulk_abort(self, req: Request, v: str, job_id: str) -> Response:
        job = self._bulk_job(job_id, v)
        body = req.json()
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise ApiError(400, "INVALIDJOB", "Only {\"state\": \"Aborted\"} may be set on a query job")
        with self.bulk.lock:
            if job.state not in ("UploadComplete", "InProgress"):
                raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: it can no longer be aborted")
            job.state = "Aborted"
            job.rows = []
            job.modstamp = self.data.clock.now()
            return Response.json(200, job.info())

    def _bulk_delete(self, req: Request, v: str, job_id: str) -> Response:
        job = self._bulk_job(job_id, v)
        with self.bulk.lock:
            if job.state in ("UploadComplete", "InProgress"):
                # The documented answer: API_ERROR, not the INVALIDJOBSTATE of results and abort.
                raise ApiError(400, "API_ERROR", f"Job {job.id} is {job.state}: only a terminated job (JobComplete, "
                                                 "Aborted or Failed) can be deleted; abort it first")
            self.bulk.jobs.pop(job.id, None)
        return Response(204)

    def _bulk_list(self, req: Request, v: str) -> Response:
        available_since(v, BULK_QUERY_SINCE)
        job_type = req.param("jobType")
        start = 0
        locator = req.param("queryLocator")
        if locator:
            offset = _offset(locator)
            if offset is None:
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            start = offset
        with self.bulk.lock:
            jobs = [j.info() for j in self.bulk.jobs.values()]
        if job_type not in (None, "", "V2Query"):
            jobs = []
        page = jobs[start : start + LIST_PAGE]
        done = start + LIST_PAGE >= len(jobs)
        next_url = None if done else f"/services/data/v{v}/jobs/query?queryLocator={_locator(start + LIST_PAGE)}"
        return Response.json(200, {"done": done, "records": page, "nextRecordsUrl": next_url})

    def _bulk_results(self, req: Request, v: str, job_id: str) -> Response:
        job = self._bulk_job(job_id, v)
        if job.api_version != v:
            raise ApiError(409, "API_ERROR", f"Use the API version the job was created with (v{job.api_version})")
        if job.state != "JobComplete":
            raise ApiError(400, "INVALIDJOBSTATE", "can only download query results of successfully completed "
                                                   f"bulk job with status: JobComplete. Current status: {job.state}")
        raw_max = req.param("maxRecords")
        if raw_max is not None and (not raw_max.isdigit() or int(raw_max) < 1):
            raise ApiError(400, "INVALIDJOB", f"maxRecords must be a positive whole number, got {raw_max!r}")
        size = int(raw_max) if raw_max else DEFAULT_MAX_RECORDS
        start = 0
        locator = req.param("locator")
        if locator:
            offset = _offset(locator)
            if offset is None or offset > len(job.rows):
                raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
            start = offset
        end = min(start + size, len(job.rows))
        spec = self.data.schema.get(job.sobject, v)
        stamps = frozenset(f.name for f in spec.fields.values() if f.type == "datetime") if spec else frozenset()
        delimiter, ending = DELIMITERS[job.delimiter_name], LINE_ENDINGS[job.line_ending_name]
        enc = csv_encoder(job.fields, delimiter, ending, stamps | job.stamp_paths)
        header = delimiter.join(f'"{name}"' for name in job.fields) + ending
        body = header + "".join(map(enc, job.rows[start:end]))
        headers = {"Sforce-NumberOfRecords": str(end - start),
                   "Sforce-Locator": _locator(end) if end < len(job.rows) else "null"}
        return Response(200, body, headers, content_type=CSV_TYPE)


def install(routes: RouteTable) -> None:
    routes.add("POST", "jobs/query", "bulk_query_create", BulkRoutes._bulk_create)
    routes.add("GET", "jobs/query", "bulk_query_list", BulkRoutes._bulk_list)
    routes.add("GET", "jobs/query/{job_id}", "bulk_query_job", BulkRoutes._bulk_info)
    routes.add("PATCH", "jobs/query/{job_id}", "bulk_query_abort", BulkRoutes._bulk_abort)
    routes.add("DELETE", "jobs/query/{job_id}", "bulk_query_delete", BulkRoutes._bulk_delete)
    routes.add("GET", "jobs/query/{job_id}/results", "bulk_query_results", BulkRoutes._bulk_results)
