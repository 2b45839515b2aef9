"""Steering the sandbox org from tests, benches and the CLI.

``OrgControl`` is the one implementation; the ``SandboxOrg`` handle calls it in-process
and the HTTP control API (``/_sandbox/...``, plain JSON, not part of Salesforce's API and
not counted as API usage) calls it for out-of-process users such as the benches.

Resources that are settings take PATCH to change part of them — ``limits`` (``max``,
``used``), ``latency``, ``batch-size``, the ``billing`` link (``api_base``, ``api_key``,
``account``) and one order's billing knobs (``billing/faults/{order_id}``: ``skip``,
``wrong_amount``, ``late_days``, ``invoices``) — the first three POST as well;
``records/{sobject}`` takes PATCH to update records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gtm_sandbox.org.billing import WATCHED, BillingError, GtmBilling
from gtm_sandbox.org.data import ApiError, OrgData
from gtm_sandbox.org.gtm import GtmRules, generate, load_demo
from gtm_sandbox.org.ids import canonical_stamp
from gtm_sandbox.org.jsonenc import encode
from gtm_sandbox.org.rest import FaultRule, OrgApi, Request, Response
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.standard import seed_standard_records

DataSpec = str | int | None

# Default error bodies per HTTP status, for fault rules that only give a status.
_DEFAULT_FAULTS = {
    401: ("INVALID_SESSION_ID", "Session expired or invalid"),
    403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    404: ("NOT_FOUND", "The requested resource does not exist"),
    500: ("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support."),
    502: ("SERVER_UNAVAILABLE", "Bad gateway"),
    503: ("SERVER_UNAVAILABLE", "Server is unavailable: please retry later"),
}


class OrgControl:
    def __init__(self, api: OrgApi, org_id: str = ""):
        self.api = api
        self.demo_ids: dict[str, str] = {}
        # The GTM app's billing (see billing.py): idle until linked to a Stripe account.
        self.billing = GtmBilling(lambda: self.api.data, org_id)
        self.data.on_write = self.billing.on_write

    @property
    def data(self) -> OrgData:
        return self.api.data

    # ------------------------------------------------------------ data sets

    def load(self, data: DataSpec) -> dict[str, str]:
        """Replace every record with a data set: "demo", an int N (bench generator) or None."""
        fresh = OrgData(self.data.schema, self.data.clock)
        fresh.rules = GtmRules()
        fresh.on_write = self.billing.on_write
        if data == "demo":
            ids = load_demo(fresh)
        elif isinstance(data, int) or (isinstance(data, str) and data.isdigit()):
            ids = generate(fresh, int(data))
        elif data in (None, "", "none", "empty"):
            ids = {}
        else:
            raise ValueError(f"unknown data set {data!r}: use 'demo', a number of records, or none")
        seed_standard_records(fresh, self.api.app)
        self.api.data = fresh
        self.demo_ids = ids
        return ids

    def rename_field(self, sobject: str, old: str, new: str) -> None:
        """Rename a field while the org runs (as an admin might): the schema, its describe's
        Last-Modified and the stored records follow; record stamps don't move."""
        with self.data.lock:
            schema = self.data.schema.with_field_renamed(sobject, old, new)
            spec = schema.get(sobject)
            assert spec is not None
            table = self.data.tables[spec.name]
            table.spec = spec
            for row in table.rows.values():
                if old in row:
                    row[new] = row.pop(old)
            self.data.schema = schema

    def reset(self, data: DataSpec = "demo") -> dict[str, str]:
        """Fresh data, counters, faults, latency and limits; billing unlinked, without
        knobs; sessions stay valid. The clock keeps its advance (it never goes back)."""
        self.billing.reset()
        self.api.controls.reset()
        self.api.batch_size = self.api.default_batch_size
        with self.api._locator_lock:
            self.api._locators.clear()
        self.api.bulk.reset()
        return self.load(data)

    # ------------------------------------------------------------ counters and faults

    def counters(self) -> dict[str, Any]:
        c = self.api.controls
        with c.lock:
            return {
                "calls": dict(c.calls),
                "subrequests": dict(c.subrequests),
                "api_calls": c.api_calls,
                "api_usage": {"used": c.api_used, "max": c.api_max},
                "tokens_issued": self.api.sessions.issued,
            }

    def reset_counters(self) -> None:
        c = self.api.controls
        with c.lock:
            c.calls.clear()
            c.subrequests.clear()

    def fail(self, endpoint: str, *, times: int = 1, status: int = 503, error_code: str | None = None,
             message: str | None = None, skip: int = 0, expire_sessions: bool = False) -> None:
        code, text = _DEFAULT_FAULTS.get(status, ("UNKNOWN_EXCEPTION", "injected failure"))
        if status == 401 and error_code in (None, "INVALID_SESSION_ID"):
            expire_sessions = True  # a 401 means the session really is gone
        rule = FaultRule(endpoint, status, error_code or code, message or text, times, skip, expire_sessions)
        with self.api.controls.lock:
            self.api.controls.faults.append(rule)

    def clear_faults(self) -> None:
        with self.api.controls.lock:
            self.api.controls.faults.clear()
        with self.data.lock:
            self.data.record_faults.clear()

    def fail_records(self, sobject: str = "*", *, times: int = 1, error_code: str = "UNABLE_TO_LOCK_ROW",
                     message: str | None = None) -> None:
        """Make the next ``times`` API writes of ``sobject`` records fail with ``error_code``:
        a per-record error in collections and composite, a 400 for single-record calls."""
        with self.data.lock:
            self.data.record_faults.append([sobject, error_code, message, times])

    def before(self, endpoint: str, fn: Callable[[], None], *, skip: int = 0) -> None:
        """Run ``fn`` (in the server thread) just before the next matching call is served."""
        with self.api.controls.lock:
            self.api.controls.hooks.append((endpoint, fn, skip))

    def expire_sessions(self) -> int:
        return self.api.sessions.expire_all()

    def set_limits(self, *, max: int | None = None, used: int | None = None) -> None:  # noqa: A002
        c = self.api.controls
        with c.lock:
            if max is not None:
                c.api_max = max
            if used is not None:
                c.api_used = used

    def set_latency(self, seconds: float, endpoint: str = "*") -> None:
        with self.api.controls.lock:
            if seconds <= 0:
                self.api.controls.latency.pop(endpoint, None)
            else:
                self.api.controls.latency[endpoint] = seconds

    def set_batch_size(self, size: int) -> None:
        if size < 1:
            raise ValueError("batch size must be positive")
        self.api.batch_size = size

    # ------------------------------------------------------------ records (no API validation)

    def insert(self, sobject: str, records: list[dict[str, Any]], *, stamp: str | None = None) -> list[str]:
        stamp = canonical_stamp(stamp) if stamp else None
        with self.data.lock:
            ids = [self.data.insert(sobject, dict(r), validate=False, stamp=stamp)["Id"] for r in records]
        self._bill_after(sobject)
        return ids

    def update(self, sobject: str, records: list[dict[str, Any]], *, stamp: str | None = None) -> None:
        stamp = canonical_stamp(stamp) if stamp else None
        with self.data.lock:
            for r in records:
                values = {k: v for k, v in r.items() if k != "Id"}
                self.data.update(sobject, r["Id"], values, validate=False, stamp=stamp)
        self._bill_after(sobject)

    def delete(self, sobject: str, ids: list[str], *, stamp: str | None = None, purge: bool = False) -> None:
        stamp = canonical_stamp(stamp) if stamp else None
        with self.data.lock:
            for rid in ids:
                if purge:
                    self.data.purge(sobject, rid)
                else:
                    self.data.delete(sobject, rid, validate=False, stamp=stamp)
        self._bill_after(sobject)

    def _bill_after(self, sobject: str) -> None:
        """A control write to an order (an activation, a start date) bills at once, so the
        caller sees the invoice when the call returns (outside the data lock)."""
        spec = self.data.schema.get(sobject)
        if spec is not None and spec.name in WATCHED and self.billing.linked:
            self.billing.run()

    # ------------------------------------------------------------ clock and GTM billing

    def clock(self) -> dict[str, Any]:
        clock = self.data.clock
        return {"now": clock.now(), "today": clock.today().isoformat(),
                "offset_seconds": clock.offset.total_seconds()}

    def advance_clock(self, *, days: float = 0, seconds: float = 0) -> dict[str, Any]:
        """Move the org's clock forward (then run billing yourself: ``billing_run``)."""
        self.data.clock.advance(days=days, seconds=seconds)
        return self.clock()

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.data.lock:
            rows = self.data.table(sobject).rows.values()
            return [dict(r) for r in rows if include_deleted or not r["IsDeleted"]]

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        row = self.data.get(sobject, record_id, include_deleted=True)
        return dict(row) if row is not None else None

    # ------------------------------------------------------------ HTTP control API

    def handle(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p][1:]  # drop "_sandbox"
        body = req.json() if req.body else {}
        found = CONTROL_ROUTES.match(req.method, parts)
        if found is None:
            if parts and parts[0] == "billing":
                return Response(404, encode({"error": f"no billing control resource {req.method} /_sandbox/billing/"
                                                      f"{'/'.join(parts[1:])}"}))
            return Response(404, encode({"error": f"no control resource {req.method} {req.path}"}))
        route, params = found
        try:
            return route.handler(self, req, body, **params)
        except ApiError as err:
            return Response.error(err)
        except BillingError as exc:
            if route.segments[0] == "billing":  # a billing refusal is a 400 with its own text
                return Response(400, encode({"error": str(exc)}))
            return Response(400, encode({"error": f"bad control request: {exc}"}))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            return Response(400, encode({"error": f"bad control request: {exc}"}))


