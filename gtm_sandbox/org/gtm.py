"""What the GTM app does inside the org, as far as the connector can observe it:
computed line totals and subtotals (add-ons prorated), Draft-only edits of offers and
their items, 12-month terms. Plus the seed data sets: ``demo`` and ``generate(n)``.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gtm_sandbox.org.data import ApiError, OrgData, Row, Rules
from gtm_sandbox.org.ids import format_stamp, make_id
from gtm_sandbox.org.schema import ObjectSpec

CENT = Decimal("0.01")
TERM_MONTHS = 12
OFFER = "SfdcPartnerOffer"
OFFER_ITEM = "SfdcPartnerOfferItem"
ORDER = "SfdcPartnerOrder"
ORDER_ITEM = "SfdcPartnerOrderItem"
CUSTOMER = "SfdcCustomerForPartner"
# Item -> parent links and the PPP link, as the object reference names them.
OFFER_LINK = "PartnerOfferId"
ORDER_LINK = "PartnerOrderId"
PPP_LINK = "PartnerProvisionProductId"
PARENTS = {OFFER_ITEM: (OFFER, OFFER_LINK), ORDER_ITEM: (ORDER, ORDER_LINK)}


def _custom_validation(message: str) -> ApiError:
    return ApiError(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", message)


def add_months(d: date, months: int) -> date:
    month = d.month - 1 + months
    year = d.year + month // 12
    month = month % 12 + 1
    february = 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    days = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return date(year, month, min(d.day, days[month - 1]))


def term_end(start: date) -> date:
    """Initial end = start + 12 months - 1 day."""
    return add_months(start, TERM_MONTHS) - timedelta(days=1)


def line_total(quantity: Any, unit_price: Any, term: Any = TERM_MONTHS) -> Decimal | None:
    if quantity is None or unit_price is None:
        return None
    return (Decimal(str(quantity)) * Decimal(str(unit_price)) * Decimal(str(term or TERM_MONTHS))).quantize(
        CENT, rounding=ROUND_HALF_UP
    )


def item_totals(item: Row, contract_term: Any) -> dict[str, Decimal | None]:
    """The GTM app's derived item fields: LineItemPeriodTotal = unit price x quantity,
    LineItemTotal = that x the parent's ContractTerm (both currency, to the cent)."""
    quantity, price = item.get("Quantity"), item.get("CustomerUnitPricePerMonth")
    return {"LineItemPeriodTotal": line_total(quantity, price, 1),
            "LineItemTotal": line_total(quantity, price, contract_term)}


class GtmRules(Rules):
    def check(self, data: OrgData, spec: ObjectSpec, current: Row | None, values: dict[str, Any] | None) -> None:
        if spec.name == OFFER:
            self._check_offer(current, values)
        elif spec.name == OFFER_ITEM:
            offer_id = (values or {}).get(OFFER_LINK) or (current or {}).get(OFFER_LINK)
            offer = data.get(OFFER, offer_id) if offer_id else None
            if offer is not None and offer.get("Status") != "Draft":
                raise _custom_validation(
                    f"Offer items can only be added or changed while the offer is in Draft status "
                    f"(offer {offer['Id']} is {offer.get('Status')})."
                )

    @staticmethod
    def _check_offer(current: Row | None, values: dict[str, Any] | None) -> None:
        if current is not None and current.get("Status") != "Draft":
            raise _custom_validation(
                f"Only offers in Draft status can be edited or deleted; this offer is {current.get('Status')}."
            )
        if values is None:
            return
        status = {k.lower(): v for k, v in values.items()}.get("status")
        if status is not None and status != "Draft":
            raise _custom_validation("An offer's status changes only when it is sent to the customer from the GTM app.")
        term = {k.lower(): v for k, v in values.items()}.get("contractterm")
        if term is not None and Decimal(str(term)) != TERM_MONTHS:
            raise _custom_validation("Contract Term must be 12: the GTM app only supports 12-month terms.")

    def compute(self, data: OrgData, spec: ObjectSpec, row: Row) -> None:
        if spec.name in PARENTS:
            parent_sobject, link = PARENTS[spec.name]
            parent = data.get(parent_sobject, row[link]) if row.get(link) else None
            row.update(item_totals(row, (parent or {}).get("ContractTerm")))
        elif spec.name == OFFER:
            # Formula: the customer record's org id.
            customer = data.get(CUSTOMER, row["CustomerForPartnerId"]) if row.get("CustomerForPartnerId") else None
            row["BillingCustomerOrg"] = (customer or {}).get("BillingCustomerOrg")

    def after(self, data: OrgData, spec: ObjectSpec, row: Row, old: Row | None) -> None:
        if spec.name == OFFER_ITEM:
            for offer_id in {row.get(OFFER_LINK), (old or {}).get(OFFER_LINK)} - {None}:
                refresh_subtotal(data, OFFER, OFFER_ITEM, OFFER_LINK, offer_id)
        elif spec.name == OFFER and old is not None and not row.get("IsDeleted"):
            refresh_subtotal(data, OFFER, OFFER_ITEM, OFFER_LINK, row["Id"])


