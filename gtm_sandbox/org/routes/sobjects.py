"""``sobjects``: describe global, basic info, describe, getDeleted / getUpdated, and rows:
create, read, update, delete by id; read, upsert, delete by external id (and create by a
POST to the ``Id`` external ID); read, update, delete a record's parent through a
child-to-parent relationship (sObject Relationships)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import partial
from typing import Any

from gtm_sandbox.org.data import ApiError, Row
from gtm_sandbox.org.ids import format_stamp, parse_stamp
from gtm_sandbox.org.jsonenc import Raw, record_encoder
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes.collections import COLLECTION_MAX, COLLECTIONS_UPSERT_SINCE
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.xmlread import is_xml, parse_record

RELATIONSHIPS_SINCE = 36.0  # sObject Relationships: API 36.0 and later


class SObjectRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

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
        when = _http_date(req.headers.get("if-modified-since"))
        if when is not None and self.data.schema.last_modified <= when:
            return Response(304, None, self._last_modified())
        return None

    def _record_precondition(self, req: Request, row: Row) -> Response | None:
        """The weak conditional headers on a record (REST API, Conditional Request Headers),
        compared with its LastModifiedDate at the HTTP date's whole seconds: If-Unmodified-
        Since (GET, PATCH) answers 412 when the record changed after it, If-Modified-Since
        (GET) 304 when it didn't; None to go on. An invalid If-Unmodified-Since on a PATCH
        is a 400 (elsewhere an unreadable date is ignored, as HTTP has it)."""
        modified = parse_stamp(row["LastModifiedDate"]).replace(microsecond=0)
        unmodified_since = _http_date(req.headers.get("if-unmodified-since"))
        if unmodified_since is None and req.headers.get("if-unmodified-since") and req.method == "PATCH":
            raise ApiError(400, "INVALID_HEADER_VALUE", "If-Unmodified-Since: not a valid HTTP date (EEE, dd MMM "
                                                        "yyyy HH:mm:ss z)")
        if unmodified_since is not None and modified > unmodified_since:
            return Response.json(412, [{"message": f"The record was modified at {row['LastModifiedDate']}, after "
                                                   f"If-Unmodified-Since", "errorCode": "PRECONDITION_FAILED"}])
        modified_since = _http_date(req.headers.get("if-modified-since")) if req.method == "GET" else None
        if modified_since is not None and modified <= modified_since:
            return Response(304, None)
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
        return self._record_precondition(req, row) or Response(200, self._record_json(row, v,
                                                                                        self._fields_param(req, obj)))

    def _by_external(self, obj: str, fld: str, value: str, version: str) -> tuple[Any, str | None]:
        spec = self._spec(obj, version)
        f = spec.field(fld)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {fld}")
        if f.name == "Id":
            row = self.data.get(spec.name, value)
            return spec, row["Id"] if row else None
        return spec, self.data.find_external(spec.name, f.name, value)

    def _parent_by_relationship(self, obj: str, rid: str, rel: str, version: str) -> tuple[Any, Row] | None:
        """sObject Relationships (API 36.0+): ``sobjects/X/{id}/{relationship}`` names the
        parent a child-to-parent relationship of record ``id`` points to: (its object, its
        row); 404 when the record or the parent is missing; None when ``rid`` isn't an id of
        ``obj`` or ``rel`` isn't one of its relationships (the path is then by external ID)."""
        spec = self._spec(obj, version)
        if spec.field(rid) is not None or float(version) < RELATIONSHIPS_SINCE:
            return None
        ref = next((f for f in spec.fields.values() if f.relationship_name is not None
                    and f.relationship_name.lower() == rel.lower() and len(f.reference_to) == 1), None)
        target = self.data.schema.get(ref.reference_to[0], version) if ref is not None else None
        if ref is None or target is None:
            return None
        row = self.data.get(spec.name, rid)
        parent = self.data.get(target.name, row[ref.name]) if row is not None and row.get(ref.name) else None
        if parent is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return target, parent

    def _retrieve_external(self, req: Request, v: str, obj: str, fld: str, value: str) -> Response:
        related = self._parent_by_relationship(obj, fld, value, v)
        if related is not None:
            target, parent = related
            return Response(200, self._record_json(parent, v, self._fields_param(req, target.name)))
        spec, rid = self._by_external(obj, fld, value, v)
        if rid is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return Response(200, self._record_json(self.data.get(spec.name, rid), v, self._fields_param(req, obj)))  # type: ignore[arg-type]

    def _body_object(self, req: Request) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from a non-object value")
        return body

    def _record_body(self, req: Request, spec: Any) -> dict[str, Any]:
        """A record to write from the body: JSON, or XML under an XML Content-Type."""
        if is_xml(req.headers.get("content-type")) and req.body:
            return parse_record(req.body, spec)
        return self._body_object(req)

    def _create(self, req: Request, v: str, obj: str) -> Response:
        spec = self._spec(obj, v)
        body = self._record_body(req, spec)
        if any(k.lower() == "id" for k in body):
            raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check "
                           "the security settings of this field and verify that it is read/write for your profile "
                           "or permission set.", ["Id"])
        row = self.data.insert(spec.name, body)
        return Response.json(201, {"id": row["Id"], "success": True, "errors": []},
                             {"Location": f"/services/data/v{v}/sobjects/{spec.name}/{row['Id']}"})

    def _create_by_id(self, req: Request, v: str, obj: str, fld: str) -> Response:
        """``POST sobjects/X/Id`` (API v37.0+): a create, Id taken as the external ID field
        with a null value (the route takes no other field)."""
        return self._create(req, v, obj)

    def _update(self, req: Request, v: str, obj: str, rid: str) -> Response:
        spec = self._spec(obj, v)
        body = self._record_body(req, spec)
        if any(k.lower() == "id" for k in body):  # the URL names the record (collections carry it instead)
            raise ApiError(400, "INVALID_FIELD", "The Id field should not be specified in the sobject data.")
        with self.data.lock:  # the check and the write as one step
            row = self.data.get(spec.name, rid)
            failed = self._record_precondition(req, row) if row is not None else None
            if failed is not None:
                return failed
            self.data.update(spec.name, rid, body)
        return Response(204)

    def _delete(self, req: Request, v: str, obj: str, rid: str) -> Response:
        spec = self._spec(obj, v)
        self.data.delete(spec.name, rid)
        return Response(204)

    def _delete_external(self, req: Request, v: str, obj: str, fld: str, value: str) -> Response:
        related = self._parent_by_relationship(obj, fld, value, v)
        if related is not None:
            target, parent = related
            return self._delete(req, v, target.name, parent["Id"])
        spec, rid = self._by_external(obj, fld, value, v)
        if rid is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        self.data.delete(spec.name, rid)
        return Response(204)

    def _upsert(self, req: Request, v: str, obj: str, fld: str, value: str) -> Response:
        related = self._parent_by_relationship(obj, fld, value, v)
        if related is not None:  # an update of the parent, as a PATCH to its own URL
            target, parent = related
            return self._update(req, v, target.name, parent["Id"])
        spec, rid = self._by_external(obj, fld, value, v)
        body = self._record_body(req, spec)
        # The URL names the record: the docs say an Id or external ID field in the body is an
        # error (a collections upsert, whose records carry it, goes to _upsert_one directly).
        named = [k for k in body if k.lower() in ("id", spec.field(fld).name.lower())]
        if named:
            raise ApiError(400, "INVALID_FIELD", f"{', '.join(named)}: do not specify Id or the external ID field "
                           f"in the body of an upsert by external ID; the URL names the record", named)
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
        try:  # the API ignores the seconds of both (12:30:15 is 12:30:00 UTC)
            lo, hi = (format_stamp(parse_stamp(t).astimezone(UTC).replace(second=0, microsecond=0))
                      for t in (start, end))
        except ValueError:
            raise ApiError(400, "INVALID_DATE_FORMAT", f"Invalid date format: {start} / {end}") from None
        with self.data.lock:
            rows = [r for r in self.data.tables[spec.name].rows.values() if lo <= r["SystemModstamp"] <= hi]
        if kind == "deleted":
            deleted = [{"id": r["Id"], "deletedDate": r["SystemModstamp"]} for r in rows if r["IsDeleted"]]
            earliest = min((r["SystemModstamp"] for r in self.data.tables[spec.name].rows.values()), default=lo)
            return Response.json(200, {"deletedRecords": deleted, "earliestDateAvailable": earliest,
                                       "latestDateCovered": hi})
        return Response.json(200, {"ids": [r["Id"] for r in rows if not r["IsDeleted"]], "latestDateCovered": hi})


