"""The daemon's HTTP app: /healthz, /readyz, /metrics and the Stripe webhook, one route table
served by the connector's cheroot server (``connector.entrypoints.http_server``: a fixed
worker pool, socket timeouts, a body cap, chunked bodies), bound to loopback unless the
operator says otherwise.

``ROUTES`` maps a path (or a path prefix) to its handler and the methods it takes; the
webhook and dashboard routes take every method and let their app answer (the receiver:
405 for anything but POST; the dashboard: 405 for anything but GET/HEAD).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from connector.entrypoints.http_server import HttpServer, WsgiApp
from connector.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from connector.entrypoints.daemon.scheduler import Scheduler
    from connector.metrics import DaemonMetrics

log = structlog.get_logger("connector.daemon")
StartResponse = Callable[..., Any]


class Probes(Protocol):
    def readiness(self) -> tuple[bool, dict[str, Any]]: ...
    def metrics_text(self) -> bytes: ...
    def webhook_app(self) -> WsgiApp | None: ...
    def dashboard_app(self) -> WsgiApp | None: ...


Handler = Callable[[Probes, dict[str, Any], StartResponse], Iterable[bytes]]


def _respond(start_response: StartResponse, status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def healthz(probes: Probes, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _respond(start_response, "200 OK", b"ok\n", "text/plain")


def readyz(probes: Probes, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    ready, detail = probes.readiness()
    body = json.dumps(detail, indent=1, default=str).encode() + b"\n"
    return _respond(start_response, "200 OK" if ready else "503 Service Unavailable", body, "application/json")


def metrics(probes: Probes, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _respond(start_response, "200 OK", probes.metrics_text(), CONTENT_TYPE_LATEST)


def stripe_webhook(probes: Probes, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    webhook = probes.webhook_app()
    if webhook is None:
        return _respond(start_response, "404 Not Found", b"no Stripe webhook receiver in this build\n", "text/plain")
    return webhook(environ, start_response)


def dashboard(probes: Probes, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    pages = probes.dashboard_app()
    if pages is None:
        return _respond(start_response, "404 Not Found", b"not found\n", "text/plain")
    return pages(environ, start_response)


@dataclass(frozen=True)
class Route:
    path: str
    handler: Handler
    methods: frozenset[str] | None = frozenset({"GET", "HEAD"})  # None: any (the handler answers)
    prefix: bool = False  # ``path`` and everything under it

    def matches(self, path: str) -> bool:
        return path == self.path or (self.prefix and path.startswith(self.path + "/"))


ROUTES: tuple[Route, ...] = (
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
    Route("/stripe/webhook", stripe_webhook, methods=None, prefix=True),  # /stripe/webhook[/<alias>]
    Route("/", dashboard, methods=None),  # the read-only pages (connector.entrypoints.dashboard)
    Route("/orgs", dashboard, methods=None, prefix=True),  # /orgs/<alias>[/orders/<id>]
)


def make_app(probes: Probes, routes: Iterable[Route] = ROUTES) -> WsgiApp:
    table = tuple(routes)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        route = next((r for r in table if r.matches(path)), None)
        if route is None:
            return _respond(start_response, "404 Not Found", b"not found\n", "text/plain")
        if route.methods is not None and environ.get("REQUEST_METHOD", "GET") not in route.methods:
            return _respond(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain")
        return route.handler(probes, environ, start_response)

    return app


class HttpEndpoint:
    """Serves ``make_app(probes)`` on (bind, port) in a background thread."""

    def __init__(self, probes: Probes, bind: str, port: int) -> None:
        self._server = HttpServer(make_app(probes), bind, port, name="daemon-http")

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


class DaemonProbes:
    """What the probes read: the scheduler's orgs and the metrics, and the webhook receiver."""

    def __init__(self, scheduler: Scheduler, metrics: DaemonMetrics, instance_id: str,
                 webhook: WsgiApp | None = None, dashboard: WsgiApp | None = None) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self.instance_id = instance_id
        self.webhook = webhook
        self.dashboard = dashboard

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        running = self.scheduler.running
        ready = running
        orgs: dict[str, Any] = {}
        for alias, slot in self.scheduler.slots.items():
            info: dict[str, Any] = {"jobs": sorted(slot.plans)}
            runtime = slot.runtime
            if runtime is None:
                info["database"] = f"unavailable: {slot.error}"
                ready = False
            else:
                try:
                    info["database"] = "ok"
                    info["last_success"] = _last_successes(runtime, list(slot.plans))
                except Exception as exc:
                    info["database"] = f"error: {type(exc).__name__}"
                    info.pop("last_success", None)
                    ready = False
            orgs[alias] = info
        return ready, {"ready": ready, "instance": self.instance_id,
                       "scheduler": "running" if running else "stopped", "orgs": orgs}

    def metrics_text(self) -> bytes:
        for alias, runtime in self.scheduler.runtimes().items():
            try:
                with runtime.uow() as uow:
                    org_id = runtime.org_id
                    dead = uow.dead_letters.count_open(org_id)
                    discrepancies = len(uow.reconciliation.list(org_id, discrepancies_only=True))
                    missing = uow.dead_letters.count_open(org_id, "invoicing", error_code="INVOICE_MISSING")
                    mismatches = uow.dead_letters.count_open(org_id, "invoicing", error_code="INVOICE_MISMATCH")
                    tasks = self.scheduler.slots[alias].plans
                    last = {j: getattr(uow.job_runs.last_success(org_id, j), "finished_at", None) for j in tasks}
                    alerts = uow.alerts.count_pending(org_id) if runtime.config.alerts else None
            except Exception as exc:  # a scrape still answers with the counters it has
                log.warning("metrics.store_unavailable", org=alias, error=type(exc).__name__)
                continue
            self.metrics.set_store_figures(alias, dead_letters_open=dead, discrepancies=discrepancies,
                                           invoices_missing=missing, invoice_mismatches=mismatches,
                                           last_success=last, alerts_pending=alerts)
        return self.metrics.render()

    def webhook_app(self) -> WsgiApp | None:
        return self.webhook

    def dashboard_app(self) -> WsgiApp | None:
        return self.dashboard


def _last_successes(runtime: Any, jobs: list[str]) -> dict[str, str | None]:
    from sqlalchemy import text

    out: dict[str, str | None] = {}
    with runtime.uow() as uow:
        uow.session.execute(text("SELECT 1"))
        for job in jobs:
            run = uow.job_runs.last_success(runtime.org_id, job)
            out[job] = run.finished_at.isoformat() if run is not None and run.finished_at else None
    return out