def prorated(total: Decimal, start: date, end: date, initial_start: date, initial_end: date) -> Decimal:
    """Add-on line: total x days(start..end) / days(initial term), both ends counted."""
    term_days = (initial_end - initial_start).days + 1
    days = (end - start).days + 1
    return (total * days / term_days).quantize(CENT, rounding=ROUND_HALF_UP)


def billed_totals(data: OrgData, parent: Row, items: list[Row], order_sobject: str = ORDER) -> list[Decimal]:
    """What each item is charged: its LineItemTotal, prorated on an add-on (items without
    a total are left out). The subtotal and the GTM app's invoice lines both use it."""
    totals = [Decimal(str(i["LineItemTotal"])) for i in items if i.get("LineItemTotal") is not None]
    kind = parent.get("OfferType") or parent.get("OrderType")
    initial = _initial_order(data, parent, order_sobject)
    if kind == "Add-On" and initial and parent.get("ServiceStartDate") and initial.get("ServiceStartDate"):
        i_start = date.fromisoformat(initial["ServiceStartDate"])
        i_end = date.fromisoformat(initial.get("ServiceEndDate") or term_end(i_start).isoformat())
        start = date.fromisoformat(parent["ServiceStartDate"])
        end = date.fromisoformat(parent.get("ServiceEndDate") or i_end.isoformat())
        totals = [prorated(t, start, end, i_start, i_end) for t in totals]
    return totals


def _initial_order(data: OrgData, parent: Row, order_sobject: str) -> Row | None:
    """The initial order an add-on belongs to: an add-on may name an earlier add-on (the
    customer's latest order), whose own term ends with the initial one; followed back to
    the order that is not an add-on. None when the chain breaks or loops."""
    seen: set[str] = set()
    current = parent
    while current.get("InitialOrderId") and current["InitialOrderId"] not in seen:
        seen.add(current["InitialOrderId"])
        found = data.get(order_sobject, current["InitialOrderId"])
        if found is None:
            return None
        if found.get("OrderType") != "Add-On":
            return found
        current = found
    return None


def subtotal_for(data: OrgData, parent: Row, items: list[Row], order_sobject: str = ORDER) -> Decimal:
    return sum(billed_totals(data, parent, items, order_sobject), Decimal("0.00"))


def refresh_subtotal(data: OrgData, parent_sobject: str, item_sobject: str, link: str, parent_id: str) -> None:
    parent = data.get(parent_sobject, parent_id)
    if parent is None:
        return
    items = [r for r in data.tables[item_sobject].rows.values() if r.get(link) == parent_id and not r["IsDeleted"]]
    data.set_computed(parent_sobject, parent_id, {"Subtotal": subtotal_for(data, parent, items)})


