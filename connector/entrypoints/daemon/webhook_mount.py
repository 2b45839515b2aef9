"""Mount the Stripe webhook receiver (``connector.entrypoints.webhook``) in the daemon.

``/stripe/webhook`` takes every org's events: the receiver finds the org whose endpoint
secret verifies the signature. ``/stripe/webhook/<alias>`` takes one org's only, for
partners who register one Stripe endpoint per org. Orgs without a ``webhook_secret`` are
not served (the receiver says so in the log). The receivers are rebuilt when an org whose
database was down at start becomes ready. Until the receiver module is in the build, the
daemon answers 404 there and says so once in its log.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from connector.entrypoints.daemon import Daemon
    from connector.entrypoints.daemon.http import WsgiApp

log = structlog.get_logger("connector.daemon")
MODULE = "connector.entrypoints.webhook"
PREFIX = "/stripe/webhook"


def mount_webhook(daemon: Daemon) -> WsgiApp | None:
    try:
        module = importlib.import_module(MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == MODULE:
            log.info("webhook.unavailable", reason=f"{MODULE} is not installed")
            return None
        raise
    make_app = getattr(module, "make_webhook_app", None)
    receivers_for = getattr(module, "receivers_for", None)
    if make_app is None or receivers_for is None:
        log.info("webhook.unavailable", reason=f"{MODULE} has no make_webhook_app/receivers_for")
        return None
    return _Router(daemon, make_app, receivers_for)


def _not_found(start_response: Callable[..., Any], message: str) -> list[bytes]:
    body = (message + "\n").encode()
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _Router:
    def __init__(self, daemon: Daemon, make_app: Callable[..., WsgiApp], receivers_for: Callable[..., list[Any]]):
        self.daemon = daemon
        self.make_app = make_app
        self.receivers_for = receivers_for
        self._lock = threading.Lock()
        self._ready: tuple[str, ...] | None = None
        self._all: WsgiApp | None = None
        self._per_org: dict[str, WsgiApp] = {}

    def _apps(self) -> tuple[WsgiApp | None, dict[str, WsgiApp]]:
        runtimes = {alias: slot.runtime for alias, slot in self.daemon.slots.items() if slot.runtime is not None}
        ready = tuple(sorted(runtimes))
        with self._lock:
            if ready != self._ready:
                receivers = self.receivers_for(runtimes.values())
                self._all = self.make_app(receivers) if receivers else None
                self._per_org = {r.org: self.make_app([r]) for r in receivers}
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
