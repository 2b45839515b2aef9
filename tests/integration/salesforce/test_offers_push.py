"""Offers as code against the sandbox org: draft files are validated, created in the org with
their items, updated only while the org shows them as Draft, never re-sent unchanged, and a
change made in the org since our last push is reported, not overwritten."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg
from connector.mappings import load_mapping
from connector.services.mirror import MirrorService
from connector.services.offers_push import OffersPushService, draft_toml
from gtm_sandbox.org import SandboxOrg

MAPPING = load_mapping("gtm-v2")
TODAY = datetime.now(UTC).date()


@pytest.fixture
def drafts(tmp_path: Path) -> Path:
    path = tmp_path / "offers" / "acme"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def push(sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any],
         drafts: Path) -> Callable[..., Any]:
    MirrorService(gateway, uow_factory, MAPPING, sandbox_org.org_id).run()  # the catalog the drafts refer to
    service = OffersPushService(gateway, uow_factory, MAPPING, sandbox_org.org_id, drafts)

    def run(**kwargs: Any) -> dict[str, Any]:
        return {r.key: r for r in service.push(**kwargs).results}

    return run


def write_draft(drafts: Path, key: str, **overrides: Any) -> Path:
    content: dict[str, Any] = {
        "customer_name": "Wayne Enterprises",
        "customer_org_id": "00D5g0000012345ABC",
        "offer_type": "initial",
        "service_start_date": TODAY + timedelta(days=30),
        "valid_until": TODAY + timedelta(days=14),
        "recipient_email": "buyer@wayne.example.com",
        "billing_email": "ap@wayne.example.com",
        "items": [{"product": "Core App", "quantity": 10, "unit_price_per_month": "50.00"},
                  {"product": "Premium Add-On", "quantity": 1, "unit_price_per_month": "200.00"}],
    }
    content.update(overrides)
    path = drafts / f"{key}.toml"
    path.write_text(draft_toml(content))
    return path


def org_items(sandbox_org: SandboxOrg, offer_id: str) -> list[dict[str, Any]]:
    return sorted((r for r in sandbox_org.records("SfdcPartnerOfferItem") if r["PartnerOfferId"] == offer_id),
                  key=lambda r: r["Id"])


def test_draft_file_becomes_a_draft_offer_with_its_items(
    push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg, uow_factory: Callable[..., Any]
) -> None:
    write_draft(drafts, "wayne-2026")
    sandbox_org.reset_counters()
    result = push()["wayne-2026"]
    assert result.action == "created"
    offer = sandbox_org.get("SfdcPartnerOffer", result.sf_id)
    assert offer is not None and offer["Status"] == "Draft" and offer["OfferType"] == "Initial"
    assert offer["ContractTerm"] == 12 and offer["CurrencyIsoCode"] == "USD"
    start = TODAY + timedelta(days=30)
    assert offer["ServiceStartDate"] == start.isoformat()
    assert date.fromisoformat(offer["ServiceEndDate"]) == start.replace(year=start.year + 1) - timedelta(days=1)
    assert offer["Subtotal"] == Decimal("8400.00")
    assert [(i["Quantity"], i["CustomerUnitPricePerMonth"]) for i in org_items(sandbox_org, result.sf_id)] == [
        (10, Decimal("50.00")), (1, Decimal("200.00"))]
    # A customer the org does not know yet: one look-up and one create of its
    # SfdcCustomerForPartner record, then the offer and items in one all-or-none composite.
    assert sandbox_org.api_calls == 3
    [customer] = [c for c in sandbox_org.records("SfdcCustomerForPartner")
                  if c["BillingCustomerOrg"] == offer["BillingCustomerOrg"]]
    assert offer["CustomerForPartnerId"] == customer["Id"] and customer["BillingCustomerOrg"] == "00D5g0000012345ABC"
    with uow_factory() as uow:
        state = uow.offer_drafts.get(sandbox_org.org_id, "wayne-2026")
    assert state.sf_id == result.sf_id and state.status == "draft" and state.last_error is None


def test_a_known_customer_costs_no_extra_call(push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg) -> None:
    """Acme's customer record is mirrored: its offer goes out in one composite call."""
    acme = next(c for c in sandbox_org.records("SfdcCustomerForPartner") if c["Name"] == "Acme Corp")
    write_draft(drafts, "acme-more", customer_name="Acme Corp", customer_org_id=acme["BillingCustomerOrg"])
    sandbox_org.reset_counters()
    result = push()["acme-more"]
    assert result.action == "created" and sandbox_org.api_calls == 1
    assert sandbox_org.get("SfdcPartnerOffer", result.sf_id)["CustomerForPartnerId"] == acme["Id"]
    assert len(sandbox_org.records("SfdcCustomerForPartner")) == 7  # none added


