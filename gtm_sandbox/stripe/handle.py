"""Run the Stripe sandbox in-process and drive it from tests.

    with StripeSandbox.start() as stripe_box:
        client = stripe.StripeClient(stripe_box.api_key,
                                     base_addresses={"api": stripe_box.api_base},
                                     max_network_retries=0)
        ...
        stripe_box.pay_invoice(invoice_id)          # the customer pays on the hosted page
        stripe_box.counters()["POST /v1/invoices"]  # how many create calls we made

``RemoteStripeSandbox`` offers the same control methods over the ``/_sandbox`` HTTP API for
a sandbox running in another process (``gtm-connector sandbox stripe --json``).
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from gtm_sandbox.snapshot import SnapshotError, read_snapshot, write_snapshot
from gtm_sandbox.stripe.faults import Faults
from gtm_sandbox.stripe.helpers import Helpers
from gtm_sandbox.stripe.notify import WebhookDispatcher
from gtm_sandbox.stripe.server import StripeApp
from gtm_sandbox.stripe.world import DAY, Account, SandboxSettings, World
from gtm_sandbox.wsgi import IDLE_TIMEOUT_S, MAX_BODY_BYTES, WsgiServer


def _fault_kind(fault: str | int) -> tuple[str, int]:
    if isinstance(fault, int) or str(fault).isdigit():
        return "status", int(fault)
    if fault in ("reset", "reset_before"):
        return str(fault), 500
    raise ValueError(f"fault must be an HTTP status, 'reset' or 'reset_before', not {fault!r}")


class StripeSandbox:
    """A running sandbox: ``api_base`` and ``api_key`` for the SDK, plus test controls."""

    def __init__(self, server: WsgiServer, app: StripeApp) -> None:
        self._server = server
        self.world: World = app.world
        self.faults: Faults = app.faults
        self.helpers: Helpers = app.helpers
        self.api_base = f"http://{server.host}:{server.port}"
        self.api_key = "sk_test_" + secrets.token_hex(12)
        self.platform_account = self.world.platform.id

    @classmethod
    def start(cls, port: int = 0, *, host: str = "127.0.0.1", settings: SandboxSettings | None = None,
              max_body_bytes: int = MAX_BODY_BYTES, idle_timeout_s: float = IDLE_TIMEOUT_S,
              **overrides: Any) -> StripeSandbox:
        """Serve on ``host:port`` (0 = a free port) from a background thread (cheroot, see
        ``gtm_sandbox/wsgi.py``). ``max_body_bytes``: larger request bodies get a 413;
        ``idle_timeout_s``: idle keep-alive connections are closed after it. ``overrides``
        replace fields of ``SandboxSettings`` (e.g. ``fee_percent``)."""
        settings = replace(settings or SandboxSettings(), **overrides)
        world = World(settings)
        app = StripeApp(world, Faults())
        server = WsgiServer(app, host=host, port=port, name="stripe-sandbox", max_body_bytes=max_body_bytes,
                            idle_timeout_s=idle_timeout_s)
        world.base_url = f"http://{server.host}:{server.port}"
        world.dispatcher = WebhookDispatcher(world)
        server.start()
        return cls(server, app)

    def save(self, path: Path) -> None:
        """Write every account's objects and events and the clock offset to ``path``.
        Webhook endpoints are left out (they point at this process's receivers), and so are
        idempotency keys (a restart forgets them, as it would after Stripe's 24 hours)."""
        world = self.world
        with world.lock:
            accounts = {
                acct_id: {"connected": acct.connected,
                          "objects": {kind: ({} if kind == "webhook_endpoint" else dict(objs))
                                      for kind, objs in acct.objects.items()}}
                for acct_id, acct in world.accounts.items()
            }
            write_snapshot(path, "stripe-sandbox", {"platform": world.platform.id, "offset_s": world.offset_s,
                                                    "accounts": accounts})

    def restore(self, path: Path) -> None:
        """Replace this sandbox's accounts and clock with a snapshot written by ``save``;
        ``SnapshotError`` (nothing changed) when the file is not one."""
        saved = read_snapshot(path, "stripe-sandbox")
        accounts: dict[str, Account] = {}
        for acct_id, acct in saved["accounts"].items():
            account = Account(acct_id, connected=bool(acct["connected"]))
            unknown = sorted(set(acct["objects"]) - set(account.objects))
            if unknown:
                raise SnapshotError(f"{path}: object kinds this sandbox does not have: {', '.join(unknown)}")
            for kind, objs in acct["objects"].items():
                account.objects[kind].update(objs)
                account.searchable_at.update(dict.fromkeys(objs, 0.0))  # searchable at once
            accounts[acct_id] = account
        if saved["platform"] not in accounts:
            raise SnapshotError(f"{path}: the platform account {saved['platform']} is missing")
        world = self.world
        with world.lock:
            world.accounts = accounts
            world.platform = accounts[saved["platform"]]
            world.offset_s = int(saved["offset_s"])
        self.platform_account = world.platform.id

    def stop(self) -> None:
        self._server.stop()
        if self.world.dispatcher is not None:
            self.world.dispatcher.stop()

    def __enter__(self) -> StripeSandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- counters, logs, faults -----------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Calls received per endpoint, e.g. ``{"POST /v1/invoices": 1}``."""
        return self.faults.counters()

    def calls(self, endpoint: str = "*") -> int:
        """Calls received by endpoints matching ``endpoint`` (``*`` patterns allowed)."""
        return len(self.faults.requests(endpoint))

    def reset_counters(self) -> None:
        self.faults.reset_counters()

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The request log (method, endpoint, account, idempotency_key, status, replayed, fault)."""
        return self.faults.requests(endpoint)

    def idempotency_keys(self, endpoint: str) -> list[str | None]:
        return [r["idempotency_key"] for r in self.faults.requests(endpoint)]

    def fail_next(self, endpoint: str = "*", times: int = 1, *, fault: str | int = 500,
                  latency_s: float = 0.0) -> None:
        """The next ``times`` calls of ``endpoint`` fail: an HTTP status (429, 500 …,
        answered before anything is applied), ``"reset"`` (applied, then the connection is
        dropped unanswered) or ``"reset_before"`` (dropped before applying)."""
        kind, status = _fault_kind(fault)
        self.faults.add(endpoint, kind, times=times, status=status, latency_s=latency_s)

    def add_latency(self, endpoint: str, seconds: float, *, times: int | None = None) -> None:
        self.faults.add(endpoint, "latency", times=times, latency_s=seconds)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- the world ----------------------------------------------------------------------
    def now(self) -> int:
        return self.world.now()

    def advance_clock(self, *, days: int = 0, seconds: int = 0) -> int:
        """Move the sandbox clock forward: balances become available, payouts arrive
        (``payout.paid``), auto-advancing drafts finalize. Returns the new time."""
        return self.world.advance(days * DAY + seconds)

    def pay_invoice(self, invoice_id: str, *, amount: int | None = None, method: str = "card",
                    fee: int | None = None, account: str | None = None) -> dict[str, Any]:
        """See ``Helpers.pay_invoice``; ``fee`` in cents overrides the pricing for this payment."""
        return self.helpers.pay_invoice(invoice_id, amount=amount, method=method, fee=fee, account=account)

    def refund(self, charge_id: str, *, amount: int | None = None, account: str | None = None) -> dict[str, Any]:
        return self.helpers.refund(charge_id, amount=amount, account=account)

    def create_payout(self, *, account: str | None = None) -> dict[str, Any] | None:
        """The daily automatic payout of the available balance (None when nothing is available)."""
        return self.helpers.create_payout(account=account)

    def add_adjustment(self, amount: int, description: str, *, account: str | None = None) -> dict[str, Any]:
        return self.helpers.add_adjustment(amount, description, account=account)

    def invoice(self, invoice_id: str, *, account: str | None = None) -> dict[str, Any]:
        return self.helpers.invoice(invoice_id, account=account)

    def invoice_sends(self, invoice_id: str, *, account: str | None = None) -> list[dict[str, Any]]:
        return self.helpers.invoice_sends(invoice_id, account=account)

    def invoices(self, *, account: str | None = None) -> list[dict[str, Any]]:
        return self.helpers.objects("invoice", account=account)

    def objects(self, kind: str, *, account: str | None = None) -> list[dict[str, Any]]:
        return self.helpers.objects(kind, account=account)

    def events(self, type: str | None = None, *, account: str | None = None) -> list[dict[str, Any]]:
        return self.helpers.events(type=type, account=account)

    def resend_event(self, event_id: str, *, account: str | None = None) -> None:
        self.helpers.resend_event(event_id, account=account)

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return list(self.world.dispatcher.log) if self.world.dispatcher else []

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return self.world.dispatcher.wait_idle(timeout) if self.world.dispatcher else True


class RemoteStripeSandbox:
    """Control a sandbox in another process through its ``/_sandbox`` API."""

    def __init__(self, api_base: str, api_key: str) -> None:
        self.api_base = api_base.rstrip("/")
        self.api_key = api_key
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode() if method != "GET" else None
        request = urllib.request.Request(f"{self.api_base}/_sandbox/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with self._opener.open(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def counters(self) -> dict[str, int]:
        return dict(self._call("GET", "counters"))

    def reset_counters(self) -> None:
        self._call("POST", "counters/reset")

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        suffix = f"?endpoint={urllib.request.quote(endpoint)}" if endpoint else ""
        return list(self._call("GET", "requests" + suffix))

    def fail_next(self, endpoint: str = "*", times: int = 1, *, fault: str | int = 500,
                  latency_s: float = 0.0) -> None:
        kind, status = _fault_kind(fault)
        self._call("POST", "faults", {"endpoint": endpoint, "kind": kind, "times": times, "status": status,
                                      "latency_s": latency_s})

    def add_latency(self, endpoint: str, seconds: float, *, times: int | None = None) -> None:
        self._call("POST", "faults", {"endpoint": endpoint, "kind": "latency", "times": times, "latency_s": seconds})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def now(self) -> int:
        return int(self._call("GET", "clock")["now"])

    def advance_clock(self, *, days: int = 0, seconds: int = 0) -> int:
        return int(self._call("POST", "clock/advance", {"days": days, "seconds": seconds})["now"])

    def pay_invoice(self, invoice_id: str, *, amount: int | None = None, method: str = "card",
                    fee: int | None = None, account: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", f"invoices/{invoice_id}/pay",
                               {"amount": amount, "method": method, "fee": fee, "account": account}))

    def refund(self, charge_id: str, *, amount: int | None = None, account: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", f"charges/{charge_id}/refund", {"amount": amount, "account": account}))

    def create_payout(self, *, account: str | None = None) -> dict[str, Any] | None:
        result = self._call("POST", "payouts", {"account": account})
        return dict(result) if result else None

    def add_adjustment(self, amount: int, description: str, *, account: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", "adjustments", {"amount": amount, "description": description,
                                                       "account": account}))

    def invoice_sends(self, invoice_id: str, *, account: str | None = None) -> list[dict[str, Any]]:
        suffix = f"?account={account}" if account else ""
        return list(self._call("GET", f"invoices/{invoice_id}/sends{suffix}"))

    def events(self, type: str | None = None, *, account: str | None = None) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in (("type", type), ("account", account)) if v)
        return list(self._call("GET", "events" + (f"?{query}" if query else "")))

    def resend_event(self, event_id: str, *, account: str | None = None) -> None:
        self._call("POST", f"events/{event_id}/resend", {"account": account})

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "webhooks"))

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return bool(self._call("POST", "webhooks/wait", {"timeout": timeout})["idle"])
