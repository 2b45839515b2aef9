"""The daemon as an operator runs it: real processes, real signals, a real database.

Jobs here are the stand-ins of ``fake_jobs.py`` registered in the same daemon
(``launch.py``), so these tests pin the scheduler, locking, isolation, probes and
shutdown; test_daemon_sandbox.py runs the real services against the sandboxes.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory
from tests.fixtures.daemon import ACME_ID, DaemonLauncher, new_org_id, scrape, write_configs

pytestmark = pytest.mark.slow

SECRETS = {"ACME_SF_SECRET": "x", "ACME_STRIPE_KEY": "sk_test_acme", "GLOBEX_SF_SECRET": "y",
           "GLOBEX_STRIPE_KEY": "sk_test_globex"}
INTERVAL = 10


def trace(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_trace(path: Path, predicate: Any, timeout: float, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = trace(path)
        if predicate(entries):
            return entries
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; trace: {trace(path)[-10:]}")


def job_runs(url: str) -> list[dict[str, Any]]:
    """Every job run recorded in the database, oldest first, through the store's repository."""
    engine = make_engine(url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            runs = uow.job_runs.list(limit=10_000)
    finally:
        engine.dispose()
    fields = ("org_id", "job", "instance", "status", "error", "started_at", "finished_at", "counts")
    return [{f: getattr(r, f) for f in fields} for r in reversed(runs)]


def tick_of(row: dict[str, Any]) -> int:
    return int(row["started_at"].timestamp() // INTERVAL)


def test_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path, daemons: DaemonLauncher) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data")
    first = daemons.start("first", config_dir, env=SECRETS)
    second = daemons.start("second", config_dir, env=SECRETS, wait=False)

    assert second.wait_exit(30) == 3
    [refused] = second.find("daemon.refused")
    assert "already runs on the SQLite database" in refused["reason"]
    assert "acme.sqlite3" in refused["reason"] and "instance first" in refused["reason"]
    assert first.get("/healthz") == (200, b"ok\n")

    first.signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0
    third = daemons.start("third", config_dir, env=SECRETS)  # the lock went with the first daemon
    assert third.get("/healthz")[0] == 200


def test_a_port_in_use_is_named_and_exits_two(tmp_path: Path, daemons: DaemonLauncher) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = daemons.start("blocked", config_dir, env=SECRETS, port=port, wait=False)
        assert d.wait_exit(30) == 2
    assert f"gtm-connector daemon: cannot listen on 127.0.0.1:{port}" in d.log_path.read_text()


@pytest.mark.postgres
def test_two_daemons_on_one_postgres_run_each_org_job_once_per_tick(
    pg_url: str, tmp_path: Path, daemons: DaemonLauncher
) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": new_org_id(), "globex": new_org_id()},
                               database_url_env="GTM_TEST_DB", interval=INTERVAL)
    trace_file = tmp_path / "trace.jsonl"
    env = {**SECRETS, "GTM_TEST_DB": pg_url, "GTM_TEST_TRACE": str(trace_file)}
    a = daemons.start("daemon-a", config_dir, env=env, fake_jobs=True, wait=False)
    b = daemons.start("daemon-b", config_dir, env=env, fake_jobs=True, wait=False)
    a.wait_ready()
    b.wait_ready()

    # The start-up catch-up and two grid ticks: every (org, job) served three times.
    def served(entries: list[dict[str, Any]]) -> bool:
        ends = Counter((e["org"], e["job"]) for e in entries if e["what"] == "end")
        return len(ends) == 4 and min(ends.values()) >= 3

    wait_trace(trace_file, served, timeout=3 * INTERVAL + 10, what="three runs of each (org, job)")
    for d in (a, b):
        d.signal(signal.SIGTERM)
    assert a.wait_exit(30) == 0 and b.wait_exit(30) == 0

    runs = [r for r in job_runs(pg_url) if r["status"] == "ok"]
    per_tick = Counter((r["org_id"], r["job"], tick_of(r)) for r in runs)
    assert per_tick and max(per_tick.values()) == 1, per_tick
    ends = [e for e in trace(trace_file) if e["what"] == "end"]
    assert len(ends) == len(runs)  # every job function call is one recorded run, and vice versa
    assert {r["instance"] for r in runs} <= {"daemon-a", "daemon-b"}
    # The other instance saw the lock or the served tick, and said so.
    skips = a.find("job.skipped") + b.find("job.skipped")
    assert skips and {s["reason"] for s in skips} <= {"lock_held", "tick_served", "tick_ending"}


