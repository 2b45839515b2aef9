"""Issue 15, defect 3: one order with an extreme date is quarantined; the others are invoiced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling
from connector.domain import Order, OrderItem, Proration, plan_invoice
from connector.errors import RecordError
from connector.mappings import load_mapping
from connector.services.invoicing import InvoicingService, InvoicingSettings
from gtm_sandbox.stripe import StripeSandbox
from tests.integration.stripe.gtm import ORG, PPP_CORE, Clock, GtmOrg, order_id


@pytest.mark.parametrize("extreme", [date(1, 1, 1), date(9999, 12, 31), date(1899, 12, 31), date(3000, 1, 1)])
def test_an_order_with_an_extreme_start_date_is_quarantined_and_the_rest_invoiced(
    extreme: date, stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    org = GtmOrg(uow_factory).catalogue()
    org.order(1, start=date(2026, 1, 1))
    org.order(2, start=extreme)
    org.order(3, start=date(2026, 1, 1))
    org.order(4, start=date(2026, 3, 1), items=[(PPP_CORE, 5, "50.00")], order_type="Add-On", initial=2)
    invoicing = InvoicingService(org_id=ORG, uow=uow_factory, billing=stripe_billing, mapping=load_mapping("gtm-v2"),
                                 settings=InvoicingSettings(lead_days=400),
                                 clock=Clock(datetime(2025, 12, 31, 10, tzinfo=UTC)))

    report = invoicing.run()

    assert sorted(report.invoiced) == [order_id(1), order_id(3)]
    codes = {order: code for order, code, _ in report.quarantined}
    assert codes == {order_id(2): "INVALID_DATE", order_id(4): "INVALID_DATE"}
    reason = next(r for o, _, r in report.quarantined if o == order_id(2))
    assert "service_start_date" in reason and extreme.isoformat() in reason
    assert len(stripe_sandbox.invoices()) == 2
    with uow_factory() as uow:
        assert {letter.record_id for letter in uow.dead_letters.open(ORG, source="invoicing")} == {
            order_id(2), order_id(4)}


def test_the_plan_names_the_date_instead_of_overflowing() -> None:
    item = OrderItem(1, "10.00", ppp_id=PPP_CORE, ppp_name="Core App", item_id="x")  # type: ignore[arg-type]
    order = Order(org_id=ORG, order_id=order_id(1), order_number="00000001", billing_email="ap@acme.example",
                  customer_name="Acme", currency="USD", contract_term_months=12, subtotal=None,
                  service_start_date=date(9999, 12, 31), items=(item,))
    with pytest.raises(RecordError) as caught:
        plan_invoice(order)
    assert caught.value.code == "INVALID_DATE"
    with pytest.raises(RecordError) as caught:
        Proration(date(2026, 1, 1), date(1, 1, 1))
    assert caught.value.code == "INVALID_DATE"