def test_second_push_sends_nothing(push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg) -> None:
    write_draft(drafts, "wayne-2026")
    push()
    sandbox_org.reset_counters()
    assert push()["wayne-2026"].action == "unchanged"
    assert sandbox_org.api_calls == 0


def test_editing_a_draft_updates_the_offer_in_the_org(push: Callable[..., Any], drafts: Path,
                                                      sandbox_org: SandboxOrg) -> None:
    write_draft(drafts, "wayne-2026")
    offer_id = push()["wayne-2026"].sf_id
    write_draft(drafts, "wayne-2026", items=[{"product": "Core App", "quantity": 12, "unit_price_per_month": "45.00"}])
    sandbox_org.reset_counters()
    result = push()["wayne-2026"]
    assert (result.action, result.sf_id) == ("updated", offer_id)
    assert [(i["Quantity"], i["CustomerUnitPricePerMonth"]) for i in org_items(sandbox_org, offer_id)] == [
        (12, Decimal("45.00"))]
    assert sandbox_org.get("SfdcPartnerOffer", offer_id)["Subtotal"] == Decimal("6480.00")  # type: ignore[index]
    # Wayne's customer record (made by the first push, not mirrored since): one look-up,
    # then the org's current view and one composite.
    assert sandbox_org.api_calls == 3
    assert push()["wayne-2026"].action == "unchanged"


def test_offer_sent_in_the_org_refuses_local_edits(push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg,
                                                   uow_factory: Callable[..., Any]) -> None:
    write_draft(drafts, "wayne-2026")
    offer_id = push()["wayne-2026"].sf_id
    sandbox_org.update("SfdcPartnerOffer", [{"Id": offer_id, "Status": "Sent"}])  # sent from the GTM app
    write_draft(drafts, "wayne-2026", valid_until=TODAY + timedelta(days=20))
    result = push()["wayne-2026"]
    assert result.action == "refused"
    assert "is Sent in the org" in result.message and "refused" in result.message
    assert sandbox_org.get("SfdcPartnerOffer", offer_id)["ValidUntilDate"] == (TODAY + timedelta(days=14)).isoformat()  # type: ignore[index]
    with uow_factory() as uow:
        state = uow.offer_drafts.get(sandbox_org.org_id, "wayne-2026")
        [letter] = uow.dead_letters.open(sandbox_org.org_id, source="offers_push")
        updated_at = state.updated_at
    assert state.status == "sent" and letter.error_code == "OFFER_NOT_DRAFT"
    assert push()["wayne-2026"].action == "refused"  # again: reported, nothing written
    with uow_factory() as uow:
        assert uow.offer_drafts.get(sandbox_org.org_id, "wayne-2026").updated_at == updated_at
        assert uow.dead_letters.open(sandbox_org.org_id, source="offers_push")[0].attempts == 1


