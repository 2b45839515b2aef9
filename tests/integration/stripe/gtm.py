"""Builders for the Stripe-side tests: a partner org's GTM catalogue and orders written
into the local model, as the mirror would leave them (seed 003: Core App 10 x $50 at 15%,
Premium Add-On 1 x $200 at 10%)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.adapters.store import SqlUnitOfWork

ORG = "00D000000000ACMEAA"
CUSTOMER_ORG = "00D000000000CUSTAA"
MODSTAMP = datetime(2026, 1, 1, tzinfo=UTC)
PPP_CORE, PPP_PREMIUM = "0PP000000000CORE01", "0PP000000000PREM01"
Item = tuple[str, int, str]  # (ppp id, quantity, unit price per month)
SEED_003: list[Item] = [(PPP_CORE, 10, "50.00"), (PPP_PREMIUM, 1, "200.00")]


def order_id(n: int) -> str:
    return f"a0O{n:015d}"


def item_id(n: int, i: int) -> str:
    return f"a0I{n:012d}{i:03d}"


@dataclass
class Clock:
    """The connector's clock in tests: a fixed instant that tests move."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class GtmOrg:
    """Writes mirror rows for one org through the store's unit of work."""

    uow: Callable[[], SqlUnitOfWork]
    org_id: str = ORG

    @contextmanager
    def _unit(self) -> Iterator[SqlUnitOfWork]:
        with self.uow() as uow:
            yield uow
            uow.commit()

    def catalogue(self) -> GtmOrg:
        with self._unit() as uow:
            uow.mirror("ppc").upsert_many(self.org_id, [
                {"sf_id": "0PC000000000PPCA01", "system_modstamp": MODSTAMP, "name": "PPC A",
                 "revenue_share_percent": Decimal("15")},
                {"sf_id": "0PC000000000PPCB01", "system_modstamp": MODSTAMP, "name": "PPC B",
                 "revenue_share_percent": Decimal("10")},
            ])
            uow.mirror("ppp").upsert_many(self.org_id, [
                {"sf_id": PPP_CORE, "system_modstamp": MODSTAMP, "name": "Core App", "ppc_id": "0PC000000000PPCA01"},
                {"sf_id": PPP_PREMIUM, "system_modstamp": MODSTAMP, "name": "Premium Add-On",
                 "ppc_id": "0PC000000000PPCB01"},
            ])
        return self

    def order(
        self,
        n: int,
        *,
        start: date,
        items: list[Item] | None = None,
        subtotal: str | None = "auto",
        status: str = "Activated",
        order_type: str = "Initial",
        initial: int | None = None,
        email: str | None = "ap@acme.example",
        **overrides: Any,
    ) -> str:
        """An order and its items; ``subtotal="auto"`` is what the org would show
        (the sum of the full line totals)."""
        items = SEED_003 if items is None else items
        totals = [Decimal(q) * Decimal(p) * 12 for _, q, p in items]
        row: dict[str, Any] = {
            "sf_id": order_id(n), "system_modstamp": MODSTAMP, "name": f"O-{n:06d}", "order_number": f"{n:08d}",
            "status": status, "order_type": order_type, "customer_name": "Acme Corp",
            "customer_org_id": CUSTOMER_ORG, "contract_term_months": 12, "service_start_date": start,
            "service_end_date": None, "billing_email": email, "recipient_email": "buyer@acme.example",
            "currency": "USD", "subtotal": sum(totals, Decimal("0.00")) if subtotal == "auto" else
            (None if subtotal is None else Decimal(subtotal)),
            "initial_order_id": order_id(initial) if initial is not None else None,
        }
        row.update(overrides)
        with self._unit() as uow:
            uow.mirror("order").upsert_many(self.org_id, [row])
            uow.mirror("order_item").upsert_many(self.org_id, [
                {"sf_id": item_id(n, i), "system_modstamp": MODSTAMP, "name": f"OI-{n}-{i}", "order_id": order_id(n),
                 "ppp_id": ppp, "quantity": quantity, "unit_price_per_month": Decimal(price),
                 "line_item_total": total}
                for i, ((ppp, quantity, price), total) in enumerate(zip(items, totals, strict=True))
            ])
        return order_id(n)

    def change_order(self, n: int, **fields: Any) -> None:
        with self._unit() as uow:
            uow.mirror("order").upsert_many(self.org_id, [{"sf_id": order_id(n), "system_modstamp": MODSTAMP,
                                                          **fields}])

    def change_item(self, n: int, i: int, **fields: Any) -> None:
        with self._unit() as uow:
            uow.mirror("order_item").upsert_many(self.org_id, [{"sf_id": item_id(n, i),
                                                               "system_modstamp": MODSTAMP, **fields}])