@pytest.mark.postgres
def test_sigkill_mid_job_lets_the_other_daemon_take_over_at_the_next_tick(
    pg_url: str, tmp_path: Path, daemons: DaemonLauncher
) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": new_org_id()}, database_url_env="GTM_TEST_DB",
                               interval=INTERVAL, jobs=("mirror",))
    trace_file = tmp_path / "trace.jsonl"
    behaviour = json.dumps({"acme": {"pages": 12, "page_s": 0.5}})
    env = {**SECRETS, "GTM_TEST_DB": pg_url, "GTM_TEST_TRACE": str(trace_file), "GTM_TEST_BEHAVIOUR": behaviour}
    a = daemons.start("daemon-a", config_dir, env=env, fake_jobs=True)
    wait_trace(trace_file, lambda es: any(e["what"] == "page" for e in es), 20, "daemon-a's first page")
    b = daemons.start("daemon-b", config_dir, env=env, fake_jobs=True)
    time.sleep(0.5)
    a.signal(signal.SIGKILL)
    a.wait_exit(10)
    killed_at = time.time()

    entries = wait_trace(trace_file, lambda es: any(e["what"] == "end" and e["pid"] == b.proc.pid for e in es),
                         timeout=INTERVAL + 12, what="daemon-b finishing the mirror")
    b_start = next(e for e in entries if e["pid"] == b.proc.pid and e["what"] == "start")
    assert b_start["t"] - killed_at < INTERVAL + 2  # the next tick, not later
    assert not any(e["what"] == "end" and e["pid"] == a.proc.pid for e in entries)

    runs = job_runs(pg_url)
    by_instance = {r["instance"]: r for r in runs}
    assert by_instance["daemon-a"]["status"] == "failed"
    assert by_instance["daemon-a"]["error"].startswith("abandoned")
    assert by_instance["daemon-b"]["status"] == "ok" and by_instance["daemon-b"]["counts"] == {"order": 12}
    assert sum(r["status"] == "ok" for r in runs) == 1


def test_sigterm_lets_the_running_page_finish_and_exits_zero(tmp_path: Path, daemons: DaemonLauncher) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data",
                               jobs=("mirror",))
    trace_file = tmp_path / "trace.jsonl"
    env = {**SECRETS, "GTM_TEST_TRACE": str(trace_file),
           "GTM_TEST_BEHAVIOUR": json.dumps({"acme": {"pages": 40, "page_s": 0.5}})}
    d = daemons.start("daemon", config_dir, env=env, fake_jobs=True)
    wait_trace(trace_file, lambda es: sum(e["what"] == "page" for e in es) >= 2, 20, "two pages")

    d.signal(signal.SIGTERM)
    started = time.monotonic()
    assert d.wait_exit(30) == 0
    # One page (0.5 s), not the remaining 38 (19 s): the bound sits well clear of both, as the
    # exit itself took 1.4-1.6 s with three busy processes on two cores.
    assert time.monotonic() - started < 10

    entries = trace(trace_file)
    pages = [e for e in entries if e["what"] == "page"]
    assert entries[-1]["what"] == "end" and entries[-1]["pages"] == len(pages) < 40
    [row] = job_runs(f"sqlite:///{tmp_path / 'data' / 'acme.sqlite3'}")
    assert row["counts"] == {"order": len(pages)}
    assert row["status"] == "stopped" and "shutdown requested" in row["error"]
    assert d.find("daemon.stopped")


def test_second_signal_exits_at_once_and_grace_is_bounded(tmp_path: Path, daemons: DaemonLauncher) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data",
                               jobs=("mirror",), grace=2)
    trace_file = tmp_path / "trace.jsonl"
    env = {**SECRETS, "GTM_TEST_TRACE": str(trace_file),
           "GTM_TEST_BEHAVIOUR": json.dumps({"acme": {"pages": 100, "page_s": 0.5, "ignore_stop": True}})}

    stubborn = daemons.start("stubborn", config_dir, env=env, fake_jobs=True)
    wait_trace(trace_file, lambda es: any(e["what"] == "page" for e in es), 20, "a page")
    stubborn.signal(signal.SIGTERM)
    started = time.monotonic()
    assert stubborn.wait_exit(15) == 1  # the job ignored the stop request: grace (2 s) expired
    assert time.monotonic() - started < 5
    assert stubborn.find("daemon.grace_expired")

    impatient = daemons.start("impatient", config_dir, env=env, fake_jobs=True)
    wait_trace(trace_file, lambda es: sum(e["what"] == "start" for e in es) >= 2, 20, "the second start")
    impatient.signal(signal.SIGTERM)
    time.sleep(0.3)
    impatient.signal(signal.SIGINT)
    assert impatient.wait_exit(5) == 130


