"""The sandbox org plays the GTM app's billing: linked to a real local Stripe server, it
issues each due order's invoice through the official SDK and records the billing junction,
with fault knobs for the connector's discrepancy paths. Expected figures are worked out
here from seed 003 and DESIGN's money rules, not taken from the sandbox's code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from simple_salesforce import Salesforce, SalesforceMalformedRequest

from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.org import client_credentials_token, tls_session
from tests.fixtures.stripe import sdk_client

DAY = 86_400
ORDER, ITEM, JUNCTION = "SfdcPartnerOrder", "SfdcPartnerOrderItem", "SfdcPartnerOrderBillingTrxn"


@pytest.fixture(scope="module")
def billing_org_session() -> Iterator[SandboxOrg]:
    with SandboxOrg.start(data="demo") as org:
        yield org


@pytest.fixture
def org(billing_org_session: SandboxOrg) -> SandboxOrg:
    billing_org_session.reset("demo")  # unlinks billing and clears its knobs too
    return billing_org_session


@pytest.fixture
def box() -> Iterator[StripeSandbox]:
    with StripeSandbox.start() as sandbox:
        yield sandbox


@pytest.fixture
def client(box: StripeSandbox) -> stripe.StripeClient:
    return sdk_client(box)


def sf(org: SandboxOrg) -> Salesforce:
    session = tls_session(org)
    return Salesforce(instance_url=org.instance_url, session_id=client_credentials_token(org, session),
                      session=session, version=org.api_version, parse_float=Decimal)


def invoices(client: stripe.StripeClient) -> list[dict[str, Any]]:
    """Every invoice on the account, oldest first, with all its lines."""
    found = reversed(list(client.v1.invoices.list(params={"limit": 100}).auto_paging_iter()))
    return [inv.to_dict() for inv in found]


def lines(invoice: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(line["description"], line["quantity"], line["amount"]) for line in invoice["lines"]["data"]]


def junction(org: SandboxOrg) -> list[tuple[str, str]]:
    return sorted((r["SfdcPartnerOrderId"], r["PartnerBillingTransactionId"]) for r in org.records(JUNCTION))


def half_up(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_seed_003_order_is_invoiced_once_as_the_gtm_app_would(org: SandboxOrg, box: StripeSandbox,
                                                              client: stripe.StripeClient) -> None:
    acme = org.demo_ids["acme_order"]

    result = org.link_stripe(box.api_base, box.api_key)

    assert [i["order_id"] for i in result.issued] == [acme]
    (invoice,) = invoices(client)
    assert lines(invoice) == [("Core App", 10, 600_000), ("Premium Add-On", 1, 240_000)]
    assert (invoice["total"], invoice["currency"], invoice["status"]) == (840_000, "usd", "open")
    assert (invoice["collection_method"], invoice["days_until_due"]) == ("send_invoice", 30)
    assert invoice["due_date"] == invoice["status_transitions"]["finalized_at"] + 30 * DAY
    assert invoice["application_fee_amount"] == 114_000  # 10 x 600.00 x 15% + 240.00 x 10%... in cents
    assert invoice["metadata"]["sfdc_order_id"] == acme
    assert invoice["metadata"]["sfdc_org_id"] == org.org_id
    assert invoice["metadata"]["sfdc_order_number"] == "00000101"
    customer = client.v1.customers.retrieve(invoice["customer"])
    assert customer.email == "acme.billing@example.com"
    assert [s["to"] for s in box.invoice_sends(invoice["id"])] == ["acme.billing@example.com"]
    posts = [r for r in box.requests() if r["method"] == "POST"]
    assert posts and all(r["idempotency_key"] for r in posts)
    assert junction(org) == [(acme, invoice["id"])]

    # Re-running, and writing the order again, issue nothing new.
    assert org.run_billing().issued == []
    org.update(ORDER, [{"Id": acme, "Status": "Activated"}])
    assert len(invoices(client)) == 1
    assert box.counters()["POST /v1/invoices"] == 1
    assert len(org.records(JUNCTION)) == 1


def test_the_junction_row_is_queryable_and_refuses_api_writes(org: SandboxOrg, box: StripeSandbox,
                                                              client: stripe.StripeClient) -> None:
    org.link_stripe(box.api_base, box.api_key)
    (invoice,) = invoices(client)
    api = sf(org)

    rows = api.query(f"SELECT Id, Name, SfdcPartnerOrderId, PartnerBillingTransactionId FROM {JUNCTION}")["records"]

    assert [(r["Name"], r["SfdcPartnerOrderId"], r["PartnerBillingTransactionId"]) for r in rows] == [
        ("SPOBT-00000001", org.demo_ids["acme_order"], invoice["id"])]
    with pytest.raises(SalesforceMalformedRequest) as err:
        getattr(api, JUNCTION).create({"SfdcPartnerOrderId": org.demo_ids["acme_order"],
                                       "PartnerBillingTransactionId": "in_forged"})
    assert err.value.content[0]["errorCode"] == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
    with pytest.raises(SalesforceMalformedRequest):
        getattr(api, JUNCTION).update(rows[0]["Id"], {"PartnerBillingTransactionId": "in_forged"})


def test_the_add_on_is_invoiced_prorated_once_its_start_is_within_a_day(org: SandboxOrg, box: StripeSandbox,
                                                                        client: stripe.StripeClient) -> None:
    today = org.today()
    org.link_stripe(box.api_base, box.api_key)
    addon = org.demo_ids["addon_order"]

    org.advance_clock(days=88)  # starts in 2 days: not yet
    assert org.run_billing().issued == []
    org.advance_clock(days=1)  # starts tomorrow: due
    result = org.run_billing()

    assert [i["order_id"] for i in result.issued] == [addon]
    invoice = invoices(client)[-1]
    initial_end = date(today.year + 1, today.month, min(today.day, 28 if today.month == 2 else 31)) \
        - timedelta(days=1)  # 12 months less a day
    start = today + timedelta(days=90)
    amount = half_up(Decimal("3000.00") * ((initial_end - start).days + 1) / ((initial_end - today).days + 1))
    assert lines(invoice) == [("Core App", 5, int(amount * 100))]
    assert invoice["application_fee_amount"] == int(half_up(amount * Decimal("0.15")) * 100)
    assert Decimal(org.get(ORDER, addon)["Subtotal"]) == amount
    assert org.run_billing().issued == []


def test_an_add_on_to_an_add_on_is_prorated_over_the_initial_term(org: SandboxOrg, box: StripeSandbox,
                                                                   client: stripe.StripeClient) -> None:
    """A second add-on naming the first (InitialOrderId = the add-on) is charged from its
    start to the initial end, out of the initial term's days, as the first add-on is."""
    today = org.today()
    org.link_stripe(box.api_base, box.api_key)
    addon = org.get(ORDER, org.demo_ids["addon_order"])
    start = today + timedelta(days=120)
    [second] = org.insert(ORDER, [{
        "Name": "Acme second add-on", "OrderNumber": "00000103", "Status": "Activated", "OrderType": "Add-On",
        "InitialOrderId": addon["Id"], "CustomerName": "Acme Corp", "BillingCustomerOrg": addon["BillingCustomerOrg"],
        "ContractTerm": 12, "ServiceStartDate": start.isoformat(), "ServiceEndDate": addon["ServiceEndDate"],
        "BillingEmailAddress": addon["BillingEmailAddress"], "CurrencyIsoCode": "USD"}])
    org.insert(ITEM, [{"Name": "Core App x2", "PartnerOrderId": second, "PartnerProvisionProductId": org.demo_ids[
        "ppp_core"], "Quantity": 2, "CustomerUnitPricePerMonth": Decimal("50.00"),
                        "LineItemTotal": Decimal("1200.00")}])
    org.advance_clock(days=119)

    issued = [i["order_id"] for i in org.run_billing().issued]

    assert second in issued, org.billing.status()["problems"]
    [invoice] = [i for i in invoices(client) if i["metadata"].get("sfdc_order_id") == second]
    initial_end = date.fromisoformat(addon["ServiceEndDate"])
    term_days = (initial_end - today).days + 1  # the initial order starts today
    amount = half_up(Decimal("1200.00") * ((initial_end - start).days + 1) / term_days)
    assert lines(invoice) == [("Core App", 2, int(amount * 100))]


