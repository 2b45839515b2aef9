"""The webhook receiver and the daemon's routes on the connector's HTTP server (cheroot):
chunked bodies are read whole, a body over the limit is a 413 (by its Content-Length or
once a chunked body passes it), and the route table answers 404/405 itself. The receiver
runs on the in-memory fakes: what is tested here is HTTP, not invoice status."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from connector.entrypoints.daemon.app import HttpEndpoint, make_app
from connector.entrypoints.webhook import MAX_BODY, WebhookReceiver, make_webhook_app, serve
from connector.services.invoice_status import InvoiceStatusService
from tests.fakes import FakeBilling, FakeStore, FakeUnitOfWork

SECRET = "whsec_test"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def url(store: FakeStore) -> Iterator[str]:
    service = InvoiceStatusService(uow=lambda: FakeUnitOfWork(store), billing=None, clock=lambda: datetime.now(UTC),
                                   org_id="00D1")
    app = make_webhook_app([WebhookReceiver("acme", SECRET, FakeBilling().verify_event, service)])
    server, thread = serve(app, read_timeout_s=3.0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def raw_post(url: str, head: bytes, body: bytes) -> tuple[int, bytes]:
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /stripe/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n" + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_chunked_event_is_read_whole_and_handled(url: str, store: FakeStore) -> None:
    status, body = raw_post(url, f"Transfer-Encoding: chunked\r\nStripe-Signature: {SECRET}\r\n".encode(),
                            chunked(b"evt_", b"chunked", b"_1"))

    assert status == 200 and json.loads(body) == {"received": True, "outcome": "ignored"}
    assert list(store.stripe_events) == ["evt_chunked_1"]  # the three chunks, one body


def test_an_oversized_event_is_a_413_by_its_length(url: str, store: FakeStore) -> None:
    answer = requests.post(url, data=b"x" * (MAX_BODY + 1), headers={"Stripe-Signature": SECRET}, timeout=10)
    assert answer.status_code == 413 and "at most" in answer.json()["error"]
    assert store.stripe_events == {}


def test_a_content_length_over_the_servers_cap_is_refused_before_the_body(url: str) -> None:
    status, _ = raw_post(url, b"Content-Length: 50000000\r\n", b"")  # no body sent: answered at once
    assert status == 413


def test_an_oversized_chunked_event_is_a_413(url: str, store: FakeStore) -> None:
    part = b"x" * 65536
    status, _ = raw_post(url, f"Transfer-Encoding: chunked\r\nStripe-Signature: {SECRET}\r\n".encode(),
                         chunked(*[part] * (MAX_BODY // len(part) + 1)))
    assert status == 413 and store.stripe_events == {}


@pytest.mark.parametrize("framing", [b"zz\r\nevt_1\r\n0\r\n\r\n", b"5\r\nevt_1XY0\r\n\r\n"],
                         ids=["size-not-hex", "no-crlf-after-chunk"])
def test_a_malformed_chunked_event_is_a_400_not_a_500(url: str, store: FakeStore, framing: bytes) -> None:
    """Framing no reader can follow is the sender's error: 400, so it isn't taken for an
    outage of ours (Stripe retries a 5xx for days)."""
    status, body = raw_post(url, f"Transfer-Encoding: chunked\r\nStripe-Signature: {SECRET}\r\n".encode(), framing)
    assert status == 400 and json.loads(body) == {"error": "the chunked body is malformed"}
    assert store.stripe_events == {}


def test_an_event_within_the_limit_still_verifies(url: str, store: FakeStore) -> None:
    assert requests.post(url, data=b"evt_ok", headers={"Stripe-Signature": SECRET}, timeout=10).status_code == 200
    assert requests.post(url, data=b"evt_bad", headers={"Stripe-Signature": "nope"}, timeout=10).status_code == 400
    assert requests.get(url, timeout=10).status_code == 405


class Probes:
    def __init__(self) -> None:
        self.webhook_calls = 0

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return False, {"ready": False}

    def metrics_text(self) -> bytes:
        return b"# metrics\n"

    def webhook_app(self) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            self.webhook_calls += 1
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [environ["PATH_INFO"].encode()]
        return app


def test_the_daemons_route_table_on_the_server() -> None:
    probes = Probes()
    endpoint = HttpEndpoint(probes, "127.0.0.1", 0)
    endpoint.start()
    base = f"http://127.0.0.1:{endpoint.address[1]}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).text == "ok\n"
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
        assert requests.get(f"{base}/metrics", timeout=5).text == "# metrics\n"
        assert requests.post(f"{base}/metrics", timeout=5).status_code == 405
        assert requests.get(f"{base}/nowhere", timeout=5).status_code == 404
        assert requests.post(f"{base}/stripe/webhook/acme", data=b"{}", timeout=5).text == "/stripe/webhook/acme"
        assert requests.get(f"{base}/stripe/webhooks", timeout=5).status_code == 404  # a prefix, not a substring
        assert probes.webhook_calls == 1
    finally:
        endpoint.stop()


def test_the_route_table_without_a_server() -> None:
    app = make_app(Probes())
    seen: list[str] = []
    environ = {"PATH_INFO": "/healthz", "REQUEST_METHOD": "HEAD"}
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["200 OK"] and body == b"ok\n"


def test_an_app_that_raises_before_answering_is_a_500_not_a_dropped_connection() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("a bug")

    server, thread = serve(broken)
    try:
        answer = requests.post(f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook", data=b"{}", timeout=5)
        assert answer.status_code == 500 and "a bug" not in answer.text
    finally:
        server.shutdown()
        thread.join(timeout=5)
