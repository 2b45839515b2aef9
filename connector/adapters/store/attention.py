"""The two reads behind the attention flags (``connector.domain.attention``), each one
query, whatever the number of orders:

* ``invoiced_orders_in``: orders in the given status labels that have a local invoice
  (a join of ``orders`` and ``invoices``);
* ``sold_without_license``: (PPP, order) pairs of items of orders in the given labels whose
  PPP has no live product license (``NOT EXISTS`` on the ``(org_id, ppp_id)`` index of
  ``product_licenses``, migration 0003).

Labels are the org's own status values (the mapping's vocabulary), so the filter runs in
the database.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from connector.adapters.store.tables import invoices, order_items, orders, ppps, product_licenses


class AttentionQueries:
    def __init__(self, session: Session, **_: Any) -> None:
        self.session = session

    def invoiced_orders_in(self, org_id: str, labels: Collection[str]) -> list[dict[str, Any]]:
        if not labels:
            return []
        stmt = (
            select(orders.c.sf_id.label("order_id"), orders.c.order_number, orders.c.status,
                   orders.c.service_end_date, invoices.c.stripe_invoice_id, invoices.c.number.label("invoice_number"),
                   invoices.c.status.label("invoice_status"))
            .join(invoices, and_(invoices.c.org_id == orders.c.org_id, invoices.c.order_id == orders.c.sf_id))
            .where(orders.c.org_id == org_id, orders.c.is_deleted.is_(False), orders.c.status.in_(list(labels)))
            .order_by(orders.c.sf_id)
        )
        return [dict(row._mapping) for row in self.session.execute(stmt)]

    def sold_without_license(self, org_id: str, labels: Collection[str]) -> list[dict[str, Any]]:
        if not labels:
            return []
        licensed = exists().where(product_licenses.c.org_id == org_id,
                                  product_licenses.c.ppp_id == order_items.c.ppp_id,
                                  product_licenses.c.is_deleted.is_(False))
        stmt = (
            select(order_items.c.ppp_id, ppps.c.name.label("ppp_name"), orders.c.sf_id.label("order_id"),
                   orders.c.order_number)
            .distinct()
            .join(orders, and_(orders.c.org_id == order_items.c.org_id, orders.c.sf_id == order_items.c.order_id))
            .outerjoin(ppps, and_(ppps.c.org_id == order_items.c.org_id, ppps.c.sf_id == order_items.c.ppp_id))
            .where(order_items.c.org_id == org_id, order_items.c.is_deleted.is_(False),
                   order_items.c.ppp_id.is_not(None), orders.c.is_deleted.is_(False),
                   orders.c.status.in_(list(labels)), ~licensed)
            .order_by(order_items.c.ppp_id, orders.c.sf_id)
        )
        return [dict(row._mapping) for row in self.session.execute(stmt)]
