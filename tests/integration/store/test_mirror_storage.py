"""The mirror writes rows with a raw ``executemany`` of values it coerced once: what lands
in the database must be exactly what the SQLAlchemy column types write, on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import insert, select, update

from connector.adapters.store import MIRROR_TABLES

from .helpers import ORG, T0, an_order, order_id

ORDERS = MIRROR_TABLES["orders"]
ITEMS = MIRROR_TABLES["order_items"]


def _raw(db_engine, table, org: str) -> list[tuple]:
    """Stored rows as the driver returns them (no result processing), by sf_id."""
    cols = ", ".join(c.name for c in table.columns)
    with db_engine.connect() as conn:
        return list(conn.exec_driver_sql(f"SELECT {cols} FROM {table.name} WHERE org_id = '{org}' ORDER BY sf_id"))


def _awkward_orders() -> list[dict]:
    """Values that exercise every conversion: half-up rounding, microseconds, another
    time zone, NULLs, an empty JSON object, non-ASCII and a year before 1000."""
    plus5 = timezone(timedelta(hours=5, minutes=30))
    return [
        an_order(1),
        an_order(2, subtotal="12345678901234.565", modstamp=datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=plus5),
                 customer_name="Société Générale ✓", extra={}),
        an_order(3, subtotal="-0.005", service_start_date=date(999, 1, 2), extra=None, billing_email=None,
                 modstamp=datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)),
        an_order(4, subtotal="7", contract_term_months=None, service_end_date=date(2027, 2, 28),
                 extra={"n": [1, 2.5, None, True], "d": Decimal("1.10"), "when": date(2026, 1, 1)}),
    ]


def test_stored_values_are_exactly_what_the_column_types_write(uow_factory, db_engine) -> None:
    rows = _awkward_orders()
    now = datetime(2026, 3, 2, 8, 0, 0, 654321, tzinfo=UTC)
    with uow_factory() as uow:
        uow.mirror("order")._clock = lambda: now
        uow.mirror("order").upsert_many(ORG, rows)
        uow.commit()
    # The same rows through SQLAlchemy Core and the TypeDecorators, under another org.
    other = "00D000000000REFERA"
    keys = sorted(set().union(*rows))
    with db_engine.begin() as conn:
        conn.execute(insert(ORDERS), [{**{k: r.get(k) for k in keys}, "org_id": other, "is_deleted": False,
                                       "deleted_at": None, "first_seen_at": now, "updated_at": now} for r in rows])
    ours, reference = _raw(db_engine, ORDERS, ORG), _raw(db_engine, ORDERS, other)
    assert [r[1:] for r in ours] == [r[1:] for r in reference]
    assert [tuple(map(type, r)) for r in ours] == [tuple(map(type, r)) for r in reference]


def test_checked_rows_are_stored_as_given_and_read_back_equal(uow_factory) -> None:
    rows = _awkward_orders()
    with uow_factory() as uow:
        repo = uow.mirror("order")
        checked = [repo.check(r) for r in rows]
        assert repo.upsert_many(ORG, checked, checked=True).inserted == 4
        uow.commit()
    with uow_factory() as uow:
        repo = uow.mirror("order")
        stored = repo.get_many(ORG, [order_id(n) for n in range(1, 5)])
        assert stored[order_id(2)]["subtotal"] == Decimal("12345678901234.57")
        assert stored[order_id(3)]["subtotal"] == Decimal("-0.01")
        assert stored[order_id(2)]["system_modstamp"] == datetime(2026, 3, 1, 3, 30, 0, 123456, tzinfo=UTC)
        assert stored[order_id(3)]["extra"] is None and stored[order_id(3)]["billing_email"] is None
        assert stored[order_id(4)]["extra"] == {"n": [1, 2.5, None, True], "d": "1.10", "when": "2026-01-01"}
        for row in checked:
            assert all(stored[row["sf_id"]][k] == v for k, v in row.items())
        # the same page again, checked or not, writes nothing
        assert repo.upsert_many(ORG, [repo.check(r) for r in rows], checked=True).unchanged == 4
        assert repo.upsert_many(ORG, rows).unchanged == 4


def test_updates_store_what_the_column_types_write(uow_factory, db_engine) -> None:
    when = T0 + timedelta(days=3, microseconds=7)
    with uow_factory() as uow:
        uow.mirror("order").upsert_many(ORG, [an_order(1)])
        uow.commit()
    changed = an_order(1, subtotal="1.005", modstamp=when, extra={"x": "y"}, status="Expired")
    with uow_factory() as uow:
        assert uow.mirror("order").upsert_many(ORG, [changed]).updated == 1
        uow.commit()
    other = "00D000000000REFERA"
    with uow_factory() as uow:
        uow.mirror("order").upsert_many(other, [an_order(1)])
        uow.commit()
    t = ORDERS
    with db_engine.begin() as conn:
        first_seen_at, updated_at = conn.execute(select(t.c.first_seen_at, t.c.updated_at)
                                                 .where(t.c.org_id == ORG)).one()
        conn.execute(update(t).where(t.c.org_id == other).values(
            {**{k: v for k, v in changed.items() if k != "sf_id"}, "first_seen_at": first_seen_at,
             "updated_at": updated_at}))
    assert [r[1:] for r in _raw(db_engine, t, ORG)] == [r[1:] for r in _raw(db_engine, t, other)]


def test_price_keeps_its_precision(uow_factory, db_engine) -> None:
    item = {"sf_id": "a0C000000000000001", "system_modstamp": T0, "order_id": order_id(1),
            "quantity": 3, "unit_price_per_month": Decimal("0.125"), "line_item_total": Decimal("4.50")}
    with uow_factory() as uow:
        uow.mirror("order_item").upsert_many(ORG, [item])
        uow.commit()
    with uow_factory() as uow:
        stored = uow.mirror("order_item").get(ORG, item["sf_id"])
    assert stored is not None and stored["unit_price_per_month"] == Decimal("0.125")
    assert str(stored["unit_price_per_month"]) in ("0.125000", "0.125")
