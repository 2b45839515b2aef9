"""Attention flags of one org, read from the local model (no API calls): orders that ended
(Error / Expired) after their invoice was issued, and sold PPPs that cannot be provisioned.
The rules are ``connector.domain.attention``; the reads are two queries
(``adapters.store.attention``). Shown by ``status`` and ``report``, written back in the
write-back object's last-error field, counted by the ``reconcile`` job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import TYPE_CHECKING, Any

from connector.domain.attention import (
    ENDED_ORDER_STATES,
    InvoicedOrder,
    OrderAttention,
    SoldItem,
    Unprovisionable,
    orders_needing_attention,
    unprovisionable,
)
from connector.domain.states import OrderStatus

if TYPE_CHECKING:
    from connector.bootstrap import OrgRuntime
    from connector.services.ports import UnitOfWork


@dataclass(frozen=True)
class Attention:
    orders: list[OrderAttention] = field(default_factory=list)
    unprovisionable: list[Unprovisionable] = field(default_factory=list)

    @property
    def by_order(self) -> Mapping[str, OrderAttention]:
        return {a.order_id: a for a in self.orders}

    def counts(self) -> dict[str, int]:
        return {"orders_ended_after_invoice": len(self.orders), "sold_not_provisionable": len(self.unprovisionable)}

    def as_json(self) -> dict[str, Any]:
        return {"orders": [a.as_json() for a in self.orders],
                "not_provisionable": [u.as_json() for u in self.unprovisionable], **self.counts()}


def labels_for(mapping: Any, states: frozenset[str] | set[str]) -> list[str]:
    """The org's order status values that map to ``states``."""
    return sorted(label for label, state in mapping.vocabularies["order_status"].items() if state in states)


def read_attention(uow: UnitOfWork, org_id: str, mapping: Any, *, today: date) -> Attention:
    """The org's flags, inside the caller's unit of work."""
    invoiced = [
        InvoicedOrder(order_id=r["order_id"], order_number=r["order_number"],
                      state=mapping.to_state("order_status", r["status"]), label=r["status"],
                      service_end_date=r["service_end_date"], invoice_id=r["stripe_invoice_id"],
                      invoice_number=r["invoice_number"], invoice_status=r["invoice_status"])
        for r in uow.attention.invoiced_orders_in(org_id, labels_for(mapping, set(ENDED_ORDER_STATES)))
    ]
    sold = [SoldItem(r["ppp_id"], r["ppp_name"], r["order_id"], r["order_number"])
            for r in uow.attention.sold_without_license(org_id, labels_for(mapping, {OrderStatus.ACTIVATED}))]
    return Attention(orders_needing_attention(invoiced, today=today), unprovisionable(sold))


def attention_of(runtime: OrgRuntime) -> Attention:
    with runtime.uow() as uow:
        return read_attention(uow, runtime.org_id, runtime.mapping, today=runtime.clock().astimezone(UTC).date())