# The control API's routes under /_sandbox/, one handler per resource and method. Handlers
# take (control, request, JSON body, **placeholders); see routing.py for the matching.
CONTROL_ROUTES = RouteTable()
Body = dict[str, Any]


def _route(method: str, template: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    def register(fn: Callable[..., Response]) -> Callable[..., Response]:
        CONTROL_ROUTES.add(method, template, fn.__name__, fn)
        return fn
    return register


@_route("GET", "info")
def _info(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, {"demo_ids": c.demo_ids, "batch_size": c.api.batch_size})


@_route("GET", "counters")
def _counters(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, c.counters())


@_route("POST", "counters/reset")
def _counters_reset(c: OrgControl, req: Request, body: Body) -> Response:
    c.reset_counters()
    return Response(204)


@_route("POST", "faults")
def _faults_add(c: OrgControl, req: Request, body: Body) -> Response:
    c.fail(body["endpoint"], times=int(body.get("times", 1)), status=int(body.get("status", 503)),
           error_code=body.get("error_code"), message=body.get("message"),
           skip=int(body.get("skip", 0)), expire_sessions=bool(body.get("expire_sessions", False)))
    return Response(204)


@_route("POST", "faults/records")
def _faults_records(c: OrgControl, req: Request, body: Body) -> Response:
    c.fail_records(body.get("sobject", "*"), times=int(body.get("times", 1)),
                   error_code=body.get("error_code", "UNABLE_TO_LOCK_ROW"), message=body.get("message"))
    return Response(204)


@_route("DELETE", "faults")
def _faults_clear(c: OrgControl, req: Request, body: Body) -> Response:
    c.clear_faults()
    return Response(204)


@_route("POST", "sessions/expire")
def _sessions_expire(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, {"expired": c.expire_sessions()})


# The settings a PATCH updates in part (POST does the same, kept for older scripts).
@_route("PATCH", "limits")
@_route("POST", "limits")
def _limits(c: OrgControl, req: Request, body: Body) -> Response:
    c.set_limits(max=body.get("max"), used=body.get("used"))
    return Response(204)


@_route("PATCH", "latency")
@_route("POST", "latency")
def _latency(c: OrgControl, req: Request, body: Body) -> Response:
    c.set_latency(float(body.get("seconds", 0)), body.get("endpoint", "*"))
    return Response(204)


@_route("PATCH", "batch-size")
@_route("POST", "batch-size")
def _batch_size(c: OrgControl, req: Request, body: Body) -> Response:
    c.set_batch_size(int(body["size"]))
    return Response(204)


@_route("POST", "bulk/fail")
def _bulk_fail(c: OrgControl, req: Request, body: Body) -> Response:
    """The next ``times`` Bulk API 2.0 query jobs end ``Failed`` with ``message``."""
    c.api.bulk.fail(str(body.get("message", "QUERY_TIMEOUT: Your query request was running for too long.")),
                    int(body.get("times", 1)))
    return Response(204)


@_route("POST", "bulk/poll-steps")
def _bulk_poll_steps(c: OrgControl, req: Request, body: Body) -> Response:
    """How many polls a query job answers InProgress before it completes."""
    c.api.bulk.poll_steps = max(0, int(body["steps"]))
    return Response(204)


@_route("GET", "clock")
def _clock(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, c.clock())


@_route("POST", "clock/advance")
def _clock_advance(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, c.advance_clock(days=float(body.get("days", 0)), seconds=float(body.get("seconds", 0))))


@_route("POST", "reset")
def _reset(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, {"demo_ids": c.reset(body.get("data", "demo"))})


@_route("GET", "records/{sobject}")
def _records_get(c: OrgControl, req: Request, body: Body, sobject: str) -> Response:
    deleted = (req.param("include_deleted") or "").lower() == "true"
    return Response.json(200, {"records": c.records(sobject, include_deleted=deleted)})


@_route("POST", "records/{sobject}")
def _records_insert(c: OrgControl, req: Request, body: Body, sobject: str) -> Response:
    return Response.json(200, {"ids": c.insert(sobject, body["records"], stamp=body.get("stamp"))})


@_route("PATCH", "records/{sobject}")
def _records_update(c: OrgControl, req: Request, body: Body, sobject: str) -> Response:
    c.update(sobject, body["records"], stamp=body.get("stamp"))
    return Response(204)


@_route("DELETE", "records/{sobject}")
def _records_delete(c: OrgControl, req: Request, body: Body, sobject: str) -> Response:
    c.delete(sobject, body["ids"], stamp=body.get("stamp"), purge=bool(body.get("purge")))
    return Response(204)


# /_sandbox/billing…: link (POST), change the link in part (PATCH), status (GET), unlink
# (DELETE), run, faults (POST a knob, DELETE all, PATCH one order's) and links (a junction
# row by hand).
@_route("POST", "billing")
def _billing_link(c: OrgControl, req: Request, body: Body) -> Response:
    result = c.billing.link_stripe(body["api_base"], body["api_key"], account=body.get("account"))
    return Response.json(200, result.as_json())


@_route("PATCH", "billing")
def _billing_update(c: OrgControl, req: Request, body: Body) -> Response:
    """Change part of the link (``api_base``, ``api_key``, ``account``), keeping the rest."""
    link = c.billing.link
    if link is None:
        raise BillingError("billing is not linked to a Stripe account: POST /_sandbox/billing first")
    unknown = sorted(set(body) - {"api_base", "api_key", "account"})
    if unknown:
        raise BillingError(f"not a billing link setting: {', '.join(unknown)} (api_base, api_key, account)")
    result = c.billing.link_stripe(body.get("api_base", link.api_base), body.get("api_key", link.api_key),
                                   account=body.get("account", link.account))
    return Response.json(200, result.as_json())


@_route("GET", "billing")
def _billing_status(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, c.billing.status())


@_route("DELETE", "billing")
def _billing_unlink(c: OrgControl, req: Request, body: Body) -> Response:
    c.billing.unlink()
    return Response(204)


@_route("POST", "billing/run")
def _billing_run(c: OrgControl, req: Request, body: Body) -> Response:
    if not c.billing.linked:
        raise BillingError("billing is not linked to a Stripe account: POST /_sandbox/billing first")
    return Response.json(200, c.billing.run().as_json())


@_route("POST", "billing/faults")
def _billing_fault(c: OrgControl, req: Request, body: Body) -> Response:
    c.billing.add_fault(body["kind"], order_id=body.get("order_id"), times=int(body.get("times", 1)),
                        amount=str(body.get("amount", "100.00")), days=int(body.get("days", 1)))
    return Response(204)


@_route("PATCH", "billing/faults/{order_id}")
def _billing_order_faults(c: OrgControl, req: Request, body: Body, order_id: str) -> Response:
    return Response.json(200, c.billing.update_order_faults(order_id, body))


@_route("DELETE", "billing/faults")
def _billing_faults_clear(c: OrgControl, req: Request, body: Body) -> Response:
    c.billing.clear_faults()
    return Response(204)


@_route("POST", "billing/links")
def _billing_links(c: OrgControl, req: Request, body: Body) -> Response:
    return Response.json(200, {"id": c.billing.link_invoice(body["order_id"], body["invoice_id"])})
