"""``composite`` (up to 25 subrequests with references, allOrNone), ``composite/batch``
(up to 25 independent subrequests), ``composite/graph`` (graphs of composite subrequests,
each all or none) and ``composite/tree/{obj}`` (sObject Tree)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.jsonenc import Raw, encode, loads
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes.versions import DATA_PATH, SUPPORTED_VERSIONS, available_since
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.soql import SoqlError

BATCH_SINCE = 34.0  # /composite/batch appeared in API 34.0
GRAPH_SINCE = 50.0  # /composite/graph: API 50.0 and later
GRAPH_MAX_NODES = 500  # subrequests in one graph
COMPOSITE_MAX_SUBREQUESTS = 25
COMPOSITE_MAX_QUERIES = 5
_COLLECTION_WRITES = ("collections_create", "collections_update", "collections_upsert", "collections_delete")


class CompositeRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    def _composite(self, req: Request, v: str) -> Response:
        body = self._body_object(req)
        subs = body.get("compositeRequest")
        _check_composite(subs)
        results = self._run_composite(subs, bool(body.get("allOrNone", False)), v, req)
        return Response.json(200, {"compositeResponse": results})

    def _run_composite(self, subs: list[dict[str, Any]], all_or_none: bool, v: str,
                       req: Request) -> list[dict[str, Any]]:
        """A composite request's subrequests in one transaction, each result as
        compositeResponse lists it; all rolled back on a failure when ``all_or_none``."""
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
                        raise RollBack()
            except RollBack:
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
        return [{"body": Raw(r["body"]) if isinstance(r["body"], str) else r["body"], "httpHeaders": r["httpHeaders"],
                 "httpStatusCode": r["httpStatusCode"], "referenceId": r["referenceId"]} for r in results]

    def _composite_graph(self, req: Request, v: str) -> Response:
        """``composite/graph`` (API 50.0+): graphs of composite subrequests, each graph all
        or none on its own: ``{"graphs": [{"graphId", "graphResponse": {"compositeResponse"},
        "isSuccessful"}]}``."""
        available_since(v, GRAPH_SINCE)
        graphs = self._body_object(req).get("graphs")
        if not isinstance(graphs, list) or not graphs:
            raise ApiError(400, "JSON_PARSER_ERROR", "graphs: a list of graphs is required")
        ids = [g.get("graphId") if isinstance(g, dict) else None for g in graphs]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise ApiError(400, "INVALID_INPUT", "Each graph needs its own graphId")
        answers = []
        for graph in graphs:
            subs = graph.get("compositeRequest")
            if not isinstance(subs, list) or not subs or len(subs) > GRAPH_MAX_NODES:
                raise ApiError(400, "INVALID_INPUT", f"A graph holds 1 to {GRAPH_MAX_NODES} subrequests")
            _check_subrequests(subs)
            results = self._run_composite(subs, True, v, req)
            answers.append({"graphId": graph["graphId"], "graphResponse": {"compositeResponse": results},
                            "isSuccessful": all(r["httpStatusCode"] < 400 for r in results)})
        return Response.json(200, {"graphs": answers})

    def _composite_batch(self, req: Request, v: str) -> Response:
        """``/composite/batch``: up to 25 independent subrequests (any kind, queries
        included), one API call; no references, no transaction."""
        available_since(v, BATCH_SINCE)
        body = self._body_object(req)
        subs = body.get("batchRequests")
        if not isinstance(subs, list) or not subs:
            raise ApiError(400, "JSON_PARSER_ERROR", "batchRequests: a list of subrequests is required")
        if len(subs) > COMPOSITE_MAX_SUBREQUESTS:
            raise ApiError(400, "LIMIT_EXCEEDED",
                           f"A batch can contain at most {COMPOSITE_MAX_SUBREQUESTS} subrequests")
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
        headers = {**parent.headers, **{k.lower(): val for k, val in (sub.get("httpHeaders") or {}).items()}}
        sub_req = Request.build(method, url, headers, encode(body).encode() if body is not None else b"")
        m = DATA_PATH.match(sub_req.path.rstrip("/"))
        if not m or m.group(1) not in SUPPORTED_VERSIONS:  # as the same request on its own
            resp = Response.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))
            endpoint = "unknown"
        else:
            try:
                endpoint, handler = self._route(method, sub_req.segments[3:])
                if endpoint in ("composite", "composite_batch", "composite_graph"):
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
        kept = {k: val for k, val in resp.headers.items() if k in ("Location", "Last-Modified")}
        return {"body": resp.body if resp.body is not None else None, "httpHeaders": kept,
                "httpStatusCode": resp.status, "referenceId": ref, "partial": partial}


def install(routes: RouteTable) -> None:
    routes.add("POST", "composite", "composite", CompositeRoutes._composite)
    routes.add("POST", "composite/batch", "composite_batch", CompositeRoutes._composite_batch)
    routes.add("POST", "composite/graph", "composite_graph", CompositeRoutes._composite_graph)
    routes.add("POST", "composite/tree/{obj}", "composite_tree", TreeRoutes._tree)


class RollBack(Exception):
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
                    raise _Unresolved(
                        f"Invalid reference specified. No value for {ref}{path} found in {ref}.") from None
            return str(node)
        return _REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    return value


_HEAVY_SUBREQUEST = re.compile(r"/(query|queryAll|composite/sobjects)(/|\?|$)")


def _check_composite(subs: Any) -> None:
    """A composite request's shape, as Salesforce checks it before running anything: a list
    of at most 25 subrequests, at most 5 of them queries or sObject Collections, each with
    its own referenceId of letters, digits and underscores."""
    if not isinstance(subs, list) or not subs:
        raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest: a list of subrequests is required")
    if len(subs) > COMPOSITE_MAX_SUBREQUESTS:
        raise ApiError(400, "LIMIT_EXCEEDED",
                       f"Composite request can contain at most {COMPOSITE_MAX_SUBREQUESTS} subrequests")
    heavy = sum(1 for s in subs if isinstance(s, dict) and _HEAVY_SUBREQUEST.search(str(s.get("url", ""))))
    if heavy > COMPOSITE_MAX_QUERIES:
        raise ApiError(400, "LIMIT_EXCEEDED", f"A composite request can contain at most {COMPOSITE_MAX_QUERIES} "
                       f"query or sObject Collections subrequests")
    _check_subrequests(subs)


def _check_subrequests(subs: list[Any]) -> None:
    """What composite and graph subrequests share: a referenceId each, unique, and
    httpHeaders, when given, an object of strings (JSON the API couldn't deserialize)."""
    for sub in subs:
        headers = sub.get("httpHeaders") if isinstance(sub, dict) else None
        if headers is not None and not (isinstance(headers, dict)
                                        and all(isinstance(v, str) for v in headers.values())):
            raise ApiError(400, "JSON_PARSER_ERROR", "httpHeaders must be an object of header names and string values")
    ref_ids = [s.get("referenceId") for s in subs if isinstance(s, dict)]
    if len(ref_ids) != len(subs) or any(not isinstance(r, str) or not re.fullmatch(r"[A-Za-z0-9_]+", r)
                                        for r in ref_ids):
        raise ApiError(400, "INVALID_INPUT", "Each subrequest needs a referenceId of letters, digits and underscores")
    if len(set(ref_ids)) != len(ref_ids):
        raise ApiError(400, "DUPLICATE_VALUE", "Duplicate referenceId in the composite request")


TREE_SINCE = 42.0  # sObject Tree: API 42.0 and later
TREE_MAX_RECORDS = 200  # across all trees of a request
TREE_MAX_TYPES = 5
TREE_MAX_DEPTH = 5
_REFERENCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")


@dataclass
class _TreeRecord:
    spec: Any
    fields: dict[str, Any]
    ref: str
    parent: tuple[str, str] | None  # (the reference field naming the parent, the parent's referenceId)


class TreeRoutes:
    """``composite/tree/{obj}``: sObject Tree, mixed into ``OrgApi``."""

    def _tree(self, req: Request, v: str, obj: str) -> Response:
        """Create record trees rooted at ``obj``, all or none: 201 with each record's
        referenceId and id, level by level (roots first), or 400 with the failed record's
        referenceId and errors, nothing created. A record's children go under a child
        relationship name of its object's describe, as ``{"records": [...]}``."""
        available_since(v, TREE_SINCE)
        root = self._spec(obj, v)
        records = self._body_object(req).get("records")
        if not isinstance(records, list) or not records:
            raise ApiError(400, "JSON_PARSER_ERROR", "records: a list of sObject trees is required")
        levels = self._tree_levels(records, root.name, v)
        refs = [r.ref for level in levels for r in level]
        if len(refs) > TREE_MAX_RECORDS or len({r.spec.name for level in levels for r in level}) > TREE_MAX_TYPES:
            raise ApiError(400, "LIMIT_EXCEEDED", f"An sObject Tree request takes at most {TREE_MAX_RECORDS} records "
                                                  f"of at most {TREE_MAX_TYPES} types")
        duplicates = {r for r in refs if refs.count(r) > 1}
        if duplicates:  # one result for each instance of a duplicate referenceId
            return Response.json(400, {"hasErrors": True, "results": [
                {"referenceId": r, "errors": [{"statusCode": "INVALID_INPUT", "message": "Duplicate ReferenceId "
                                               "provided in the request", "fields": []}]}
                for r in refs if r in duplicates]})
        ids: dict[str, str] = {}
        results = []
        with self.data.lock:
            try:
                with self.data.transaction():
                    for record in (r for level in levels for r in level):
                        ids[record.ref] = self._tree_insert(record, ids)
                        results.append({"referenceId": record.ref, "id": ids[record.ref]})
            except _TreeFailed as failed:
                return Response.json(400, {"hasErrors": True, "results": [
                    {"referenceId": failed.ref, "errors": [failed.err.record_error()]}]})
        return Response.json(201, {"hasErrors": False, "results": results})

    def _tree_levels(self, records: list[Any], root: str, v: str) -> list[list[_TreeRecord]]:
        """The request's records breadth first (every root, then every second-level record
        ...), each checked for its attributes, type and depth."""
        levels: list[list[_TreeRecord]] = []
        pending: list[tuple[Any, tuple[str, str] | None, int, str]] = [(r, None, 0, root) for r in records]
        while pending:
            rec, parent, depth, expected = pending.pop(0)
            attributes = rec.get("attributes") if isinstance(rec, dict) else None
            if not isinstance(attributes, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "each record needs attributes with type and referenceId")
            ref = attributes.get("referenceId")
            if not isinstance(ref, str) or not _REFERENCE_ID.fullmatch(ref):
                raise ApiError(400, "INVALID_INPUT", "referenceId must start with a letter or digit and hold only "
                                                     "letters, digits and underscores")
            spec = self._spec(str(attributes.get("type", "")), v)
            if spec.name != expected or depth >= TREE_MAX_DEPTH:
                raise ApiError(400, "INVALID_INPUT", f"Record {ref}: a {expected} at most {TREE_MAX_DEPTH} levels "
                                                     f"deep is expected there, not a {spec.name}")
            fields: dict[str, Any] = {}
            for key, value in rec.items():
                if isinstance(value, dict) and "records" in value:
                    child, fk = _child_relationship(spec, key, v)
                    pending.extend((c, (fk, ref), depth + 1, child) for c in value.get("records") or [])
                elif key != "attributes":
                    fields[key] = value
            while len(levels) <= depth:
                levels.append([])
            levels[depth].append(_TreeRecord(spec, fields, ref, parent))
        return levels

    def _tree_insert(self, record: _TreeRecord, ids: dict[str, str]) -> str:
        values = dict(record.fields)
        if record.parent is not None:
            values[record.parent[0]] = ids[record.parent[1]]
        try:
            if any(k.lower() == "id" for k in values):
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return str(self.data.insert(record.spec.name, values)["Id"])
        except ApiError as err:
            raise _TreeFailed(record.ref, err) from None


class _TreeFailed(Exception):
    def __init__(self, ref: str, err: ApiError):
        super().__init__(err.message)
        self.ref = ref
        self.err = err


def _child_relationship(spec: Any, name: str, version: str) -> tuple[str, str]:
    """(child object, its reference field) of ``spec``'s child relationship ``name``, as its
    describe's childRelationships list them."""
    for rel in spec.describe(version).get("childRelationships", []):
        if str(rel.get("relationshipName", "")).lower() == name.lower():
            return str(rel["childSObject"]), str(rel["field"])
    raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}")