def test_the_customer_pays_with_the_share_deducted_and_the_payout_nets_7260(org: SandboxOrg, box: StripeSandbox,
                                                                            client: stripe.StripeClient) -> None:
    org.link_stripe(box.api_base, box.api_key)
    (invoice,) = invoices(client)

    client.v1.invoices.pay(invoice["id"], params={"payment_method": "pm_card_visa"})
    box.advance_clock(days=2)
    payout = box.create_payout()

    assert payout is not None and payout["amount"] == 726_000
    (txn,) = client.v1.balance_transactions.list(params={"type": "charge"}).data
    assert (txn.amount, txn.fee, txn.net) == (840_000, 114_000, 726_000)
    assert [d.type for d in txn.fee_details] == ["application_fee"]


def test_activating_an_order_invoices_it_and_a_broken_order_is_reported(org: SandboxOrg, box: StripeSandbox,
                                                                        client: stripe.StripeClient) -> None:
    org.link_stripe(box.api_base, box.api_key)
    globex = org.demo_ids["globex_order"]

    org.update(ORDER, [{"Id": globex, "Status": "Activated", "ServiceStartDate": org.today().isoformat()}])
    assert "no positive quantity" in org.billing.status()["problems"][globex]
    assert len(invoices(client)) == 1  # seed 003 only

    org.delete(ITEM, [org.demo_ids["malformed_order_item"]])

    invoice = invoices(client)[-1]
    assert invoice["metadata"]["sfdc_order_id"] == globex
    assert lines(invoice) == [("Core App", 3, 180_000)]
    assert globex not in org.billing.status()["problems"]


