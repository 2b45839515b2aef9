"""The HTTP server: Stripe's v1 API on ``/v1/…``, the control API on ``/_sandbox/…`` and the
hosted invoice pages on ``/i/…``.

Per API request, in order: count the endpoint, authenticate (``Authorization: Bearer
sk_test_…`` or HTTP Basic with the key as user name, like Stripe), pick the account
(``Stripe-Account``), apply any injected fault, then execute under the world lock with
Stripe's idempotency: a POST's ``Idempotency-Key`` (scoped to the account) stores the
status and body of the first execution; the same key with the same endpoint and parameters
replays it with ``Idempotent-Replayed: true``; with other parameters it is a 400
``idempotency_error``. Keys are pruned 24 hours after first use (sandbox clock).
"""

from __future__ import annotations

import base64
import html
import json
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gtm_sandbox.stripe import billing, money, notify
from gtm_sandbox.stripe.api import Ctx, Router, call
from gtm_sandbox.stripe.faults import Faults, Plan
from gtm_sandbox.stripe.helpers import Helpers
from gtm_sandbox.stripe.wire import ApiError, Params, decode_params, new_id
from gtm_sandbox.stripe.world import DAY, IdempotencyRecord, World

IDEMPOTENCY_TTL_S = DAY
MAX_IDEMPOTENCY_KEY = 255


def build_router(world: World) -> Router:
    router = Router()
    billing.install(world, router)
    money.install(world, router)
    notify.install(world, router)
    return router


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], world: World, faults: Faults) -> None:
        super().__init__(address, SandboxRequestHandler)
        self.world = world
        self.faults = faults
        self.router = build_router(world)
        self.helpers = Helpers(world)


def _auth_error(message: str) -> ApiError:
    return ApiError(401, "invalid_request_error", message)


