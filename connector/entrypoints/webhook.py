"""The Stripe webhook receiver: a WSGI app the daemon mounts at ``/stripe/webhook``, also
runnable alone (``serve``, on the connector's cheroot server) for tests and local use.

``POST`` with Stripe's JSON body and ``Stripe-Signature`` header. Each receiver is one org:
its endpoint secret, a verifier (the Stripe adapter's ``verify_event``) and its
``InvoiceStatusService``. The body must verify against some receiver's secret (300 s
tolerance) or the answer is 400 and nothing is stored. A verified event is handed to the
receivers whose secret verified it until one knows the invoice. Answers: 200 for every
verified event (duplicates and unknown types included, so Stripe stops retrying), 400
bad signature, 400 with one log line for a signed body that is not a readable event
(``data`` not an object, text where numbers belong, nesting too deep: retrying it cannot
help), 408 for a body that stalls past the read timeout, 413 for a body over ``MAX_BODY``
(by its Content-Length, or once a chunked body passes it), 405 other methods, 503 when the
store is busy (Stripe retries). Bodies may come with a Content-Length or chunked. The
signature's timestamp must be within 300 s either way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from connector.entrypoints.http_server import READ_TIMEOUT_S, HttpServer, WsgiApp
from connector.errors import PermanentError, TransientError
from connector.services.billing_port import BillingEvent, MalformedEvent
from connector.services.invoice_status import InvoiceStatusService

Verify = Callable[[bytes, "str | None", str], BillingEvent]
MAX_BODY = 1024 * 1024  # Stripe events are a few KB; refuse anything absurd (413)

log = structlog.get_logger("connector.webhook")


@dataclass(frozen=True)
class WebhookReceiver:
    org: str
    secret: str = field(repr=False)
    verify: Verify
    service: InvoiceStatusService


def _answer(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@dataclass(frozen=True)
class _Refusal:
    status: str
    payload: dict[str, Any]


def make_webhook_app(receivers: Sequence[WebhookReceiver]) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", {"error": "POST Stripe events here"})
        payload = _request_body(environ)
        if isinstance(payload, _Refusal):
            return _answer(start_response, payload.status, payload.payload)
        signature = environ.get("HTTP_STRIPE_SIGNATURE")
        verified = _verified(receivers, payload, signature)
        if isinstance(verified, _Refusal):
            return _answer(start_response, verified.status, verified.payload)
        outcome = "unknown_invoice"
        try:
            for receiver, event in verified:
                # Every line logged while handling it (retries included) names the org.
                with structlog.contextvars.bound_contextvars(org=receiver.org, job="webhook", event_id=event.id):
                    outcome = receiver.service.handle_event(event)
                if outcome != "unknown_invoice":
                    break
        except TransientError as exc:
            log.warning("webhook.deferred", error=str(exc))
            return _answer(start_response, "503 Service Unavailable", {"error": "busy, retry later"})
        return _answer(start_response, "200 OK", {"received": True, "outcome": outcome})

    return app


def _request_body(environ: dict[str, Any]) -> bytes | _Refusal:
    """The body (by Content-Length, or chunked), or why it is refused (400, 408, 413)."""
    chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
    try:
        length = None if chunked else int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length is not None and length < 0:
        return _Refusal("400 Bad Request", {"error": "bad Content-Length"})
    if length is not None and length > MAX_BODY:
        return _too_large(length)
    try:
        payload = _read_body(environ["wsgi.input"], length)
    except OSError as exc:  # the client stalled past the read timeout or went away
        log.warning("webhook.rejected", reason="slow_client", error=type(exc).__name__)
        return _Refusal("408 Request Timeout", {"error": "the body did not arrive in time"})
    except ValueError as exc:  # cheroot's chunked reader: a chunk size or CRLF that isn't there
        log.warning("webhook.rejected", reason="bad_chunked_body", error=str(exc))
        return _Refusal("400 Bad Request", {"error": "the chunked body is malformed"})
    return _too_large(None) if len(payload) > MAX_BODY else payload


def _verified(receivers: Sequence[WebhookReceiver], payload: bytes,
              signature: str | None) -> list[tuple[WebhookReceiver, BillingEvent]] | _Refusal:
    """The receivers whose secret verifies the body, with the event; else why not (400)."""
    verified: list[tuple[WebhookReceiver, BillingEvent]] = []
    malformed: tuple[WebhookReceiver, Exception] | None = None
    for receiver in receivers:
        try:
            verified.append((receiver, receiver.verify(payload, signature, receiver.secret)))
        except MalformedEvent as exc:  # signed by this org's secret, but not a readable event
            malformed = malformed or (receiver, exc)
        except PermanentError:
            continue
    if verified:
        return verified
    if malformed is not None:
        log.warning("webhook.rejected", reason="malformed", org=malformed[0].org, error=str(malformed[1]))
        return _Refusal("400 Bad Request", {"error": "not a readable Stripe event"})
    log.warning("webhook.rejected", reason="signature", has_header=signature is not None)
    return _Refusal("400 Bad Request", {"error": "signature does not verify"})


def receivers_for(runtimes: Iterable[Any], *, log_: Any = None) -> list[WebhookReceiver]:
    """One receiver per org runtime (``connector.bootstrap.OrgRuntime``) whose config has a
    ``[stripe] webhook_secret``; orgs without one are skipped (and said so)."""
    from connector.services.invoice_status import build_invoice_status

    found: list[WebhookReceiver] = []
    for runtime in runtimes:
        secret = runtime.config.stripe.webhook_secret
        if secret is None or not secret.get_secret_value():
            (log_ or log).info("webhook.no_secret", org=runtime.alias)
            continue
        # Its log lines carry the org's alias under `org`, like every other line.
        service = build_invoice_status(runtime, with_billing=False, log=runtime.logger("webhook"))
        found.append(WebhookReceiver(runtime.alias, secret.get_secret_value(), runtime.billing().verify_event, service))
    return found


def _too_large(length: int | None) -> _Refusal:
    log.warning("webhook.rejected", reason="too_large", content_length=length, limit=MAX_BODY)
    return _Refusal("413 Request Entity Too Large", {"error": f"a Stripe event is at most {MAX_BODY} bytes"})


def _read_body(stream: Any, length: int | None) -> bytes:
    """Exactly ``length`` bytes (a short read means the client stopped sending); a chunked
    body (``length`` None) to its end, but never more than ``MAX_BODY`` + 1 bytes."""
    if length is None:
        parts: list[bytes] = []
        size = 0
        while size <= MAX_BODY:
            part = stream.read(min(65536, MAX_BODY + 1 - size))
            if not part:
                break
            parts.append(bytes(part))
            size += len(part)
        return b"".join(parts)
    if not length:
        return b""
    data = stream.read(length)
    if len(data) != length:
        raise ConnectionError(f"the client sent {len(data)} of {length} bytes")
    return bytes(data)


def serve(app: WsgiApp, *, host: str = "127.0.0.1", port: int = 0,
          read_timeout_s: float = READ_TIMEOUT_S) -> tuple[HttpServer, threading.Thread]:
    """Serve ``app`` from a background thread (port 0 = a free port) on the connector's
    HTTP server; stop with ``server.shutdown()``. A request stalling ``read_timeout_s`` on
    the socket is dropped (408 when its body stalls)."""
    server = HttpServer(app, host, port, timeout_s=read_timeout_s, name="stripe-webhook")
    server.start()
    return server, server.thread


def make_app_for_runtimes(runtimes: Iterable[Any]) -> WsgiApp:
    """The receiver for every org runtime that has a webhook secret (what the daemon mounts)."""
    return make_webhook_app(receivers_for(runtimes))
