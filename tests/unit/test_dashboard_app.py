"""The dashboard's WSGI app over an in-memory source: access rules, escaping, routing.
(The pages over a real database and a real browser are tested in tests/e2e/test_dashboard.py.)"""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.adapters.store.records import DeadLetter, JobRun
from connector.entrypoints.dashboard import Dashboard, OrgUnavailable, is_loopback
from connector.services.dashboard import JobView, OrderView, OrgOverview
from connector.services.report import MonthTotal

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
TOKEN = "dash-token-9f2c1e"


def _overview(alias: str = "acme") -> OrgOverview:
    run = JobRun(1, "00D000000000ACMEAA", "mirror", "r1", "host:1", NOW, NOW, "failed", {"fetched": 3},
                 "<script>alert(1)</script>", api_calls=4, api_used=300, api_limit=15000)
    letter = DeadLetter(1, "00D000000000ACMEAA", "invoicing", "SfdcPartnerOrder", "801A", "INVOICE_MISSING",
                        "no invoice <b>yet</b>", None, 1, NOW, NOW, None)
    return OrgOverview(
        alias=alias, org_id="00D000000000ACMEAA", jobs=[JobView("mirror", run, None, NOW, False)], api_used=300,
        api_limit=15000, api_budget_percent=80, dead_letters=[letter], dead_letters_open=1,
        dead_letters_by_source={"invoicing": 1}, anomalies=[], anomalies_total=0, invoices=[], invoice_totals=[],
        flagged=[], month=MonthTotal("2026-12", orders=1, expected_payout=Decimal("7260"),
                                     actual_payout=Decimal("7260.00")), runs=[run])


class Source:
    def __init__(self) -> None:
        self.orgs: dict[str, OrgOverview | OrgUnavailable] = {"acme": _overview(),
                                                              "globex": OrgUnavailable("globex", "database down")}

    def overviews(self) -> list[OrgOverview | OrgUnavailable]:
        return list(self.orgs.values())

    def overview(self, alias: str) -> OrgOverview | OrgUnavailable | None:
        return self.orgs.get(alias)

    def order(self, alias: str, order_id: str) -> OrderView | None:
        if alias != "acme" or order_id != "801A":
            return None
        return OrderView("acme", "801A", {"order_number": "00000101", "currency": "USD", "subtotal": Decimal("8400")},
                         [], None, None, [], None, [], [])


def call(app: Dashboard, path: str, *, method: str = "GET", auth: str | None = None) -> tuple[str, dict[str, str], str]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(b"")}
    if auth:
        environ["HTTP_AUTHORIZATION"] = auth
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response)).decode()
    return seen["status"], seen["headers"], body


def app(*, token: str | None = None, require: bool = False) -> Dashboard:
    return Dashboard(Source(), zone=ZoneInfo("America/New_York"), token=token, require_token=require, now=lambda: NOW)


def test_on_loopback_the_pages_are_open_and_escape_what_the_org_sent() -> None:
    status, headers, body = call(app(), "/")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/html")
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body
    assert "globex" in body and "unavailable: database down" in body
    assert 'data-figure="payouts-received">7,260.00<' in body
    # times in the operator's zone, UTC on hover
    assert ('<time datetime="2026-12-07T09:30:00+00:00" title="2026-12-07 09:30:00 UTC">2026-12-07 04:30 EST</time>'
            in body)
    status, _, body = call(app(), "/orgs/acme")
    assert status == "200 OK" and "no invoice &lt;b&gt;yet&lt;/b&gt;" in body
    assert 'href="/orgs/acme/orders/801A"' in body  # an invoicing letter links to its order


def test_unknown_pages_and_other_methods() -> None:
    assert call(app(), "/orgs/nobody")[0] == "404 Not Found"
    assert call(app(), "/orgs/acme/orders/801B")[0] == "404 Not Found"
    assert call(app(), "/orgs/acme/orders/801A")[0] == "200 OK"
    status, headers, _ = call(app(), "/", method="POST")
    assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"
    assert Dashboard.handles("/") and Dashboard.handles("/orgs/acme") and not Dashboard.handles("/metrics")


def test_beyond_loopback_the_token_is_required_as_bearer_or_basic_password() -> None:
    locked = app(token=TOKEN, require=True)
    status, headers, body = call(locked, "/")
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Basic")
    assert TOKEN not in body
    assert call(locked, "/", auth="Bearer wrong")[0] == "401 Unauthorized"
    assert call(locked, "/", auth=f"Bearer {TOKEN}")[0] == "200 OK"
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert call(locked, "/orgs/acme", auth=f"Basic {basic}")[0] == "200 OK"
    assert call(locked, "/", auth="Basic not-base64!")[0] == "401 Unauthorized"
    _, _, page = call(locked, "/", auth=f"Bearer {TOKEN}")
    assert TOKEN not in page


def test_beyond_loopback_without_a_configured_token_the_pages_stay_shut() -> None:
    status, _, body = call(app(token=None, require=True), "/", auth="Bearer anything")
    assert status == "403 Forbidden" and "dashboard_token_env" in body


@pytest.mark.parametrize("bind,loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("10.1.2.3", False), ("", False)])
def test_what_counts_as_loopback(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback


def test_the_daemon_section_names_the_token_variable_and_checks_the_zone() -> None:
    from pydantic import ValidationError

    from connector.config import DaemonSection

    assert DaemonSection(timezone="Europe/Berlin", dashboard_token_env="GTM_DASH").timezone == "Europe/Berlin"
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        DaemonSection(timezone="Mars/Olympus")


def test_a_dry_run_is_listed_marked_as_one() -> None:
    source = Source()
    overview = source.orgs["acme"]
    assert isinstance(overview, OrgOverview)
    dry = JobRun(2, overview.org_id, "mirror", "r2", "host:1", NOW, NOW, "ok", {"would_write": 3}, None,
                 dry_run=True)
    source.orgs["acme"] = replace(overview, jobs=[JobView("mirror", dry, None, NOW, False)], runs=[dry, *overview.runs])
    page = Dashboard(source, zone=ZoneInfo("UTC"), token=None, require_token=False, now=lambda: NOW)
    _, _, body = call(page, "/orgs/acme")
    assert body.count("data-dry-run>dry run<") == 2  # the job's last run and its row among the runs
    _, _, body = call(app(), "/orgs/acme")
    assert "data-dry-run" not in body  # a real run is not marked