@pytest.mark.postgres
def test_an_org_with_wrong_credentials_does_not_stop_the_other(
    pg_url: str, tmp_path: Path, daemons: DaemonLauncher
) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": new_org_id(), "globex": new_org_id()},
                               database_url_env="GTM_TEST_DB", interval=INTERVAL,
                               jobs=("mirror",))
    (tmp_path / "config" / "broken.toml").write_text('[org]\nalias = "broken"\n')  # reported, skipped
    trace_file = tmp_path / "trace.jsonl"
    env = {**SECRETS, "GTM_TEST_DB": pg_url, "GTM_TEST_TRACE": str(trace_file),
           "GTM_TEST_BEHAVIOUR": json.dumps({"globex": {"raise": "AuthError"}})}
    d = daemons.start("daemon", config_dir, env=env, fake_jobs=True)

    def two_ticks_each(entries: list[dict[str, Any]]) -> bool:
        return (sum(e["org"] == "acme" and e["what"] == "end" for e in entries) >= 2
                and sum(e["org"] == "globex" and e["what"] == "raise" for e in entries) >= 2)

    wait_trace(trace_file, two_ticks_each, 2 * INTERVAL + 10, "two ticks of both orgs")
    assert {e["file"] for e in d.find("config.invalid")} == {str(tmp_path / "config" / "broken.toml")}

    failed = d.find("job.finished", org="globex", status="failed")
    assert failed and failed[0]["error"] == "globex: invalid_client (client credentials refused)"
    assert d.find("job.finished", org="acme", status="ok")

    status, body = d.get("/metrics")
    assert status == 200
    sample = scrape(body)
    assert sample("gtm_connector_job_failures_total", org="globex", task="mirror") >= 2
    assert sample("gtm_connector_job_failures_total", org="acme", task="mirror") == 0
    assert sample("gtm_connector_job_runs_total", org="acme", task="mirror", status="ok") >= 2
    assert sample("gtm_connector_job_duration_seconds_count", org="acme", task="mirror") >= 2
    assert sample("gtm_connector_records_mirrored_total", org="acme", object="order") >= 2
    assert sample("gtm_connector_dead_letters_open", org="acme") == 0
    assert sample("gtm_connector_discrepancies", org="globex") == 0

    status, body = d.get("/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["ready"] and ready["scheduler"] == "running"
    assert ready["orgs"]["acme"]["database"] == "ok"
    assert ready["orgs"]["acme"]["last_success"]["mirror"] is not None
    assert ready["orgs"]["globex"]["last_success"]["mirror"] is None
    assert d.get("/healthz") == (200, b"ok\n")
    assert d.get("/nope")[0] == 404


def test_an_org_whose_database_is_down_is_not_ready_and_does_not_stop_the_other(
    tmp_path: Path, daemons: DaemonLauncher
) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID, "globex": new_org_id()},
                               data_dir=tmp_path / "data", jobs=("mirror",), database_url_env="GTM_TEST_DB_{alias}")
    trace_file = tmp_path / "trace.jsonl"
    env = {**SECRETS, "GTM_TEST_TRACE": str(trace_file),
           "GTM_TEST_DB_acme": f"sqlite:///{tmp_path / 'data' / 'acme.sqlite3'}",
           "GTM_TEST_DB_globex": "postgresql://gtm@127.0.0.1:1/gtm"}  # nothing listens there
    d = daemons.start("daemon", config_dir, env=env, fake_jobs=True)

    wait_trace(trace_file, lambda es: any(e["org"] == "acme" and e["what"] == "end" for e in es), 20,
               "acme's mirror")
    down = d.find("org.bootstrap_failed", org="globex")
    assert down and "OperationalError" in down[0]["error"]
    status, body = d.get("/readyz")
    ready = json.loads(body)
    assert status == 503 and ready["ready"] is False and ready["scheduler"] == "running"
    assert ready["orgs"]["acme"]["database"] == "ok"
    assert ready["orgs"]["globex"]["database"].startswith("unavailable")
    assert d.get("/healthz") == (200, b"ok\n")  # alive, just not ready
    # Its ticks keep trying (and failing) while acme goes on.
    d.wait_for("job.finished", org="globex", status="failed", stage="bootstrap")
    sample = scrape(d.get("/metrics")[1])
    assert sample("gtm_connector_job_failures_total", org="globex", task="mirror") >= 1


@pytest.mark.parametrize("cron", ["0 25 * * *", "0 2 * * mon-5"])
def test_an_org_with_a_bad_schedule_is_skipped_and_the_other_runs(cron: str, tmp_path: Path,
                                                                  daemons: DaemonLauncher) -> None:
    """Issue 12.2: a bad cron in one org file used to stop the daemon for every org."""
    config_dir = write_configs(tmp_path / "config", {"acme": new_org_id(), "globex": new_org_id()},
                               interval=INTERVAL, jobs=("mirror",), data_dir=tmp_path / "data")
    globex = config_dir / "globex.toml"
    globex.write_text(globex.read_text().replace(f"[schedules.mirror]\ninterval_seconds = {INTERVAL}",
                                                 f'[schedules.mirror]\ncron = "{cron}"', 1))
    trace_file = tmp_path / "trace.jsonl"
    d = daemons.start("daemon", config_dir, env={**SECRETS, "GTM_TEST_TRACE": str(trace_file)}, fake_jobs=True)

    wait_trace(trace_file, lambda es: any(e["org"] == "acme" and e["what"] == "end" for e in es), INTERVAL + 10,
               "acme's mirror run")
    (invalid,) = d.find("config.invalid")
    assert (invalid["file"], invalid["key"], invalid["action"]) == (str(globex), "schedules.mirror.cron", "org skipped")
    assert invalid["problem"].startswith(f"invalid cron '{cron}': ")
    assert not [e for e in trace(trace_file) if e["org"] == "globex"]
    d.signal(signal.SIGTERM)
    assert d.wait_exit(30) == 0
