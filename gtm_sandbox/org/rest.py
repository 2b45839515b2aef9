"""The sandbox org's REST API, independent of the HTTP server: ``OrgApi.handle(request)``.

Resources (under ``/services/data/vXX.X/``): ``query``, ``queryAll`` and query locators,
``sobjects`` (describe global, describe, CRUD, upsert by external id, getDeleted /
getUpdated), ``limits``, ``composite`` (25 subrequests, at most 5 queries or
collections, references, allOrNone) and ``composite/sobjects`` collections. Plus
``/services/oauth2/token`` and ``/services/data/`` (versions).

Routing is a table, ``DATA_ROUTES`` at the end of this module (method + segment template ->
endpoint name and handler method, one block per resource; see ``routing.py``). Every API
request is counted per endpoint, may be delayed or failed by fault rules, is
checked against the session store and the daily request limit, and answers with
``Sforce-Limit-Info: api-usage=N/M``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import parse_qs, unquote, urlsplit

from gtm_sandbox.org.auth import ConnectedApp, OAuthError, Sessions, grant, token_response
from gtm_sandbox.org.data import ApiError, OrgData, Row
from gtm_sandbox.org.ids import canonical_stamp, is_id, make_id, to_18
from gtm_sandbox.org.jsonenc import Raw, encode, loads, record_encoder
from gtm_sandbox.org.routing import ANY, RouteTable
from gtm_sandbox.org.soql import SoqlError, compile_soql

SUPPORTED_VERSIONS = [f"{v}.0" for v in range(40, 68)]  # up to Summer '26 (v67.0)
COLLECTIONS_SINCE = 42.0  # sObject Collections appeared in API 42.0
COLLECTIONS_UPSERT_SINCE = 46.0  # ... their upsert, and the upsert "created" flag / 200 body, in 46.0
MAX_OPEN_LOCATORS = 10
BATCH_SINCE = 34.0  # /composite/batch appeared in API 34.0
COMPOSITE_MAX_SUBREQUESTS = 25
COMPOSITE_MAX_QUERIES = 5
COLLECTION_MAX = 200
_COLLECTION_WRITES = ("collections_create", "collections_update", "collections_upsert", "collections_delete")


@dataclass
class Request:
    method: str
    path: str  # decoded, for matching prefixes and messages
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    segments: list[str] = field(default_factory=list)  # split before decoding: ids may hold '/'

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Request:
        parts = urlsplit(target)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        return cls(method.upper(), unquote(parts.path), parse_qs(parts.query, keep_blank_values=True),
                   {k.lower(): v for k, v in (headers or {}).items()}, body, segments)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"The request body isn't valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=UTF-8"

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, encode(obj), headers or {})

    @classmethod
    def error(cls, err: ApiError) -> Response:
        return cls.json(err.status, err.body())


@dataclass
class FaultRule:
    endpoint: str  # endpoint name or "*"
    status: int
    error_code: str
    message: str
    times: int = 1
    skip: int = 0
    expire_sessions: bool = False

    def body(self) -> Any:
        return [{"message": self.message, "errorCode": self.error_code}]


@dataclass
class Locator:
    rows: list[Row]
    encode: Callable[[Row], str]
    resource: str  # query | queryAll
    total: int
    batch: int


class Controls:
    """Counters, fault rules, latency, API limits and hooks: what tests and benches steer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.subrequests: dict[str, int] = {}
        self.faults: list[FaultRule] = []
        self.latency: dict[str, float] = {}
        self.api_max = 15000
        self.api_used = 0
        self.hooks: list[tuple[str, Callable[[], None], int]] = []

    def count(self, endpoint: str, *, sub: bool = False) -> None:
        with self.lock:
            target = self.subrequests if sub else self.calls
            target[endpoint] = target.get(endpoint, 0) + 1

    def take_fault(self, endpoint: str) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.endpoint not in (endpoint, "*"):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    return None
                rule.times -= 1
                if rule.times <= 0:
                    self.faults.remove(rule)
                return rule
        return None

    def take_hooks(self, endpoint: str) -> list[Callable[[], None]]:
        due = []
        with self.lock:
            kept = []
            for name, fn, skip in self.hooks:
                if name in (endpoint, "*"):
                    if skip > 0:
                        kept.append((name, fn, skip - 1))
                    else:
                        due.append(fn)
                else:
                    kept.append((name, fn, skip))
            self.hooks = kept
        return due

    def delay(self, endpoint: str) -> float:
        return self.latency.get(endpoint, self.latency.get("*", 0.0))

    def use_api(self) -> tuple[bool, int, int]:
        """Count one API request; False if the daily limit is already reached."""
        with self.lock:
            if self.api_used >= self.api_max:
                return False, self.api_used, self.api_max
            self.api_used += 1
            return True, self.api_used, self.api_max

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.subrequests.clear()
            self.faults.clear()
            self.latency.clear()
            self.hooks.clear()
            self.api_used = 0
            self.api_max = 15000

    @property
    def api_calls(self) -> int:
        return sum(n for name, n in self.calls.items() if name not in ("oauth_token", "versions"))


