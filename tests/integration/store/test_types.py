"""Money stays exact and time stays UTC-aware through either database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError

from connector.adapters.store import tables

from .helpers import ORG, T0, an_order, order_id


@pytest.mark.parametrize(
    "amount",
    ["12345678901234.56", "-12345678901234.56", "0.01", "0.00", "9999999999999999.99", "8400.00", "1140.10"],
)
def test_money_round_trips_exactly(uow_factory, amount: str) -> None:
    with uow_factory() as uow:
        uow.mirror("order").upsert_many(ORG, [an_order(1, subtotal=amount)])
        uow.commit()
    with uow_factory() as uow:
        stored = uow.mirror("orders").get(ORG, order_id(1))
    assert stored is not None
    assert stored["subtotal"] == Decimal(amount)
    assert str(stored["subtotal"]) == amount  # same digits, two decimals


def test_percent_keeps_four_decimals(uow_factory) -> None:
    row = {"sf_id": "a0C000000000000001", "system_modstamp": T0, "name": "Core app",
           "revenue_share_percent": Decimal("15.1234"), "floor_price": Decimal("50.00")}  # fmt: skip
    with uow_factory() as uow:
        uow.mirror("ppc").upsert_many(ORG, [row])
        uow.commit()
    with uow_factory() as uow:
        stored = uow.mirror("ppc").get(ORG, "a0C000000000000001")
    assert stored is not None
    assert stored["revenue_share_percent"] == Decimal("15.1234")
    assert str(stored["floor_price"]) == "50.00"


def test_sums_in_sql_stay_exact(uow_factory) -> None:
    amounts = ["0.10", "0.20", "12345678901234.56", "0.03"]
    with uow_factory() as uow:
        uow.mirror("order").upsert_many(ORG, [an_order(i, subtotal=a) for i, a in enumerate(amounts)])
        uow.commit()
        total = uow.session.execute(select(func.sum(tables.orders.c.subtotal))).scalar_one()
    assert total == Decimal("12345678901234.89")


def test_float_money_is_refused(uow_factory) -> None:
    with uow_factory() as uow:
        with pytest.raises(StatementError, match="pass a Decimal"):
            uow.invoices.upsert(ORG, order_id(1), amount_due=8400.0)  # type: ignore[arg-type]


def test_sub_cent_amounts_round_half_up(uow_factory) -> None:
    with uow_factory() as uow:
        uow.invoices.upsert(ORG, order_id(1), amount_due=Decimal("10.005"), amount_paid=Decimal("-10.005"))
        uow.commit()
        invoice = uow.invoices.get(ORG, order_id(1))
    assert invoice is not None
    assert invoice.amount_due == Decimal("10.01")
    assert invoice.amount_paid == Decimal("-10.01")


def test_datetimes_come_back_aware_in_utc(uow_factory) -> None:
    paris = timezone(timedelta(hours=2))
    observed = datetime(2026, 7, 14, 12, 30, 15, 123456, tzinfo=paris)
    with uow_factory() as uow:
        uow.sync_state.advance(ORG, "SfdcPartnerOrder", observed, 1)
        uow.commit()
    with uow_factory() as uow:
        state = uow.sync_state.get(ORG, "SfdcPartnerOrder")
    assert state is not None and state.cursor is not None
    assert state.cursor == observed
    assert state.cursor.tzinfo == UTC
    assert state.cursor.hour == 10 and state.cursor.microsecond == 123456


def test_naive_datetimes_are_refused(uow_factory) -> None:
    with uow_factory() as uow:
        with pytest.raises(ValueError, match="naive datetime"):
            uow.sync_state.advance(ORG, "SfdcPartnerOrder", datetime(2026, 1, 1), 0)


def test_json_keeps_decimals_as_exact_strings(uow_factory) -> None:
    request = {"amount": Decimal("8400.00"), "due": T0.date(), "lines": [{"qty": 10}]}
    with uow_factory() as uow:
        entry = uow.outbox.record_intent(ORG, "k1", "invoice.create", order_id(1), request)
        uow.commit()
    assert entry.request == {"amount": "8400.00", "due": "2026-03-01", "lines": [{"qty": 10}]}
    assert entry.result is None
