"""The Salesforce adapter: OAuth, then simple-salesforce for the REST calls.

``SalesforceOrg`` is the one object services use to talk to an org (through the ports
they declare). It

* authenticates itself (JWT bearer, client credentials, or username-password for
  sandboxes) against the configured login URL with a ``requests`` session that honours
  the configured CA bundle, then builds ``simple_salesforce.Salesforce`` from the
  instance URL and access token;
* streams query results page by page (``query_pages`` is a generator that follows
  ``nextRecordsUrl``, one page fetched ahead while the caller stores the current one;
  nothing more is materialised), batches queries into composite calls
  (at most 5 per call, Salesforce's limit) and writes with sObject Collections in chunks
  of 200 with ``allOrNone=false``, per-record errors returned as data;
* re-authenticates once on 401 ``INVALID_SESSION_ID`` and repeats the call (also in the
  middle of a pagination: the query locator outlives the session);
* reads ``Sforce-Limit-Info`` from every response and refuses to make a call once the
  org's daily usage reaches ``budget_percent`` of its limit (``ApiLimitReached``), as it
  does for 403 ``REQUEST_LIMIT_EXCEEDED``;
* translates every failure at this edge: 5xx, 429, timeouts, connection errors and
  ``UNABLE_TO_LOCK_ROW`` -> ``TransientError`` retried by ``connector.retry``; other 4xx
  -> ``SalesforceApiError`` (a ``PermanentError`` carrying the errorCode); refused
  credentials -> ``AuthError``. Nothing above this module sees a requests or
  simple-salesforce exception.
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote_plus, urlsplit

import requests
import structlog
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from connector.adapters.network import connection_cause
from connector.errors import ApiLimitReached, AuthError, ConfigError, OutcomeUnknown, PermanentError, TransientError
from connector.retry import retrying

if TYPE_CHECKING:
    from connector.config import OrgConfig

T = TypeVar("T")
COLLECTION_CHUNK = 200
BATCH_LIMIT = 25  # subrequests per /composite/batch call
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
_TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT"})


class SalesforceApiError(PermanentError):
    """Salesforce refused a request (4xx other than auth and limits): retrying won't help."""

    def __init__(self, message: str, *, error_code: str, status: int | None = None):
        super().__init__(message)
        self.error_code = error_code
        self.status = status


# ---------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class ApiUsage:
    """The org's daily API request usage as last reported in ``Sforce-Limit-Info``."""

    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit if self.limit else 100.0


@dataclass(frozen=True)
class Page:
    """One page of a query: records without their ``attributes`` block."""

    records: list[dict[str, Any]]
    total_size: int
    done: bool
    number: int  # 1-based


@dataclass(frozen=True)
class QueryResult:
    """A query answered inside a composite call (first page only), or its error."""

    records: list[dict[str, Any]]
    total_size: int
    done: bool
    next_records_url: str | None = None
    error_code: str | None = None
    message: str = ""