def test_change_made_in_the_org_is_a_reported_conflict(push: Callable[..., Any], drafts: Path,
                                                       sandbox_org: SandboxOrg, gateway: SalesforceOrg) -> None:
    write_draft(drafts, "wayne-2026")
    offer_id = push()["wayne-2026"].sf_id
    gateway.update("SfdcPartnerOffer", offer_id, {"PartnerPoNumber": "PO-FROM-THE-ORG"})  # someone edits it in the org
    write_draft(drafts, "wayne-2026", partner_po_number="PO-LOCAL")
    result = push()["wayne-2026"]
    assert result.action == "conflict" and "changed in the org" in result.message
    assert sandbox_org.get("SfdcPartnerOffer", offer_id)["PartnerPoNumber"] == "PO-FROM-THE-ORG"  # type: ignore[index]
    forced = push(force=True)["wayne-2026"]
    assert forced.action == "updated"
    assert sandbox_org.get("SfdcPartnerOffer", offer_id)["PartnerPoNumber"] == "PO-LOCAL"  # type: ignore[index]


def test_invalid_drafts_name_the_file_and_key_and_send_nothing(push: Callable[..., Any], drafts: Path,
                                                               sandbox_org: SandboxOrg,
                                                               uow_factory: Callable[..., Any]) -> None:
    path = write_draft(drafts, "bad", contract_term_months=24, valid_until=TODAY - timedelta(days=1),
                       customer_org_id="xyz",
                       items=[{"product": "Mystery Box", "quantity": -1, "unit_price_per_month": "50.00"}])
    offers_before = len(sandbox_org.records("SfdcPartnerOffer"))
    sandbox_org.reset_counters()
    result = push()["bad"]
    assert result.action == "invalid"
    for expected in (f"{path}: contract_term_months: must be 12 months", f"{path}: valid_until: must be in the future",
                     f"{path}: customer_org_id: must be a Salesforce org id (15 or 18 characters starting with 00D)",
                     f"{path}: items[0].product: unknown PPP \"Mystery Box\"",
                     f"{path}: items[0].quantity: must be a positive integer"):
        assert expected in result.message
    assert sandbox_org.api_calls == 0 and len(sandbox_org.records("SfdcPartnerOffer")) == offers_before
    with uow_factory() as uow:
        [letter] = uow.dead_letters.open(sandbox_org.org_id, source="offers_push")
    assert (letter.record_id, letter.error_code) == ("bad", "INVALID_DRAFT")
    write_draft(drafts, "bad")  # fixed
    assert push()["bad"].action == "created"
    with uow_factory() as uow:
        assert uow.dead_letters.count_open(sandbox_org.org_id, source="offers_push") == 0


def test_float_prices_are_refused(push: Callable[..., Any], drafts: Path) -> None:
    (drafts / "float.toml").write_text(
        'customer_name = "Wayne"\ncustomer_org_id = "00D5g0000012345ABC"\n'
        f'service_start_date = {TODAY + timedelta(days=5)}\nvalid_until = {TODAY + timedelta(days=3)}\n'
        'recipient_email = "buyer@wayne.example.com"\n\n[[items]]\nproduct = "Core App"\nquantity = 1\n'
        'unit_price_per_month = 50.1\n')
    result = push()["float"]
    assert result.action == "invalid" and "items[0].unit_price_per_month" in result.message
    assert "float" in result.message


def test_add_on_is_tied_to_the_customers_order_and_ends_with_it(push: Callable[..., Any], drafts: Path,
                                                                sandbox_org: SandboxOrg) -> None:
    acme_order = sandbox_org.get("SfdcPartnerOrder", sandbox_org.demo_ids["acme_order"])
    assert acme_order is not None
    start = TODAY + timedelta(days=120)
    write_draft(drafts, "acme-addon", customer_name="Acme Corp", customer_org_id=acme_order["BillingCustomerOrg"],
                offer_type="add_on", service_start_date=start,
                items=[{"product": "Premium Add-On", "quantity": 2, "unit_price_per_month": "200.00"}])
    result = push()["acme-addon"]
    assert result.action == "created", result.message
    offer = sandbox_org.get("SfdcPartnerOffer", result.sf_id)
    assert offer is not None
    assert offer["OfferType"] == "Add-On" and offer["InitialOrderId"] == acme_order["Id"]
    assert offer["ServiceEndDate"] == acme_order["ServiceEndDate"]
    end = date.fromisoformat(acme_order["ServiceEndDate"])
    term_days = (end - date.fromisoformat(acme_order["ServiceStartDate"])).days + 1
    expected = (Decimal("4800.00") * ((end - start).days + 1) / term_days).quantize(Decimal("0.01"))
    assert offer["Subtotal"] == expected  # the org prorates the add-on