_DATA = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")


class OrgApi:
    def __init__(self, data: OrgData, app: ConnectedApp, *, login_url: str, instance_url: str, batch_size: int = 2000):
        self.data = data
        self.app = app
        self.login_url = login_url
        self.instance_url = instance_url
        self.sessions = Sessions()
        self.controls = Controls()
        self.batch_size = batch_size
        self.default_batch_size = batch_size
        self._locators: OrderedDict[str, Locator] = OrderedDict()
        self._locator_lock = threading.Lock()
        self._locator_seq = 0

    # ------------------------------------------------------------ entry point

    def handle(self, req: Request) -> Response:
        if req.path.rstrip("/") == "/services/oauth2/token":
            return self._with_controls("oauth_token", req, self._token, api=False)
        if req.path.rstrip("/") == "/services/data":
            return self._with_controls("versions", req, self._versions, api=False)
        m = _DATA.match(req.path.rstrip("/"))
        if not m:
            return Response.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))
        version = m.group(1)
        if version not in SUPPORTED_VERSIONS:
            return Response.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))
        try:
            endpoint, handler = self._route(req.method, req.segments[3:])  # after services/data/vNN.N
        except ApiError as err:
            return Response.error(err)
        return self._with_controls(endpoint, req, lambda r: handler(r, version), api=True)

    def _with_controls(self, endpoint: str, req: Request, handler: Callable[[Request], Response], *, api: bool) -> Response:
        c = self.controls
        c.count(endpoint)
        for hook in c.take_hooks(endpoint):
            hook()
        delay = c.delay(endpoint)
        if delay:
            time.sleep(delay)
        rule = c.take_fault(endpoint)
        if rule is not None:
            if rule.expire_sessions:
                self.sessions.expire_all()
            return self._limit_headers(Response.json(rule.status, rule.body()), api)
        if not api:
            return handler(req)
        token = req.headers.get("authorization", "")
        token = token[7:] if token.lower().startswith("bearer ") else token[6:] if token.lower().startswith("oauth ") else ""
        if not token or not self.sessions.valid(token):
            return Response.json(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        allowed, used, limit = c.use_api()
        if not allowed:
            resp = Response.json(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
            resp.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
            return resp
        try:
            resp = handler(req)
        except ApiError as err:
            resp = Response.error(err)
        except SoqlError as err:
            resp = Response.json(400, [{"message": err.message, "errorCode": err.error_code}])
        resp.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return resp

    def _limit_headers(self, resp: Response, api: bool) -> Response:
        if api:
            resp.headers["Sforce-Limit-Info"] = f"api-usage={self.controls.api_used}/{self.controls.api_max}"
        return resp

    def _route(self, method: str, parts: list[str]) -> tuple[str, Callable[[Request, str], Response]]:
        """The endpoint name and handler for ``parts`` (the segments after ``/services/data/vNN.N``)."""
        found = DATA_ROUTES.match(method, parts)
        if found is None:
            if DATA_ROUTES.knows_resource(parts):
                raise ApiError(405, "METHOD_NOT_ALLOWED",
                               f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,POST,DELETE")
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        route, params = found
        return route.endpoint, lambda r, v: route.handler(self, r, v, **params)

    # ------------------------------------------------------------ oauth and versions

    def _token(self, req: Request) -> Response:
        if req.method != "POST":
            return Response.json(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        for k, v in req.query.items():  # some clients send the grant as query parameters
            form.setdefault(k, v[0])
        try:
            grant(self.app, form, req.headers)
        except OAuthError as err:
            return Response.json(err.status, err.body())
        return Response.json(200, token_response(self.app, self.sessions, self.login_url, self.instance_url))

    def _versions(self, req: Request) -> Response:
        return Response.json(
            200,
            [{"label": release_name(v), "url": f"/services/data/v{v}", "version": v} for v in SUPPORTED_VERSIONS],
        )

    def _resources(self, req: Request, v: str) -> Response:
        names = ["query", "queryAll", "sobjects", "limits", "composite"]
        return Response.json(200, {n: f"/services/data/v{v}/{n}" for n in names})

    # ------------------------------------------------------------ query

    def _batch_size(self, req: Request) -> int:
        size = self.batch_size
        options = req.headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", options)
        if m:
            size = max(200, min(2000, int(m.group(1))))
            size = min(size, self.batch_size) if self.batch_size < 200 else size
        return size

    def _query(self, req: Request, v: str) -> Response:
        soql = req.param("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        resource = req.path.rstrip("/").rsplit("/", 1)[1]
        return Response(200, self.run_query(soql, v, resource == "queryAll", self._batch_size(req)))

    def run_query(self, soql: str, version: str, include_deleted: bool, batch: int) -> str:
        bound = compile_soql(soql, self.data.schema, version)
        if bound.count:
            n = len(self.data.select(bound, include_deleted=include_deleted))
            return encode({"totalSize": n, "done": True, "records": []})
        rows = self.data.select(bound, include_deleted=include_deleted)
        enc = record_encoder(bound.spec.name, bound.fields, version)
        return self._page(rows, enc, 0, batch, version, "queryAll" if include_deleted else "query", None)

    def _page(self, rows: list[Row], enc: Callable[[Row], str], start: int, batch: int, version: str,
              resource: str, locator_id: str | None) -> str:
        end = min(start + batch, len(rows))
        done = end >= len(rows)
        head = f'{{"totalSize":{len(rows)},"done":{"true" if done else "false"}'
        if not done:
            if locator_id is None:
                locator_id = self._new_locator(Locator(rows, enc, resource, len(rows), batch))
            # Always under /query/, queryAll pages too (as Salesforce does); the locator itself
            # remembers that deleted rows are included, so /query/ and /queryAll/ both serve it.
            head += f',"nextRecordsUrl":"/services/data/v{version}/query/{locator_id}-{end}"'
        elif locator_id is not None:
            with self._locator_lock:
                self._locators.pop(locator_id, None)
        return head + ',"records":[' + ",".join(enc(r) for r in rows[start:end]) + "]}"

    def _new_locator(self, locator: Locator) -> str:
        with self._locator_lock:
            self._locator_seq += 1
            lid = make_id("01g", self._locator_seq, pod="RO")
            self._locators[lid] = locator
            while len(self._locators) > MAX_OPEN_LOCATORS:
                self._locators.popitem(last=False)  # Salesforce closes the oldest cursor
            return lid

    def _query_more(self, req: Request, v: str, token: str) -> Response:
        lid, _, pos = token.partition("-")
        with self._locator_lock:
            locator = self._locators.get(lid)
            if locator is not None:
                self._locators.move_to_end(lid)
        if locator is None or not pos.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        start = int(pos)
        if start >= locator.total:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return Response(200, self._page(locator.rows, locator.encode, start, locator.batch, v, locator.resource, lid))

    # ------------------------------------------------------------ sobjects

    def _spec(self, obj: str, version: str | None = None):  # type: ignore[no-untyped-def]
        # An object newer than the request's API version does not exist there (GTM objects:
        # v64-v66), as on a real org.
        spec = self.data.schema.get(obj, version)
        if spec is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return spec

    def _not_modified(self, req: Request) -> Response | None:
        """Describe answers 304 when the schema has not changed since If-Modified-Since
        (so a client can re-check its mapping cheaply), else None; Last-Modified on both."""
        since = req.headers.get("if-modified-since")
        if not since:
            return None
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if self.data.schema.last_modified <= when:
            return Response(304, None, self._last_modified())
        return None

    def _last_modified(self) -> dict[str, str]:
        return {"Last-Modified": format_datetime(self.data.schema.last_modified, usegmt=True)}

    def _describe_global(self, req: Request, v: str) -> Response:
        unchanged = self._not_modified(req)
        if unchanged is not None:
            return unchanged
        return Response.json(200, {
            "encoding": "UTF-8",
            "maxBatchSize": COLLECTION_MAX,
            "sobjects": [spec.basic(v) for spec in self.data.schema.at(v)],
        }, self._last_modified())

    def _sobject_basic(self, req: Request, v: str, obj: str) -> Response:
        spec = self._spec(obj, v)
        return Response.json(200, {"objectDescribe": spec.basic(v), "recentItems": []})

    def _describe(self, req: Request, v: str, obj: str) -> Response:
        spec = self._spec(obj, v)
        return self._not_modified(req) or Response.json(200, spec.describe(v), self._last_modified())

    def _record_json(self, row: Row, v: str, fields: list[str] | None = None) -> Raw:
        spec = self.data.schema.get(self.data.find_object(row["Id"]).name)  # type: ignore[union-attr]
        names = fields or list(spec.fields)  # type: ignore[union-attr]
        return Raw(record_encoder(spec.name, names, v)(row))  # type: ignore[union-attr]

    def _fields_param(self, req: Request, obj: str) -> list[str] | None:
        raw = req.param("fields")
        if not raw:
            return None
        spec = self._spec(obj)
        out = []
        for name in raw.split(","):
            f = spec.field(name.strip())
            if f is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name.strip()}' on sobject of type {spec.name}")
            out.append(f.name)
        return out

    def _retrieve(self, req: Request, v: str, obj: str, rid: str) -> Response:
        spec = self._spec(obj, v)
        if not spec.retrieveable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type {spec.name} does not support retrieve")
        row = self.data.get(spec.name, rid)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return Response(200, self._record_json(row, v, self._fields_param(req, obj)))

    def _by_external(self, obj: str, fld: str, value: str) -> tuple[Any, str | None]:
        spec = self._spec(obj)
        f = spec.field(fld)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {fld}")
        if f.name == "Id":
            row = self.data.get(spec.name, value)
            return spec, row["Id"] if row else None
        return spec, self.data.find_external(spec.name, f.name, value)

    def _retrieve_external(self, req: Request, v: str, obj: str, fld: str, value: str) -> Response:
        spec, rid = self._by_external(obj, fld, value)
        if rid is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return Response(200, self._record_json(self.data.get(spec.name, rid), v, self._fields_param(req, obj)))  # type: ignore[arg-type]

    def _body_object(self, req: Request) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from a non-object value")
        return body

    def _create(self, req: Request, v: str, obj: str) -> Response:
        spec = self._spec(obj, v)
        body = self._body_object(req)
        if any(k.lower() == "id" for k in body):
            raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check "
                           "the security settings of this field and verify that it is read/write for your profile "
                           "or permission set.", ["Id"])
        row = self.data.insert(spec.name, body)
        return Response.json(201, {"id": row["Id"], "success": True, "errors": []},
                             {"Location": f"/services/data/v{v}/sobjects/{spec.name}/{row['Id']}"})

    def _update(self, req: Request, v: str, obj: str, rid: str) -> Response:
        spec = self._spec(obj, v)
        body = self._body_object(req)
        self.data.update(spec.name, rid, body)
        return Response(204)

    def _delete(self, req: Request, v: str, obj: str, rid: str) -> Response:
        spec = self._spec(obj, v)
        self.data.delete(spec.name, rid)
        return Response(204)

    def _delete_external(self, req: Request, v: str, obj: str, fld: str, value: str) -> Response:
        spec, rid = self._by_external(obj, fld, value)
        if rid is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        self.data.delete(spec.name, rid)
        return Response(204)

    def _upsert(self, req: Request, v: str, obj: str, fld: str, value: str) -> Response:
        spec, rid = self._by_external(obj, fld, value)
        body = self._body_object(req)
        result = self._upsert_one(spec, fld, value, rid, body)
        if float(v) < COLLECTIONS_UPSERT_SINCE:
            # Before API 46.0: an update answers 204 with no body, a create has no "created" flag.
            if not result["created"]:
                return Response(204)
            return Response.json(201, {k: result[k] for k in ("id", "success", "errors")})
        return Response.json(201 if result["created"] else 200, result)

    def _upsert_one(self, spec: Any, fld: str, value: str, rid: str | None, body: dict[str, Any]) -> dict[str, Any]:
        f = spec.field(fld)
        body = {k: v for k, v in body.items() if k != "attributes"}
        if rid is None:
            if f.name == "Id":
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            body = {k: v for k, v in body.items() if k.lower() != f.name.lower()}
            body[f.name] = value
            row = self.data.insert(spec.name, body)
            return {"id": row["Id"], "success": True, "errors": [], "created": True}
        body = {k: v for k, v in body.items() if k.lower() != f.name.lower()}
        self.data.update(spec.name, rid, body)
        return {"id": rid, "success": True, "errors": [], "created": False}

    def _get_changed(self, req: Request, v: str, obj: str, kind: str) -> Response:
        spec = self._spec(obj, v)
        if not spec.retrieveable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type {spec.name} does not support "
                           f"{'getDeleted' if kind == 'deleted' else 'getUpdated'}")
        start, end = req.param("start"), req.param("end")
        if not start or not end:
            raise ApiError(400, "MALFORMED_QUERY", "start and end are required")
        try:
            lo, hi = canonical_stamp(start), canonical_stamp(end)
        except ValueError:
            raise ApiError(400, "INVALID_DATE_FORMAT", f"Invalid date format: {start} / {end}") from None
        with self.data.lock:
            rows = [r for r in self.data.tables[spec.name].rows.values() if lo <= r["SystemModstamp"] <= hi]
        if kind == "deleted":
            deleted = [{"id": r["Id"], "deletedDate": r["SystemModstamp"]} for r in rows if r["IsDeleted"]]
            earliest = min((r["SystemModstamp"] for r in self.data.tables[spec.name].rows.values()), default=lo)
            return Response.json(200, {"deletedRecords": deleted, "earliestDateAvailable": earliest, "latestDateCovered": hi})
        return Response.json(200, {"ids": [r["Id"] for r in rows if not r["IsDeleted"]], "latestDateCovered": hi})

    def _limits(self, req: Request, v: str) -> Response:
        c = self.controls
        return Response.json(200, {
            "DailyApiRequests": {"Max": c.api_max, "Remaining": max(0, c.api_max - c.api_used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1000},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        })

    # ------------------------------------------------------------ collections

    def _records(self, req: Request) -> tuple[list[Any], bool]:
        body = self._body_object(req)
        records = body.get("records")
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
        if len(records) > COLLECTION_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {COLLECTION_MAX} records into this call")
        return records, bool(body.get("allOrNone", False))

    def _each(self, records: list[Any], all_or_none: bool, op: Callable[[Any], dict[str, Any]], *,
              creates: bool = False, failed_id: Callable[[Any], str | None] | None = None) -> list[dict[str, Any]]:
        """Run op per record: partial success, or all-or-none with Salesforce's roll-back errors.

        Result shapes follow the sObject Collections docs: a record that failed carries no
        ``id`` (a delete of a well-formed id names it, via ``failed_id``); a rolled-back
        update, upsert-update or delete keeps its id, a rolled-back insert has none."""
        results: list[dict[str, Any]] = []
        failed = False
        with self.data.lock:
            try:
                with self.data.transaction():
                    for rec in records:
                        try:
                            with self.data.transaction():
                                results.append(op(rec))
                        except ApiError as err:
                            failed = True
                            rid = failed_id(rec) if failed_id else None
                            results.append({**({"id": rid} if rid else {}), "success": False,
                                            "errors": [err.record_error()]})
                    if failed and all_or_none:
                        raise _RollBack()
            except _RollBack:
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                          "message": "Record rolled back because not all records were valid and the request was "
                                     "using AllOrNone header", "fields": []}
                results = [r if not r["success"] else
                           {**({} if creates or r.get("created") else {"id": r["id"]}), "success": False,
                            "errors": [rolled]}
                           for r in results]
        return results

    def _typed(self, rec: Any, expect: str | None = None) -> tuple[Any, dict[str, Any]]:
        if not isinstance(rec, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "each record must be an object")
        typ = (rec.get("attributes") or {}).get("type")
        if not typ:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        if expect and typ.lower() != expect.lower():
            raise ApiError(400, "INVALID_TYPE", f"Record type {typ} does not match the request's {expect}")
        return self._spec(typ), {k: v for k, v in rec.items() if k != "attributes"}

    def _collections_create(self, req: Request, v: str) -> Response:
        _available(v, COLLECTIONS_SINCE)
        records, all_or_none = self._records(req)

        def op(rec: Any) -> dict[str, Any]:
            spec, body = self._typed(rec)
            if any(k.lower() == "id" for k in body):
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return {"id": self.data.insert(spec.name, body)["Id"], "success": True, "errors": []}

        return Response.json(200, self._each(records, all_or_none, op, creates=True))

    def _collections_update(self, req: Request, v: str) -> Response:
        _available(v, COLLECTIONS_SINCE)
        records, all_or_none = self._records(req)

        def op(rec: Any) -> dict[str, Any]:
            spec, body = self._typed(rec)
            rid = next((val for k, val in body.items() if k.lower() == "id"), None)
            if not rid:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            try:
                rid = to_18(rid)
            except ValueError:
                raise ApiError(400, "MALFORMED_ID", f"Record ID: id value of incorrect type: {rid}", ["Id"]) from None
            if self.data.get(spec.name, rid) is None:
                raise ApiError(404, "ENTITY_IS_DELETED" if self.data.get(spec.name, rid, include_deleted=True)
                               else "INVALID_CROSS_REFERENCE_KEY", "entity is deleted" if self.data.get(
                                   spec.name, rid, include_deleted=True) else "invalid cross reference id", [])
            self.data.update(spec.name, rid, {k: val for k, val in body.items() if k.lower() != "id"})
            return {"id": rid, "success": True, "errors": []}

        return Response.json(200, self._each(records, all_or_none, op))

    def _collections_upsert(self, req: Request, v: str, obj: str, fld: str) -> Response:
        _available(v, COLLECTIONS_UPSERT_SINCE)
        records, all_or_none = self._records(req)
        spec = self._spec(obj, v)
        f = spec.field(fld)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {fld}")

        def op(rec: Any) -> dict[str, Any]:
            _, body = self._typed(rec, spec.name)
            value = next((val for k, val in body.items() if k.lower() == f.name.lower()), None)
            if value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
            _, rid = self._by_external(spec.name, f.name, str(value))
            return self._upsert_one(spec, f.name, str(value), rid, body)

        return Response.json(200, self._each(records, all_or_none, op))

    def _collections_delete(self, req: Request, v: str) -> Response:
        _available(v, COLLECTIONS_SINCE)
        ids = [i for i in (req.param("ids") or "").split(",") if i]
        if not ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids: at least one id is required")
        if len(ids) > COLLECTION_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {COLLECTION_MAX} records into this call")
        all_or_none = (req.param("allOrNone") or "false").lower() == "true"

        def well_formed(rid: str) -> str | None:
            return to_18(rid) if is_id(rid) and self.data.find_object(rid) is not None else None

        def op(rid: str) -> dict[str, Any]:
            spec = self.data.find_object(rid) if well_formed(rid) else None
            if spec is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {rid}")
            row = self.data.delete(spec.name, rid)
            return {"id": row["Id"], "success": True, "errors": []}

        return Response.json(200, self._each(ids, all_or_none, op, failed_id=well_formed))

    def _collections_get(self, req: Request, v: str, obj: str) -> Response:
        _available(v, COLLECTIONS_SINCE)
        spec = self._spec(obj, v)
        if req.method == "POST":
            body = self._body_object(req)
            ids, fields = body.get("ids") or [], body.get("fields") or []
        else:
            ids = [i for i in (req.param("ids") or "").split(",") if i]
            fields = [f for f in (req.param("fields") or "").split(",") if f]
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields: at least one field is required")
        names = []
        for name in fields:
            f = spec.field(name)
            if f is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}")
            names.append(f.name)
        out: list[Any] = []
        for rid in ids:
            row = self.data.get(spec.name, rid)
            out.append(None if row is None else self._record_json(row, v, names))
        return Response.json(200, out)

    # ------------------------------------------------------------ composite

    def _composite(self, req: Request, v: str) -> Response:
        body = self._body_object(req)
        subs = body.get("compositeRequest")
        if not isinstance(subs, list) or not subs:
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest: a list of subrequests is required")
        if len(subs) > COMPOSITE_MAX_SUBREQUESTS:
            raise ApiError(400, "LIMIT_EXCEEDED", f"Composite request can contain at most {COMPOSITE_MAX_SUBREQUESTS} subrequests")
        heavy = sum(1 for s in subs if isinstance(s, dict) and re.search(r"/(query|queryAll|composite/sobjects)(/|\?|$)", str(s.get("url", ""))))
        if heavy > COMPOSITE_MAX_QUERIES:
            raise ApiError(400, "LIMIT_EXCEEDED", f"A composite request can contain at most {COMPOSITE_MAX_QUERIES} "
                           f"query or sObject Collections subrequests")
        ref_ids = [s.get("referenceId") for s in subs if isinstance(s, dict)]
        if len(ref_ids) != len(subs) or any(not isinstance(r, str) or not re.fullmatch(r"[A-Za-z0-9_]+", r) for r in ref_ids):
            raise ApiError(400, "INVALID_INPUT", "Each subrequest needs a referenceId of letters, digits and underscores")
        if len(set(ref_ids)) != len(ref_ids):
            raise ApiError(400, "DUPLICATE_VALUE", "Duplicate referenceId in the composite request")
        all_or_none = bool(body.get("allOrNone", False))
        results: list[dict[str, Any]] = []
        outputs: dict[str, Any] = {}
        with self.data.lock:
            try:
                with self.data.transaction():
                    failed = False
                    for sub in subs:
                        result = self._subrequest(sub, v, req, outputs)
                        results.append(result)
                        # A collections subrequest with a failed record fails an allOrNone composite too,
                        # whatever its own allOrNone says (it answers 200 with per-record errors).
                        if result["httpStatusCode"] >= 400 or result["partial"]:
                            failed = True
                            if all_or_none:
                                break
                    if failed and all_or_none:
                        raise _RollBack()
            except _RollBack:
                halted = [{"errorCode": "PROCESSING_HALTED",
                           "message": "The transaction was rolled back since another operation in the same "
                                      "transaction failed."}]
                done = {r["referenceId"]: r for r in results}
                results = []
                for sub in subs:
                    r = done.get(sub["referenceId"])
                    if r is not None and (r["httpStatusCode"] >= 400 or r["partial"]):
                        results.append(r)  # the failure itself is reported as it happened
                    else:
                        results.append({"body": halted, "httpHeaders": {}, "httpStatusCode": 400,
                                        "referenceId": sub["referenceId"]})
        return Response.json(200, {"compositeResponse": [
            {"body": Raw(r["body"]) if isinstance(r["body"], str) else r["body"], "httpHeaders": r["httpHeaders"],
             "httpStatusCode": r["httpStatusCode"], "referenceId": r["referenceId"]} for r in results]})

    def _composite_batch(self, req: Request, v: str) -> Response:
        """``/composite/batch``: up to 25 independent subrequests (any kind, queries
        included), one API call; no references, no transaction."""
        _available(v, BATCH_SINCE)
        body = self._body_object(req)
        subs = body.get("batchRequests")
        if not isinstance(subs, list) or not subs:
            raise ApiError(400, "JSON_PARSER_ERROR", "batchRequests: a list of subrequests is required")
        if len(subs) > COMPOSITE_MAX_SUBREQUESTS:
            raise ApiError(400, "LIMIT_EXCEEDED", f"A batch can contain at most {COMPOSITE_MAX_SUBREQUESTS} subrequests")
        halt = bool(body.get("haltOnError", False))
        results: list[dict[str, Any]] = []
        failed = False
        for sub in subs:
            if failed and halt:
                results.append({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED",
                                                               "message": "Batch processing halted per request"}]})
                continue
            if not isinstance(sub, dict) or not isinstance(sub.get("url"), str):
                raise ApiError(400, "JSON_PARSER_ERROR", "each batch request needs a method and a url")
            url = sub["url"] if sub["url"].startswith("/") else "/services/data/" + sub["url"]
            payload = sub.get("richInput")
            answer = self._subrequest({"referenceId": "batch", "method": sub.get("method", "GET"), "url": url,
                                       **({"body": payload} if payload is not None else {})}, v, req, {})
            failed = failed or answer["httpStatusCode"] >= 400
            result = answer["body"]
            results.append({"statusCode": answer["httpStatusCode"],
                            "result": Raw(result) if isinstance(result, str) else result})
        return Response.json(200, {"hasErrors": failed, "results": results})

    def _subrequest(self, sub: dict[str, Any], v: str, parent: Request, outputs: dict[str, Any]) -> dict[str, Any]:
        ref = sub["referenceId"]
        try:
            url = _resolve(str(sub.get("url", "")), outputs)
            body = _resolve(sub.get("body"), outputs)
        except _Unresolved as exc:
            result = {"body": [{"errorCode": "PROCESSING_HALTED", "message": str(exc)}], "httpHeaders": {},
                      "httpStatusCode": 400, "referenceId": ref, "partial": False}
            outputs[ref] = None
            return result
        method = str(sub.get("method", "GET")).upper()
        sub_req = Request.build(method, url, {**parent.headers, **{k.lower(): val for k, val in (sub.get("httpHeaders") or {}).items()}},
                                encode(body).encode() if body is not None else b"")
        m = _DATA.match(sub_req.path.rstrip("/"))
        if not m:
            resp = Response.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))
            endpoint = "unknown"
        else:
            try:
                endpoint, handler = self._route(method, sub_req.segments[3:])
                if endpoint in ("composite", "composite_batch"):
                    raise ApiError(400, "INVALID_INPUT", "composite requests can't be nested")
                self.controls.count(endpoint, sub=True)
                resp = handler(sub_req, m.group(1))
            except ApiError as err:
                resp = Response.error(err)
                endpoint = "error"
            except SoqlError as err:
                resp = Response.json(400, [{"message": err.message, "errorCode": err.error_code}])
        outputs[ref] = _Lazy(resp.body) if resp.status < 400 and resp.body else None
        partial = (endpoint in _COLLECTION_WRITES and resp.status == 200 and resp.body is not None
                   and any(not r.get("success") for r in loads(resp.body.encode())))
        return {"body": resp.body if resp.body is not None else None, "httpHeaders": {k: val for k, val in resp.headers.items() if k in ("Location", "Last-Modified")},
                "httpStatusCode": resp.status, "referenceId": ref, "partial": partial}


