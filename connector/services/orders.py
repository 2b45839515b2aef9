"""The one order read path: an order from the local mirror, with its items, their PPP
names and PPC revenue shares, its offer's billing contact and, for an add-on, its initial
order's start, as one domain ``Order`` (``connector.domain.orders``).

Invoicing, payout reconciliation and the demo read orders here, inside the caller's unit
of work; the offline ``payout-estimate`` builds the same ``Order`` from JSON. Rows stay
rows up to this module; past it only ``Order``/``OrderItem`` travel.

What the reader decides (and nothing else does):

- an order or initial order soft-deleted in the mirror is not there (``order`` -> None);
  deleted items are left out;
- an order is an add-on when its ``order_type`` maps to ``add_on`` in the mapping's
  ``order_type`` vocabulary (an unknown or empty type is an initial order);
- the billing e-mail is the order's, else its offer's, else the order's recipient, else
  the offer's; the customer name is the order's, else its offer's (the offer is read only
  when the order lacks one of them);
- catalog rows (PPPs, PPCs) are read once per reader, deleted ones included: an item keeps
  the product name and revenue share it was sold with.

Reading never fails on a bad value: the domain rules that use a value check it
(``plan_invoice``, ``order_payout``, ``add_on_proration``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Protocol

from connector.domain.orders import ORDER_NOT_MIRRORED, Order, OrderItem
from connector.errors import RecordError
from connector.services.ports import UnitOfWork

__all__ = ["OrderReader", "initial_order", "linked_invoice_ids", "read_order", "read_orders"]

Row = Mapping[str, Any]


def initial_order(row: Row, is_add_on: Callable[[Row], bool], fetch: Callable[[str], Row | None]) -> Row | None:
    """The initial order an add-on belongs to (``row`` itself when it is not an add-on).
    DESIGN prorates an add-on to the *initial* order's end; an add-on whose InitialOrderId
    names an earlier add-on (the customer's latest order) is followed back to the initial
    order of the chain. ``fetch``: a live mirrored order by id. None when the chain ends at
    an order not mirrored (or deleted), or loops."""
    seen = {row["sf_id"]}
    current = row
    while is_add_on(current):
        next_id = current.get("initial_order_id")
        if not next_id or next_id in seen:
            return None
        seen.add(next_id)
        found = fetch(str(next_id))
        if found is None:
            return None
        current = found
    return current


class OrderTypes(Protocol):
    """The mapping's vocabularies (``connector.mappings.MappingSet``)."""

    def to_state(self, vocabulary: str, value: str | None) -> str | None: ...


class OrderReader:
    """Reads one org's orders inside a unit of work. Catalog rows are read on first use
    and kept for the reader's life (one reader per unit of work)."""

    def __init__(self, uow: UnitOfWork, org_id: str, mapping: OrderTypes) -> None:
        self._uow = uow
        self._org_id = org_id
        self._mapping = mapping
        self._catalog: tuple[dict[str, Row], dict[str, Decimal | None]] | None = None

    # -- reading ---------------------------------------------------------------------------
    def get(self, order_id: str) -> Order | None:
        """The order, or None when it is not mirrored or was deleted."""
        row = self._live(order_id)
        return None if row is None else self._order(row)

    def read(self, order_id: str) -> Order:
        """The order; ``RecordError`` ``ORDER_NOT_MIRRORED`` when it is not there."""
        order = self.get(order_id)
        if order is None:
            raise RecordError("order is not in the local mirror", record_id=order_id, code=ORDER_NOT_MIRRORED)
        return order

    def orders(self, *, statuses: Iterable[str] | None = None, skip: Iterable[str] = ()) -> Iterator[Order]:
        """The org's (undeleted) orders whose status label is one of ``statuses`` (all when
        None), one at a time; orders whose id is in ``skip`` are not read further."""
        skipped = frozenset(skip)
        table = self._uow.mirror("order")
        batches = [table.list(self._org_id)] if statuses is None else \
            [table.list(self._org_id, status=label) for label in statuses]
        for rows in batches:
            for row in rows:
                if row["sf_id"] not in skipped:
                    yield self._order(row)

    # -- building --------------------------------------------------------------------------
    def _live(self, order_id: str) -> Row | None:
        row = self._uow.mirror("order").get(self._org_id, order_id)
        return None if row is None or row.get("is_deleted") else row

    def _order(self, row: Row) -> Order:
        order_id: str = row["sf_id"]
        is_add_on = self._is_add_on(row)
        initial_id: str | None = row.get("initial_order_id")
        initial = self._initial(row) if is_add_on else None
        email, name = self._contact(row)
        return Order(
            org_id=self._org_id,
            order_id=order_id,
            order_number=row.get("order_number"),
            items=tuple(self._item(item) for item in self._uow.mirror("order_item").list(self._org_id,
                                                                                         order_id=order_id)),
            is_add_on=is_add_on,
            initial_order_id=initial_id,
            initial_start_date=initial.get("service_start_date") if initial is not None else None,
            service_start_date=row.get("service_start_date"),
            contract_term_months=row.get("contract_term_months"),
            currency=row.get("currency"),
            billing_email=email,
            customer_name=name,
            customer_org_id=row.get("customer_org_id"),
            subtotal=row.get("subtotal"),
        )

    def _is_add_on(self, row: Row) -> bool:
        return self._mapping.to_state("order_type", row.get("order_type")) == "add_on"

    def _initial(self, row: Row) -> Row | None:
        return initial_order(row, self._is_add_on, self._live)

    def _contact(self, row: Row) -> tuple[str | None, str | None]:
        """(billing e-mail, customer name): the order's, else its offer's."""
        email, name = row.get("billing_email"), row.get("customer_name")
        if email and name:
            return email, name
        offer = self._uow.mirror("offer").get(self._org_id, row["offer_id"]) if row.get("offer_id") else None
        offer = offer or {}
        email = next((e for e in (email, offer.get("billing_email"), row.get("recipient_email"),
                                  offer.get("recipient_email")) if e), None)
        return email, name or offer.get("customer_name")

    def _item(self, row: Row) -> OrderItem:
        ppps, shares = self._read_catalog()
        ppp_id: str | None = row.get("ppp_id")
        ppp = ppps.get(ppp_id) if ppp_id else None
        ppc_id: str | None = ppp.get("ppc_id") if ppp is not None else None
        return OrderItem(
            row.get("quantity"),
            row.get("unit_price_per_month"),
            shares.get(ppc_id) if ppc_id else None,
            item_id=row["sf_id"],
            ppp_id=ppp_id,
            ppc_id=ppc_id,
            ppp_name=ppp.get("name") if ppp is not None else None,
            line_item_total=row.get("line_item_total"),
        )

    def _read_catalog(self) -> tuple[dict[str, Row], dict[str, Decimal | None]]:
        if self._catalog is None:
            ppps: dict[str, Row] = {r["sf_id"]: r
                                    for r in self._uow.mirror("ppp").list(self._org_id, include_deleted=True)}
            shares: dict[str, Decimal | None] = {r["sf_id"]: r.get("revenue_share_percent")
                                                 for r in self._uow.mirror("ppc").list(self._org_id,
                                                                                       include_deleted=True)}
            self._catalog = ppps, shares
        return self._catalog


def read_order(uow: UnitOfWork, org_id: str, mapping: OrderTypes, order_id: str) -> Order:
    """One order (``RecordError`` ``ORDER_NOT_MIRRORED`` when it is not in the mirror)."""
    return OrderReader(uow, org_id, mapping).read(order_id)


def read_orders(uow: UnitOfWork, org_id: str, mapping: OrderTypes, *, statuses: Iterable[str] | None = None,
                skip: Iterable[str] = ()) -> Iterator[Order]:
    """The org's orders with status label in ``statuses`` (all when None), ``skip`` left out."""
    return OrderReader(uow, org_id, mapping).orders(statuses=statuses, skip=skip)


def linked_invoice_ids(uow: UnitOfWork, org_id: str, order_id: str) -> set[str]:
    """The Stripe invoices the GTM app's billing junction (mirrored
    ``SfdcPartnerOrderBillingTrxn``) links to the order, deleted links left out."""
    return {r["stripe_invoice_id"] for r in uow.mirror("billing_link").list(org_id, order_id=order_id)
            if r.get("stripe_invoice_id") and not r.get("is_deleted")}
