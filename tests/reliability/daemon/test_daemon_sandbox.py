"""Real daemons running the real jobs against the sandbox org and the local Stripe.

Two partner orgs, each with its own sandbox org and Stripe sandbox, share one PostgreSQL
database. What is asserted comes from outside the daemons: the sandboxes' call counters
and the ``job_runs`` table. Jobs that are not in this build yet are skipped with the name
of the missing module.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory
from connector.jobs import JOBS
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.daemon import DaemonLauncher, DaemonProc, new_org_id, scrape, write_configs

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
INTERVAL = 10


def need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not in this build yet")


@dataclass
class Partner:
    alias: str
    org_id: str
    org: SandboxOrg
    stripe: StripeSandbox


@pytest.fixture
def partners() -> Iterator[dict[str, Partner]]:
    started: list[Any] = []
    try:
        out = {}
        for alias in ("acme", "globex"):
            org = SandboxOrg.start(data="demo")
            started.append(org)
            box = StripeSandbox.start()
            started.append(box)
            out[alias] = Partner(alias, new_org_id(), org, box)
        yield out
    finally:
        for server in started:
            server.stop()


def daemon_env(partners: dict[str, Partner], db_url: str, *, bad_stripe_key: str | None = None) -> dict[str, str]:
    env = {"GTM_TEST_DB": db_url}
    for p in partners.values():
        up = p.alias.upper()
        env[f"{up}_SF_SECRET"] = p.org.client_secret
        env[f"{up}_STRIPE_KEY"] = p.stripe.api_key
    if bad_stripe_key:
        env[f"{bad_stripe_key.upper()}_STRIPE_KEY"] = "rk_bogus_key_refused"
    return env


def configs(tmp_path: Path, partners: dict[str, Partner], jobs: tuple[str, ...], **kwargs: Any) -> Path:
    return write_configs(
        tmp_path / "config", {p.alias: p.org_id for p in partners.values()}, database_url_env="GTM_TEST_DB",
        interval=INTERVAL, jobs=jobs,
        salesforce={p.alias: {"salesforce": {"login_url": p.org.login_url, "ca_bundle": str(p.org.ca_file)},
                              "salesforce.auth": {"kind": "client_credentials", "client_id": p.org.client_id,
                                                  "client_secret": {"env": f"{p.alias.upper()}_SF_SECRET"}}}
                    for p in partners.values()},
        stripe={p.alias: {"stripe": {"api_key": {"env": f"{p.alias.upper()}_STRIPE_KEY"},
                                     "api_base": p.stripe.api_base}}
                for p in partners.values()},
        **kwargs,
    )


def runs(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            return list(reversed(uow.job_runs.list(limit=10_000)))
    finally:
        engine.dispose()


def wait_runs(url: str, predicate: Callable[[list[Any]], bool], timeout: float, what: str) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(url)
        if predicate(found):
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {[(r.org_id, r.job, r.status) for r in runs(url)]}")


def stored(url: str, org_id: str, key: str) -> int:
    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            return uow.mirror(key).count(org_id)
    finally:
        engine.dispose()


def stored_invoices(url: str, org_id: str) -> list[str]:
    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            return [i.stripe_invoice_id for i in uow.invoices.list(org_id) if i.stripe_invoice_id]
    finally:
        engine.dispose()


def finished_runs(*daemons: DaemonProc) -> list[dict[str, Any]]:
    return [e for d in daemons for e in d.find("job.finished")]


def test_two_daemons_serve_two_orgs_once_per_tick(pg_url: str, tmp_path: Path, partners: dict[str, Partner],
                                                   daemons: DaemonLauncher) -> None:
    need("connector.services.payouts")
    jobs = tuple(JOBS)  # every job
    config_dir = configs(tmp_path, partners, jobs)
    env = daemon_env(partners, pg_url)
    a = daemons.start("daemon-a", config_dir, env=env, wait=False)
    b = daemons.start("daemon-b", config_dir, env=env, wait=False)
    a.wait_ready()
    b.wait_ready()

    def three_ticks(found: list[Any]) -> bool:
        ok = Counter((r.org_id, r.job) for r in found if r.status == "ok")
        return len(ok) == 2 * len(jobs) and min(ok.values()) >= 3

    wait_runs(pg_url, three_ticks, 3 * INTERVAL + 20, "three ok runs of every (org, job)")
    scrapes = [scrape(d.get("/metrics")[1]) for d in (a, b)]
    ready = [json.loads(d.get("/readyz")[1]) for d in (a, b)]
    for d in (a, b):
        d.signal(signal.SIGTERM)
    assert a.wait_exit(30) == 0 and b.wait_exit(30) == 0

    recorded = runs(pg_url)
    assert {r.status for r in recorded} == {"ok"}
    per_tick = Counter((r.org_id, r.job, int(r.started_at.timestamp() // INTERVAL)) for r in recorded)
    assert max(per_tick.values()) == 1, per_tick
    for p in partners.values():
        reconciles = [r for r in recorded if r.org_id == p.org_id and r.job == "reconcile"]
        stripe_calls = p.stripe.counters()
        assert stripe_calls["GET /v1/payouts"] == len(reconciles)  # each recorded run listed payouts once
        if "invoicing" in jobs:
            # Each invoice created once, whichever daemon ran the tick: Stripe holds as many
            # invoices as the store does, and the daemons' own counts say the same.
            invoiced = stored_invoices(pg_url, p.org_id)
            assert invoiced, "the demo org has an Activated order due for invoicing"
            assert stripe_calls.get("POST /v1/invoices", 0) == len(invoiced) == len(set(invoiced))
            assert stripe_calls.get("POST /v1/invoices/{id}/send", 0) == len(invoiced)
            created = sum(e["counts"].get("invoices_created", 0) for e in finished_runs(a, b)
                          if e["org"] == p.alias and e["job"] == "invoicing")
            assert created == len(invoiced)
        if "mirror" in jobs:
            reported = sum(e["api_calls"] or 0 for e in finished_runs(a, b) if e["org"] == p.alias)
            assert p.org.api_calls == reported  # every API call the org saw belongs to a recorded run
            # The org's limit as Salesforce reports it, and what was mirrored, on /metrics.
            usage = p.org.counters()["api_usage"]
            remaining = [m("gtm_connector_api_calls_remaining", org=p.alias) for m in scrapes]
            assert any(r is not None and 0 < r <= usage["max"] for r in remaining), remaining
            mirrored = sum(m("gtm_connector_records_mirrored_total", org=p.alias, object="order") or 0
                           for m in scrapes)
            assert mirrored == stored(pg_url, p.org_id, "order")  # the first run wrote them, later runs nothing
        runs_total = sum(m("gtm_connector_job_runs_total", org=p.alias, task="reconcile", status="ok") or 0
                         for m in scrapes)
        assert runs_total == len(reconciles)
        for r in ready:
            assert r["ready"] and r["orgs"][p.alias]["database"] == "ok"
            assert r["orgs"][p.alias]["last_success"]["reconcile"] is not None


def test_an_org_whose_stripe_key_is_refused_does_not_stop_the_other(
    pg_url: str, tmp_path: Path, partners: dict[str, Partner], daemons: DaemonLauncher
) -> None:
    need("connector.services.payouts")
    config_dir = configs(tmp_path, partners, ("reconcile",))
    d = daemons.start("daemon", config_dir, env=daemon_env(partners, pg_url, bad_stripe_key="globex"))
    acme, globex = partners["acme"], partners["globex"]

    def two_ticks(found: list[Any]) -> bool:
        return (sum(r.org_id == acme.org_id and r.status == "ok" for r in found) >= 2
                and sum(r.org_id == globex.org_id and r.status == "failed" for r in found) >= 2)

    found = wait_runs(pg_url, two_ticks, 2 * INTERVAL + 15, "acme ok and globex failed, twice each")
    failed = [r for r in found if r.org_id == globex.org_id]
    assert all("Stripe refused the API key" in r.error for r in failed), [r.error for r in failed]
    assert "rk_bogus_key_refused" not in d.log_path.read_text()  # the refused key is never logged

    status, body = d.get("/metrics")
    text = body.decode()
    assert status == 200
    assert 'gtm_connector_job_failures_total{org="globex",task="reconcile"}' in text
    assert 'gtm_connector_job_failures_total{org="acme",task="reconcile"} 0.0' in text
    status, body = d.get("/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["orgs"]["acme"]["last_success"]["reconcile"] is not None
    assert ready["orgs"]["globex"]["last_success"]["reconcile"] is None
    assert acme.stripe.counters()["GET /v1/payouts"] >= 2


def assert_mirror_complete(url: str, partner: Partner) -> None:
    """Every live record of the org is stored once, or quarantined once as a dead letter
    (the demo data has records the validation refuses); nothing else is stored."""
    from connector.mappings import load_mapping

    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            letters = [(d.object_name, d.record_id) for d in uow.dead_letters.open(partner.org_id, source="mirror")]
            assert len(letters) == len(set(letters))
            for key, obj in load_mapping("gtm-v2").objects.items():
                stored = uow.mirror(key).ids(partner.org_id)
                quarantined = {rid for name, rid in letters if name == obj.sobject}
                in_org = {r["Id"] for r in partner.org.records(obj.sobject)}
                assert not stored & quarantined, key
                assert stored | quarantined == in_org, (key, len(stored), len(quarantined), len(in_org))
    finally:
        engine.dispose()


def test_sigkill_mid_mirror_the_other_daemon_finishes_it_with_nothing_duplicated(
    pg_url: str, tmp_path: Path, partners: dict[str, Partner], daemons: DaemonLauncher
) -> None:
    need("connector.services.mirror")
    acme = partners["acme"]
    acme.org.set_latency(0.4)  # every call slow and pages of 3 records (the first pages of all objects
    acme.org.set_batch_size(3)  # come in one batch): the first mirror takes several seconds of pages
    config_dir = configs(tmp_path, {"acme": acme}, ("mirror",))
    env = daemon_env({"acme": acme}, pg_url)
    a = daemons.start("daemon-a", config_dir, env=env)
    a.wait_for("job.started", org="acme", job="mirror")
    daemons.start("daemon-b", config_dir, env=env)
    time.sleep(1.0)
    a.signal(signal.SIGKILL)
    a.wait_exit(10)
    acme.org.set_latency(0)

    found = wait_runs(pg_url, lambda rs: any(r.instance == "daemon-b" and r.status == "ok" for r in rs),
                      INTERVAL + 30, "daemon-b's mirror")
    by_instance = {r.instance: r for r in found}
    assert by_instance["daemon-a"].status == "failed" and by_instance["daemon-a"].error.startswith("abandoned")
    assert sum(r.status == "ok" for r in found) == 1
    assert_mirror_complete(pg_url, acme)


def test_sigterm_mid_mirror_exits_zero_and_the_next_start_resumes(
    pg_url: str, tmp_path: Path, partners: dict[str, Partner], daemons: DaemonLauncher
) -> None:
    need("connector.services.mirror")
    acme = partners["acme"]
    acme.org.set_latency(0.4)
    acme.org.set_batch_size(3)  # pages of 3 records: the mirror is many slow pages, not one batch
    config_dir = configs(tmp_path, {"acme": acme}, ("mirror",))
    env = daemon_env({"acme": acme}, pg_url)
    d = daemons.start("daemon", config_dir, env=env)
    # Stop once a page is in (not after a fixed sleep): the stop has to come after the run began
    # its pages, and a 1.5 s sleep left ~0.4 s of that on a loaded machine (token, mapping check).
    d.wait_for("page.committed")
    d.signal(signal.SIGTERM)
    assert d.wait_exit(30) == 0
    [first] = runs(pg_url)
    # Stopped between pages: recorded as a clean stop, part of the org mirrored.
    assert first.status == "stopped" and "shutdown requested" in (first.error or ""), first
    assert 0 < _cursors_committed(pg_url, acme) < len(_objects())
    _assert_cursor_consistent(pg_url, acme)

    acme.org.set_latency(0)
    again = daemons.start("daemon-again", config_dir, env=env)
    wait_runs(pg_url, lambda rs: any(r.instance == "daemon-again" and r.status == "ok" for r in rs),
              INTERVAL + 20, "the resumed mirror")
    again.signal(signal.SIGTERM)
    assert again.wait_exit(30) == 0
    assert_mirror_complete(pg_url, acme)


def _objects() -> dict[str, Any]:
    from connector.mappings import load_mapping

    return dict(load_mapping("gtm-v2").objects)


def _cursors_committed(url: str, partner: Partner) -> int:
    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            states = [uow.sync_state.get(partner.org_id, obj.sobject) for obj in _objects().values()]
        return sum(1 for s in states if s is not None and s.cursor is not None)
    finally:
        engine.dispose()


def _assert_cursor_consistent(url: str, partner: Partner) -> None:
    """Every object's committed cursor covers only rows that are stored: no record with a
    SystemModstamp before the cursor is missing locally. (Records sharing the cursor's own
    stamp may sit on the next page; the next run's ``>=`` reads them again, by design.)"""
    from connector.mappings import load_mapping

    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            for key, obj in load_mapping("gtm-v2").objects.items():
                state = uow.sync_state.get(partner.org_id, obj.sobject)
                if state is None or state.cursor is None:
                    continue
                local = set(uow.mirror(key).ids(partner.org_id))
                for record in partner.org.records(obj.sobject):
                    if _stamp(record["SystemModstamp"]) < state.cursor:
                        assert record["Id"] in local, (key, record["Id"], state.cursor)
    finally:
        engine.dispose()


def _stamp(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
