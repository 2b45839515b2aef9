"""The Stripe sandbox as a WSGI app: Stripe's v1 API on ``/v1/…``, the control API on
``/_sandbox/…`` and the hosted invoice pages on ``/i/…``. cheroot serves it (see
``gtm_sandbox/wsgi.py``).

Per API request, in order: count the endpoint, authenticate (``Authorization: Bearer
sk_test_…``, or a restricted ``rk_test_…`` key, or HTTP Basic with the key as user name,
like Stripe), check ``Stripe-Version``, pick the account (``Stripe-Account``), apply any
injected fault, read a POST's form (urlencoded or multipart; a JSON or other body is
Stripe's "unsupported Content-Type" 400), then execute under the world lock with Stripe's
idempotency: a POST's
``Idempotency-Key`` (scoped to the account) stores the status and body of the first
execution; the same key with the same endpoint and parameters replays it with
``Idempotent-Replayed: true``; with other parameters it is a 400 ``idempotency_error``.
Keys are pruned 24 hours after first use (sandbox clock).

Routing is by tables, not ladders: the API's routes are registered by the resource modules
on ``Router`` (``api.py``); the control API's are the ``Router`` built by
``build_control_router`` below, on the same ``{name}`` templates. One matcher for both keeps
"literal segments win over placeholders" in one place, and the templates double as the
endpoint names in counters and faults.

The control API's settings: ``GET /_sandbox/settings`` shows ``SandboxSettings`` (fees,
availability and payout delays, NET days, webhook retries, search lag), ``PATCH`` changes the
fields it names (``SETTABLE``) and leaves the rest; an unknown field is a 400, nothing changed.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import html
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from gtm_sandbox.stripe import billing, money, notify
from gtm_sandbox.stripe.api import Ctx, Router, call
from gtm_sandbox.stripe.faults import Faults, Plan
from gtm_sandbox.stripe.helpers import Helpers
from gtm_sandbox.stripe.wire import ApiError, Params, decode_params, new_id, version_error
from gtm_sandbox.stripe.world import DAY, IdempotencyRecord, SandboxSettings, World
from gtm_sandbox.wsgi import BadRequestBody, BodyTooLarge, drop, read_body, request_headers, request_target, status_line

IDEMPOTENCY_TTL_S = DAY
# Test-mode keys that reach the API: secret keys and restricted keys (whose permissions the
# sandbox does not model: a restricted key may do what a secret key may).
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")
MAX_IDEMPOTENCY_KEY = 255
# The bodies the v1 API reads: a form, urlencoded or multipart (``curl -F``). Anything else
# (JSON above all) is refused, as Stripe refuses it, rather than read as one odd parameter.
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def build_router(world: World) -> Router:
    router = Router()
    billing.install(world, router)
    money.install(world, router)
    notify.install(world, router)
    return router


def _auth_error(message: str) -> ApiError:
    return ApiError(401, "invalid_request_error", message)


def _mask(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)


@dataclass
class Reply:
    """What the app answers: a status, a body and its headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(payload, indent=2).encode(), headers or {})