# The REST API's routes under /services/data/vNN.N/, one block per resource. Handlers are
# OrgApi methods taking (request, version, **placeholders); see routing.py for the matching.
DATA_ROUTES = RouteTable()
DATA_ROUTES.add(ANY, "", "resources", OrgApi._resources)
# query, queryAll and their locators (queryMore)
DATA_ROUTES.add("GET", "query", "query", OrgApi._query)
DATA_ROUTES.add("GET", "queryAll", "queryAll", OrgApi._query)
DATA_ROUTES.add("GET", "query/{token}", "query_more", OrgApi._query_more)
DATA_ROUTES.add("GET", "queryAll/{token}", "query_more", OrgApi._query_more)
# limits
DATA_ROUTES.add("GET", "limits", "limits", OrgApi._limits)
# composite and composite/batch
DATA_ROUTES.add("POST", "composite", "composite", OrgApi._composite)
DATA_ROUTES.add("POST", "composite/batch", "composite_batch", OrgApi._composite_batch)
# sObject Collections
DATA_ROUTES.add("POST", "composite/sobjects", "collections_create", OrgApi._collections_create)
DATA_ROUTES.add("PATCH", "composite/sobjects", "collections_update", OrgApi._collections_update)
DATA_ROUTES.add("DELETE", "composite/sobjects", "collections_delete", OrgApi._collections_delete)
DATA_ROUTES.add("GET", "composite/sobjects/{obj}", "collections_get", OrgApi._collections_get)
DATA_ROUTES.add("POST", "composite/sobjects/{obj}", "collections_get", OrgApi._collections_get)
DATA_ROUTES.add("PATCH", "composite/sobjects/{obj}/{fld}", "collections_upsert", OrgApi._collections_upsert)
# sobjects: describe global, basic info, describe, getDeleted / getUpdated
DATA_ROUTES.add("GET", "sobjects", "describe_global", OrgApi._describe_global)
DATA_ROUTES.add("GET", "sobjects/{obj}", "sobject_basic", OrgApi._sobject_basic)
DATA_ROUTES.add("GET", "sobjects/{obj}/describe", "describe", OrgApi._describe)
DATA_ROUTES.add("GET", "sobjects/{obj}/deleted", "get_deleted", partial(OrgApi._get_changed, kind="deleted"))
DATA_ROUTES.add("GET", "sobjects/{obj}/updated", "get_updated", partial(OrgApi._get_changed, kind="updated"))
# sobject rows: create, read, update, delete by id; read, upsert, delete by external id
DATA_ROUTES.add("POST", "sobjects/{obj}", "sobject_create", OrgApi._create)
DATA_ROUTES.add("GET", "sobjects/{obj}/{rid}", "sobject_get", OrgApi._retrieve)
DATA_ROUTES.add("PATCH", "sobjects/{obj}/{rid}", "sobject_update", OrgApi._update)
DATA_ROUTES.add("DELETE", "sobjects/{obj}/{rid}", "sobject_delete", OrgApi._delete)
DATA_ROUTES.add("GET", "sobjects/{obj}/{fld}/{value}", "sobject_get", OrgApi._retrieve_external)
DATA_ROUTES.add("PATCH", "sobjects/{obj}/{fld}/{value}", "sobject_upsert", OrgApi._upsert)
DATA_ROUTES.add("DELETE", "sobjects/{obj}/{fld}/{value}", "sobject_delete", OrgApi._delete_external)


