"""The dashboard as a newcomer meets it: `make demo` (one full cycle against the sandboxes),
then the daemon started with the command the demo prints, then the pages, in a real headless
Chromium (Debian's package, driven by Playwright) and over plain HTTP.

Every figure read off the pages is compared with the database the demo left, read here
with the store's own repositories, so a wrong figure on the page fails the test.
"""

from __future__ import annotations

import os
import shlex
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory
from connector.demo import DemoOptions, run_demo
from tests.fixtures.daemon import DaemonLauncher, DaemonProc, free_port

CHROMIUM = "/usr/bin/chromium"
# CI sets this (.ci/run installs Debian's chromium): there the browser test may not skip.
REQUIRE_BROWSER = os.environ.get("GTM_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Demo:
    data_dir: Path
    database_url: str
    daemon: DaemonProc
    summary: dict[str, Any]

    @property
    def base(self) -> str:
        return self.daemon.base


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("demo")
    summary = run_demo(DemoOptions(data_dir=data_dir)).as_json()
    assert summary["ok"], summary
    # the command the demo prints, with a free port instead of 8765
    argv = shlex.split(summary["dashboard"])
    assert argv[:3] == ["gtm-connector", "daemon", "--config-dir"], argv
    assert summary["dashboard_url"] == "http://127.0.0.1:8765/"
    launcher = DaemonLauncher(tmp_path_factory.mktemp("daemon"))
    try:
        daemon = launcher.start("dashboard", Path(argv[3]), port=free_port())
        yield Demo(data_dir, f"sqlite:///{data_dir / 'demo.sqlite3'}", daemon, summary)
    finally:
        launcher.kill_all()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _facts(demo: Demo) -> dict[str, dict[str, Any]]:
    """What the pages must show, per org alias (from the files the daemon reads), read from
    the database."""
    import tomllib

    aliases = {}
    for path in (demo.data_dir / "dashboard").glob("*.toml"):
        org = tomllib.loads(path.read_text())["org"]
        aliases[org["org_id"]] = org["alias"]
    engine = make_engine(demo.database_url)
    month = datetime.now(UTC).strftime("%Y-%m")
    facts: dict[str, dict[str, Any]] = {}
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            for org_id in sorted(aliases):
                invoices = uow.invoices.list(org_id)
                recs = uow.reconciliation.list(org_id)
                facts[aliases[org_id]] = {
                    "org_id": org_id,
                    "dead_letters": uow.dead_letters.count_open(org_id),
                    "anomalies": uow.anomalies.count(org_id),
                    "invoices": {(i.status, i.order_id): i for i in invoices},
                    "received": sum((r.actual_payout or Decimal(0) for r in recs
                                     if r.payout_date and r.payout_date.strftime("%Y-%m") == month), Decimal(0)),
                    "expected": sum((r.expected_payout for r in recs
                                     if r.payout_date and r.payout_date.strftime("%Y-%m") == month), Decimal(0)),
                    "runs": {r.job: r for r in reversed(uow.job_runs.list(org_id, limit=100))},
                }
    finally:
        engine.dispose()
    return facts


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def test_the_demo_prints_the_daemon_command_and_the_dashboard_shows_its_orgs(demo: Demo) -> None:
    facts = _facts(demo)
    assert set(facts) == {"demo", "demo-direct"}
    status, page = _get(demo.base + "/")
    assert status == 200
    for alias, fact in facts.items():
        assert f'data-org="{alias}"' in page and fact["org_id"] in page
        assert f'data-figure="dead-letters">{fact["dead_letters"]}<' in page
        assert f'data-figure="payouts-received">{money(fact["received"])}<' in page
        assert f'data-figure="payouts-expected">{money(fact["expected"])}<' in page
    # seed 003: $7,260.00 paid out to the partner for $8,400.00 invoiced, in both orgs
    assert page.count('data-figure="payouts-received">7,260.00<') == 2
    assert page.count("$8,400.00") == 2


def test_an_org_page_lists_every_run_invoice_and_dead_letter_and_links_to_the_orders(demo: Demo) -> None:
    facts = _facts(demo)["demo"]
    status, page = _get(demo.base + "/orgs/demo")
    assert status == 200
    for job, run in facts["runs"].items():
        assert f'<tr data-job="{job}">' in page
        if run.api_calls is not None:
            assert f'<td class="num">{run.api_calls}</td>' in page
    for (_status, order_id), inv in facts["invoices"].items():
        assert f'href="/orgs/demo/orders/{order_id}"' in page
        assert f"${money(inv.amount_due)}" in page
    assert f"Open dead letters ({facts['dead_letters']})" in page
    status, order = _get(demo.base + f"/orgs/demo/orders/{next(iter(facts['invoices']))[1]}")
    assert status == 200 and "7,260.00" in order and "Write-back" in order
    assert _get(demo.base + "/orgs/demo/orders/801000000000000AAA")[0] == 404
    assert _get(demo.base + "/orgs/nobody")[0] == 404


def test_the_pages_show_no_secret(demo: Demo) -> None:
    secrets = [p.read_text() for p in (demo.data_dir / "dashboard" / "secrets").iterdir()]
    assert secrets and all(secrets)
    pages = [_get(demo.base + path)[1] for path in ("/", "/orgs/demo", "/orgs/demo-direct")]
    for page in pages:
        for secret in secrets:
            assert secret not in page


def _chromium() -> Any:
    if not (Path(CHROMIUM).exists() and shutil.which("chromium")):
        if REQUIRE_BROWSER:
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium); CI installs it and runs this test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_BROWSER:
            raise
        pytest.skip("playwright is not installed (the test extra brings it)")
    return sync_playwright


