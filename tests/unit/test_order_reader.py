"""The one order read path (``services.orders``) on a SQLite store: an order with its
items, product names, revenue shares, billing contact and add-on context, as the one
``Order`` that invoicing, reconciliation, the demo and ``payout-estimate`` compute with."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest

from connector.adapters.store import SqlUnitOfWork
from connector.domain import Order, OrderItem, order_payout
from connector.entrypoints.cli import payout_estimate
from connector.errors import RecordError
from connector.mappings import load_mapping
from connector.services.invoicing import InvoicingService
from connector.services.orders import OrderReader, read_order, read_orders
from connector.services.payouts import OrderBook
from tests.integration.stripe.gtm import MODSTAMP, ORG, PPP_CORE, PPP_PREMIUM, Clock, GtmOrg, item_id, order_id

MAPPING = load_mapping("gtm-v2")
UowFactory = Callable[[], SqlUnitOfWork]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: the reader's rules, not the backends, are under test here."""
    return sqlite_url


@pytest.fixture
def org(uow_factory: UowFactory) -> GtmOrg:
    return GtmOrg(uow_factory).catalogue()


def read(uow_factory: UowFactory, n: int) -> Order:
    with uow_factory() as uow:
        return read_order(uow, ORG, MAPPING, order_id(n))


def test_seed_003_is_read_with_its_items_names_and_revenue_shares(org: GtmOrg, uow_factory: UowFactory) -> None:
    org.order(1, start=date(2026, 1, 1))

    order = read(uow_factory, 1)

    assert (order.org_id, order.order_id, order.order_number, order.is_add_on) == (ORG, order_id(1), "00000001", False)
    assert (order.service_start_date, order.contract_term_months, order.currency) == (date(2026, 1, 1), 12, "USD")
    assert (order.billing_email, order.customer_name, order.subtotal) == ("ap@acme.example", "Acme Corp",
                                                                          Decimal("8400.00"))
    assert order.items == (
        OrderItem(10, Decimal("50.00"), Decimal("15"), item_id=item_id(1, 0), ppp_id=PPP_CORE,
                  ppc_id="0PC000000000PPCA01", ppp_name="Core App", line_item_total=Decimal("6000.00")),
        OrderItem(1, Decimal("200.00"), Decimal("10"), item_id=item_id(1, 1), ppp_id=PPP_PREMIUM,
                  ppc_id="0PC000000000PPCB01", ppp_name="Premium Add-On", line_item_total=Decimal("2400.00")),
    )
    assert order_payout(order).expected_payout == Decimal("7260.00")


def test_an_add_on_carries_its_initial_orders_start(org: GtmOrg, uow_factory: UowFactory) -> None:
    org.order(1, start=date(2025, 1, 1))
    org.order(2, start=date(2025, 3, 1), items=[(PPP_CORE, 15, "50.00")], order_type="Add-On", initial=1)

    add_on = read(uow_factory, 2)

    assert (add_on.is_add_on, add_on.initial_order_id, add_on.initial_start_date) == (True, order_id(1),
                                                                                       date(2025, 1, 1))
    assert order_payout(add_on).subtotal == Decimal("7545.21")  # 9000 x 306 / 365


def test_an_add_on_of_an_add_on_is_prorated_to_the_initial_orders_end(org: GtmOrg, uow_factory: UowFactory) -> None:
    """DESIGN: an add-on runs "to the initial order's end date". A second add-on whose
    InitialOrderId names the first add-on (the customer's latest order) still ends with the
    initial term: 1 Jan 2025 .. 31 Dec 2025, not 1 Mar 2025 + 12 months - 1 day."""
    org.order(1, start=date(2025, 1, 1))
    org.order(2, start=date(2025, 3, 1), items=[(PPP_CORE, 15, "50.00")], order_type="Add-On", initial=1)
    org.order(3, start=date(2025, 7, 1), items=[(PPP_CORE, 1, "100.00")], order_type="Add-On", initial=2)

    add_on = read(uow_factory, 3)

    assert add_on.initial_start_date == date(2025, 1, 1)
    # 1200.00 x 184 / 365 (1 Jul .. 31 Dec 2025, both ends counted) = 604.93150... -> 604.93
    days = (date(2025, 12, 31) - date(2025, 7, 1)).days + 1
    assert days == 184
    assert order_payout(add_on).subtotal == (Decimal("1200.00") * days / 365).quantize(Decimal("0.01"), ROUND_HALF_UP)


def test_add_ons_naming_each_other_are_a_missing_initial_order(org: GtmOrg, uow_factory: UowFactory) -> None:
    """A loop of add-ons leads to no initial order: INITIAL_ORDER_MISSING, not a hang."""
    org.order(2, start=date(2025, 3, 1), items=[(PPP_CORE, 15, "50.00")], order_type="Add-On", initial=3)
    org.order(3, start=date(2025, 7, 1), items=[(PPP_CORE, 1, "100.00")], order_type="Add-On", initial=2)

    with pytest.raises(RecordError) as caught:
        order_payout(read(uow_factory, 3))

    assert caught.value.code == "INITIAL_ORDER_MISSING"


