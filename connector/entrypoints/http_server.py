"""The connector's one HTTP server: cheroot (CherryPy's threaded WSGI server) in a
background thread, for the daemon's probes and metrics and the Stripe webhook receiver.

What it adds over a bare ``wsgiref`` server: a fixed pool of worker threads (a burst of
requests queues instead of spawning threads), a socket timeout on every read and write (a
client that stalls in its headers or body is dropped after ``timeout_s``, its worker freed),
a request body cap (``413`` above ``max_body`` bytes, before the body is read), HTTP/1.1
keep-alive and chunked request bodies. An exception the app lets out before it answered is
a ``500`` (logged with its traceback), as under ``wsgiref``: the client sees an answer it
can retry, never a dropped connection. cheroot's own error lines go to structlog at debug
level: a dropped connection is not a traceback on stderr.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from cheroot import wsgi

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

READ_TIMEOUT_S = 10.0  # a request that stalls this long on the socket is dropped (slow clients)
# The server's hard cap on a request body (413 before reading it). The webhook receiver
# answers 413 itself above its own, lower limit (``webhook.MAX_BODY``).
MAX_REQUEST_BODY = 2 * 1024 * 1024
THREADS = 32  # worker threads: stalled clients (each held up to the timeout) leave the rest free
# Connections the kernel queues before the accept loop takes them (cheroot's default is 5):
# Stripe delivers webhooks concurrently, and a burst on a busy host is queued, not dropped.
LISTEN_BACKLOG = 128

log = structlog.get_logger("connector.http")


class _Server(wsgi.Server):
    """cheroot's WSGI server with its error log in structlog, and a signal that its
    connection-refusing helper thread runs (so ``HttpServer.start`` returns with every
    thread it will ever have already started)."""

    helper_started: threading.Event

    def _serve_unservicable(self) -> None:
        self.helper_started.set()
        super()._serve_unservicable()  # type: ignore[misc]  # cheroot's stubs omit this method

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        if level >= logging.ERROR:
            log.warning("http.server_error", message=msg)
        else:
            log.debug("http.connection_dropped", message=msg)


def guarded(app: WsgiApp) -> WsgiApp:
    """``app``, with an exception raised before the response started answered ``500``."""

    def guarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started: list[bool] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started.append(True)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            return list(app(environ, start))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # as wsgiref's handler: whatever the app raised, the client gets a 500
            if started:
                raise  # half an answer is out: the server can only close the connection
            log.error("http.app_error", path=environ.get("PATH_INFO"), method=environ.get("REQUEST_METHOD"),
                      exc_info=True)
            body = b"internal error\n"
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"),
                                                         ("Content-Length", str(len(body)))])
            return [body]

    return guarded_app


class HttpServer:
    """Serves ``app`` on (bind, port) from a background thread; port 0 picks a free one.
    The socket is bound here (``OSError`` naming the cause when it can't be), served from
    ``start()`` and closed by ``stop()``."""

    def __init__(self, app: WsgiApp, bind: str = "127.0.0.1", port: int = 0, *, timeout_s: float = READ_TIMEOUT_S,
                 max_body: int = MAX_REQUEST_BODY, threads: int = THREADS, name: str = "http") -> None:
        self._server = _Server((bind, port), guarded(app), numthreads=threads, timeout=max(1, round(timeout_s)),
                               shutdown_timeout=2, server_name=name, request_queue_size=LISTEN_BACKLOG)
        self._server.helper_started = threading.Event()
        self._server.max_request_body_size = max_body
        try:
            self._server.prepare()
        except OSError as exc:  # cheroot's message wraps the socket error: name the cause
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            raise OSError(cause.errno, cause.strerror or str(exc)) from None
        self._thread = threading.Thread(target=self._server.serve, name=name, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.bind_addr[:2]
        return str(host), int(port)

    @property
    def server_address(self) -> tuple[str, int]:
        return self.address

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def busy_workers(self) -> int:
        """Worker threads serving a connection now (a stalled client holds one until its timeout)."""
        pool = self._server.requests
        return len(pool._threads) - pool.idle  # noqa: SLF001 - cheroot keeps the pool's size there

    def start(self) -> None:
        self._thread.start()
        self._server.helper_started.wait(5)

    def stop(self) -> None:
        self._server.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    # The names of socketserver's servers, for callers written against ``wsgiref``.
    def shutdown(self) -> None:
        self.stop()

    def server_close(self) -> None:
        self.stop()


def serve(app: WsgiApp, *, host: str = "127.0.0.1", port: int = 0, read_timeout_s: float = READ_TIMEOUT_S,
          max_body: int = MAX_REQUEST_BODY, name: str = "http") -> tuple[HttpServer, threading.Thread]:
    """Serve ``app`` from a background thread, started; stop with ``server.shutdown()``
    (``server.server_address`` names the port)."""
    server = HttpServer(app, host, port, timeout_s=read_timeout_s, max_body=max_body, name=name)
    server.start()
    return server, server.thread