def test_a_real_browser_reads_the_figures_follows_an_order_link_and_saves_a_screenshot(
        demo: Demo, tmp_path: Path) -> None:
    sync_playwright = _chromium()
    facts = _facts(demo)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(demo.base + "/")
            assert page.title().startswith("GTM connector")
            for alias, fact in facts.items():
                section = page.locator(f'section[data-org="{alias}"]')
                assert section.locator('[data-figure="dead-letters"]').inner_text() == str(fact["dead_letters"])
                assert section.locator('[data-figure="anomalies"]').inner_text() == str(fact["anomalies"])
                assert section.locator('[data-figure="payouts-received"]').inner_text() == money(fact["received"])
                paid = [i for (s, _), i in fact["invoices"].items() if s == "paid"]
                row = section.locator('#invoice-totals tr[data-status="paid"] td')
                assert row.nth(1).inner_text() == str(len(paid))
                assert row.nth(2).inner_text() == "$" + money(sum((i.amount_due for i in paid), Decimal(0)))
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            # from the overview to the org, then to an order, by clicking
            page.locator('section[data-org="demo"] h2 a').click()
            page.wait_for_url("**/orgs/demo")
            page.locator('a[href^="/orgs/demo/orders/"]').first.click()
            page.wait_for_url("**/orgs/demo/orders/*")
            order_id = page.url.rsplit("/", 1)[1]
            invoice = next(i for (_, oid), i in facts["demo"]["invoices"].items() if oid == order_id)
            assert page.locator('[data-figure="invoice-amount"]').inner_text() == "$" + money(invoice.amount_due)
            assert page.locator('[data-figure="invoice-status"]').inner_text() == invoice.status
            assert page.locator('[data-figure="actual-payout"]').inner_text() == "7,260.00"
            # the time shows in the operator's zone, with UTC on hover
            assert page.locator("time").first.get_attribute("title").endswith(" UTC")
            page.screenshot(path=str(tmp_path / "order.png"), full_page=True)
        finally:
            browser.close()
    for name in ("dashboard.png", "order.png"):
        shot = tmp_path / name
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
