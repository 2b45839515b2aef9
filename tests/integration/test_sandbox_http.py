"""Both sandboxes' HTTP stack (cheroot, see gtm_sandbox/wsgi.py), spoken to over raw sockets:
SDKs always send Content-Length, while the defects and limits here are about what they don't
send: chunked request bodies (as Node's clients do), bodies over the size limit (413), idle
keep-alive connections (closed after the idle timeout), and stop() closing what is open."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import requests

from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe.handle import StripeSandbox
from tests.fixtures.org import tls_session

CONNECT_TIMEOUT_S = 10


# -- raw HTTP/1.1 over a socket ------------------------------------------------------------------

def _connect_stripe(box: StripeSandbox) -> socket.socket:
    host, port = box.api_base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)


def _connect_org(org: SandboxOrg) -> socket.socket:
    ctx = ssl.create_default_context(cafile=str(org.ca_file))
    raw = socket.create_connection(("127.0.0.1", org.port), timeout=CONNECT_TIMEOUT_S)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _chunked(body: bytes, size: int = 64) -> bytes:
    """``body`` in chunks of ``size`` bytes, then the last (empty) chunk. Several chunks even
    for small bodies: a reader that stops after the first would be caught."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def _request(sock: socket.socket, method: str, path: str, headers: dict[str, str], body: bytes = b"",
             *, chunked: bool = False) -> None:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = _chunked(body)
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)