@dataclass
class Exchange:
    """One request as the handlers see it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: str
    environ: dict[str, Any]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


# -- the control API: a route table ---------------------------------------------------------
# Each handler takes (app, data, args, account, **path params) and returns the JSON result.
ControlHandler = Callable[..., Any]


def build_control_router() -> Router:
    router = Router()

    def route(method: str, template: str) -> Callable[[ControlHandler], ControlHandler]:
        return router.add(method, "/_sandbox" + template)

    @route("GET", "/health")
    def health(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return {"ok": True, "api_base": app.world.base_url, "platform_account": app.world.platform.id}

    @route("GET", "/counters")
    def counters(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return app.faults.counters()

    @route("POST", "/counters/reset")
    def reset_counters(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        app.faults.reset_counters()
        return {"ok": True}

    @route("GET", "/requests")
    def requests(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return app.faults.requests(args.get("endpoint"))

    @route("POST", "/faults")
    def add_fault(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        app.faults.add(data.get("endpoint", "*"), data.get("kind", "status"), times=data.get("times", 1),
                       status=int(data.get("status", 500)), latency_s=float(data.get("latency_s", 0.0)))
        return {"ok": True}

    @route("DELETE", "/faults")
    def clear_faults(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        app.faults.clear()
        return {"ok": True}

    @route("GET", "/settings")
    def get_settings(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return settings_json(app.world.settings)

    @route("PATCH", "/settings")
    def patch_settings(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        with app.world.lock:
            app.world.settings = updated_settings(app.world.settings, data)
            return settings_json(app.world.settings)

    @route("GET", "/clock")
    def clock(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return {"now": app.world.now()}

    @route("POST", "/clock/advance")
    def advance(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        seconds = int(data.get("seconds", 0)) + int(data.get("days", 0)) * DAY
        return {"now": app.world.advance(seconds)}

    @route("POST", "/invoices/{invoice_id}/pay")
    def pay(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None,
            invoice_id: str) -> Any:
        return app.helpers.pay_invoice(invoice_id, amount=data.get("amount"), method=data.get("method", "card"),
                                       fee=data.get("fee"), account=account)

    @route("GET", "/invoices/{invoice_id}/sends")
    def sends(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None,
              invoice_id: str) -> Any:
        return app.helpers.invoice_sends(invoice_id, account=account)

    @route("POST", "/charges/{charge_id}/refund")
    def refund(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None,
               charge_id: str) -> Any:
        return app.helpers.refund(charge_id, amount=data.get("amount"), account=account)

    @route("POST", "/payouts")
    def payouts(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return app.helpers.create_payout(account=account)

    @route("POST", "/adjustments")
    def adjustments(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return app.helpers.add_adjustment(int(data["amount"]), str(data.get("description", "adjustment")),
                                          account=account)

    @route("POST", "/events/{event_id}/resend")
    def resend(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None,
               event_id: str) -> Any:
        app.helpers.resend_event(event_id, account=account)
        return {"ok": True}

    @route("GET", "/events")
    def events(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return app.helpers.events(type=args.get("type"), account=account)

    @route("GET", "/webhooks")
    def webhooks(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        return list(app.world.dispatcher.log) if app.world.dispatcher else []

    @route("POST", "/webhooks/wait")
    def wait(app: StripeApp, data: dict[str, Any], args: dict[str, str], account: str | None) -> Any:
        idle = app.world.dispatcher.wait_idle(float(data.get("timeout", 10))) if app.world.dispatcher else True
        return {"idle": idle}

    return router


# The knobs ``PATCH /_sandbox/settings`` may change, with how a JSON value becomes one.
SETTABLE: dict[str, Callable[[Any], Any]] = {
    "fee_percent": lambda v: Decimal(str(v)), "fee_fixed_cents": int, "available_after_days": int,
    "payout_arrival_days": int, "payout_reconciliation_delay_s": int, "default_days_until_due": int,
    "search_lag_s": float,
    "webhook_retry_delays": lambda v: tuple(float(d) for d in v), "webhook_timeout_s": float,
    "account_name": str,
}


def settings_json(settings: SandboxSettings) -> dict[str, Any]:
    return {name: (str(value) if isinstance(value, Decimal) else list(value) if isinstance(value, tuple) else value)
            for name, value in asdict(settings).items()}


def updated_settings(settings: SandboxSettings, data: dict[str, Any]) -> SandboxSettings:
    """``settings`` with the fields in ``data`` changed; an unknown or malformed one is a
    ``ValueError`` (a 400) and nothing changes."""
    unknown = sorted(set(data) - set(SETTABLE))
    if unknown:
        raise ValueError(f"not a setting: {', '.join(unknown)} (settable: {', '.join(SETTABLE)})")
    try:
        changes = {name: SETTABLE[name](value) for name, value in data.items()}
    except (ArithmeticError, TypeError) as exc:
        raise ValueError(f"bad setting value: {exc}") from None
    return replace(settings, **changes)


def form_body(ex: Exchange) -> str:
    """A POST's parameters as a urlencoded form. A body without a Content-Type is read as a
    form (what curl and ``requests`` send for a string body); a multipart one is turned into
    one; any other type is Stripe's "Invalid request: unsupported Content-Type"."""
    content_type = ex.header("Content-Type") or ""
    media = content_type.split(";", 1)[0].strip().lower()
    if not ex.body or media in ("", FORM):
        return ex.body
    if media == MULTIPART:
        message = email.parser.Parser(policy=email.policy.HTTP).parsestr(
            f"Content-Type: {content_type}\r\n\r\n{ex.body}")
        if message.is_multipart():
            fields = [(part.get_param("name", header="content-disposition"), part.get_content())
                      for part in message.iter_parts()]
            return urlencode([(str(name), str(value)) for name, value in fields if name is not None])
    raise ApiError(400, "invalid_request_error",
                   f"Invalid request: unsupported Content-Type {content_type}. If error persists and you need "
                   "assistance, please contact support@stripe.com.")


