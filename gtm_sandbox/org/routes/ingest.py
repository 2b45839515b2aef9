"""Bulk API 2.0 ingest jobs (``/jobs/ingest``), as Salesforce documents them.

* ``POST jobs/ingest`` with ``{"object", "operation": insert|update|upsert|delete|
  hardDelete, "externalIdFieldName" (upsert), "contentType": "CSV", "columnDelimiter",
  "lineEnding"}`` creates a job (200, state ``Open``, its ``contentUrl``).
* ``PUT jobs/ingest/{id}/batches`` (``text/csv``: a header row of field names, then one
  row per record) uploads data to an ``Open`` job: 201, no body; a job's uploads add up to
  150 MB at most (Bulk API 2.0 limits), past that a 400.
* ``PATCH jobs/ingest/{id}`` ``{"state": "UploadComplete"}`` closes the upload and the
  job's records are written then, each on its own (a failed record fails alone), as the
  REST API writes them; ``{"state": "Aborted"}`` aborts a job not yet complete (its rows
  are then unprocessed). A header naming a field the object lacks fails the whole job
  (``InvalidBatch : Field name not found : X``).
* ``GET jobs/ingest/{id}``: the job info; each poll moves it a step, ``UploadComplete`` ->
  ``InProgress`` (the query jobs' ``poll_steps``) -> ``JobComplete``, with
  ``numberRecordsProcessed`` and ``numberRecordsFailed``.
* ``GET .../successfulResults`` (``sf__Id``, ``sf__Created``, the row's fields),
  ``.../failedResults`` (``sf__Id``, ``sf__Error`` as ``CODE:message:fields --``, the
  row's fields) and ``.../unprocessedrecords``: CSV.
* ``DELETE jobs/ingest/{id}`` (a job no longer Open or InProgress): 204; ``GET
  jobs/ingest``: the jobs.

In CSV an empty value leaves a field as it is, ``#N/A`` sets it to null. The resources
exist from API v41.0; every request is one API call.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.ids import make_id
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes.bulk import DELIMITERS, LINE_ENDINGS, LIST_PAGE, MAX_JOBS, _locator, _offset
from gtm_sandbox.org.routes.versions import available_since
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.schema import NUMERIC_TYPES

INGEST_SINCE = 41.0  # Bulk API 2.0 ingest jobs: API 41.0 and later
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
NULL = "#N/A"  # a CSV value that sets a field to null


@dataclass
class IngestJob:
    id: str
    operation: str
    sobject: str
    external_id: str | None
    api_version: str
    created_by: str
    created: str
    delimiter_name: str
    line_ending_name: str
    state: str = "Open"
    modstamp: str = ""
    header: list[str] | None = None
    rows: list[list[str]] = field(default_factory=list)
    successes: list[tuple[str, bool, list[str]]] = field(default_factory=list)  # (id, created, row)
    failures: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (id or "", sf__Error, row)
    unprocessed: list[list[str]] = field(default_factory=list)
    polls: int = 0
    error_message: str | None = None
    uploaded: int = 0  # bytes of CSV uploaded (at most BulkJobs.ingest_max_bytes)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": self.sobject, "createdById": self.created_by,
            "createdDate": self.created, "systemModstamp": self.modstamp or self.created, "state": self.state,
            "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": Decimal(self.api_version),
            "contentUrl": f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending_name, "columnDelimiter": self.delimiter_name, "jobType": "V2Ingest",
            "numberRecordsProcessed": len(self.successes) + len(self.failures) if self.state == "JobComplete" else 0,
            "numberRecordsFailed": len(self.failures) if self.state == "JobComplete" else 0,
            "retries": 0, "totalProcessingTime": 0, "apiActiveProcessingTime": 0, "apexProcessingTime": 0,
        }
        if self.external_id is not None:
            out["externalIdFieldName"] = self.external_id
        if self.error_message is not None:
            out["errorMessage"] = self.error_message
        return out


class IngestRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, ``bulk`` and the sObject
    handlers' upsert)."""

    def _ingest_job(self, job_id: str, version: str) -> IngestJob:
        available_since(version, INGEST_SINCE)
        job: IngestJob = self.bulk.find(self.bulk.ingest_jobs, job_id)
        return job

    def _ingest_create(self, req: Request, v: str) -> Response:
        available_since(v, INGEST_SINCE)
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "INVALIDJOB", "The request body must be a JSON object with object and operation")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation!r}")
        spec = self.data.schema.get(str(body.get("object", "")), v)
        if spec is None:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid object: {body.get('object')}")
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            f = spec.field(str(external or ""))
            if f is None or not (f.external_id or f.name == "Id"):
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Field name provided, {external} is not an External "
                                                  f"ID or indexed field for {spec.name}")
            external = f.name
        else:
            external = None
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", f"Invalid contentType: {body.get('contentType')!r}; only CSV")
        delimiter, ending = body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")
        if not (isinstance(delimiter, str) and delimiter in DELIMITERS and isinstance(ending, str)
                and ending in LINE_ENDINGS):
            raise ApiError(400, "INVALIDJOB", f"Invalid columnDelimiter or lineEnding: {delimiter!r}, {ending!r}")
        with self.bulk.lock:
            self.bulk.ingest_seq += 1
            job = IngestJob(id=make_id("750", 500_000 + self.bulk.ingest_seq, pod="Sb"), operation=operation,
                            sobject=spec.name, external_id=external, api_version=v, created_by=self.app.user_id,
                            created=self.data.clock.now(), delimiter_name=delimiter, line_ending_name=ending)
            jobs = self.bulk.ingest_jobs
            jobs[job.id] = job
            finished = [j.id for j in jobs.values() if j.state in ("JobComplete", "Aborted", "Failed")]
            while len(jobs) > MAX_JOBS and finished:
                jobs.pop(finished.pop(0), None)
        return Response.json(200, job.info())

    def _ingest_upload(self, req: Request, v: str, job_id: str) -> Response:
        job = self._ingest_job(job_id, v)
        self._ingest_room(job, len(req.body))  # before parsing: the same check under the lock below
        try:
            text = req.body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "INVALIDJOB", "The job data must be UTF-8 CSV") from None
        try:
            table = [row for row in csv.reader(io.StringIO(text, newline=""),
                                               delimiter=DELIMITERS[job.delimiter_name]) if row]
        except csv.Error as err:  # a field past the csv module's 128 KB limit, say
            raise ApiError(400, "INVALIDJOB", f"The job data is not valid CSV: {err}") from None
        if not table:
            raise ApiError(400, "INVALIDJOB", "The job data is empty: a header row is required")
        with self.bulk.lock:
            if job.state != "Open":
                raise ApiError(409, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: data can be uploaded to an "
                                                       f"Open job only")
            if job.header is not None and table[0] != job.header:
                raise ApiError(400, "INVALIDJOB", "Each upload must have the same header row as the first")
            self._ingest_room(job, len(req.body))
            job.uploaded += len(req.body)
            job.header = table[0]
            job.rows.extend(table[1:])
        return Response(201)

    def _ingest_room(self, job: IngestJob, size: int) -> None:
        limit = self.bulk.ingest_max_bytes
        if job.uploaded + size > limit:
            raise ApiError(400, "INVALIDJOB", f"Job {job.id}'s data would exceed the {limit:,} bytes a job takes")

    def _ingest_state(self, req: Request, v: str, job_id: str) -> Response:
        job = self._ingest_job(job_id, v)
        body = req.json()
        state = body.get("state") if isinstance(body, dict) else None
        # The data lock first, as a composite request holding it takes the bulk lock for an
        # ingest subrequest: the other order deadlocks against it (closing writes records).
        with self.data.lock, self.bulk.lock:
            if state == "UploadComplete" and job.state == "Open":
                job.state = "UploadComplete"
                job.modstamp = self.data.clock.now()
                self._ingest_run(job)
            elif state == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
                job.state = "Aborted"
                job.modstamp = self.data.clock.now()
                if not job.successes and not job.failures:
                    job.unprocessed = list(job.rows)
            else:
                raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}: it can't be set to {state!r}")
            return Response.json(200, job.info())

    def _ingest_info(self, req: Request, v: str, job_id: str) -> Response:
        job = self._ingest_job(job_id, v)
        with self.bulk.lock:
            if job.state in ("UploadComplete", "InProgress"):
                job.polls += 1
                job.modstamp = self.data.clock.now()
                if job.polls > self.bulk.poll_steps:
                    job.state = "Failed" if job.error_message is not None else "JobComplete"
                else:
                    job.state = "InProgress"
            return Response.json(200, job.info())

    def _ingest_delete(self, req: Request, v: str, job_id: str) -> Response:
        job = self._ingest_job(job_id, v)
        with self.bulk.lock:
            if job.state in ("Open", "InProgress"):
                raise ApiError(400, "API_ERROR", f"Job {job.id} is {job.state}: only a job that is UploadComplete, "
                                                 "JobComplete, Aborted or Failed can be deleted")
            self.bulk.ingest_jobs.pop(job.id, None)
        return Response(204)

    def _ingest_list(self, req: Request, v: str) -> Response:
        available_since(v, INGEST_SINCE)
        start = _offset(req.param("queryLocator") or "") or 0
        with self.bulk.lock:
            jobs = [j.info() for j in self.bulk.ingest_jobs.values()]
        page = jobs[start: start + LIST_PAGE]
        done = start + LIST_PAGE >= len(jobs)
        next_url = None if done else f"/services/data/v{v}/jobs/ingest?queryLocator={_locator(start + LIST_PAGE)}"
        return Response.json(200, {"done": done, "records": page, "nextRecordsUrl": next_url})

    def _ingest_results(self, req: Request, v: str, job_id: str, kind: str) -> Response:
        job = self._ingest_job(job_id, v)
        header = job.header or []
        delimiter, ending = DELIMITERS[job.delimiter_name], LINE_ENDINGS[job.line_ending_name]
        if kind == "successful":
            lines = [["sf__Id", "sf__Created", *header]] + [
                [rid, "true" if created else "false", *row] for rid, created, row in job.successes]
        elif kind == "failed":
            lines = [["sf__Id", "sf__Error", *header]] + [[rid, error, *row] for rid, error, row in job.failures]
        else:
            lines = [header, *job.unprocessed]
        body = "".join(delimiter.join('"' + value.replace('"', '""') + '"' for value in line) + ending
                       for line in lines if line)
        return Response(200, body, content_type="text/csv; charset=UTF-8")

    # ------------------------------------------------------------ processing

    def _ingest_run(self, job: IngestJob) -> None:
        """Write the job's records, each alone: a failed one is reported with its error."""
        spec = self.data.schema.objects[job.sobject]
        header = job.header or []
        unknown = [name for name in header if spec.field(name) is None]
        if unknown or not header:
            job.error_message = f"InvalidBatch : Field name not found : {unknown[0] if unknown else '(none)'}"
            job.unprocessed = list(job.rows)
            return
        for row in job.rows:
            values = {spec.field(name).name: value for name, value in zip(header, row, strict=False)}  # type: ignore[union-attr]
            rid = values.get("Id") or ""
            try:
                with self.data.transaction():
                    rid, created = self._ingest_record(job, spec, values)
            except ApiError as err:
                job.failures.append((rid, f"{err.error_code}:{err.message}:{','.join(err.fields)} --", row))
            else:
                job.successes.append((rid, created, row))

    def _ingest_record(self, job: IngestJob, spec: Any, values: dict[str, str]) -> tuple[str, bool]:
        if len(values) != len(job.header or []):
            raise ApiError(400, "INVALID_INPUT", "The row has a different number of values than the header")
        fields = {name: _typed(spec.fields[name], text) for name, text in values.items() if text != ""}
        rid = fields.pop("Id", None)
        if job.operation == "insert":
            if rid is not None:
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return str(self.data.insert(spec.name, fields)["Id"]), True
        if job.operation == "upsert":
            key = job.external_id or "Id"
            value = rid if key == "Id" else fields.get(key)
            if value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT", f"{key} not specified", [key])
            _, existing = self._by_external(spec.name, key, str(value), job.api_version)
            result = self._upsert_one(spec, key, str(value), existing, fields)
            return str(result["id"]), bool(result["created"])
        if rid is None:
            raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        if job.operation == "update":
            return str(self.data.update(spec.name, str(rid), fields)["Id"]), False
        if fields:
            raise ApiError(400, "INVALID_FIELD", "A delete takes the Id column only", list(fields))
        row = self.data.delete(spec.name, str(rid))
        if job.operation == "hardDelete":
            self.data.purge(spec.name, row["Id"])
        return str(row["Id"]), False