@dataclass(frozen=True)
class RecordErrorDetail:
    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record of a collections call, in request order."""

    index: int
    id: str | None
    success: bool
    created: bool | None = None
    errors: tuple[RecordErrorDetail, ...] = ()

    @property
    def error_code(self) -> str | None:
        return self.errors[0].code if self.errors else None

    @property
    def message(self) -> str:
        return "; ".join(f"{e.code}: {e.message}" for e in self.errors)


@dataclass(frozen=True)
class SubResult:
    """One subrequest result of a composite call."""

    reference_id: str
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)  # httpHeaders (Location, Last-Modified)

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def error_code(self) -> str | None:
        if self.ok:
            return None
        if isinstance(self.body, list) and self.body and isinstance(self.body[0], dict):
            return str(self.body[0].get("errorCode"))
        return "UNKNOWN"

    @property
    def message(self) -> str:
        if isinstance(self.body, list) and self.body and isinstance(self.body[0], dict):
            return str(self.body[0].get("message", ""))
        return ""


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    instance_url: str


# ---------------------------------------------------------------------------- HTTP session


class _Session(requests.Session):
    """A requests session whose own ``verify`` wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
    (requests lets the environment override ``session.verify``), with a default timeout,
    and that counts API calls and reads ``Sforce-Limit-Info`` off every response."""

    def __init__(self, ca_bundle: Path | None, timeout_s: float, on_response: Callable[[requests.Response], None]):
        super().__init__()
        if ca_bundle is not None:
            self.verify = str(ca_bundle)
        self._timeout_s = timeout_s
        self.hooks["response"].append(lambda resp, *a, **kw: on_response(resp))

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout_s)
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


# ---------------------------------------------------------------------------- the adapter


@dataclass(frozen=True)
class SalesforceSettings:
    login_url: str
    auth: Any  # connector.config JwtBearer | ClientCredentials | Password
    api_version: str = "66.0"
    ca_bundle: Path | None = None
    timeout_seconds: float = 60.0
    budget_percent: int = 80
    page_size: int = 2000
    org_alias: str = ""
    retry_attempts: int = 5
    retry_max_wait_s: float = 30.0
    # Once the budget is spent, one call per this many seconds may go out to re-read the
    # usage: the daily limit is a rolling 24 h window, so a daemon must notice it freeing up.
    budget_recheck_seconds: float = 900.0


class SalesforceOrg:
    """The connector's gateway to one org. Not thread-safe: one per org per run/worker."""

    def __init__(self, settings: SalesforceSettings, *, log: Any = None):
        self.settings = settings
        self._log = log or structlog.get_logger("connector.salesforce").bind(org=settings.org_alias)
        self._lock = threading.Lock()
        self._calls = 0
        self._usage: ApiUsage | None = None
        self._usage_at = 0.0
        self._session = _Session(settings.ca_bundle, settings.timeout_seconds, self._on_response)
        self._sf: Salesforce | None = None
        self._primed: dict[tuple[str, bool], QueryResult] = {}
        self.reauthentications = 0

    # -------------------------------------------------------------- counters

    @property
    def api_calls(self) -> int:
        """REST API calls made (responses received from ``/services/data``), retries included."""
        return self._calls

    @property
    def api_usage(self) -> ApiUsage | None:
        return self._usage

    def _on_response(self, resp: requests.Response) -> None:
        path = urlsplit(resp.url).path
        if not path.startswith("/services/data"):
            return
        with self._lock:
            self._calls += 1
        info = resp.headers.get("Sforce-Limit-Info")
        usage = parse_limit_info(info) if info else None
        if usage is not None:
            self._usage = usage
            self._usage_at = time.monotonic()

    def close(self) -> None:
        self._session.close()

    # -------------------------------------------------------------- authentication

    def authenticate(self) -> Token:
        """Get a fresh access token (and instance URL) with the configured OAuth flow."""
        token = call(lambda: self._token(), "oauth.token", self.settings)
        self._sf = Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=self._session,
            version=self.settings.api_version,
            parse_float=Decimal,
            # No hook: the json module's C scanner builds the dicts itself (simple_salesforce's
            # default, OrderedDict, or even dict given as a hook cost a third more per record).
            object_pairs_hook=None,
        )
        self._log.info("salesforce.authenticated", flow=self.settings.auth.kind, instance_url=token.instance_url)
        return token

    def _token(self) -> Token:
        auth = self.settings.auth
        form: dict[str, str]
        if auth.kind == "jwt_bearer":
            form = {"grant_type": JWT_GRANT, "assertion": self._assertion()}
        elif auth.kind == "client_credentials":
            form = {"grant_type": "client_credentials", "client_id": auth.client_id,
                    "client_secret": auth.client_secret.get_secret_value()}
        elif auth.kind == "password":
            form = {"grant_type": "password", "client_id": auth.client_id, "username": auth.username,
                    "password": auth.password.get_secret_value()}
            if auth.client_secret is not None:
                form["client_secret"] = auth.client_secret.get_secret_value()
        else:
            raise ConfigError(f"salesforce.auth.kind: unsupported flow {auth.kind!r}")
        url = self.settings.login_url.rstrip("/") + "/services/oauth2/token"
        try:
            resp = self._session.post(url, data=form, headers={"Accept": "application/json"})
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"OAuth token request to {self.settings.login_url} failed: "
                                 f"{_unreachable(exc)}") from None
        except requests.RequestException as exc:
            raise PermanentError(f"OAuth token request to {self.settings.login_url} failed: "
                                 f"{_unreachable(exc)}") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"OAuth token endpoint answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise TransientError(f"OAuth token endpoint answered HTTP {resp.status_code} without JSON") from None
        if resp.status_code != 200 or "access_token" not in body:
            raise AuthError(
                f"Salesforce refused the {auth.kind} login for client {getattr(auth, 'client_id', '?')}: "
                f"{body.get('error', resp.status_code)}: {body.get('error_description', '')}".rstrip(": ")
            )
        return Token(str(body["access_token"]), str(body["instance_url"]))

    def _assertion(self) -> str:
        auth = self.settings.auth
        try:
            key = Path(auth.private_key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"salesforce.auth.private_key_file: cannot read {auth.private_key_file}: {exc.strerror}"
            ) from None
        import jwt  # PyJWT (and its crypto) only for the JWT bearer flow

        claims = {"iss": auth.client_id, "sub": auth.username, "aud": jwt_audience(self.settings.login_url),
                  "exp": int(time.time()) + 180}
        try:
            return jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:  # InvalidKeyError: not a PEM key
            raise ConfigError(f"salesforce.auth.private_key_file: {auth.private_key_file} is not a usable RSA "
                              f"private key ({type(exc).__name__})") from None

    def _client(self) -> Salesforce:
        if self._sf is None:
            self.authenticate()
        assert self._sf is not None
        return self._sf

    # -------------------------------------------------------------- the call wrapper

    def _call(self, op: str, fn: Callable[[Salesforce], T], *, repeatable: bool = True) -> T:
        """Budget guard, then ``fn(client)`` with one re-authentication on an expired
        session, errors translated, transient ones retried by the one policy.

        ``repeatable=False`` (a create): a request that may have reached the org and whose
        answer was lost (read timeout, dropped connection) raises ``OutcomeUnknown`` at
        once instead of being sent again; one that never left (connect timeout, refused)
        is retried as usual."""

        def transport(exc: requests.RequestException) -> Exception:
            if not repeatable and _may_have_been_sent(exc):
                return OutcomeUnknown(f"{op}: no answer from Salesforce ({type(exc).__name__}); the write may have "
                                      "been applied, so it is not sent again blind")
            return translate_transport(exc, op)

        def attempt() -> T:
            self._guard_budget(op)
            client = self._client()
            try:
                return fn(client)
            except SalesforceError as exc:
                if exc.status == 401 and _error_code(exc) in ("INVALID_SESSION_ID", None):
                    self._log.info("salesforce.session_expired", op=op)
                    self.reauthentications += 1
                    self.authenticate()
                    try:
                        return fn(self._client())
                    except SalesforceError as again:
                        raise translate(again, op) from None
                    except requests.RequestException as again:
                        raise transport(again) from None
                raise translate(exc, op) from None
            except requests.RequestException as exc:
                raise transport(exc) from None
            except ValueError as exc:  # a body that isn't JSON: a proxy page, a truncated answer
                raise TransientError(f"{op}: unreadable response from Salesforce ({exc})") from None

        # The first login has its own retries: inside `attempt` an unreachable login URL
        # would be retried attempts x attempts times (retries must not stack).
        self._client()
        return call(attempt, op, self.settings)

    def request(self, op: str, fn: Callable[[Salesforce], T], *, repeatable: bool = True) -> T:
        """``fn(client)`` under the same guard, re-authentication, error translation and
        retry policy as this gateway's own calls: for sibling adapters on the same session
        (``salesforce_bulk``)."""
        return self._call(op, fn, repeatable=repeatable)

    def _guard_budget(self, op: str) -> None:
        usage = self._usage
        if usage is not None and usage.percent >= self.settings.budget_percent:
            if time.monotonic() - self._usage_at >= self.settings.budget_recheck_seconds:
                self._log.info("salesforce.budget_recheck", op=op, used=usage.used, limit=usage.limit)
                self._usage_at = time.monotonic()  # this one call re-reads the usage
                return
            raise ApiLimitReached(
                f"API budget reached: {usage.used}/{usage.limit} daily requests used "
                f"({usage.percent:.0f}% >= api_budget_percent {self.settings.budget_percent}); {op} not sent"
            )

    def _headers(self) -> dict[str, str]:
        return {"Sforce-Query-Options": f"batchSize={self.settings.page_size}"}

    # -------------------------------------------------------------- queries

    def query_pages(self, soql: str, include_deleted: bool = False, *,
                    ahead_from_first: bool = True) -> Iterator[Page]:
        """The query's pages, one at a time as the caller asks for the next. While the caller
        works on a page the next one is already being fetched (one request ahead, in a
        helper thread: the org prepares and sends it while the caller stores this one), so
        at most two pages are in memory; with ``ahead_from_first=False`` the second page is
        only asked for when the caller wants it (for a caller that may drop the query after
        its first page: the Bulk path's threshold check). A first page fetched ahead by
        ``prime_queries`` is used (once) instead of a call. Errors of the page fetched ahead
        are raised when it is asked for, as if it had been fetched then; a caller that stops
        early does not wait for the request in flight (its page, or its error, is dropped)."""
        headers = self._headers()
        primed = self._primed.pop((soql, include_deleted), None)
        if primed is not None:
            result: Any = {"done": primed.done or primed.next_records_url is None, "records": primed.records,
                           "totalSize": primed.total_size, "nextRecordsUrl": primed.next_records_url}
        else:
            result = self._call("query", lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers))
        number = 1
        ahead: Future[Any] | None = None
        pool: ThreadPoolExecutor | None = None
        try:
            while True:
                done = bool(result.get("done", True))
                page = Page(_strip(result.get("records") or []), int(result.get("totalSize", 0)), done, number)
                if not done and (ahead_from_first or number > 1):
                    if pool is None:
                        pool = ThreadPoolExecutor(1, thread_name_prefix="sf-page")
                    ahead = pool.submit(contextvars.copy_context().run, self._query_more,
                                        result["nextRecordsUrl"], headers)
                yield page
                if done:
                    return
                result = self._query_more(result["nextRecordsUrl"], headers) if ahead is None else ahead.result()
                ahead = None
                number += 1
        finally:
            if pool is not None:  # a caller that stops early does not wait for the page in flight
                pool.shutdown(wait=ahead is None, cancel_futures=True)

    def prime_queries(self, soqls: Sequence[str], include_deleted: bool = False) -> int:
        """Fetch the first pages of several queries ahead, in ``/composite/batch`` calls (25
        queries per API call instead of one each), for ``query_pages`` of the same query to
        start from. A query that fails here is not kept: its ``query_pages`` sends it again
        and reports the error as usual. Returns how many first pages are kept; ``forget_primed``
        drops the ones never asked for."""
        answers = self.composite_queries(soqls, include_deleted, batch_size=self.settings.page_size,
                                         raise_errors=False)
        kept = 0
        for soql, answer in zip(soqls, answers, strict=True):
            if answer.error_code is None and (answer.done or answer.next_records_url):
                self._primed[(soql, include_deleted)] = answer
                kept += 1
        return kept

    def forget_primed(self) -> None:
        """Drop first pages primed and never read (a stopped run): the next run asks afresh."""
        self._primed.clear()

    def _query_more(self, next_url: str, headers: dict[str, str]) -> Any:
        """The next page. A retry after a timeout may find the locator already spent by the
        request that timed out (``INVALID_QUERY_LOCATOR``): the cause to report is the
        timeout, a transient failure the next run resumes from the committed cursor."""
        lost: list[requests.RequestException] = []

        def more(sf: Salesforce) -> Any:
            try:
                return sf.query_more(next_url, identifier_is_url=True, headers=headers)
            except requests.RequestException as exc:
                lost.append(exc)
                raise

        try:
            return self._call("query_more", more)
        except SalesforceApiError as exc:
            if exc.error_code == "INVALID_QUERY_LOCATOR" and lost:
                raise TransientError(
                    f"query_more: {type(lost[-1]).__name__} talking to Salesforce (timeout "
                    f"{self.settings.timeout_seconds:g} s); the retry found the query's cursor spent "
                    "(INVALID_QUERY_LOCATOR), so the next run resumes from the committed cursor") from None
            raise

    def query_all(self, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every record of a small query (offers of one customer, a handful of drafts)."""
        return [r for page in self.query_pages(soql, include_deleted) for r in page.records]

    def count(self, soql: str) -> int:
        """``SELECT COUNT() ...``: the totalSize."""
        return int(self._call("query", lambda sf: sf.query(soql))["totalSize"])

    def composite_queries(self, soqls: Sequence[str], include_deleted: bool = False,
                          batch_size: int | None = None, raise_errors: bool = True) -> list[QueryResult]:
        """Run queries in ``/composite/batch`` calls of up to 25 (one API call each; unlike
        ``/composite`` a batch is not limited to 5 queries); first pages only. A failed
        query raises ``SalesforceApiError``, or with ``raise_errors=False`` comes back as a
        result carrying ``error_code``."""
        resource = "queryAll" if include_deleted else "query"
        results: list[QueryResult] = []
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        for start in range(0, len(soqls), BATCH_LIMIT):
            chunk = soqls[start : start + BATCH_LIMIT]
            body = {"haltOnError": False, "batchRequests": [
                {"method": "GET", "url": f"v{self.settings.api_version}/{resource}?q={quote_plus(soql)}"}
                for soql in chunk]}
            answer = self._call("composite_batch",
                                _restful("composite/batch", method="POST", data=dumps(body), headers=headers))
            for item, soql in zip((answer or {}).get("results", []), chunk, strict=True):
                sub_result = SubResult("batch", int(item["statusCode"]), item.get("result"))
                if not sub_result.ok and not raise_errors:
                    results.append(
                        QueryResult([], 0, True, None, sub_result.error_code or "UNKNOWN", sub_result.message))
                    continue
                if not sub_result.ok:
                    raise SalesforceApiError(f"batch query failed: {sub_result.error_code}: {sub_result.message} "
                                             f"(query: {soql})", error_code=sub_result.error_code or "UNKNOWN",
                                             status=sub_result.status)
                page = sub_result.body
                results.append(QueryResult(_strip(page.get("records") or []), int(page.get("totalSize", 0)),
                                           bool(page.get("done", True)), page.get("nextRecordsUrl")))
        return results

    def composite(self, subrequests: Sequence[Mapping[str, Any]], *, all_or_none: bool,
                  repeatable: bool | None = None) -> list[SubResult]:
        """One ``/composite`` call (up to 25 subrequests); subrequest failures are data.
        A call with a ``POST`` subrequest (a create) is not repeatable unless told so: a
        lost answer raises ``OutcomeUnknown`` (see ``_call``)."""
        body = {"allOrNone": all_or_none, "compositeRequest": list(subrequests)}
        if repeatable is None:
            repeatable = not any(str(s.get("method", "GET")).upper() == "POST" for s in subrequests)
        answer = self._call("composite", lambda sf: sf.restful("composite", method="POST", data=dumps(body)),
                            repeatable=repeatable)
        return [SubResult(r["referenceId"], int(r["httpStatusCode"]), r.get("body"), dict(r.get("httpHeaders") or {}))
                for r in (answer or {}).get("compositeResponse", [])]

    def _base_path(self) -> str:
        return f"/services/data/v{self.settings.api_version}"

    def subrequest(
        self, method: str, path: str, reference_id: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A composite subrequest for ``path`` under this org's API version (``sobjects/X``,
        ``query?q=...``); references like ``@{offer.id}`` are left for Salesforce to resolve."""
        sub: dict[str, Any] = {"method": method, "url": f"{self._base_path()}/{path}", "referenceId": reference_id}
        if body is not None:
            sub["body"] = dict(body)
        return sub

    # -------------------------------------------------------------- records

    def get(self, sobject: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any] | None:
        params = {"fields": ",".join(fields)} if fields else None
        try:
            record = self._call("sobject.get", lambda sf: sf.restful(f"sobjects/{sobject}/{record_id}", params=params))
        except SalesforceApiError as exc:
            if exc.error_code in ("NOT_FOUND", "ENTITY_IS_DELETED"):
                return None
            raise
        return _strip([record])[0] if record else None

    def create(self, sobject: str, values: Mapping[str, Any]) -> str:
        """Create one record; its id. A refused record raises ``SalesforceApiError``."""
        result = self._call("sobject.create", lambda sf: sf.restful(f"sobjects/{sobject}", method="POST",
                                                                     data=dumps(dict(values))), repeatable=False)
        if not result:
            raise SalesforceApiError(f"creating a {sobject} answered no record id", error_code="NO_CONTENT")
        return str(result["id"])

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        self._call("sobject.update", lambda sf: sf.restful(f"sobjects/{sobject}/{record_id}", method="PATCH",
                                                           data=dumps(dict(values))))

    def upsert_collection(self, sobject: str, external_id_field: str,
                          records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Upsert by external id, 200 per call, ``allOrNone=false``; results in input order."""
        path = f"composite/sobjects/{sobject}/{external_id_field}"
        return self._collections("collections.upsert", "PATCH", path, sobject, records)

    def _collections(self, op: str, method: str, path: str, sobject: str,
                     records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        out: list[RecordResult] = []
        for start in range(0, len(records), COLLECTION_CHUNK):
            chunk = [{"attributes": {"type": sobject}, **{k: v for k, v in r.items() if k != "attributes"}}
                     for r in records[start : start + COLLECTION_CHUNK]]
            body = {"allOrNone": False, "records": chunk}
            answer = self._call(op, _restful(path, method=method, data=dumps(body)))
            out.extend(_record_results(answer or [], start))
        return out

    # -------------------------------------------------------------- metadata

    def describe(self, sobject: str) -> dict[str, Any]:
        return dict(self._call("describe", lambda sf: sf.restful(f"sobjects/{sobject}/describe")) or {})

    def describe_global(self) -> dict[str, Any]:
        """``/sobjects/``: every object this user can see at the configured API version."""
        return dict(self._call("describe_global", lambda sf: sf.restful("sobjects/")) or {})

    def describes(self, sobjects: Sequence[str], *, if_modified_since: str | None = None) -> dict[str, SubResult]:
        """The describes of ``sobjects`` in one ``/composite`` call per 25 (describes are not
        query subrequests, so 25 fit). With ``if_modified_since`` (an HTTP date, e.g. a
        previous answer's Last-Modified) an unchanged describe answers 304 without a body.
        Per object: its SubResult (200 with the describe, 304, or 404 NOT_FOUND when the
        org has no such object at this API version)."""
        headers = {"If-Modified-Since": if_modified_since} if if_modified_since else None
        out: dict[str, SubResult] = {}
        names = list(dict.fromkeys(sobjects))
        for start in range(0, len(names), BATCH_LIMIT):
            chunk = names[start : start + BATCH_LIMIT]
            subs = []
            for i, name in enumerate(chunk):
                sub = self.subrequest("GET", f"sobjects/{name}/describe", f"d{start + i}")
                if headers:
                    sub["httpHeaders"] = headers
                subs.append(sub)
            for name, result in zip(chunk, self.composite(subs, all_or_none=False), strict=True):
                out[name] = result
        return out

    def limits(self) -> dict[str, Any]:
        return dict(self._call("limits", lambda sf: sf.limits()) or {})


# ---------------------------------------------------------------------------- helpers


def call(fn: Callable[[], T], op: str, settings: SalesforceSettings) -> T:
    return retrying(op, attempts=settings.retry_attempts, max_wait_s=settings.retry_max_wait_s)(fn)


def parse_limit_info(header: str) -> ApiUsage | None:
    """``api-usage=18/5000`` (possibly followed by ``;per-app-api-usage=...``)."""
    m = _LIMIT_INFO.search(header)
    if not m:
        return None
    return ApiUsage(int(m.group(1)), int(m.group(2)))


def jwt_audience(login_url: str) -> str:
    """Salesforce expects login.salesforce.com / test.salesforce.com as the JWT audience even
    when logging in through a My Domain URL; any other login URL is its own audience."""
    host = urlsplit(login_url).hostname or ""
    if host.endswith(".my.salesforce.com"):
        return "https://test.salesforce.com" if ".sandbox." in host else "https://login.salesforce.com"
    return login_url.rstrip("/")


def _restful(path: str, **kwargs: Any) -> Callable[[Salesforce], Any]:
    """The REST call ``path`` with ``kwargs`` as a function of the client, for ``_call``; the
    arguments are bound now, so one made in a loop keeps its own iteration's values."""
    return lambda sf: sf.restful(path, **kwargs)


def dumps(value: Any) -> str:
    """JSON for request bodies: Decimal as an exact JSON number (never through float),
    dates and datetimes as ISO strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool) or value is None or isinstance(value, (int, str, float)):
        return json.dumps(value)
    if isinstance(value, (date, datetime)):
        return json.dumps(value.isoformat())
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"cannot send a {type(value).__name__} to Salesforce")


def _strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in records:
        r.pop("attributes", None)
    return records


def _record_results(answer: list[dict[str, Any]], offset: int) -> list[RecordResult]:
    out = []
    for i, r in enumerate(answer):
        errors = tuple(RecordErrorDetail(str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
                                         str(e.get("message", "")), tuple(e.get("fields") or ()))
                       for e in r.get("errors") or [])
        out.append(RecordResult(offset + i, r.get("id"), bool(r.get("success")), r.get("created"), errors))
    return out


def _error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode")) if content[0].get("errorCode") else None
    if isinstance(content, dict):
        return str(content.get("errorCode") or content.get("error") or "") or None
    return None


def _error_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("message", "")).strip()
    return str(content)[:300] if content else ""


def translate(exc: SalesforceError, op: str) -> Exception:
    """A simple-salesforce error -> the connector's tree (never leaks secrets: codes,
    messages from Salesforce and the operation name only)."""
    status = int(exc.status)
    code = _error_code(exc) or f"HTTP_{status}"
    message = _error_message(exc)
    text = f"{op}: Salesforce answered {status} {code}" + (f": {message}" if message else "")
    if status == 401:
        return AuthError(text + " (after re-authenticating)")
    if code == "REQUEST_LIMIT_EXCEEDED":
        return ApiLimitReached(text)
    if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
        return TransientError(text)
    return SalesforceApiError(text, error_code=code, status=status)


def _may_have_been_sent(exc: requests.RequestException) -> bool:
    """False only when the request certainly never reached the server (no connection)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        text = f"{type(reason).__name__} {reason}" if reason is not None else str(exc)
        if "NewConnectionError" in text or "Connection refused" in text or "NameResolution" in text:
            return False
    return True


def _unreachable(exc: requests.RequestException) -> str:
    """Why Salesforce could not be reached, as Stripe's errors say it (``connection_cause``),
    with the config key to check; never the library's text (it can quote headers)."""
    cause = connection_cause(exc) or ("timed out" if isinstance(exc, requests.Timeout) else "request failed")
    advice = "check [salesforce] ca_bundle" if cause.startswith("TLS") else \
        "check [salesforce] login_url and the network"
    return f"cannot reach Salesforce ({cause}); {advice}"


def translate_transport(exc: requests.RequestException, op: str) -> Exception:
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return TransientError(f"{op}: {_unreachable(exc)}")
    return PermanentError(f"{op}: {_unreachable(exc)}")


def build_org_gateway(config: OrgConfig) -> SalesforceOrg:
    """The org's Salesforce gateway from its config (bootstrap calls this)."""
    sf = config.salesforce
    settings = SalesforceSettings(
        login_url=sf.login_url,
        auth=sf.auth,
        api_version=sf.api_version,
        ca_bundle=sf.ca_bundle,
        timeout_seconds=sf.timeout_seconds,
        budget_percent=config.api_budget_percent,
        page_size=config.sync.page_size,
        org_alias=config.alias,
    )
    return SalesforceOrg(settings)