def install(routes: RouteTable) -> None:
    routes.add("GET", "sobjects", "describe_global", SObjectRoutes._describe_global)
    routes.add("GET", "sobjects/{obj}", "sobject_basic", SObjectRoutes._sobject_basic)
    routes.add("GET", "sobjects/{obj}/describe", "describe", SObjectRoutes._describe)
    routes.add("GET", "sobjects/{obj}/deleted", "get_deleted", partial(SObjectRoutes._get_changed, kind="deleted"))
    routes.add("GET", "sobjects/{obj}/updated", "get_updated", partial(SObjectRoutes._get_changed, kind="updated"))
    routes.add("POST", "sobjects/{obj}", "sobject_create", SObjectRoutes._create)
    # POST to a record's URL is not allowed (405), to the Id external ID field a create.
    routes.add("POST", "sobjects/{obj}/{fld}", "sobject_create", SObjectRoutes._create_by_id,
               when=lambda params: params["fld"].lower() == "id")
    routes.add("GET", "sobjects/{obj}/{rid}", "sobject_get", SObjectRoutes._retrieve)
    routes.add("PATCH", "sobjects/{obj}/{rid}", "sobject_update", SObjectRoutes._update)
    routes.add("DELETE", "sobjects/{obj}/{rid}", "sobject_delete", SObjectRoutes._delete)
    routes.add("GET", "sobjects/{obj}/{fld}/{value}", "sobject_get", SObjectRoutes._retrieve_external)
    routes.add("PATCH", "sobjects/{obj}/{fld}/{value}", "sobject_upsert", SObjectRoutes._upsert)
    routes.add("DELETE", "sobjects/{obj}/{fld}/{value}", "sobject_delete", SObjectRoutes._delete_external)


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date header (``EEE, dd MMM yyyy HH:mm:ss z``) as an aware datetime, or None."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