def _typed(f: Any, text: str) -> Any:
    """A CSV value as the JSON value the org's REST writes take for field ``f``."""
    if text == NULL:
        return None
    if f.type == "boolean":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ApiError(400, "INVALID_FIELD", f"'{text}' is not a valid value for the type xsd:boolean", [f.name])
        return text.lower() in ("true", "1")
    if f.type in NUMERIC_TYPES:
        try:
            return Decimal(text)
        except InvalidOperation:
            raise ApiError(400, "INVALID_FIELD", f"'{text}' is not a valid value for the type xsd:double",
                           [f.name]) from None
    return text


def install(routes: RouteTable) -> None:
    routes.add("POST", "jobs/ingest", "bulk_ingest_create", IngestRoutes._ingest_create)
    routes.add("GET", "jobs/ingest", "bulk_ingest_list", IngestRoutes._ingest_list)
    routes.add("GET", "jobs/ingest/{job_id}", "bulk_ingest_job", IngestRoutes._ingest_info)
    routes.add("PATCH", "jobs/ingest/{job_id}", "bulk_ingest_state", IngestRoutes._ingest_state)
    routes.add("DELETE", "jobs/ingest/{job_id}", "bulk_ingest_delete", IngestRoutes._ingest_delete)
    routes.add("PUT", "jobs/ingest/{job_id}/batches", "bulk_ingest_upload", IngestRoutes._ingest_upload)
    for path, kind in (("successfulResults", "successful"), ("failedResults", "failed"),
                       ("unprocessedrecords", "unprocessed"), ("unprocessedRecords", "unprocessed")):
        routes.add("GET", f"jobs/ingest/{{job_id}}/{path}", "bulk_ingest_results",
                   lambda api, req, v, job_id, kind=kind: IngestRoutes._ingest_results(api, req, v, job_id, kind))
