"""The daemon's dashboard: read-only HTML pages at ``/``, ``/orgs/<alias>`` and
``/orgs/<alias>/orders/<order id>``, served on the daemon's own port.

Server-rendered with Jinja2 (autoescaped; no JavaScript build step). The pages refresh
themselves every ``REFRESH_S`` seconds with a ``<meta http-equiv=refresh>``, so an open tab
stays current without a script. Every figure links to where it comes from: counts to the
org's lists, invoices and flagged rows to the order's page.

Access: on a loopback bind anyone on the machine may look (as with ``/metrics``). Bound
anywhere else the pages need the secret named by ``[daemon] dashboard_token_env``, sent as
``Authorization: Bearer <token>`` or as the password of HTTP basic auth (any user name), so
it never appears in a URL; without a configured secret the pages are refused, never open.
The pages never show a secret: they show what the local model holds, which holds none.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from ipaddress import ip_address
from typing import Any, Protocol
from urllib.parse import quote, unquote

from connector.domain import format_money
from connector.services.dashboard import OrderView, OrgOverview

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
REFRESH_S = 30


class DashboardSource(Protocol):
    """What the pages read: the daemon implements it over its orgs."""

    def overviews(self) -> list[OrgOverview | OrgUnavailable]: ...
    def overview(self, alias: str) -> OrgOverview | OrgUnavailable | None: ...
    def order(self, alias: str, order_id: str) -> OrderView | None: ...


@dataclass(frozen=True)
class OrgUnavailable:
    """An org the daemon could not open (bad database, failed bootstrap): shown, not hidden."""

    alias: str
    error: str


def is_loopback(bind: str) -> bool:
    if bind in ("localhost", ""):
        return bind == "localhost"
    try:
        return ip_address(bind).is_loopback
    except ValueError:
        return False


class Dashboard:
    """A WSGI app for the dashboard's paths; ``handles(path)`` says which those are."""

    def __init__(self, source: DashboardSource, *, zone: tzinfo, token: str | None, require_token: bool,
                 now: Callable[[], datetime]) -> None:
        import jinja2

        self.source = source
        self.zone = zone
        self._token = token
        self._require_token = require_token
        self._now = now
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("connector.entrypoints.dashboard", "templates"),
            autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True,
        )
        self.env.tests["unavailable_org"] = lambda value: isinstance(value, OrgUnavailable)
        self.env.filters.update(money=_money, when=self._when, seconds=_seconds, q=lambda v: quote(str(v), safe=""))

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/" or path == "/orgs" or path.startswith("/orgs/")

    # ------------------------------------------------------------------------ WSGI
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain",
                            [("Allow", "GET, HEAD")])
        denied = self._denied(environ)
        if denied is not None:
            return _respond(start_response, *denied)
        path = environ.get("PATH_INFO") or "/"
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        try:
            page = self._page(parts)
        except Exception as exc:  # the database went away mid-request: say so, keep serving
            body = self._render("error.html", title="Unavailable", message=f"{type(exc).__name__}: {exc}",
                                refresh=REFRESH_S)
            return _respond(start_response, "503 Service Unavailable", body, "text/html; charset=utf-8")
        if page is None:
            body = self._render("error.html", title="Not found", message=f"nothing at {path}", refresh=None)
            return _respond(start_response, "404 Not Found", body, "text/html; charset=utf-8")
        return _respond(start_response, "200 OK", page, "text/html; charset=utf-8")

    def _page(self, parts: list[str]) -> bytes | None:
        if not parts or parts == ["orgs"]:
            return self._render("index.html", title="GTM connector", orgs=self.source.overviews(), refresh=REFRESH_S)
        if len(parts) == 2 and parts[0] == "orgs":
            org = self.source.overview(parts[1])
            if org is None:
                return None
            return self._render("org.html", title=f"{org.alias}", org=org, refresh=REFRESH_S)
        if len(parts) == 4 and parts[0] == "orgs" and parts[2] == "orders":
            view = self.source.order(parts[1], parts[3])
            if view is None:
                return None
            number = view.order.get("order_number") or view.order_id
            return self._render("order.html", title=f"{view.alias}: order {number}", view=view, refresh=REFRESH_S)
        return None

    def _render(self, template: str, **context: Any) -> bytes:
        now = self._now()
        return self.env.get_template(template).render(now=now, zone=self.zone, unavailable=OrgUnavailable,
                                                      **context).encode("utf-8")

    # ---------------------------------------------------------------------- access
    def _denied(self, environ: dict[str, Any]) -> tuple[str, bytes, str, list[tuple[str, str]]] | None:
        if not self._require_token:
            return None
        challenge = [("WWW-Authenticate", 'Basic realm="gtm-connector dashboard", charset="UTF-8"')]
        if not self._token:
            return ("403 Forbidden", b"the dashboard is off: the daemon listens beyond loopback and "
                    b"[daemon] dashboard_token_env names no secret\n", "text/plain", [])
        presented = _presented(environ.get("HTTP_AUTHORIZATION", ""))
        if presented is None or not hmac.compare_digest(presented.encode(), self._token.encode()):
            return "401 Unauthorized", b"the dashboard needs its token (bearer or basic-auth password)\n", \
                "text/plain", challenge
        return None

    # -------------------------------------------------------------------- filters
    def _when(self, value: datetime | date | None) -> Any:
        import markupsafe

        if value is None:
            return markupsafe.Markup('<span class="none">never</span>')
        if not isinstance(value, datetime):
            return value.isoformat()
        utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        local = utc.astimezone(self.zone)
        return markupsafe.Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
            utc.isoformat(timespec="seconds"), utc.strftime("%Y-%m-%d %H:%M:%S"), local.strftime("%Y-%m-%d %H:%M %Z"))


def _presented(header: str) -> str | None:
    """The token in an Authorization header: a bearer token, or a basic-auth password."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _money(value: Decimal | None, currency: str | None = None) -> str:
    if value is None:
        return "—"
    text = format_money(value)
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, cents = digits.partition(".")
    grouped = f"{int(whole):,}.{cents}"
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get((currency or "").upper())
    if symbol:
        return f"{sign}{symbol}{grouped}"
    return f"{sign}{grouped} {currency.upper()}" if currency else f"{sign}{grouped}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _respond(start_response: Callable[..., Any], status: str, body: bytes, content_type: str,
             extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
                            *(extra or [])])
    return [body]