def release_name(version: str) -> str:
    """The release that introduced an API version, as /services/data/ labels it: three
    releases a year (Spring, Summer, Winter of the next year), v60.0 being Spring '24."""
    i = int(float(version)) - 60
    season = ("Spring", "Summer", "Winter")[i % 3]
    year = 24 + i // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year:02d}"


def _available(version: str, since: float) -> None:
    """Resources newer than the request's API version don't exist there."""
    if float(version) < since:
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")


class _RollBack(Exception):
    pass


class _Lazy:
    """A subrequest's JSON body, parsed only if a later subrequest references it."""

    def __init__(self, text: str):
        self.text = text
        self._value: Any = None
        self._parsed = False

    def value(self) -> Any:
        if not self._parsed:
            self._value = loads(self.text.encode())
            self._parsed = True
        return self._value


class _Unresolved(Exception):
    pass


_REF = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}")


def _resolve(value: Any, outputs: dict[str, Any]) -> Any:
    """Replace ``@{refId.path}`` in strings (URLs and body values) with earlier results."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            ref, path = m.group(1), m.group(2)
            if ref not in outputs or outputs[ref] is None:
                raise _Unresolved(f"Invalid reference specified. No value for {ref}{path} found in {ref}. Provided "
                                  f"referenceId ('{ref}') must refer to a successful earlier subrequest.")
            node: Any = outputs[ref].value()
            for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
                try:
                    node = node[step[0]] if step[0] else node[int(step[1])]
                except (KeyError, IndexError, TypeError):
                    raise _Unresolved(f"Invalid reference specified. No value for {ref}{path} found in {ref}.") from None
            return str(node)
        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    return value