@pytest.mark.parametrize("initial", ["not mirrored", "deleted", "no start date"])
def test_invoicing_and_reconciliation_name_a_missing_initial_order_alike(
    initial: str, org: GtmOrg, uow_factory: UowFactory
) -> None:
    org.order(1, start=date(2025, 1, 1))
    org.order(2, start=date(2025, 3, 1), items=[(PPP_CORE, 15, "50.00")], order_type="Add-On",
              initial=9 if initial == "not mirrored" else 1)
    if initial == "deleted":
        with uow_factory() as uow:
            uow.mirror("order").soft_delete(ORG, [order_id(1)], MODSTAMP)
            uow.commit()
    if initial == "no start date":
        org.change_order(1, service_start_date=None)

    invoicing = InvoicingService(org_id=ORG, uow=uow_factory, billing=None, mapping=MAPPING,
                                 clock=Clock(datetime(2025, 3, 1, tzinfo=UTC)))
    errors = {c.order_id: c.error for c in invoicing.candidates()}
    with uow_factory() as uow, pytest.raises(RecordError) as caught:
        OrderBook(uow, ORG, "daily", MAPPING).expected(order_id(2))

    invoice_error = errors[order_id(2)]
    assert invoice_error is not None
    assert invoice_error.code == caught.value.code == "INITIAL_ORDER_MISSING"
    assert invoice_error.reason == caught.value.reason


def test_an_order_without_a_billing_email_is_billed_to_its_offer_then_its_recipient(
    org: GtmOrg, uow_factory: UowFactory
) -> None:
    offer = "a0F000000000OFFER1"
    with uow_factory() as uow:
        uow.mirror("offer").upsert_many(ORG, [{"sf_id": offer, "system_modstamp": MODSTAMP, "name": "Offer 1",
                                              "billing_email": "ap@offer.example", "customer_name": "Acme (offer)"}])
        uow.commit()
    org.order(1, start=date(2026, 1, 1), email=None, offer_id=offer, customer_name=None)
    org.order(2, start=date(2026, 1, 1), email=None)
    org.order(3, start=date(2026, 1, 1), email="ap@order.example", offer_id=offer)

    assert (read(uow_factory, 1).billing_email, read(uow_factory, 1).customer_name) == ("ap@offer.example",
                                                                                        "Acme (offer)")
    assert read(uow_factory, 2).billing_email == "buyer@acme.example"  # the order's recipient
    assert (read(uow_factory, 3).billing_email, read(uow_factory, 3).customer_name) == ("ap@order.example",
                                                                                        "Acme Corp")


def test_deleted_orders_and_items_are_not_read(org: GtmOrg, uow_factory: UowFactory) -> None:
    org.order(1, start=date(2026, 1, 1))
    org.order(2, start=date(2026, 1, 1))
    with uow_factory() as uow:
        uow.mirror("order").soft_delete(ORG, [order_id(2)], MODSTAMP)
        uow.mirror("order_item").soft_delete(ORG, [item_id(1, 1)], MODSTAMP)
        uow.commit()

    with uow_factory() as uow:
        reader = OrderReader(uow, ORG, MAPPING)
        assert reader.get(order_id(2)) is None
        with pytest.raises(RecordError) as caught:
            reader.read(order_id(2))
        assert caught.value.code == "ORDER_NOT_MIRRORED"
        assert [i.item_id for i in reader.read(order_id(1)).items] == [item_id(1, 0)]


def test_an_item_keeps_the_product_it_was_sold_with_after_the_catalog_entry_is_deleted(
    org: GtmOrg, uow_factory: UowFactory
) -> None:
    org.order(1, start=date(2026, 1, 1))
    with uow_factory() as uow:
        uow.mirror("ppp").soft_delete(ORG, [PPP_PREMIUM], MODSTAMP)
        uow.commit()

    premium = read(uow_factory, 1).items[1]
    assert (premium.ppp_name, premium.revenue_share_percent) == ("Premium Add-On", Decimal("10"))


def test_orders_are_read_by_status_leaving_out_those_asked(org: GtmOrg, uow_factory: UowFactory) -> None:
    org.order(1, start=date(2026, 1, 1))
    org.order(2, start=date(2026, 1, 1), status="New")
    org.order(3, start=date(2026, 1, 1))

    with uow_factory() as uow:
        activated = [o.order_id for o in read_orders(uow, ORG, MAPPING, statuses=["Activated"], skip={order_id(3)})]
        everything = sorted(o.order_id for o in read_orders(uow, ORG, MAPPING))
    assert activated == [order_id(1)]
    assert everything == [order_id(1), order_id(2), order_id(3)]


def test_payout_estimate_builds_the_same_order_as_the_mirror(org: GtmOrg, uow_factory: UowFactory) -> None:
    org.order(1, start=date(2025, 1, 1))
    org.order(2, start=date(2025, 3, 1), items=[(PPP_CORE, 15, "50.00")], order_type="Add-On", initial=1)
    mirrored = read(uow_factory, 2)
    raw = {"id": order_id(2), "contract_term_months": 12, "initial_start_date": "2025-01-01",
           "addon_start_date": "2025-03-01",
           "items": [{"quantity": 15, "unit_price_per_month": "50.00", "revenue_share_percent": "15"}]}

    problems: list[str] = []
    parsed = payout_estimate.parse_order(raw, problems)

    assert problems == [] and parsed is not None
    assert (parsed.order_id, parsed.is_add_on, parsed.initial_start_date, parsed.service_start_date) == (
        mirrored.order_id, mirrored.is_add_on, mirrored.initial_start_date, mirrored.service_start_date)
    assert [(i.quantity, i.unit_price_per_month, i.revenue_share_percent) for i in parsed.items] == [
        (i.quantity, i.unit_price_per_month, i.revenue_share_percent) for i in mirrored.items]
    out = io.StringIO()
    payout_estimate.run(io.StringIO(payout_estimate._dumps(raw)), out)
    assert f'"expected_payout": "{order_payout(mirrored).expected_payout}"' in out.getvalue()