class StripeApp:
    """The WSGI app; one instance per sandbox, called from cheroot's worker threads."""

    def __init__(self, world: World, faults: Faults) -> None:
        self.world = world
        self.faults = faults
        self.router = build_router(world)
        self.control_router = build_control_router()
        self.helpers = Helpers(world)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        parts = urlsplit(request_target(environ))
        try:
            body = read_body(environ).decode("utf-8")
        except BodyTooLarge:
            reply = Reply.json(413, ApiError(413, "invalid_request_error", "The request body is too large.").body(),
                               {"Request-Id": new_id("req", 14)})  # every answer has one, as on Stripe
        except (BadRequestBody, UnicodeDecodeError) as exc:
            reply = Reply.json(400, ApiError(400, "invalid_request_error",
                                             f"The request body could not be read: {exc}").body(),
                               {"Request-Id": new_id("req", 14)})
        else:
            ex = Exchange(method, parts.path, parts.query, request_headers(environ), body, environ)
            if parts.path.startswith("/_sandbox/"):
                reply = self._control(ex)
            elif parts.path.startswith("/i/"):
                reply = self._hosted(ex)
            else:
                reply = self._api(ex)  # raises Dropped for a connection-reset fault
        headers = [("Content-Type", reply.content_type)] if reply.content_type else []
        headers += [("Content-Length", str(len(reply.body)))]
        if reply.content_type:
            headers.append(("Cache-Control", "no-cache, no-store"))
        headers += list(reply.headers.items())
        start_response(status_line(reply.status), headers)
        return [b""] if method == "HEAD" else [reply.body]

    # -- the Stripe API --------------------------------------------------------------------
    def _api(self, ex: Exchange) -> Reply:
        method, path = ex.method, ex.path
        world, faults = self.world, self.faults
        matched = self.router.match(method, path)
        endpoint = matched[0].endpoint if matched else f"{method} {path}"
        request_id = new_id("req", 14)
        # An empty header is no key (not one key shared by every request that sends it empty).
        key = (ex.header("Idempotency-Key") or None) if method == "POST" else None
        account_id = ex.header("Stripe-Account") or None
        version = ex.header("Stripe-Version") or world.settings.api_version
        faults.count(endpoint)
        entry = faults.record({"method": method, "path": path, "endpoint": endpoint, "account": account_id,
                               "idempotency_key": key, "request_id": request_id, "status": None,
                               "replayed": False, "fault": None})
        headers = {"Request-Id": request_id, "Stripe-Version": version}
        if key:
            headers["Idempotency-Key"] = key

        def answer(status: int, payload: bytes, extra: dict[str, str] | None = None) -> Reply:
            entry["status"] = status
            return Reply(status, payload, {**headers, **(extra or {})})

        auth = self._authenticate(ex)
        if auth is not None:
            return answer(auth.status, json.dumps(auth.body(), indent=2).encode())
        refused = version_error(version)
        if refused is not None:  # objects are never drawn in a version nobody can name
            headers["Stripe-Version"] = world.settings.api_version
            return answer(refused.status, json.dumps(refused.body(), indent=2).encode())
        plan = faults.plan(endpoint)
        entry["fault"] = plan.label
        if plan.latency_s:
            time.sleep(plan.latency_s)
        if plan.reset == "before":
            raise drop(ex.environ)
        if plan.status is not None:
            return answer(plan.status, json.dumps(self._fault_body(plan), indent=2).encode(),
                          {"Stripe-Should-Retry": "true"})
        if matched is None:
            error = ApiError(404, "invalid_request_error",
                             f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
                             "can help at https://support.stripe.com/.")
            return answer(404, json.dumps(error.body(), indent=2).encode())
        route, path_params = matched
        try:
            form = form_body(ex) if method == "POST" else ex.query
        except ApiError as exc:  # refused before the endpoint runs: nothing saved under the key
            return answer(exc.status, json.dumps(exc.body(), indent=2).encode())
        status, payload, replayed = self._execute(route, path_params, method, path, decode_params(form),
                                                  account_id, key, request_id, version)
        entry["replayed"] = replayed is not None
        if plan.reset == "after":
            entry["status"] = status
            raise drop(ex.environ)
        replay_headers = {"Idempotent-Replayed": "true", "Original-Request": replayed} if replayed else None
        return answer(status, payload, replay_headers)

    @staticmethod
    def _authenticate(ex: Exchange) -> ApiError | None:
        header = ex.header("Authorization") or ""
        key = ""
        if header.startswith("Bearer "):
            key = header[7:].strip()
        elif header.startswith("Basic "):
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = ""
        if not key:
            return _auth_error("You did not provide an API key. You need to provide your API key in the Authorization "
                               "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                               "https://stripe.com/docs/api#authentication for details, or we can help at "
                               "https://support.stripe.com/.")
        prefix = next((p for p in TEST_KEY_PREFIXES if key.startswith(p)), None)
        if prefix is None or len(key) <= len(prefix):
            return _auth_error(f"Invalid API Key provided: {_mask(key)}")
        return None

    @staticmethod
    def _fault_body(plan: Plan) -> dict[str, Any]:
        if plan.status == 429:
            return ApiError(429, "invalid_request_error", "Request rate limit exceeded. Learn more about rate limits "
                            "here https://stripe.com/docs/rate-limits.", code="rate_limit").body()
        if plan.status is not None and 400 <= plan.status < 500:
            return ApiError(plan.status, "invalid_request_error",
                            "The request was refused (injected by the sandbox).").body()
        return ApiError(plan.status or 500, "api_error", "An unknown error occurred. (injected by the sandbox)").body()

    def _execute(self, route: Any, path_params: dict[str, str], method: str, path: str, params: dict[str, Any],
                 account_id: str | None, key: str | None, request_id: str,
                 version: str) -> tuple[int, bytes, str | None]:
        """(status, body, original request id if this was an idempotent replay)."""
        world = self.world
        with world.lock:
            try:
                account = world.account(account_id)
            except ApiError as exc:
                return exc.status, json.dumps(exc.body(), indent=2).encode(), None
            if key is not None:
                if len(key) > MAX_IDEMPOTENCY_KEY:
                    error = ApiError(400, "invalid_request_error",
                                     f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters long.")
                    return 400, json.dumps(error.body(), indent=2).encode(), None
                self._prune(account)
                record = account.idempotency.get(key)
                if record is not None and record.status is not None:
                    if record.method != method or record.path != path or record.params != params:
                        error = ApiError(
                            400, "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters they were first "
                            f"used with. Try using a key other than '{key}' if you meant to execute a different "
                            "request.")
                        return 400, json.dumps(error.body(), indent=2).encode(), None
                    assert record.body is not None
                    return record.status, record.body, record.headers.get("Request-Id")
            ctx = Ctx(world, account, request_id, key, version)
            p = Params(params)
            saved = True
            try:
                expand = p.expand()  # read first: a malformed expand is refused before anything happens
                if expand and method == "POST" and "id" in path_params:
                    self._check_expand(account, path_params["id"], expand, version)
                result = call(route, ctx, p, path_params)
                if expand:
                    result = world.expand(account, result, expand, version)
                result.pop("_total_count", None)
                status, payload = 200, json.dumps(result, indent=2).encode()
            except ApiError as exc:
                status, payload, saved = exc.status, json.dumps(exc.body(), indent=2).encode(), exc.saved
            if key is not None and saved:
                account.idempotency[key] = IdempotencyRecord(method, path, params, world.now(), status, payload,
                                                             {"Request-Id": request_id})
            return status, payload, None

    def _check_expand(self, account: Any, object_id: str, expand: list[str], version: str) -> None:
        """A POST on an existing object answers with that object: try ``expand`` on it as it is
        now, so an expansion it cannot take is refused before the request changes anything
        (a refused request has no effect), not after the invoice was finalized or paid."""
        target = account.get(object_id)
        if target is None:
            return  # the handler answers resource_missing
        try:
            self.world.expand(account, self.world.render(account, target, version), expand, version)
        except ApiError as exc:
            raise replace(exc, saved=False) from None

    def _prune(self, account: Any) -> None:
        horizon = self.world.now() - IDEMPOTENCY_TTL_S
        for stale in [k for k, r in account.idempotency.items() if r.created < horizon]:
            del account.idempotency[stale]

    # -- the control API -------------------------------------------------------------------
    def _control(self, ex: Exchange) -> Reply:
        try:
            data: dict[str, Any] = json.loads(ex.body) if ex.body.strip() else {}
        except json.JSONDecodeError:
            return Reply.json(400, {"error": "the control API takes JSON bodies"})
        args = dict(parse_qsl(ex.query))
        account = data.pop("account", None) or ex.header("Stripe-Account") or args.get("account")
        matched = self.control_router.match(ex.method, ex.path.rstrip("/"))
        if matched is None:
            return Reply.json(404, {"error": f"no control endpoint {ex.method} {ex.path}"})
        route, path_params = matched
        try:
            result = route.handler(self, data, args, account, **path_params)
        except ApiError as exc:
            return Reply.json(exc.status, exc.body())
        except (KeyError, TypeError, ValueError) as exc:
            return Reply.json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return Reply.json(200, result)

    # -- hosted invoice page ---------------------------------------------------------------
    def _hosted(self, ex: Exchange) -> Reply:
        method, path = ex.method, ex.path
        world, helpers = self.world, self.helpers
        segments = path.strip("/").split("/")
        if len(segments) < 3:
            return Reply(404, b"not found", content_type="text/plain")
        account_id, token, action = segments[1], segments[2], (segments[3] if len(segments) > 3 else "")
        with world.lock:
            account = world.accounts.get(account_id)
            invoice = next((i for i in (account.objects["invoice"].values() if account else [])
                            if i.get("_token") == token and i["status"] != "draft"), None)
            rendered = world.render(account, invoice) if account and invoice else None
        if rendered is None:
            return Reply(404, b"This invoice link is not valid.", content_type="text/plain")
        if method == "POST" and action == "pay":
            try:
                helpers.pay_invoice(rendered["id"], account=account_id)
            except ApiError as exc:
                return Reply(400, html.escape(exc.message).encode(), content_type="text/plain")
            return Reply(303, headers={"Location": f"/i/{account_id}/{token}"}, content_type=None)
        lines = "".join(
            f"<tr><td>{html.escape(line['description'] or '')}</td><td>{line['quantity']}</td>"
            f"<td>{line['amount'] / 100:,.2f}</td></tr>" for line in rendered["lines"]["data"])
        due = rendered["amount_remaining"] / 100
        page = (f"<html><body><h1>Invoice {html.escape(rendered['number'] or '')}</h1>"
                f"<p>{html.escape(rendered['account_name'] or '')} — status: {rendered['status']}</p>"
                f"<table>{lines}</table><p>Amount due: {rendered['currency'].upper()} {due:,.2f}</p>"
                + (f"<form method='post' action='/i/{account_id}/{token}/pay'><button>Pay</button></form>"
                   if rendered["status"] in ("open", "uncollectible") else "")
                + "</body></html>")
        content_type = "text/plain" if action == "pdf" else "text/html; charset=utf-8"
        return Reply(200, page.encode(), content_type=content_type)
