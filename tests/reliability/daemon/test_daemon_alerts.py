"""Alerts from a real daemon process: started, a failing task, stopped — each once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from connector.adapters.store.engine import SQLITE_BUSY_TIMEOUT_MS
from tests.fixtures.daemon import ACME_ID, DaemonLauncher, scrape, write_configs
from tests.fixtures.webhook_receiver import TOKEN, Receiver

pytestmark = pytest.mark.slow

SECRETS = {"ACME_SF_SECRET": "x", "ACME_STRIPE_KEY": "sk_test_acme"}


def wait_until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_daemon_sends_started_failures_and_stopped_once(tmp_path: Path, daemons: DaemonLauncher,
                                                              alert_receiver: Receiver) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data", jobs=("mirror",))
    with (config_dir / "acme.toml").open("a") as f:
        f.write('\n[alerts]\nwebhook_url = { env = "ACME_ALERTS_URL" }\nfailures_in_a_row = 1\n')
    env = {**SECRETS, "ACME_ALERTS_URL": alert_receiver.url, "GTM_TEST_TRACE": str(tmp_path / "trace.jsonl"),
           "GTM_TEST_BEHAVIOUR": json.dumps({"acme": {"raise": "AuthError"}})}
    alert_receiver.stop()  # the receiver is down when the daemon starts
    d = daemons.start("daemon-a", config_dir, env=env, fake_jobs=True)

    def pending() -> float | None:
        return scrape(d.get("/metrics")[1])("gtm_connector_alerts_pending", org="acme")

    wait_until(lambda: pending() == 2, 20, "daemon_started and job_failed pending")  # recorded, not delivered
    d.wait_for("alert.delivery_failed", alert="job_failed", timeout=10)
    alert_receiver.start()
    wait_until(lambda: pending() == 0, 30, "the next tick delivering them")
    d.wait_for("job.finished", org="acme", status="failed", count=3, timeout=30)  # later ticks: the same streak
    d.signal(signal.SIGTERM)
    assert d.wait_exit(30) == 0
    assert alert_receiver.events() == {"daemon_started": 1, "job_failed": 1, "daemon_stopped": 1}
    started = next(b for b in alert_receiver.bodies if b["event"] == "daemon_started")
    assert started["org"] == "acme" and started["message"] == "daemon daemon-a started"
    assert TOKEN not in d.log_path.read_text()


def test_a_stop_whose_grace_runs_out_is_still_sent_once_with_the_runs_abandoned(
        tmp_path: Path, daemons: DaemonLauncher, alert_receiver: Receiver) -> None:
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data", jobs=("mirror",),
                               grace=2)
    with (config_dir / "acme.toml").open("a") as f:
        f.write('\n[alerts]\nwebhook_url = { env = "ACME_ALERTS_URL" }\ntimeout_seconds = 2\n')
    env = {**SECRETS, "ACME_ALERTS_URL": alert_receiver.url, "GTM_TEST_TRACE": str(tmp_path / "trace.jsonl"),
           "GTM_TEST_BEHAVIOUR": json.dumps({"acme": {"pages": 100, "page_s": 0.5, "ignore_stop": True}})}
    d = daemons.start("daemon-a", config_dir, env=env, fake_jobs=True)
    d.wait_for("page.committed", timeout=20)
    d.signal(signal.SIGTERM)
    started = time.monotonic()
    assert d.wait_exit(15) == 1  # the job ignored the stop: the grace (2 s) ran out
    assert time.monotonic() - started < 2 + 6  # the grace, then one delivery (a local receiver: quick)
    assert alert_receiver.events() == {"daemon_started": 1, "daemon_stopped": 1}
    stopped = next(b for b in alert_receiver.bodies if b["event"] == "daemon_stopped")
    assert stopped["counts"] == {"jobs_abandoned": 1}
    assert stopped["message"] == ("daemon daemon-a stopped after its 2 s grace with 1 run(s) still going (mirror), "
                                  "abandoned; the next start resumes from what they committed")


def test_a_stop_whose_abandoned_run_holds_the_sqlite_write_lock_is_sent_without_waiting_for_it(
        tmp_path: Path, daemons: DaemonLauncher, alert_receiver: Receiver) -> None:
    """The run the grace abandons holds the SQLite file's write lock from the stop until the
    process exits: the stop's store write waits a short while for it (not the 5 s busy
    timeout), then the stop is sent without a row, once, and the log says so."""
    config_dir = write_configs(tmp_path / "config", {"acme": ACME_ID}, data_dir=tmp_path / "data", jobs=("mirror",),
                               grace=2)
    with (config_dir / "acme.toml").open("a") as f:
        f.write('\n[alerts]\nwebhook_url = { env = "ACME_ALERTS_URL" }\ntimeout_seconds = 2\n')
    env = {**SECRETS, "ACME_ALERTS_URL": alert_receiver.url, "GTM_TEST_TRACE": str(tmp_path / "trace.jsonl"),
           "GTM_TEST_BEHAVIOUR": json.dumps({"acme": {"pages": 100, "page_s": 0.5, "ignore_stop": True,
                                                      "hold_write_lock": True}})}
    d = daemons.start("daemon-a", config_dir, env=env, fake_jobs=True)
    d.wait_for("page.committed", timeout=20)
    d.signal(signal.SIGTERM)
    started = time.monotonic()
    assert d.wait_exit(15) == 1  # the run ignored the stop: the grace (2 s) ran out
    took = time.monotonic() - started
    assert d.find("write_lock.held")  # from the stop on, the run holds the lock (in its transaction)
    assert took < 2 + SQLITE_BUSY_TIMEOUT_MS / 1000 / 2, took  # the grace, a short wait, one local delivery
    assert alert_receiver.events() == {"daemon_started": 1, "daemon_stopped": 1}
    stopped = next(b for b in alert_receiver.bodies if b["event"] == "daemon_stopped")
    assert stopped["counts"] == {"jobs_abandoned": 1}
    [unrecorded] = d.find("alert.not_recorded")
    assert unrecorded["alert"] == "daemon_stopped" and unrecorded["key"] == stopped["key"]