def _mask(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes
    server: SandboxHTTPServer
    server_version = "stripe-sandbox"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # the request log is kept by Faults, not printed

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # Stripe answers other methods with its JSON 404 ("Unrecognized request URL"), not a 501.
    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing ------------------------------------------------------------------------
    def _body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8") if length else ""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, indent=2).encode(), headers)

    def _drop(self) -> None:
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        try:
            if parts.path.startswith("/_sandbox/"):
                self._control(method, parts.path, parts.query, body)
            elif parts.path.startswith("/i/"):
                self._hosted(method, parts.path)
            else:
                self._api(method, parts.path, parts.query, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- the Stripe API --------------------------------------------------------------------
    def _api(self, method: str, path: str, query: str, body: str) -> None:
        world, faults = self.server.world, self.server.faults
        matched = self.server.router.match(method, path)
        endpoint = matched[0].endpoint if matched else f"{method} {path}"
        request_id = new_id("req", 14)
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        account_id = self.headers.get("Stripe-Account") or None
        version = self.headers.get("Stripe-Version") or world.settings.api_version
        faults.count(endpoint)
        entry = faults.record({"method": method, "path": path, "endpoint": endpoint, "account": account_id,
                               "idempotency_key": key, "request_id": request_id, "status": None,
                               "replayed": False, "fault": None})
        headers = {"Request-Id": request_id, "Stripe-Version": version}
        if key:
            headers["Idempotency-Key"] = key

        def answer(status: int, payload: bytes, extra: dict[str, str] | None = None) -> None:
            entry["status"] = status
            self._send(status, payload, {**headers, **(extra or {})})

        auth = self._authenticate()
        if auth is not None:
            answer(auth.status, json.dumps(auth.body(), indent=2).encode())
            return
        plan = faults.plan(endpoint)
        entry["fault"] = plan.label
        if plan.latency_s:
            time.sleep(plan.latency_s)
        if plan.reset == "before":
            self._drop()
            return
        if plan.status is not None:
            answer(plan.status, json.dumps(self._fault_body(plan), indent=2).encode(),
                   {"Stripe-Should-Retry": "true"})
            return
        if matched is None:
            error = ApiError(404, "invalid_request_error",
                             f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
                             "can help at https://support.stripe.com/.")
            answer(404, json.dumps(error.body(), indent=2).encode())
            return
        route, path_params = matched
        status, payload, replayed = self._execute(route, path_params, method, path,
                                                  decode_params(body if method == "POST" else query),
                                                  account_id, key, request_id, version)
        entry["replayed"] = replayed is not None
        if plan.reset == "after":
            entry["status"] = status
            self._drop()
            return
        answer(status, payload, {"Idempotent-Replayed": "true", "Original-Request": replayed} if replayed else None)

    def _authenticate(self) -> ApiError | None:
        header = self.headers.get("Authorization") or ""
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
        if not key.startswith("sk_test_") or len(key) <= len("sk_test_"):
            return _auth_error(f"Invalid API Key provided: {_mask(key)}")
        return None

    @staticmethod
    def _fault_body(plan: Plan) -> dict[str, Any]:
        if plan.status == 429:
            return ApiError(429, "invalid_request_error", "Request rate limit exceeded. Learn more about rate limits "
                            "here https://stripe.com/docs/rate-limits.", code="rate_limit").body()
        if plan.status is not None and 400 <= plan.status < 500:
            return ApiError(plan.status, "invalid_request_error", "The request was refused (injected by the sandbox).").body()
        return ApiError(plan.status or 500, "api_error", "An unknown error occurred. (injected by the sandbox)").body()

    def _execute(self, route: Any, path_params: dict[str, str], method: str, path: str, params: dict[str, Any],
                 account_id: str | None, key: str | None, request_id: str,
                 version: str) -> tuple[int, bytes, str | None]:
        """(status, body, original request id if this was an idempotent replay)."""
        world = self.server.world
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
                result = call(route, ctx, p, path_params)
                expand = p.expand()
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

    def _prune(self, account: Any) -> None:
        horizon = self.server.world.now() - IDEMPOTENCY_TTL_S
        for stale in [k for k, r in account.idempotency.items() if r.created < horizon]:
            del account.idempotency[stale]

    # -- the control API -------------------------------------------------------------------
    def _control(self, method: str, path: str, query: str, body: str) -> None:
        world, faults, helpers = self.server.world, self.server.faults, self.server.helpers
        try:
            data: dict[str, Any] = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError:
            self._send_json(400, {"error": "the control API takes JSON bodies"})
            return
        args = dict(parse_qsl(query))
        account = data.pop("account", None) or self.headers.get("Stripe-Account") or args.get("account")
        segments = path.strip("/").split("/")[1:]
        route = (method, *segments)
        try:
            result: Any
            match route:
                case ("GET", "health"):
                    result = {"ok": True, "api_base": world.base_url, "platform_account": world.platform.id}
                case ("GET", "counters"):
                    result = faults.counters()
                case ("POST", "counters", "reset"):
                    faults.reset_counters()
                    result = {"ok": True}
                case ("GET", "requests"):
                    result = faults.requests(args.get("endpoint"))
                case ("POST", "faults"):
                    faults.add(data.get("endpoint", "*"), data.get("kind", "status"), times=data.get("times", 1),
                               status=int(data.get("status", 500)), latency_s=float(data.get("latency_s", 0.0)))
                    result = {"ok": True}
                case ("DELETE", "faults"):
                    faults.clear()
                    result = {"ok": True}
                case ("GET", "clock"):
                    result = {"now": world.now()}
                case ("POST", "clock", "advance"):
                    seconds = int(data.get("seconds", 0)) + int(data.get("days", 0)) * DAY
                    result = {"now": world.advance(seconds)}
                case ("POST", "invoices", invoice_id, "pay"):
                    result = helpers.pay_invoice(invoice_id, amount=data.get("amount"),
                                                 method=data.get("method", "card"), fee=data.get("fee"),
                                                 account=account)
                case ("GET", "invoices", invoice_id, "sends"):
                    result = helpers.invoice_sends(invoice_id, account=account)
                case ("POST", "charges", charge_id, "refund"):
                    result = helpers.refund(charge_id, amount=data.get("amount"), account=account)
                case ("POST", "payouts"):
                    result = helpers.create_payout(account=account)
                case ("POST", "adjustments"):
                    result = helpers.add_adjustment(int(data["amount"]), str(data.get("description", "adjustment")),
                                                    account=account)
                case ("POST", "events", event_id, "resend"):
                    helpers.resend_event(event_id, account=account)
                    result = {"ok": True}
                case ("GET", "events"):
                    result = helpers.events(type=args.get("type"), account=account)
                case ("GET", "webhooks"):
                    result = list(world.dispatcher.log) if world.dispatcher else []
                case ("POST", "webhooks", "wait"):
                    idle = world.dispatcher.wait_idle(float(data.get("timeout", 10))) if world.dispatcher else True
                    result = {"idle": idle}
                case _:
                    self._send_json(404, {"error": f"no control endpoint {method} {path}"})
                    return
        except ApiError as exc:
            self._send_json(exc.status, exc.body())
            return
        except (KeyError, TypeError, ValueError) as exc:
            self._send_json(400, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._send_json(200, result)

    # -- hosted invoice page ---------------------------------------------------------------
    def _hosted(self, method: str, path: str) -> None:
        world, helpers = self.server.world, self.server.helpers
        segments = path.strip("/").split("/")
        if len(segments) < 3:
            self._send(404, b"not found", content_type="text/plain")
            return
        account_id, token, action = segments[1], segments[2], (segments[3] if len(segments) > 3 else "")
        with world.lock:
            account = world.accounts.get(account_id)
            invoice = next((i for i in (account.objects["invoice"].values() if account else [])
                            if i.get("_token") == token and i["status"] != "draft"), None)
            rendered = world.render(account, invoice) if account and invoice else None
        if rendered is None:
            self._send(404, b"This invoice link is not valid.", content_type="text/plain")
            return
        if method == "POST" and action == "pay":
            try:
                helpers.pay_invoice(rendered["id"], account=account_id)
            except ApiError as exc:
                self._send(400, html.escape(exc.message).encode(), content_type="text/plain")
                return
            self.send_response(303)
            self.send_header("Location", f"/i/{account_id}/{token}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
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
        self._send(200, page.encode(), content_type=content_type)
