"""One unit of work per page: rows and cursor land together, or neither (STYLE §3)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import text

from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory, upgrade
from connector.errors import TransientError

from .helpers import ORG, T0, an_order, order_id

SOBJECT = "SfdcPartnerOrder"


class PageFailed(Exception):
    pass


def _write_page(uow, first: int, count: int):
    rows = [an_order(n) for n in range(first, first + count)]
    uow.mirror("order").upsert_many(ORG, rows)
    cursor = max(r["system_modstamp"] for r in rows)
    uow.sync_state.advance(ORG, SOBJECT, cursor, len(rows))
    return cursor


def test_page_and_cursor_land_together(uow_factory) -> None:
    with uow_factory() as uow:
        cursor = _write_page(uow, 0, 20)
        uow.commit()
    with uow_factory() as uow:
        assert uow.mirror("order").count(ORG) == 20
        state = uow.sync_state.get(ORG, SOBJECT)
    assert state is not None and state.cursor == cursor and state.records_total == 20


def test_failure_mid_page_keeps_neither_rows_nor_cursor(uow_factory) -> None:
    with uow_factory() as uow:
        first_cursor = _write_page(uow, 0, 10)
        uow.commit()

    with pytest.raises(PageFailed), uow_factory() as uow:
        _write_page(uow, 10, 10)
        raise PageFailed("connection to Salesforce dropped before commit")

    with uow_factory() as uow:
        assert uow.mirror("order").count(ORG) == 10
        state = uow.sync_state.get(ORG, SOBJECT)
    assert state is not None and state.cursor == first_cursor and state.records_total == 10


def test_leaving_without_commit_rolls_back(uow_factory) -> None:
    with uow_factory() as uow:
        _write_page(uow, 0, 5)
    with uow_factory() as uow:
        assert uow.mirror("order").count(ORG) == 0
        assert uow.sync_state.get(ORG, SOBJECT) is None


def test_explicit_rollback_discards_the_page(uow_factory) -> None:
    with uow_factory() as uow:
        _write_page(uow, 0, 5)
        uow.rollback()
        uow.dead_letters.add(ORG, "mirror", SOBJECT, order_id(3), "INVALID_VALUE", "bad subtotal")
        uow.commit()
    with uow_factory() as uow:
        assert uow.mirror("order").count(ORG) == 0
        assert uow.dead_letters.count_open(ORG) == 1


def test_cursor_never_moves_backwards(uow_factory) -> None:
    with uow_factory() as uow:
        uow.sync_state.advance(ORG, SOBJECT, T0 + timedelta(hours=1), 100)
        # a lookback overlap re-reads older records: the cursor stays put, totals still add up
        state = uow.sync_state.advance(ORG, SOBJECT, T0, 3)
        assert state.cursor == T0 + timedelta(hours=1) and state.records_total == 103
        state = uow.sync_state.advance(ORG, SOBJECT, None, 0)  # an empty page
        assert state.cursor == T0 + timedelta(hours=1)
        state = uow.sync_state.advance(ORG, SOBJECT, T0 + timedelta(hours=2), 1)
        assert state.cursor == T0 + timedelta(hours=2)
        uow.commit()


def test_full_resync_resets_the_cursor_and_is_recorded(uow_factory) -> None:
    clock_times = iter([T0 + timedelta(minutes=m) for m in range(100)])
    with uow_factory(clock=lambda: next(clock_times)) as uow:
        uow.sync_state.advance(ORG, SOBJECT, T0, 1)
        uow.sync_state.mark_run(ORG, SOBJECT, "ok")
        uow.sync_state.reset_cursor(ORG, SOBJECT)
        state = uow.sync_state.mark_run(ORG, SOBJECT, "ok", full=True)
        uow.sync_state.advance(ORG, "SfdcPartnerOffer", T0, 2)
        uow.commit()
        assert state.cursor is None and state.last_full_at == state.last_run_at and state.last_status == "ok"
        assert [s.object_name for s in uow.sync_state.all(ORG)] == ["SfdcPartnerOffer", SOBJECT]


def test_unit_of_work_can_be_reused_but_not_nested(uow_factory) -> None:
    uow = uow_factory()
    with uow:
        _write_page(uow, 0, 1)
        uow.commit()
        with pytest.raises(RuntimeError, match="already open"):
            uow.__enter__()
    with uow:
        assert uow.mirror("order").count(ORG) == 1
    with pytest.raises(RuntimeError, match="inside `with uow:`"):
        uow.commit()


def test_sqlite_lock_contention_is_transient(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url, sqlite_busy_timeout_ms=50)
    other_writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other_writer.execute("BEGIN IMMEDIATE")  # another process is mid-commit
        with pytest.raises(TransientError, match="locked"), SqlUnitOfWork(session_factory(engine)) as uow:
            _write_page(uow, 0, 3)
            uow.commit()
        other_writer.execute("ROLLBACK")
        with SqlUnitOfWork(session_factory(engine)) as uow:  # the retry goes through
            _write_page(uow, 0, 3)
            uow.commit()
            assert uow.mirror("order").count(ORG) == 3
    finally:
        other_writer.close()
        engine.dispose()


@pytest.mark.postgres
def test_postgres_row_lock_timeout_is_transient(pg_url: str) -> None:
    upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            uow.sync_state.advance(ORG, SOBJECT, T0, 0)
            uow.commit()
        with engine.connect() as holder:
            holder.execute(text("SELECT 1 FROM sync_state FOR UPDATE"))  # another daemon mid-page
            with pytest.raises(TransientError, match="55P03"), SqlUnitOfWork(session_factory(engine)) as uow:
                uow.session.execute(text("SET LOCAL lock_timeout = '100ms'"))
                uow.sync_state.advance(ORG, SOBJECT, T0 + timedelta(hours=1), 1)
            holder.rollback()
    finally:
        engine.dispose()


def test_other_database_errors_are_not_disguised(uow_factory) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), uow_factory() as uow:
        uow.job_runs.start(ORG, "mirror", "run-1")
        uow.session.execute(text("INSERT INTO sync_state (org_id, object_name) VALUES ('x', 'y')"))
