"""One run per (org, job) across daemons and CLI runs: the PostgreSQL advisory lock, and a lock
file beside a SQLite database."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import text

from connector.adapters.store import advisory_lock, make_engine
from connector.adapters.store.engine import lock_key

from .helpers import ORG, OTHER_ORG


def _org() -> str:
    """A fresh org id: advisory locks are server-wide, other test runs must not collide."""
    return "00D" + uuid.uuid4().hex[:15].upper()


@pytest.mark.postgres
def test_second_daemon_is_refused_while_the_first_holds_the_lock(pg_url: str) -> None:
    daemon_a, daemon_b = make_engine(pg_url), make_engine(pg_url)
    org, other_org = _org(), _org()
    try:
        with advisory_lock(daemon_a, org, "mirror") as first:
            assert first is True
            with advisory_lock(daemon_b, org, "mirror") as second:
                assert second is False
            with advisory_lock(daemon_b, org, "invoicing") as other_job:
                assert other_job is True
            with advisory_lock(daemon_b, other_org, "mirror") as next_org:
                assert next_org is True
        with advisory_lock(daemon_b, org, "mirror") as after_release:
            assert after_release is True
    finally:
        daemon_a.dispose()
        daemon_b.dispose()


@pytest.mark.postgres
def test_lock_of_a_crashed_holder_goes_with_its_connection(pg_url: str) -> None:
    daemon_a, daemon_b = make_engine(pg_url), make_engine(pg_url)
    org = _org()
    key = lock_key(org, "mirror")
    try:
        with advisory_lock(daemon_a, org, "mirror") as first:
            assert first is True
            # daemon A's host dies: its backend goes away, and the lock with it
            with daemon_b.begin() as admin:
                killed = admin.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                         "AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint"),  # fmt: skip
                    {"k": key},
                ).scalars().all()
            assert killed == [True]
            _wait_until_released(daemon_b, key)
            with advisory_lock(daemon_b, org, "mirror") as taken_over:
                assert taken_over is True
        # leaving A's block with a dead connection is quiet: the connection is discarded
    finally:
        daemon_a.dispose()
        daemon_b.dispose()


def _wait_until_released(engine, key: int, timeout_s: float = 5.0) -> None:
    """pg_terminate_backend only signals the backend; wait until its locks are gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            held = conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                     "AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint"),  # fmt: skip
                {"k": key},
            ).scalar_one()
        if not held:
            return
        time.sleep(0.02)
    raise AssertionError("the terminated backend still holds the advisory lock")


def test_sqlite_lock_is_a_lock_file_per_org_and_job(sqlite_url: str) -> None:
    engine, other = make_engine(sqlite_url), make_engine(sqlite_url)
    try:
        with advisory_lock(engine, ORG, "mirror") as first:
            assert first is True
            with advisory_lock(other, ORG, "mirror") as second:
                assert second is False
            with advisory_lock(other, ORG, "invoicing") as other_job, \
                    advisory_lock(other, OTHER_ORG, "mirror") as next_org:
                assert other_job is True and next_org is True
        with advisory_lock(other, ORG, "mirror") as after_release:
            assert after_release is True
    finally:
        engine.dispose()
        other.dispose()


def test_sqlite_lock_held_by_another_process_goes_with_its_death(sqlite_url: str) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from connector.adapters.store import advisory_lock, make_engine\n"
         f"with advisory_lock(make_engine({sqlite_url!r}), {ORG!r}, 'invoicing') as held:\n"
         "    print('HELD', held, flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    engine = make_engine(sqlite_url)
    try:
        assert holder.stdout is not None
        first = next(line for line in iter(holder.stdout.readline, "") if line.startswith("HELD"))  # skips log lines
        assert first.strip() == "HELD True"
        with advisory_lock(engine, ORG, "invoicing") as second:
            assert second is False
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait(timeout=10)
        with advisory_lock(engine, ORG, "invoicing") as after_death:
            assert after_death is True
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        engine.dispose()


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key(ORG, "mirror") == lock_key(ORG, "mirror")
    assert len({lock_key(o, j) for o in (ORG, OTHER_ORG) for j in ("mirror", "invoicing", "payouts")}) == 6
    assert -(2**63) <= lock_key(ORG, "mirror") < 2**63
