"""A GTM order as the connector computes with it: one type for invoicing, payouts, the
demo and the offline calculator (``payout-estimate``).

``Order`` carries what every consumer needs, read once (``connector.services.orders``
reads it from the local mirror; ``payout-estimate`` parses it from JSON): the order's
terms, its items with their product name and the PPC revenue share, and, for an add-on,
the context of its initial order (id and service start). Values are kept as the org gives
them (``None`` where the org left a field empty); the rules that use a value check it and
name the field (``plan_invoice``, ``expected_payout``), so a bad record is quarantined with
a reason, never a crash while reading.

The add-on rule lives here, once: ``add_on_proration``. An add-on is prorated from its own
service start to the end of its initial order's term; without the initial order's start
it cannot be, and the order is a ``RecordError`` with code ``INITIAL_ORDER_MISSING``.

Error codes of an order that cannot be read or computed (``RecordError.code``):

- ``ORDER_NOT_MIRRORED``: the order is not in the local mirror (or was deleted there).
- ``ORDER_WITHOUT_ITEMS``: the order has no (undeleted) items.
- ``MISSING_START_DATE``: the order (or the add-on) has no service start date.
- ``INITIAL_ORDER_MISSING``: an add-on whose initial order is unknown, deleted, or has no
  service start date. Before one reader served every consumer, reconciliation called this
  ``ADDON_WITHOUT_INITIAL``; ``RETIRED_CODES`` maps the old name to this one.
- ``NO_REVENUE_SHARE``: an item whose PPP leads to no PPC revenue share (payouts only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import date
from decimal import Decimal
from types import MappingProxyType

from connector.domain.proration import Proration, ProrationPolicy
from connector.errors import RecordError

INITIAL_ORDER_MISSING = "INITIAL_ORDER_MISSING"
MISSING_START_DATE = "MISSING_START_DATE"
ORDER_NOT_MIRRORED = "ORDER_NOT_MIRRORED"
ORDER_WITHOUT_ITEMS = "ORDER_WITHOUT_ITEMS"
NO_REVENUE_SHARE = "NO_REVENUE_SHARE"

# Codes an earlier version stored (dead letters, write-back error texts) -> today's name of
# the same problem. Stored rows keep their text; an open letter takes the new code the next
# time its job meets the order (``DeadLetterRepository.add`` refreshes the code).
RETIRED_CODES: Mapping[str, str] = MappingProxyType({"ADDON_WITHOUT_INITIAL": INITIAL_ORDER_MISSING})


def current_code(code: str) -> str:
    """Today's name of a stored error code (``ADDON_WITHOUT_INITIAL`` -> ``INITIAL_ORDER_MISSING``)."""
    return RETIRED_CODES.get(code, code)


@dataclass(frozen=True)
class OrderItem:
    """One order item: licenses x monthly price, the product and its revenue share.

    ``quantity`` and ``unit_price_per_month`` are as the org gives them (checked where they
    are used); ``revenue_share_percent`` is the PPC's share (``None``: not known, e.g. the
    catalog is not mirrored); ``line_item_total`` is the org's own total, when it gives one;
    ``ppp_name`` is the PPP's name, the line the customer reads."""

    quantity: int | None
    unit_price_per_month: Decimal | None
    revenue_share_percent: Decimal | None = None
    _: KW_ONLY
    item_id: str | None = None
    ppp_id: str | None = None
    ppc_id: str | None = None
    ppp_name: str | None = None
    line_item_total: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class Order:
    """One GTM order with its items and, for an add-on, its initial order's context.

    ``org_id`` is None for an order from outside any org (the offline calculator).
    ``billing_email`` and ``customer_name`` are the order's, else its offer's (the reader
    resolves them). ``subtotal`` is the org's own figure, when it gives one.
    ``initial_start_date`` is the initial order's service start, when that order is known
    (mirrored and not deleted) and has one; ``add_on_proration`` is the rule that uses it."""

    order_id: str
    org_id: str | None = None
    order_number: str | None = None
    items: tuple[OrderItem, ...] = ()
    is_add_on: bool = False
    initial_order_id: str | None = None
    initial_start_date: date | None = None
    service_start_date: date | None = None
    contract_term_months: int | Decimal | None = None
    currency: str | None = None
    billing_email: str | None = None
    customer_name: str | None = None
    customer_org_id: str | None = None
    subtotal: Decimal | None = None

    @property
    def label(self) -> str:
        """How messages name the order: its number, else its id."""
        return self.order_number or self.order_id


def add_on_proration(order: Order, policy: ProrationPolicy | str = ProrationPolicy.DAILY) -> Proration | None:
    """The one add-on rule: None for an initial order; for an add-on, the proration from its
    service start to the end of its initial order's term under ``policy``.

    ``RecordError`` (``record_id`` = the order id): ``MISSING_START_DATE`` when the add-on
    has no start, ``INITIAL_ORDER_MISSING`` when its initial order's start is not known,
    ``INVALID_DATE`` when either date is outside the range the connector computes with."""
    if not order.is_add_on:
        return None
    if order.service_start_date is None:
        raise RecordError("add-on order: it has no service start date, so it cannot be prorated",
                          record_id=order.order_id, code=MISSING_START_DATE)
    if order.initial_start_date is None:
        raise RecordError(
            f"add-on order: its initial order {order.initial_order_id or '(none given)'} is not in the local "
            "model with a service start date, so the add-on cannot be prorated",
            record_id=order.order_id,
            code=INITIAL_ORDER_MISSING,
        )
    try:
        return Proration(order.initial_start_date, order.service_start_date, ProrationPolicy(policy))
    except RecordError as exc:
        raise RecordError(exc.reason, record_id=order.order_id, code=exc.code) from None