# ---------------------------------------------------------------- seed data


class _Seeder:
    """Control-level inserts (no API validation): the org's own processes made these."""

    def __init__(self, data: OrgData, stamp: str | None = None):
        self.data = data
        self.stamp = stamp

    def add(self, sobject: str, **values: Any) -> Row:
        return self.data.insert(sobject, values, validate=False, stamp=self.stamp)


TERM_SET_DEFAULTS = {"DefaultBillingFrequency": 12, "DefaultCancellationTerms": 30, "DefaultRenewalLength": 12,
                     "IsDefaultContractAutoRenew": False}


def _totals(quantity: int, price: str) -> dict[str, Decimal | None]:
    return item_totals({"Quantity": quantity, "CustomerUnitPricePerMonth": Decimal(price)}, TERM_MONTHS)


def _customer_org(n: int) -> str:
    return make_id("00D", n, pod="Cu")


def load_demo(data: OrgData, today: date | None = None) -> dict[str, str]:
    """Seed 003's catalog and order, an add-on, offers in every status and one malformed
    record (an order item with a negative quantity). Returns named ids for tests."""
    today = today or data.clock.today()
    s = _Seeder(data)
    ids: dict[str, str] = {}
    customers: dict[str, Row] = {}
    ts = s.add("SfdcPartnerTermSet", Name="Standard 12-month, NET30", DefaultContractCurrency="USD",
                **TERM_SET_DEFAULTS)
    ids["term_set"] = ts["Id"]
    ppc_core = s.add("SfdcPartnerTermSetProduct", Name="Core App catalog", PartnerTermSetId=ts["Id"],
                     RevenueSharePercentage=Decimal("15"), FloorPrice=Decimal("25.00"))
    ppc_prem = s.add("SfdcPartnerTermSetProduct", Name="Premium Add-On catalog", PartnerTermSetId=ts["Id"],
                     RevenueSharePercentage=Decimal("10"), FloorPrice=Decimal("100.00"))
    core = s.add("SfdcPartnerProvisionProduct", Name="Core App", PartnerTermSetProductId=ppc_core["Id"])
    prem = s.add("SfdcPartnerProvisionProduct", Name="Premium Add-On", PartnerTermSetProductId=ppc_prem["Id"])
    ids.update(ppc_core=ppc_core["Id"], ppc_premium=ppc_prem["Id"], ppp_core=core["Id"], ppp_premium=prem["Id"])
    s.add("SfdcPartnerProductLicense", PartnerProvisionProductId=core["Id"],
          LicenseId=make_id("0A3", 1, pod="Pk"))
    s.add("SfdcPartnerProductLicense", PartnerProvisionProductId=prem["Id"],
          LicenseId=make_id("0PL", 1, pod="Ps"))

    def offer(customer: str, n: int, status: str, start: date, items: list[tuple[Row, int, str]], *,
              offer_type: str = "Initial", initial: Row | None = None, valid_until: date | None = None) -> Row:
        slug = customer.lower().split()[0]
        account = customers.get(customer) or s.add(CUSTOMER, Name=customer, BillingCustomerOrg=_customer_org(n),
                                                   BillingEmail=f"{slug}.billing@example.com")
        customers[customer] = account
        o = s.add(OFFER, Name=f"{customer} {offer_type} offer", Status=status, OfferType=offer_type,
                  CustomerName=customer, CustomerForPartnerId=account["Id"],
                  BillingCustomerOrg=account["BillingCustomerOrg"], PartnerTermSetId=ts["Id"],
                  ContractTerm=12, ServiceStartDate=start.isoformat(),
                  ServiceEndDate=(initial["ServiceEndDate"] if initial else term_end(start).isoformat()),
                  ValidUntilDate=(valid_until or today + timedelta(days=30)).isoformat(),
                  RecipientEmailAddress=f"{slug}.buyer@example.com", BillingEmailAddress=f"{slug}.billing@example.com",
                  CurrencyIsoCode="USD", InitialOrderId=initial["Id"] if initial else None,
                  PartnerPoNumber=f"PO-{n:04d}")
        rows = [s.add(OFFER_ITEM, Name=f"{ppp['Name']} x{q}", PartnerOfferId=o["Id"],
                      PartnerProvisionProductId=ppp["Id"], Quantity=q, CustomerUnitPricePerMonth=Decimal(p),
                      **_totals(q, p)) for ppp, q, p in items]
        return data.update(OFFER, o["Id"], {"Subtotal": subtotal_for(data, o, rows)}, validate=False)

    def order(o: Row, status: str, items: list[tuple[Row, int, str]], number: int) -> Row:
        r = s.add(ORDER, Name=f"{o['CustomerName']} order {number}", OrderNumber=f"{number:08d}", Status=status,
                  OrderType=o["OfferType"], PartnerOfferId=o["Id"], InitialOrderId=o["InitialOrderId"],
                  CustomerName=o["CustomerName"], BillingCustomerOrg=o["BillingCustomerOrg"], ContractTerm=12,
                  ServiceStartDate=o["ServiceStartDate"], ServiceEndDate=o["ServiceEndDate"],
                  RecipientEmailAddress=o["RecipientEmailAddress"], BillingEmailAddress=o["BillingEmailAddress"],
                  CurrencyIsoCode="USD")
        rows = [s.add(ORDER_ITEM, Name=f"{ppp['Name']} x{q}", PartnerOrderId=r["Id"],
                      PartnerProvisionProductId=ppp["Id"], Quantity=q, CustomerUnitPricePerMonth=Decimal(p),
                      **_totals(q, p)) for ppp, q, p in items]
        good = [i for i in rows if (i.get("Quantity") or 0) > 0]
        return data.update(ORDER, r["Id"], {"Subtotal": subtotal_for(data, r, good)}, validate=False)

    acme_items = [(core, 10, "50.00"), (prem, 1, "200.00")]
    acme_offer = offer("Acme Corp", 1, "Accepted", today, acme_items, valid_until=today)
    acme_order = order(acme_offer, "Activated", acme_items, 101)
    addon_start = today + timedelta(days=90)
    addon_items = [(core, 5, "50.00")]
    addon_offer = offer("Acme Corp", 1, "Accepted", addon_start, addon_items, offer_type="Add-On", initial=acme_order)
    addon_order = order(addon_offer, "Activated", addon_items, 102)
    ids.update(acme_offer=acme_offer["Id"], acme_order=acme_order["Id"], addon_offer=addon_offer["Id"],
               addon_order=addon_order["Id"])
    later = today + timedelta(days=30)
    for n, (customer, status) in enumerate(
        [("Initech", "Draft"), ("Umbrella Inc", "Sent"), ("Hooli", "Rejected"), ("Vandelay Industries", "Expired"),
         ("Soylent Co", "Error")], start=2
    ):
        valid = today - timedelta(days=5) if status == "Expired" else today + timedelta(days=30)
        o = offer(customer, n, status, later, [(core, 5 + n, "45.00")], valid_until=valid)
        ids[f"offer_{status.lower()}"] = o["Id"]
    globex_items = [(core, 3, "50.00")]
    globex_offer = offer("Globex", 9, "Accepted", later, globex_items)
    globex_order = order(globex_offer, "Processing", globex_items + [(prem, -2, "200.00")], 103)
    bad = [r for r in data.tables[ORDER_ITEM].rows.values()
           if r[ORDER_LINK] == globex_order["Id"] and r["Quantity"] < 0]
    ids.update(globex_order=globex_order["Id"], malformed_order_item=bad[0]["Id"])
    return ids


