"""The daemon's small HTTP server: /healthz, /readyz, /metrics and /stripe/webhook.

A stdlib ``wsgiref`` server with a thread per request (a slow scrape never blocks a
webhook), bound to loopback unless the operator says otherwise. Stripe's receiver is a
WSGI app of its own and is mounted as is.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog

from connector.entrypoints.webhook import READ_TIMEOUT_S
from connector.metrics import CONTENT_TYPE_LATEST

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
log = structlog.get_logger("connector.daemon")


class Probes(Protocol):
    def readiness(self) -> tuple[bool, dict[str, Any]]: ...
    def metrics_text(self) -> bytes: ...
    def webhook_app(self) -> WsgiApp | None: ...
    def dashboard_app(self) -> WsgiApp | None: ...


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A dropped or stalled connection is one debug line, not a traceback on stderr."""
        import sys

        exc = sys.exc_info()[1]
        log.debug("http.connection_dropped", error=type(exc).__name__ if exc else None)


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT_S  # a client that stalls mid-request never holds a thread for good

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http.request", client=self.client_address[0], line=format % args)


def _respond(start_response: Callable[..., Any], status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def make_app(probes: Probes) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path.startswith("/stripe/webhook"):
            webhook = probes.webhook_app()
            if webhook is None:
                return _respond(start_response, "404 Not Found", b"no Stripe webhook receiver in this build\n",
                                "text/plain")
            return webhook(environ, start_response)
        dashboard = probes.dashboard_app()
        if dashboard is not None and dashboard.handles(path):  # type: ignore[attr-defined]
            return dashboard(environ, start_response)
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain")
        if path == "/healthz":
            return _respond(start_response, "200 OK", b"ok\n", "text/plain")
        if path == "/readyz":
            ready, detail = probes.readiness()
            body = json.dumps(detail, indent=1, default=str).encode() + b"\n"
            return _respond(start_response, "200 OK" if ready else "503 Service Unavailable", body,
                            "application/json")
        if path == "/metrics":
            return _respond(start_response, "200 OK", probes.metrics_text(), CONTENT_TYPE_LATEST)
        return _respond(start_response, "404 Not Found", b"not found\n", "text/plain")

    return app


class HttpEndpoint:
    """Serves ``make_app(probes)`` on (bind, port) in a background thread."""

    def __init__(self, probes: Probes, bind: str, port: int) -> None:
        self._server = make_server(bind, port, make_app(probes), server_class=_ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="daemon-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