class _Reader:
    """Reads responses off one connection (keep-alive: several in a row)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        length = int(headers["content-length"])  # both sandboxes always send it
        while len(self.buf) < length:
            if not self._fill():
                raise ConnectionError("connection closed inside a body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self, within_s: float) -> bool:
        """Whether the server closes the connection (EOF or reset) within ``within_s``."""
        self.sock.settimeout(within_s)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return True
        except TimeoutError:
            return False


def _closed(sock: socket.socket) -> bool:
    return _Reader(sock).closed_by_server(5)


# -- sandboxes ---------------------------------------------------------------------------------

@pytest.fixture
def small_org() -> Iterator[SandboxOrg]:
    """An org with a 4 KiB body limit and a 0.5 s idle timeout."""
    with SandboxOrg.start(data=None, max_body_bytes=4096, idle_timeout_s=0.5) as org:
        yield org


@pytest.fixture
def small_stripe() -> Iterator[StripeSandbox]:
    """A Stripe sandbox with a 4 KiB body limit and a 0.5 s idle timeout."""
    with StripeSandbox.start(max_body_bytes=4096, idle_timeout_s=0.5) as box:
        yield box


def _token_form(org: SandboxOrg) -> bytes:
    return urlencode({"grant_type": "client_credentials", "client_id": org.client_id,
                      "client_secret": org.client_secret}).encode()


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- chunked request bodies ----------------------------------------------------------------------

def test_org_token_request_with_a_chunked_body_succeeds(small_org: SandboxOrg) -> None:
    with _connect_org(small_org) as sock:
        _request(sock, "POST", "/services/oauth2/token", _FORM, _token_form(small_org), chunked=True)
        status, _, body = _Reader(sock).response()
    assert status == 200, body
    token = json.loads(body)["access_token"]
    # The token is a real session: the API takes it.
    session = tls_session(small_org)
    resp = session.get(f"{small_org.instance_url}/services/data/v{small_org.api_version}/limits",
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200


def test_org_record_create_with_a_chunked_json_body_keeps_the_fields(small_org: SandboxOrg) -> None:
    with _connect_org(small_org) as sock:
        reader = _Reader(sock)
        _request(sock, "POST", "/services/oauth2/token", _FORM, _token_form(small_org), chunked=True)
        token = json.loads(reader.response()[2])["access_token"]
        record = json.dumps({"Name": "Chunked offer", "Status": "Draft", "OfferType": "Initial"}).encode()
        _request(sock, "POST", f"/services/data/v{small_org.api_version}/sobjects/SfdcPartnerOffer",
                 {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, record, chunked=True)
        status, _, body = reader.response()
    assert status == 201, body
    assert small_org.get("SfdcPartnerOffer", json.loads(body)["id"])["Name"] == "Chunked offer"


def test_stripe_customer_create_with_a_chunked_body_keeps_the_posted_fields(small_stripe: StripeSandbox) -> None:
    form = urlencode({"email": "ops@partner.example", "name": "Partner Ltd"}).encode()
    with _connect_stripe(small_stripe) as sock:
        _request(sock, "POST", "/v1/customers", {**_FORM, "Authorization": f"Bearer {small_stripe.api_key}"},
                 form, chunked=True)
        status, _, body = _Reader(sock).response()
    assert status == 200, body
    created = json.loads(body)
    assert (created["email"], created["name"]) == ("ops@partner.example", "Partner Ltd")
    fetched = requests.get(f"{small_stripe.api_base}/v1/customers/{created['id']}",
                           headers={"Authorization": f"Bearer {small_stripe.api_key}"}, timeout=10).json()
    assert fetched["email"] == "ops@partner.example"


# -- body size limit -----------------------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_org_refuses_a_body_over_the_limit_with_413(small_org: SandboxOrg, chunked: bool) -> None:
    big = _token_form(small_org) + b"&padding=" + b"x" * 5000
    with _connect_org(small_org) as sock:
        _request(sock, "POST", "/services/oauth2/token", _FORM, big, chunked=chunked)
        status, _, _ = _Reader(sock).response()
        assert status == 413
        assert _closed(sock)  # the rest of an oversized body is never read: the connection ends
    assert small_org.counters()["tokens_issued"] == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_stripe_refuses_a_body_over_the_limit_with_413(small_stripe: StripeSandbox, chunked: bool) -> None:
    big = urlencode({"email": "ops@partner.example", "description": "x" * 5000}).encode()
    with _connect_stripe(small_stripe) as sock:
        _request(sock, "POST", "/v1/customers", {**_FORM, "Authorization": f"Bearer {small_stripe.api_key}"},
                 big, chunked=chunked)
        status, _, _ = _Reader(sock).response()
        assert status == 413
        assert _closed(sock)
    assert small_stripe.counters().get("POST /v1/customers", 0) == 0  # never reached the API


def test_bodies_under_the_limit_are_served() -> None:
    with StripeSandbox.start(max_body_bytes=4096) as box, _connect_stripe(box) as sock:
        form = urlencode({"description": "y" * 3000}).encode()
        _request(sock, "POST", "/v1/customers", {**_FORM, "Authorization": f"Bearer {box.api_key}"}, form,
                 chunked=True)
        status, _, body = _Reader(sock).response()
    assert status == 200
    assert json.loads(body)["description"] == "y" * 3000


# -- malformed bodies: the client's error -------------------------------------------------------

# Framing no chunked reader can follow: a size that is not hexadecimal; a chunk without its CRLF.
_BAD_CHUNKS = {"size-not-hex": b"zz\r\nabc\r\n0\r\n\r\n", "no-crlf-after-chunk": b"3\r\nabcXY0\r\n\r\n"}


def _raw_chunked(sock: socket.socket, path: str, headers: dict[str, str], framing: bytes) -> None:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + framing)


@pytest.mark.parametrize("framing", list(_BAD_CHUNKS.values()), ids=list(_BAD_CHUNKS))
def test_org_answers_a_malformed_chunked_body_with_400(small_org: SandboxOrg, framing: bytes) -> None:
    with _connect_org(small_org) as sock:
        _raw_chunked(sock, "/services/oauth2/token", _FORM, framing)
        status, _, body = _Reader(sock).response()
    assert status == 400, body
    assert json.loads(body)[0]["errorCode"] == "BAD_REQUEST"
    assert "chunked" in json.loads(body)[0]["message"]
    assert small_org.counters()["tokens_issued"] == 0
    # The server goes on serving.
    assert tls_session(small_org).get(f"{small_org.instance_url}/services/data/").status_code == 200


@pytest.mark.parametrize("framing", list(_BAD_CHUNKS.values()), ids=list(_BAD_CHUNKS))
def test_stripe_answers_a_malformed_chunked_body_with_400(small_stripe: StripeSandbox, framing: bytes) -> None:
    with _connect_stripe(small_stripe) as sock:
        _raw_chunked(sock, "/v1/customers", {**_FORM, "Authorization": f"Bearer {small_stripe.api_key}"}, framing)
        status, _, body = _Reader(sock).response()
    assert status == 400, body
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert small_stripe.counters().get("POST /v1/customers", 0) == 0


def test_stripe_answers_a_body_that_is_not_utf8_with_400(small_stripe: StripeSandbox) -> None:
    with _connect_stripe(small_stripe) as sock:
        _request(sock, "POST", "/v1/customers", {**_FORM, "Authorization": f"Bearer {small_stripe.api_key}"},
                 b"name=\xff\xfe")
        status, _, body = _Reader(sock).response()
    assert status == 400, body
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


# -- TLS handshakes ------------------------------------------------------------------------------

def test_a_client_that_never_says_hello_holds_up_no_one() -> None:
    """A TCP connection to the org that never starts its TLS handshake (a port probe, a stuck
    client) must not keep others from being served: the handshake is not done in the accept
    loop. With a 20 s idle timeout, a handshake there would hold the next client ~20 s."""
    with SandboxOrg.start(data=None, idle_timeout_s=20) as org:
        silent = socket.create_connection(("127.0.0.1", org.port), timeout=CONNECT_TIMEOUT_S)
        try:
            time.sleep(0.2)  # the server has accepted it
            started = time.monotonic()
            resp = tls_session(org).get(f"{org.instance_url}/services/data/", timeout=10)
            assert resp.status_code == 200
            assert time.monotonic() - started < 5
        finally:
            silent.close()


def test_a_silent_connection_is_closed_after_the_idle_timeout(small_org: SandboxOrg) -> None:
    with socket.create_connection(("127.0.0.1", small_org.port), timeout=CONNECT_TIMEOUT_S) as silent:
        started = time.monotonic()
        assert _Reader(silent).closed_by_server(within_s=5)
        assert time.monotonic() - started < 3  # the 0.5 s idle timeout


def test_plain_http_on_the_tls_port_gets_a_plain_400(small_org: SandboxOrg) -> None:
    with socket.create_connection(("127.0.0.1", small_org.port), timeout=CONNECT_TIMEOUT_S) as sock:
        _request(sock, "GET", "/services/data/", {})
        status, _, body = _Reader(sock).response()
    assert status == 400
    assert b"HTTPS-only" in body


def test_a_failed_handshake_is_a_debug_line_of_the_sandbox_logger_not_stderr(
    small_org: SandboxOrg, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    """cheroot writes its error lines to stderr unless the server says otherwise: a port
    probe or a plain-HTTP client would print "TLS handshake … failed" into the test output
    and the sandbox command's terminal."""
    with caplog.at_level(logging.DEBUG, logger="gtm_sandbox.http"):
        with socket.create_connection(("127.0.0.1", small_org.port), timeout=CONNECT_TIMEOUT_S) as sock:
            _request(sock, "GET", "/services/data/", {})
            assert _Reader(sock).response()[0] == 400
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker thread logs after it answered
    [line] = [r for r in caplog.records if r.name == "gtm_sandbox.http"]
    assert line.levelno == logging.DEBUG and "TLS handshake" in line.getMessage()
    assert "TLS handshake" not in capfd.readouterr().err