def test_an_order_item_written_through_the_api_bills_in_the_background(org: SandboxOrg, box: StripeSandbox,
                                                                        client: stripe.StripeClient) -> None:
    globex = org.demo_ids["globex_order"]
    items = [r["Id"] for r in org.records(ITEM) if r["PartnerOrderId"] == globex]
    org.delete(ITEM, items)
    org.update(ORDER, [{"Id": globex, "Status": "Activated", "ServiceStartDate": org.today().isoformat()}])
    org.link_stripe(box.api_base, box.api_key)
    assert org.billing.status()["problems"][globex] == "not invoiced: no order items"

    sf(org).SfdcPartnerOrderItem.create({"PartnerOrderId": globex,
                                         "PartnerProvisionProductId": org.demo_ids["ppp_core"],
                                         "Quantity": 2, "CustomerUnitPricePerMonth": 50})
    assert org.billing.wait_idle(10)

    invoice = invoices(client)[-1]
    assert (invoice["metadata"]["sfdc_order_id"], lines(invoice)) == (globex, [("Core App", 2, 120_000)])


# ---------------------------------------------------------------- fault knobs


def test_skip_never_invoices_that_order(org: SandboxOrg, box: StripeSandbox, client: stripe.StripeClient) -> None:
    org.billing_fault("skip", order_id=org.demo_ids["acme_order"])

    org.link_stripe(box.api_base, box.api_key)
    org.advance_clock(days=2)
    org.run_billing()

    assert invoices(client) == []
    assert junction(org) == []
    assert org.billing.status()["problems"][org.demo_ids["acme_order"]] == "not invoiced: skip fault"


def test_skip_next_applies_to_the_next_order_due_only(org: SandboxOrg, box: StripeSandbox,
                                                      client: stripe.StripeClient) -> None:
    org.billing_fault("skip", times=1)
    org.link_stripe(box.api_base, box.api_key)  # seed 003's order comes due first: skipped
    org.advance_clock(days=89)
    org.run_billing()

    assert [i["metadata"]["sfdc_order_id"] for i in invoices(client)] == [org.demo_ids["addon_order"]]


def test_wrong_amount_puts_100_on_the_first_line(org: SandboxOrg, box: StripeSandbox,
                                                 client: stripe.StripeClient) -> None:
    org.billing_fault("wrong_amount", times=1)

    org.link_stripe(box.api_base, box.api_key)

    (invoice,) = invoices(client)
    assert lines(invoice) == [("Core App", 10, 610_000), ("Premium Add-On", 1, 240_000)]
    assert invoice["total"] == 850_000
    assert invoice["application_fee_amount"] == 114_000  # Salesforce's share follows the order


def test_late_issues_n_days_after_the_due_moment(org: SandboxOrg, box: StripeSandbox,
                                                 client: stripe.StripeClient) -> None:
    # Due the day before the start (yesterday for seed 003's order); 3 days late = in 2 days.
    org.billing_fault("late", order_id=org.demo_ids["acme_order"], days=3)
    org.link_stripe(box.api_base, box.api_key)
    org.advance_clock(days=1)
    org.run_billing()
    assert invoices(client) == []

    org.advance_clock(days=1)
    org.run_billing()

    assert [i["metadata"]["sfdc_order_id"] for i in invoices(client)] == [org.demo_ids["acme_order"]]


def test_split_links_two_invoices_to_one_order(org: SandboxOrg, box: StripeSandbox,
                                               client: stripe.StripeClient) -> None:
    org.billing_fault("split", order_id=org.demo_ids["acme_order"])

    org.link_stripe(box.api_base, box.api_key)

    first, second = invoices(client)
    assert (lines(first), first["application_fee_amount"]) == ([("Core App", 10, 600_000)], 90_000)
    assert (lines(second), second["application_fee_amount"]) == ([("Premium Add-On", 1, 240_000)], 24_000)
    assert [s for s in (first["metadata"]["sfdc_invoice_seq"], second["metadata"]["sfdc_invoice_seq"])] == ["1", "2"]
    acme = org.demo_ids["acme_order"]
    assert junction(org) == sorted([(acme, first["id"]), (acme, second["id"])])
    assert org.run_billing().issued == []


