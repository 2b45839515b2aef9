"""The sandbox org's REST API, independent of the HTTP server: ``OrgApi.handle(request)``.

Resources (under ``/services/data/vXX.X/``): ``query``, ``queryAll`` and query locators,
``sobjects`` (describe global, describe, CRUD, upsert by external id, getDeleted /
getUpdated), ``limits``, ``composite`` (25 subrequests, at most 5 queries or
collections, references, allOrNone), ``composite/sobjects`` collections, ``composite/tree``
(sObject Tree), ``search`` and ``parameterizedSearch`` (SOSL) and Bulk API 2.0 query and
ingest jobs (``jobs/query``, ``jobs/ingest``). Plus ``/services/oauth2/token``,
``/services/oauth2/revoke``, ``/services/oauth2/userinfo``, the identity URL
(``/id/{org}/{user}``) and ``/services/data/`` (versions).

Routing is a table, ``DATA_ROUTES`` (method + segment template -> endpoint name and handler;
see ``routing.py``), filled by the resource modules in ``routes/``, each holding its
handlers and registering their routes. Every API request is counted per endpoint, may be
delayed or failed by fault rules, is checked against the session store and the daily
request limit, and answers with
``Sforce-Limit-Info: api-usage=N/M``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gtm_sandbox.org.auth import ConnectedApp, Sessions
from gtm_sandbox.org.data import ApiError, OrgData
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes import bulk as bulk_routes
from gtm_sandbox.org.routes import collections as collection_routes
from gtm_sandbox.org.routes import composite as composite_routes
from gtm_sandbox.org.routes import ingest as ingest_routes
from gtm_sandbox.org.routes import limits as limits_routes
from gtm_sandbox.org.routes import query as query_routes
from gtm_sandbox.org.routes import search as search_routes
from gtm_sandbox.org.routes import sobjects as sobject_routes
from gtm_sandbox.org.routes import versions as versions_routes
from gtm_sandbox.org.routes.auth import AuthRoutes, UserInfoRoutes
from gtm_sandbox.org.routes.bulk import BulkJobs, BulkRoutes
from gtm_sandbox.org.routes.collections import CollectionRoutes
from gtm_sandbox.org.routes.composite import CompositeRoutes, TreeRoutes
from gtm_sandbox.org.routes.ingest import IngestRoutes
from gtm_sandbox.org.routes.limits import LimitsRoutes
from gtm_sandbox.org.routes.query import Locator, QueryRoutes
from gtm_sandbox.org.routes.search import SearchRoutes
from gtm_sandbox.org.routes.sobjects import SObjectRoutes
from gtm_sandbox.org.routes.versions import DATA_PATH, SUPPORTED_VERSIONS, VersionsRoutes
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.soql import SoqlError

__all__ = ["DATA_ROUTES", "Controls", "FaultRule", "OrgApi", "Request", "Response"]


# Outside /services/data/vNN.N: not API calls.
_NOT_API_CALLS = ("oauth_token", "oauth_revoke", "oauth_userinfo", "versions", "identity")


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
        return sum(n for name, n in self.calls.items() if name not in _NOT_API_CALLS)


class OrgApi(AuthRoutes, UserInfoRoutes, VersionsRoutes, QueryRoutes, LimitsRoutes, SObjectRoutes,
             CollectionRoutes, CompositeRoutes, TreeRoutes, BulkRoutes, IngestRoutes, SearchRoutes):
    """The API: state, the entry point and routing here; the handlers, one module per
    resource, in ``routes/``."""

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
        self.bulk = BulkJobs()  # Bulk API 2.0 query jobs (routes/bulk.py)

    # ------------------------------------------------------------ entry point

    def handle(self, req: Request) -> Response:
        if req.path.rstrip("/") == "/services/oauth2/token":
            return self._with_controls("oauth_token", req, self._token, api=False)
        if req.path.rstrip("/") == "/services/oauth2/revoke":
            return self._with_controls("oauth_revoke", req, self._revoke, api=False)
        if req.path.rstrip("/") == "/services/oauth2/userinfo":
            return self._with_controls("oauth_userinfo", req, self._userinfo, api=False)
        if req.path.startswith("/id/"):
            return self._with_controls("identity", req, self._identity, api=False)
        if req.path.rstrip("/") == "/services/data":
            return self._with_controls("versions", req, self._versions, api=False)
        m = DATA_PATH.match(req.path.rstrip("/"))
        if not m:
            return Response.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))
        version = m.group(1)
        if version not in SUPPORTED_VERSIONS:
            return Response.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))
        override = req.param("_HttpMethod")
        if req.method == "POST" and override:
            # Update a Record: a client that can't send PATCH POSTs with ?_HttpMethod=PATCH.
            req.method = override.upper()
        elif req.method == "HEAD":
            req.method = "GET"  # answered as GET; the server sends no body
        try:
            endpoint, handler = self._route(req.method, req.segments[3:])  # after services/data/vNN.N
        except ApiError as err:
            return Response.error(err)
        return self._with_controls(endpoint, req, lambda r: _unsupported_media(r) or handler(r, version), api=True)

    def _with_controls(
        self, endpoint: str, req: Request, handler: Callable[[Request], Response], *, api: bool
    ) -> Response:
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
        scheme = token.lower()
        token = token[7:] if scheme.startswith("bearer ") else token[6:] if scheme.startswith("oauth ") else ""
        if not token or not self.sessions.valid(token):
            return Response.json(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        allowed, used, limit = c.use_api()
        if not allowed:
            resp = Response.json(403, [{"message": "TotalRequests Limit exceeded.",
                                        "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
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
            allowed = DATA_ROUTES.allowed(parts)
            if allowed:
                raise ApiError(405, "METHOD_NOT_ALLOWED",
                               f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}",
                               headers={"Allow": ", ".join(allowed)})
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        route, params = found
        return route.endpoint, lambda r, v: route.handler(self, r, v, **params)


_READABLE = ("application/xml", "text/xml", "text/csv")  # XML as a real org reads it; CSV: Bulk API 2.0 uploads


def _unsupported_media(req: Request) -> Response | None:
    """Status Codes and Error Responses: a 415 when the request's entity is in a format the
    method doesn't take. The org reads JSON, and XML record bodies on the sObject resources
    (``xmlread.py``; elsewhere XML gets as far as the JSON parser). Curl's ``-d`` sends a
    form, a common slip."""
    if not req.body or req.method not in ("POST", "PATCH", "PUT"):
        return None
    media = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media or media == "application/json" or media.endswith("+json") or media in _READABLE:
        return None
    return Response.error(ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                                   f"Content-Type header specified in HTTP request is not supported: {media}"))


# The REST API's routes under /services/data/vNN.N/: each resource module registers its own.
DATA_ROUTES = RouteTable()
for _resource in (versions_routes, query_routes, limits_routes, composite_routes, collection_routes, sobject_routes,
                  bulk_routes, ingest_routes, search_routes):
    _resource.install(DATA_ROUTES)
