"""Why a connection failed, in the operator's words: one recogniser for every adapter.

The Stripe SDK, requests (simple-salesforce, the OAuth login, the sandbox control client)
and urllib all describe a failed connection in free text around the OS error. What an
operator needs is the cause — refused, timed out, host not found, TLS — so each adapter
names it with ``connection_cause`` and its own advice (which config key to check). Only the
label is shown, never the library's text (it can quote request headers).
"""

from __future__ import annotations

import re

CONNECTION_CAUSES: tuple[tuple[str, str], ...] = (
    (r"connection refused|errno 111|actively refused", "connection refused"),
    (r"timed out|timeout", "timed out"),
    (r"name or service not known|nodename nor servname|getaddrinfo|name resolution|failed to resolve"
     r"|no address associated", "host not found (DNS)"),
    (r"certificate|ssl|tls", "TLS problem (certificate or handshake)"),
    (r"connection reset|remotedisconnected|connection aborted|remote end closed", "connection dropped"),
    (r"invalidheader|invalid header|invalid return character", "invalid request header (a line break in a key?)"),
)


def connection_cause(error: BaseException | str) -> str | None:
    """The cause of a failed connection (``"connection refused"``, ``"timed out"``, ``"host
    not found (DNS)"``, ``"TLS problem …"``, ``"connection dropped"``), or None if the text
    of ``error`` (and of the exceptions it was raised from) says none of them."""
    texts = []
    seen: set[int] = set()
    current: BaseException | str | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(current if isinstance(current, str) else f"{type(current).__name__} {current}")
        current = None if isinstance(current, str) else (current.__cause__ or current.__context__)
    text = " ".join(texts)
    return next((label for pattern, label in CONNECTION_CAUSES if re.search(pattern, text, re.IGNORECASE)), None)