def generate(data: OrgData, n: int, *, seed: int = 7, items_per_order: int = 3) -> dict[str, str]:
    """About ``n`` records for benches: a small catalog, then orders with items across the
    PPPs (n // (items_per_order + 1) orders). SystemModstamps run over the last days and
    come in groups sharing one stamp, as bulk activity does in a real org. Rows are loaded
    in bulk (no per-row validation) so a 100k org starts in a second or two."""
    rng = random.Random(seed)
    ids = load_catalog(data)
    ppps = [ids["ppp_core"], ids["ppp_premium"]]
    prices = {ids["ppp_core"]: Decimal("50.00"), ids["ppp_premium"]: Decimal("200.00")}
    order_spec = data.tables[ORDER].spec
    item_spec = data.tables[ORDER_ITEM].spec
    orders: list[Row] = []
    items: list[Row] = []
    base = data.clock.moment() - timedelta(days=3)
    count = max(1, n // (items_per_order + 1))
    today = data.clock.today()
    for k in range(count):
        stamp = format_stamp(base + timedelta(milliseconds=(k // 10) * 250))
        start = today + timedelta(days=rng.randint(-200, 60))
        order_id = data.new_id(order_spec)
        lines = []
        for j in range(items_per_order):
            ppp = ppps[j % 2]
            qty = rng.randint(1, 50)
            total = line_total(qty, prices[ppp])
            lines.append(total)
            items.append(_row(item_spec, data.new_id(item_spec), stamp, Name=f"Line {j + 1}", PartnerOrderId=order_id,
                              PartnerProvisionProductId=ppp, Quantity=qty,
                              CustomerUnitPricePerMonth=prices[ppp], LineItemTotal=total,
                              LineItemPeriodTotal=line_total(qty, prices[ppp], 1)))
        orders.append(_row(order_spec, order_id, stamp, Name=f"Bench order {k + 1}", OrderNumber=f"{k + 1000:08d}",
                           Status="Activated", OrderType="Initial", CustomerName=f"Customer {k + 1}",
                           BillingCustomerOrg=_customer_org(k + 100), ContractTerm=12,
                           ServiceStartDate=start.isoformat(), ServiceEndDate=term_end(start).isoformat(),
                           RecipientEmailAddress=f"buyer{k}@example.com",
                           BillingEmailAddress=f"billing{k}@example.com", CurrencyIsoCode="USD",
                           Subtotal=sum(lines, Decimal("0.00"))))
    with data.lock:
        data.tables[ORDER].bulk_load(orders)
        data.tables[ORDER_ITEM].bulk_load(items)
    return ids


def load_catalog(data: OrgData) -> dict[str, str]:
    s = _Seeder(data)
    ts = s.add("SfdcPartnerTermSet", Name="Standard 12-month, NET30", DefaultContractCurrency="USD",
                **TERM_SET_DEFAULTS)
    ppc_core = s.add("SfdcPartnerTermSetProduct", Name="Core App catalog", PartnerTermSetId=ts["Id"],
                     RevenueSharePercentage=Decimal("15"))
    ppc_prem = s.add("SfdcPartnerTermSetProduct", Name="Premium Add-On catalog", PartnerTermSetId=ts["Id"],
                     RevenueSharePercentage=Decimal("10"))
    core = s.add("SfdcPartnerProvisionProduct", Name="Core App", PartnerTermSetProductId=ppc_core["Id"])
    prem = s.add("SfdcPartnerProvisionProduct", Name="Premium Add-On", PartnerTermSetProductId=ppc_prem["Id"])
    return {"term_set": ts["Id"], "ppc_core": ppc_core["Id"], "ppc_premium": ppc_prem["Id"],
            "ppp_core": core["Id"], "ppp_premium": prem["Id"]}


def _row(spec: ObjectSpec, rid: str, stamp: str, **values: Any) -> Row:
    row: Row = {f: None for f in spec.fields}
    row.update(values)
    row.update(Id=rid, IsDeleted=False, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
    return row