def test_an_add_on_named_after_an_earlier_add_on_runs_within_the_initial_term(
    push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg
) -> None:
    """The draft names the customer's first add-on (which starts in 90 days): the new one,
    starting in 30, is within the *initial* order's term and ends with it."""
    acme_order = sandbox_org.get("SfdcPartnerOrder", sandbox_org.demo_ids["acme_order"])
    addon_order = sandbox_org.get("SfdcPartnerOrder", sandbox_org.demo_ids["addon_order"])
    assert acme_order is not None and addon_order is not None
    start = TODAY + timedelta(days=30)
    assert start < date.fromisoformat(addon_order["ServiceStartDate"])
    write_draft(drafts, "acme-addon-2", customer_name="Acme Corp", customer_org_id=acme_order["BillingCustomerOrg"],
                offer_type="add_on", initial_order_id=addon_order["Id"], service_start_date=start,
                items=[{"product": "Core App", "quantity": 1, "unit_price_per_month": "50.00"}])

    result = push()["acme-addon-2"]

    assert result.action == "created", result.message
    offer = sandbox_org.get("SfdcPartnerOffer", result.sf_id)
    assert offer is not None and offer["ServiceEndDate"] == acme_order["ServiceEndDate"]
    end = date.fromisoformat(acme_order["ServiceEndDate"])
    term_days = (end - date.fromisoformat(acme_order["ServiceStartDate"])).days + 1
    expected = (Decimal("600.00") * ((end - start).days + 1) / term_days).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert offer["Subtotal"] == expected


def test_add_on_ending_elsewhere_is_invalid(push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg) -> None:
    order = sandbox_org.get("SfdcPartnerOrder", sandbox_org.demo_ids["acme_order"])
    assert order is not None
    path = write_draft(drafts, "acme-addon", customer_org_id=order["BillingCustomerOrg"], offer_type="add_on",
                       initial_order_id=order["Id"], service_end_date=TODAY + timedelta(days=500))
    result = push()["acme-addon"]
    assert result.action == "invalid"
    assert f"{path}: service_end_date: must be the initial order's end date {order['ServiceEndDate']}" in result.message


def test_dry_run_shows_what_would_be_sent(push: Callable[..., Any], drafts: Path, sandbox_org: SandboxOrg,
                                          uow_factory: Callable[..., Any]) -> None:
    write_draft(drafts, "wayne-2026")
    sandbox_org.reset_counters()
    assert push(dry_run=True)["wayne-2026"].action == "would_create"
    assert sandbox_org.api_calls == 0
    with uow_factory() as uow:
        assert uow.offer_drafts.list(sandbox_org.org_id) == []


def test_the_org_refusing_the_offer_rolls_everything_back(push: Callable[..., Any], drafts: Path,
                                                          sandbox_org: SandboxOrg) -> None:
    write_draft(drafts, "wayne-2026", billing_email="ap@wayne")  # the org wants a full address
    before = len(sandbox_org.records("SfdcPartnerOffer"))
    result = push()["wayne-2026"]
    assert result.action == "rejected" and "INVALID_EMAIL_ADDRESS" in result.message
    assert len(sandbox_org.records("SfdcPartnerOffer")) == before
