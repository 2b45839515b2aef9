"""The HTTP server under both sandboxes: cheroot (CherryPy's WSGI server) on 127.0.0.1.

Why cheroot: it is threaded, like the sandboxes' state (plain objects behind locks, handlers
that may sleep for injected latency), and it does the protocol work the hand-written
``http.server`` code got wrong or left out: chunked request bodies (Node's clients send
them, with no Content-Length), a body-size limit answered with 413, idle keep-alive
connections closed after a timeout, TLS through its built-in adapter, and a ``stop()`` that
closes every connection and joins its threads.

Two things cheroot does that the sandboxes change:

* **The TLS handshake happens on the connection's worker thread**, not in cheroot's accept
  loop: there, one client that connects and never says hello (a port probe, a stuck
  client) held up every other connection until the idle timeout. Now it holds nothing: its
  socket waits in the selector like an idle keep-alive one, and is closed when that times
  out; a client that starts a handshake and stalls holds one worker thread at most.
* **cheroot's error lines go to the ``gtm_sandbox.http`` logger**, not straight to stderr:
  a failed handshake or a dropped connection is routine for a test server (debug), a
  server-side error is a warning, which Python shows on stderr when nothing configured
  logging.
* **A malformed chunked body is the client's error** (``400 Bad Request``), not a 500 with
  a traceback: ``read_body`` raises ``BadRequestBody`` for it.

Each sandbox is a WSGI app; ``read_body`` gives it the whole request body (chunked
included) and ``drop`` aborts a connection with a TCP reset for fault injection.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

# Well above any legitimate request (a composite of 25 subrequests of 200 records, a big
# Stripe invoice): a body over it is refused with 413 before it is read.
MAX_BODY_BYTES = 16 * 1024 * 1024
# An idle keep-alive connection is closed after this long (also the read timeout while a
# request is arriving): clients' pools notice the close and open a fresh connection.
IDLE_TIMEOUT_S = 30.0
THREADS = 16  # requests served at once; idle keep-alive connections don't hold a thread
# Connections the kernel queues before cheroot accepts them (cheroot's default is 5): a burst
# of clients opening connections at once, on a loaded machine, is queued instead of dropped.
LISTEN_BACKLOG = 128

log = logging.getLogger("gtm_sandbox.http")

_SOCKET = "gtm_sandbox.socket"
_CONNECTION = "gtm_sandbox.connection"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class BodyTooLarge(Exception):
    """A chunked request body went over the server's limit (cheroot refuses an oversized
    Content-Length itself, before the app runs)."""


class BadRequestBody(Exception):
    """The request body is not valid HTTP framing (a chunk size that is not hexadecimal, a
    chunk without its CRLF): the client's error, answered 400."""


class Dropped(ConnectionResetError):
    """Raised by an app after ``drop``: cheroot treats a connection reset as the peer's
    doing and ends the connection quietly, without trying to answer."""

    def __init__(self) -> None:
        super().__init__(errno.ECONNRESET, "connection dropped by the sandbox")


class _Gateway(wsgi.Gateway_10):
    """WSGI 1.0 plus the connection, so an app can reset it (fault injection)."""

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        env[_SOCKET] = self.req.conn.socket
        env[_CONNECTION] = self.req.conn
        return env


def read_body(environ: dict[str, Any]) -> bytes:
    """The whole request body, chunked or with a Content-Length; ``BodyTooLarge`` over the
    server's limit (for a chunked body cheroot counts the chunk-size lines too: a few bytes
    per chunk)."""
    try:
        return environ["wsgi.input"].read()
    except cheroot_errors.MaxSizeExceeded:
        raise BodyTooLarge() from None
    except OSError as exc:  # cheroot's chunked reader also says it this way
        if "Request Entity Too Large" in str(exc):
            raise BodyTooLarge() from None
        raise
    except ValueError as exc:  # cheroot's chunked reader: "Bad chunked transfer size: ..." / "... coding ..."
        raise BadRequestBody(str(exc)) from None


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """Request headers from a WSGI environ, names in lower case."""
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def request_target(environ: dict[str, Any]) -> str:
    """The request target as the client sent it (path still percent-encoded, with query):
    the org splits path segments before decoding, since record ids may hold '/'."""
    uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    if uri.startswith(("http://", "https://")):  # absolute form: keep path and query
        uri = "/" + uri.split("/", 3)[3] if uri.count("/") >= 3 else "/"
    return uri


