"""Mount the Stripe webhook receiver (``connector.entrypoints.webhook``) in the daemon.

``/stripe/webhook`` takes every org's events: the receiver finds the org whose endpoint
secret verifies the signature. ``/stripe/webhook/<alias>`` takes one org's only, for
partners who register one Stripe endpoint per org. Orgs without a ``webhook_secret`` are
not served (the receiver says so in the log). The receivers are rebuilt when an org whose
database was down at start becomes ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from connector.bootstrap import OrgRuntime
from connector.entrypoints.http_server import WsgiApp
from connector.entrypoints.webhook import make_webhook_app, receivers_for

log = structlog.get_logger("connector.daemon")
PREFIX = "/stripe/webhook"


def mount_webhook(runtimes: Callable[[], Mapping[str, OrgRuntime]]) -> WsgiApp:
    """The receiver for the orgs ``runtimes()`` names ready (alias -> runtime), at each call."""
    return _Router(runtimes)


def _not_found(start_response: Callable[..., Any], message: str) -> list[bytes]:
    body = (message + "\n").encode()
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _Router:
    def __init__(self, runtimes: Callable[[], Mapping[str, OrgRuntime]]) -> None:
        self.runtimes = runtimes
        self._lock = threading.Lock()
        self._ready: tuple[str, ...] | None = None
        self._all: WsgiApp | None = None
        self._per_org: dict[str, WsgiApp] = {}

    def _apps(self) -> tuple[WsgiApp | None, dict[str, WsgiApp]]:
        runtimes = dict(self.runtimes())
        ready = tuple(sorted(runtimes))
        with self._lock:
            if ready != self._ready:
                receivers = receivers_for(runtimes.values())
                self._all = make_webhook_app(receivers) if receivers else None
                self._per_org = {r.org: make_webhook_app([r]) for r in receivers}
                self._ready = ready
                log.info("webhook.mounted", orgs=sorted(self._per_org), path=PREFIX)
            return self._all, self._per_org

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        every, per_org = self._apps()
        alias = (environ.get("PATH_INFO") or "")[len(PREFIX):].strip("/")
        if not alias:
            if every is None:
                return _not_found(start_response, "no org has a Stripe webhook_secret configured")
            return every(environ, start_response)
        app = per_org.get(alias)
        if app is None:
            return _not_found(start_response, f"no webhook receiver for org {alias!r}")
        return app(environ, start_response)