# -- idle keep-alive connections -----------------------------------------------------------------

def test_org_keeps_a_connection_alive_then_closes_it_when_idle(small_org: SandboxOrg) -> None:
    with _connect_org(small_org) as sock:
        reader = _Reader(sock)
        for _ in range(2):  # two requests on one connection: keep-alive works
            _request(sock, "GET", "/services/data/", {})
            assert reader.response()[0] == 200
        started = time.monotonic()
        assert reader.closed_by_server(within_s=5)
        assert time.monotonic() - started < 3  # the 0.5 s idle timeout, not the client's 5 s


def test_stripe_keeps_a_connection_alive_then_closes_it_when_idle(small_stripe: StripeSandbox) -> None:
    with _connect_stripe(small_stripe) as sock:
        reader = _Reader(sock)
        for _ in range(2):
            _request(sock, "GET", "/_sandbox/health", {})
            assert reader.response()[0] == 200
        started = time.monotonic()
        assert reader.closed_by_server(within_s=5)
        assert time.monotonic() - started < 3


def test_a_connection_in_use_is_not_closed_as_idle(small_stripe: StripeSandbox) -> None:
    """Requests 0.2 s apart for longer than the 0.5 s idle timeout: the connection stays up."""
    with _connect_stripe(small_stripe) as sock:
        reader = _Reader(sock)
        for _ in range(6):
            _request(sock, "GET", "/_sandbox/health", {})
            assert reader.response()[0] == 200
            time.sleep(0.2)


# -- stop and fault injection --------------------------------------------------------------------

def test_stop_closes_open_connections_promptly_and_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    org = SandboxOrg.start(data=None)
    box = StripeSandbox.start()
    org_sock, stripe_sock = _connect_org(org), _connect_stripe(box)
    _request(org_sock, "GET", "/services/data/", {})
    _request(stripe_sock, "GET", "/_sandbox/health", {})
    assert _Reader(org_sock).response()[0] == 200
    assert _Reader(stripe_sock).response()[0] == 200
    started = time.monotonic()
    org.stop()
    box.stop()
    assert time.monotonic() - started < 3
    assert _closed(org_sock) and _closed(stripe_sock)
    org_sock.close()
    stripe_sock.close()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(OSError):  # the listening sockets are gone too
        socket.create_connection(("127.0.0.1", org.port), timeout=2).close()


def test_stripe_reset_fault_drops_the_connection_without_an_answer(small_stripe: StripeSandbox) -> None:
    small_stripe.fail_next("POST /v1/customers", fault="reset_before")
    with _connect_stripe(small_stripe) as sock:
        _request(sock, "POST", "/v1/customers", {**_FORM, "Authorization": f"Bearer {small_stripe.api_key}"},
                 b"email=a%40b.example")
        with pytest.raises(ConnectionResetError):
            _Reader(sock).response()
    # The server goes on serving.
    with _connect_stripe(small_stripe) as sock:
        _request(sock, "GET", "/_sandbox/health", {})
        assert _Reader(sock).response()[0] == 200


def test_a_process_that_never_stops_its_sandboxes_still_exits() -> None:
    """The servers' threads are daemons: forgetting stop() must not hang the interpreter."""
    script = ("from gtm_sandbox.org import SandboxOrg\n"
              "from gtm_sandbox.stripe.handle import StripeSandbox\n"
              "org = SandboxOrg.start(data=None); box = StripeSandbox.start()\n"
              "print(org.port, box.api_base)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "http://127.0.0.1:" in done.stdout
