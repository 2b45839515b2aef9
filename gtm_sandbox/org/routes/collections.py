"""``composite/sobjects``: sObject Collections (up to 200 records per call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.ids import is_id, to_18
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes.composite import RollBack
from gtm_sandbox.org.routes.versions import available_since
from gtm_sandbox.org.routing import RouteTable

COLLECTIONS_SINCE = 42.0  # sObject Collections appeared in API 42.0
COLLECTIONS_UPSERT_SINCE = 46.0  # ... their upsert, and the upsert "created" flag / 200 body, in 46.0
COLLECTION_MAX = 200
COLLECTION_MAX_CHUNKS = 10  # runs of consecutive records of one type in a create or update
COLLECTION_RETRIEVE_MAX = 2000  # ids per retrieve (a GET meets the 16,384-byte URI limit at about 800)


class CollectionRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    def _records(self, req: Request) -> tuple[list[Any], bool]:
        body = self._body_object(req)
        records = body.get("records")
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
        if len(records) > COLLECTION_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT",
                           f"record limit reached. cannot submit more than {COLLECTION_MAX} records into this call")
        chunks = _chunks(records)
        if chunks > COLLECTION_MAX_CHUNKS:
            # Documented: records of several types are processed in chunks, at most 10 a request.
            raise ApiError(400, "EXCEEDED_MAX_TYPES_LIMIT",
                           f"Cannot have more than {COLLECTION_MAX_CHUNKS} chunks in a single operation ({chunks} "
                           f"here). Please rearrange the data to reduce chunking.")
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
                        raise RollBack()
            except RollBack:
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                          "message": "Record rolled back because not all records were valid and the request was "
                                     "using AllOrNone header", "fields": []}
                results = [r if not r["success"] else
                           {**({} if creates or r.get("created") else {"id": r["id"]}), "success": False,
                            "errors": [rolled]}
                           for r in results]
        return results

    def _typed(self, rec: Any, version: str, expect: str | None = None) -> tuple[Any, dict[str, Any]]:
        if not isinstance(rec, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "each record must be an object")
        typ = (rec.get("attributes") or {}).get("type")
        if not typ:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        if expect and typ.lower() != expect.lower():
            raise ApiError(400, "INVALID_TYPE", f"Record type {typ} does not match the request's {expect}")
        # A type newer than the request's API version does not exist there (GTM objects).
        return self._spec(typ, version), {k: v for k, v in rec.items() if k != "attributes"}

    def _collections_create(self, req: Request, v: str) -> Response:
        available_since(v, COLLECTIONS_SINCE)
        records, all_or_none = self._records(req)

        def op(rec: Any) -> dict[str, Any]:
            spec, body = self._typed(rec, v)
            if any(k.lower() == "id" for k in body):
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return {"id": self.data.insert(spec.name, body)["Id"], "success": True, "errors": []}

        return Response.json(200, self._each(records, all_or_none, op, creates=True))

    def _collections_update(self, req: Request, v: str) -> Response:
        available_since(v, COLLECTIONS_SINCE)
        records, all_or_none = self._records(req)

        def op(rec: Any) -> dict[str, Any]:
            spec, body = self._typed(rec, v)
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
        available_since(v, COLLECTIONS_UPSERT_SINCE)
        records, all_or_none = self._records(req)
        spec = self._spec(obj, v)
        f = spec.field(fld)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {fld}")

        def op(rec: Any) -> dict[str, Any]:
            _, body = self._typed(rec, v, spec.name)
            value = next((val for k, val in body.items() if k.lower() == f.name.lower()), None)
            if value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
            _, rid = self._by_external(spec.name, f.name, str(value), v)
            return self._upsert_one(spec, f.name, str(value), rid, body)

        return Response.json(200, self._each(records, all_or_none, op))

    def _collections_delete(self, req: Request, v: str) -> Response:
        available_since(v, COLLECTIONS_SINCE)
        ids = [i for i in (req.param("ids") or "").split(",") if i]
        if not ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids: at least one id is required")
        if len(ids) > COLLECTION_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT",
                           f"record limit reached. cannot submit more than {COLLECTION_MAX} records into this call")
        all_or_none = (req.param("allOrNone") or "false").lower() == "true"

        def well_formed(rid: str) -> str | None:
            return to_18(rid) if is_id(rid) and self.data.find_object(rid) is not None else None

        def op(rid: str) -> dict[str, Any]:
            spec = self.data.find_object(rid) if well_formed(rid) else None
            if spec is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {rid}")
            self._spec(spec.name, v)  # its object must exist at the request's API version
            row = self.data.delete(spec.name, rid)
            return {"id": row["Id"], "success": True, "errors": []}

        return Response.json(200, self._each(ids, all_or_none, op, failed_id=well_formed))

    def _collections_get(self, req: Request, v: str, obj: str) -> Response:
        available_since(v, COLLECTIONS_SINCE)
        spec = self._spec(obj, v)
        if req.method == "POST":
            body = self._body_object(req)
            ids, fields = body.get("ids") or [], body.get("fields") or []
        else:
            ids = [i for i in (req.param("ids") or "").split(",") if i]
            fields = [f for f in (req.param("fields") or "").split(",") if f]
        if not ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids: at least one id is required")
        if len(ids) > COLLECTION_RETRIEVE_MAX:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot retrieve more than "
                                                     f"{COLLECTION_RETRIEVE_MAX} records in one call")
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


def _chunks(records: list[Any]) -> int:
    """Runs of consecutive records of one type: {a1, a2, c1, a3} is three chunks."""
    types = [str((r.get("attributes") or {}).get("type", "")).lower() if isinstance(r, dict) else "" for r in records]
    return sum(1 for i, t in enumerate(types) if i == 0 or t != types[i - 1])


def install(routes: RouteTable) -> None:
    routes.add("POST", "composite/sobjects", "collections_create", CollectionRoutes._collections_create)
    routes.add("PATCH", "composite/sobjects", "collections_update", CollectionRoutes._collections_update)
    routes.add("DELETE", "composite/sobjects", "collections_delete", CollectionRoutes._collections_delete)
    routes.add("GET", "composite/sobjects/{obj}", "collections_get", CollectionRoutes._collections_get)
    routes.add("POST", "composite/sobjects/{obj}", "collections_get", CollectionRoutes._collections_get)
    routes.add("PATCH", "composite/sobjects/{obj}/{fld}", "collections_upsert", CollectionRoutes._collections_upsert)