def status_line(status: int) -> str:
    """``"404 Not Found"``; faults may inject codes HTTPStatus doesn't name."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def drop(environ: dict[str, Any]) -> Dropped:
    """Reset the connection (RST, no answer) and return the exception the app raises next."""
    conn = environ[_CONNECTION]
    sock: socket.socket = environ[_SOCKET]
    conn.linger = True  # the socket is ours to close: cheroot must not shut it down again
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
    return Dropped()


class _DeferredHandshake(BuiltinSSLAdapter):
    """cheroot's TLS adapter, minus the handshake: the socket is wrapped without it (no I/O,
    so the accept loop goes straight on) and ``_Connection`` does it on its worker thread."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, Any]]:
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


_PLAIN_HTTP_REFUSAL = b"The client sent a plain HTTP request to an HTTPS-only port.\n"
_PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(_PLAIN_HTTP_REFUSAL), _PLAIN_HTTP_REFUSAL))


class _Connection(cheroot_server.HTTPConnection):
    """Completes a deferred TLS handshake before the first request (see the module docstring)."""

    handshaken = False

    def communicate(self) -> bool:
        sock = self.socket
        if not self.handshaken and isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()  # bounded by the socket's timeout (the server's idle timeout)
            except ssl.SSLError as exc:
                if "http request" in str(exc).lower():  # plain HTTP on the TLS port: say so, in plain HTTP
                    try:
                        # The TCP socket under the TLS one: no TLS session was set up to speak through.
                        socket.socket.sendall(sock, _PLAIN_HTTP_ANSWER)
                    except OSError:
                        pass
                self.server.error_log(f"TLS handshake with {self.remote_addr} failed: {exc}", level=logging.INFO)
                return False
            except OSError as exc:  # timed out, reset or closed mid-handshake
                self.server.error_log(f"TLS handshake with {self.remote_addr} failed: {exc}", level=logging.INFO)
                return False
            self.handshaken = True
            adapter = self.server.ssl_adapter
            assert adapter is not None
            self.ssl_env = {**(self.ssl_env or {}), **adapter.get_environ(sock)}
        return bool(super().communicate())


class _Server(wsgi.Server):
    """Logs through ``log`` (see the module docstring), and keeps the bind error: cheroot
    reports it as one message string, without the errno and strerror callers show ("cannot
    listen on …: Address already in use")."""

    bind_error: OSError | None = None

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        log.log(logging.WARNING if level >= logging.ERROR else logging.DEBUG, "%s", msg, exc_info=traceback)

    def bind(self, family: int, type: int, proto: int = 0) -> None:  # noqa: A002 - cheroot's names
        try:
            super().bind(family, type, proto)
        except OSError as exc:
            self.bind_error = exc
            raise


def _prepare_in_daemon_thread(server: _Server) -> None:
    """``server.prepare()`` (bind, start the worker threads) from a daemon thread: threads
    inherit daemon-ness from the thread that starts them, and a sandbox that is never
    stopped must not keep its process alive at exit (as http.server's daemon threads didn't)."""
    failed: list[BaseException] = []

    def prepare() -> None:
        try:
            server.prepare()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=prepare, name="sandbox-server-prepare", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise server.bind_error or failed[0]


class WsgiServer:
    """A cheroot server running ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app: WsgiApp, *, host: str = "127.0.0.1", port: int = 0, name: str,
                 tls: tuple[Path, Path] | None = None, max_body_bytes: int = MAX_BODY_BYTES,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, threads: int = THREADS) -> None:
        server = _Server((host, port), app, numthreads=threads, server_name=name,
                         timeout=idle_timeout_s, shutdown_timeout=1, request_queue_size=LISTEN_BACKLOG)
        server.gateway = _Gateway
        server.ConnectionClass = _Connection
        server.max_request_body_size = max_body_bytes
        # How often cheroot's select loop wakes to expire idle connections and see a stop.
        server.expiration_interval = min(0.1, idle_timeout_s / 4)
        if tls is not None:  # (certificate chain PEM, private key PEM)
            server.ssl_adapter = _DeferredHandshake(str(tls[0]), str(tls[1]))
        _prepare_in_daemon_thread(server)  # binds: the real port is known from here on
        self._server = server
        self.host, self.port = server.bind_addr[:2]
        self._thread = threading.Thread(target=server.serve, name=f"{name}-{self.port}", daemon=True)
        self._stopped = False

    def start(self) -> WsgiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection, and join the server's threads."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        self._thread.join(timeout=5)