def test_duplicate_issues_the_same_invoice_twice(org: SandboxOrg, box: StripeSandbox,
                                                 client: stripe.StripeClient) -> None:
    org.billing_fault("duplicate", times=1)

    org.link_stripe(box.api_base, box.api_key)

    first, second = invoices(client)
    assert lines(first) == lines(second) == [("Core App", 10, 600_000), ("Premium Add-On", 1, 240_000)]
    assert first["customer"] == second["customer"]
    assert len(junction(org)) == 2


def test_the_control_api_links_runs_advances_and_sets_knobs(org: SandboxOrg, box: StripeSandbox,
                                                            client: stripe.StripeClient) -> None:
    http = tls_session(org)
    base = org.instance_url + "/_sandbox"

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return http.request(method, f"{base}/{path}", json=body)

    assert call("POST", "billing/run").status_code == 400  # not linked yet
    assert call("POST", "billing/faults", {"kind": "late", "days": 2, "times": 1}).status_code == 204
    assert call("POST", "billing/faults", {"kind": "sideways"}).status_code == 400

    linked = call("POST", "billing", {"api_base": box.api_base, "api_key": box.api_key}).json()
    assert linked["issued"] == [] and "late fault" in linked["problems"][org.demo_ids["acme_order"]]
    status = call("GET", "billing").json()
    assert status["linked"] is True and "api_key" not in status and box.api_key not in str(status)

    before = call("GET", "clock").json()
    clock = call("POST", "clock/advance", {"days": 1}).json()
    assert clock["offset_seconds"] - before["offset_seconds"] == DAY
    assert clock["today"] == (date.fromisoformat(before["today"]) + timedelta(days=1)).isoformat()
    ran = call("POST", "billing/run").json()
    assert [i["order_id"] for i in ran["issued"]] == [org.demo_ids["acme_order"]]

    # Many-to-many by hand: another invoice linked to the same order.
    other = client.v1.invoices.create(params={"customer": ran["issued"][0]["customer"]})
    made = call("POST", "billing/links", {"order_id": org.demo_ids["acme_order"], "invoice_id": other.id})
    assert made.status_code == 200
    assert len(junction(org)) == 2

    assert call("DELETE", "billing").status_code == 204
    assert call("GET", "billing").json()["linked"] is False


def test_save_and_restore_keep_the_junction_the_knobs_and_the_clock(org: SandboxOrg, box: StripeSandbox,
                                                                   client: stripe.StripeClient,
                                                                   tmp_path: Path) -> None:
    org.billing_fault("skip", order_id=org.demo_ids["addon_order"])
    org.link_stripe(box.api_base, box.api_key)
    org.advance_clock(days=3)
    snapshot = tmp_path / "org.json"
    org.save(snapshot)

    with SandboxOrg.start(data="demo") as again:
        again.restore(snapshot)
        assert junction(again) == junction(org)
        assert again.today() >= org.today()
        again.link_stripe(box.api_base, box.api_key)
        again.advance_clock(days=90)
        assert again.run_billing().issued == []  # seed 003 invoiced already; the add-on still skipped
        assert again.billing.status()["problems"][org.demo_ids["addon_order"]] == "not invoiced: skip fault"
    assert len(invoices(client)) == 1


def test_a_run_cut_short_by_stripe_is_finished_by_the_next_without_a_second_invoice(
        org: SandboxOrg, box: StripeSandbox, client: stripe.StripeClient) -> None:
    # The create is applied but its answer lost (the SDK resends it with the same key);
    # then the send keeps failing beyond the SDK's retries: the run gives up on the order.
    box.fail_next("POST /v1/invoices", fault="reset")
    box.fail_next("POST /v1/invoices/{id}/send", times=3, fault=500)

    first = org.link_stripe(box.api_base, box.api_key)

    assert first.issued == [] and "Stripe refused" in first.problems[org.demo_ids["acme_order"]]
    assert junction(org) == []
    second = org.run_billing()
    (invoice,) = invoices(client)
    assert [i["invoice_id"] for i in second.issued] == [invoice["id"]]
    assert len(box.invoice_sends(invoice["id"])) == 1
    assert junction(org) == [(org.demo_ids["acme_order"], invoice["id"])]
    assert org.billing.status()["problems"] == {}
