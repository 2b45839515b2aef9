"""Customers, products and prices, invoice items and invoices, with Stripe's state rules.

Invoice lifecycle (Stripe's): ``draft`` (editable: lines, items, most fields) → finalize →
``open`` (``number``, ``due_date`` = finalized_at + days_until_due days, hosted URL) → pay →
``paid``; ``open``/``uncollectible`` → void → ``void``; ``open`` → mark_uncollectible →
``uncollectible`` (which can still be paid or voided). Send and pay finalize a draft first.
Each status change sends its own event (``invoice.finalized``, ``invoice.paid`` …, without
``previous_attributes``) and an ``invoice.updated`` naming what changed.
Once finalized, amounts and ``collection_method`` are frozen; other fields stay editable. Amounts are integer cents; an
invoice's ``subtotal`` is the sum of its lines, ``total``/``amount_due`` add the lines' exclusive
tax (tax rates or given ``tax_amounts``: ``gtm_sandbox.stripe.taxes``). At finalization the
customer's balance is applied and an amount due below the currency's minimum charge is carried
to that balance instead (the invoice is then paid). No coupons: a discount naming one is refused.
"""

from __future__ import annotations

import re
import secrets
import string
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gtm_sandbox.stripe import taxes
from gtm_sandbox.stripe.api import Ctx, Router
from gtm_sandbox.stripe.appfees import application_fee_param
from gtm_sandbox.stripe.listing import NUMERIC, STRING, TOKEN, paginate, range_filter, search
from gtm_sandbox.stripe.wire import (
    INT64_MAX,
    INT64_MIN,
    ApiError,
    Params,
    apply_metadata,
    bad_param,
    invalid,
    missing,
    new_id,
    no_such,
)
from gtm_sandbox.stripe.world import DAY, Account, World, strip_private

MAX_INVOICE_LINES = 250
FINALIZES_WITHIN_S = 5 * 365 * DAY  # a scheduled finalization: "up to 5 years in the future"
INVOICE_PREFIX = re.compile(r"[A-Z0-9]{3,12}")
PAID_OFF_STRIPE_ADDED = "2026-05-27"
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
TAX_BEHAVIORS = ("exclusive", "inclusive", "unspecified")  # of a price or an invoice item
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
MAX_CUSTOM_FIELDS = 4
# "The name of the custom field. This may be up to 40 characters"; its value up to 140.
CUSTOM_FIELD_NAME_MAX, CUSTOM_FIELD_VALUE_MAX = 40, 140
# A customer's email: "This may be up to 512 characters."
EMAIL_MAX = 512
# "The email parameter must contain an email address of valid shape" (since 2018-07-27):
# something@somewhere, no spaces. Lenient on purpose: Stripe's exact rule is not published.
EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+")
TAX_EXEMPT = ("", "none", "exempt", "reverse")  # a customer's tax_exempt ("": unset, i.e. "none")
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
# Stripe's query fields and their types ("Supported query fields for each resource").
CUSTOMER_SEARCH_FIELDS = {"created": NUMERIC, "email": STRING, "metadata": TOKEN, "name": STRING, "phone": STRING}
INVOICE_SEARCH_FIELDS = {
    "created": NUMERIC, "currency": TOKEN, "customer": TOKEN, "last_finalization_error_code": TOKEN,
    "metadata": TOKEN, "number": STRING, "receipt_number": STRING, "status": STRING, "subscription": STRING,
    "total": NUMERIC,
}


def not_editable(message: str, param: str | None = None) -> ApiError:
    return invalid(message, code="invoice_not_editable", param=param)


def cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def line_amount(p: Params, unit: Decimal, quantity: int) -> int:
    """``unit`` × ``quantity`` in whole cents; an amount beyond Stripe's 64-bit integers is
    its ``amount_too_large``, not a crash."""
    try:
        amount = cents(unit * quantity)
    except ArithmeticError:
        amount = INT64_MAX + 1  # past the precision of the product: far too large in any case
    if not INT64_MIN <= amount <= INT64_MAX:
        raise invalid("The amount of this line (unit amount times quantity) is greater than the maximum amount "
                      "allowed.", code="amount_too_large", param=p.prefix or None)
    return amount


def _currency(p: Params, key: str, default: str) -> str:
    value = (p.str(key) or default).lower()
    if len(value) != 3 or not value.isalpha():
        raise bad_param(f"Invalid currency: {value}.", param=p.name(key), code=None)
    return value


# ---------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------

CUSTOMER_PARAMS = ("address", "balance", "description", "email", "expand", "invoice_prefix", "invoice_settings",
                   "metadata", "name", "next_invoice_sequence", "payment_method", "phone", "preferred_locales",
                   "tax_exempt")
# Stripe's minimum charge amounts in minor units ("Supported currencies: Minimum and maximum
# charge amounts"); an invoice due less is paid at finalization and the amount carried to the
# customer's balance. Currencies not listed here: 50 minor units, as USD.
MINIMUM_CHARGE = {"aed": 200, "aud": 50, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250, "eur": 50,
                  "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300,
                  "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000, "usd": 50}


def _address(p: Params) -> dict[str, str | None] | None:
    """``address``: a hash of Stripe's address fields, each shown (null when not given);
    ``address=""`` unsets it."""
    if p.raw("address") == "":
        return None
    sub = p.sub("address")
    if sub is None:
        return None
    sub.only(*ADDRESS_FIELDS)
    return {key: sub.str(key) for key in ADDRESS_FIELDS}


def _email(p: Params) -> str | None:
    """``email``, of a valid shape (``email_invalid``); empty unsets it."""
    email = p.str("email") or None
    if email is not None and len(email) > EMAIL_MAX:
        raise bad_param(f"Invalid email address: it may be up to {EMAIL_MAX} characters.", param="email", code=None)
    if email is not None and not EMAIL_SHAPE.fullmatch(email):
        raise bad_param(f"Invalid email address: {email}", param="email", code="email_invalid")
    return email


def get_customer(ctx: Ctx, customer_id: str, *, param: str = "id") -> dict[str, Any]:
    found = ctx.account.get(customer_id)
    if found is None or found["object"] != "customer" or found.get("_deleted"):
        raise no_such("customer", customer_id, param=param)
    return found


def _invoice_prefix(p: Params) -> str | None:
    prefix = p.str("invoice_prefix")
    if prefix is not None and not INVOICE_PREFIX.fullmatch(prefix):
        raise bad_param("Invoice prefix must be 3-12 uppercase letters or numbers.", param="invoice_prefix",
                        code=None)
    return prefix


def create_customer(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(*CUSTOMER_PARAMS)
    prefix = _invoice_prefix(p) or "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
    customer: dict[str, Any] = {
        "id": new_id("cus", 14),
        "object": "customer",
        "address": _address(p),
        # "A negative amount represents a credit …; a positive amount increases the amount due."
        "balance": p.int("balance", 0),
        "created": ctx.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": p.str("description"),
        "discount": None,
        "email": _email(p),
        "invoice_prefix": prefix,
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": False,
        "metadata": apply_metadata({}, p.raw("metadata")),
        "name": p.str("name"),
        "next_invoice_sequence": p.int("next_invoice_sequence", 1, minimum=1),
        "phone": p.str("phone"),
        "preferred_locales": p.list("preferred_locales") or [],
        "shipping": None,
        "tax_exempt": p.choice("tax_exempt", TAX_EXEMPT) or "none",
        "test_clock": None,
    }
    customer["invoice_settings"] = _invoice_settings(customer["invoice_settings"], p)
    ctx.account.add(customer)
    ctx.emit("customer.created", customer)
    return ctx.render(customer)


def _invoice_settings(current: dict[str, Any], p: Params) -> dict[str, Any]:
    """The customer's ``invoice_settings`` after this request (checked, nothing changed yet).
    Test payment methods (``pm_card_visa``, ``pm_card_chargeDeclined``) become the
    customer's default for invoices, as attaching one and setting it would on Stripe."""
    updated = dict(current)
    pm = p.str("payment_method")
    settings = p.sub("invoice_settings")
    if settings is not None:
        settings.only("default_payment_method", "custom_fields", "footer", "rendering_options")
        pm = settings.str("default_payment_method") or pm
        if settings.has("footer"):
            updated["footer"] = settings.str("footer")
    if pm is not None:
        updated["default_payment_method"] = pm or None
    return updated


def update_customer(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only(*CUSTOMER_PARAMS)
    customer = get_customer(ctx, id)
    # Everything is checked before anything changes: a refused update leaves the customer as it was.
    _invoice_prefix(p)
    metadata = apply_metadata(customer["metadata"], p.raw("metadata"))
    texts = {key: p.str(key) or None for key in ("description", "name", "phone", "invoice_prefix") if p.has(key)}
    if p.has("email"):
        texts["email"] = _email(p)
    if p.has("tax_exempt"):  # never None: unsetting it ("") makes it "none"
        texts["tax_exempt"] = p.choice("tax_exempt", TAX_EXEMPT) or "none"
    invoice_settings = _invoice_settings(customer["invoice_settings"], p)
    address = _address(p) if p.has("address") else customer["address"]
    sequence = p.int("next_invoice_sequence", customer["next_invoice_sequence"], minimum=1)
    balance = p.int("balance", customer["balance"])
    previous: dict[str, Any] = {}
    for key, text in texts.items():
        previous[key], customer[key] = customer[key], text
    if p.has("address"):
        previous["address"], customer["address"] = customer["address"], address
    if p.has("metadata"):
        previous["metadata"], customer["metadata"] = dict(customer["metadata"]), metadata
    if invoice_settings != customer["invoice_settings"]:
        previous["invoice_settings"] = changed(customer["invoice_settings"], invoice_settings)
    customer["invoice_settings"] = invoice_settings
    if sequence != customer["next_invoice_sequence"]:
        previous["next_invoice_sequence"] = customer["next_invoice_sequence"]
        customer["next_invoice_sequence"] = sequence
    previous["balance"], customer["balance"] = customer["balance"], balance
    emit_updated(ctx, "customer.updated", customer, previous)
    return ctx.render(customer)


def delete_customer(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    customer = get_customer(ctx, id)
    customer["_deleted"] = True
    ctx.emit("customer.deleted", customer)
    return {"id": id, "object": "customer", "deleted": True}


def retrieve_customer(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    found = ctx.account.get(id)
    if found is not None and found["object"] == "customer" and found.get("_deleted"):
        return {"id": id, "object": "customer", "deleted": True}
    return ctx.render(get_customer(ctx, id))


def list_customers(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("email", "created", "limit", "starting_after", "ending_before", "expand", "test_clock")
    email = p.str("email")
    created = range_filter(p, "created")
    items = [
        c for c in ctx.account.all("customer")
        if not c.get("_deleted") and (email is None or c["email"] == email) and (created is None or created(c))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/customers", version=ctx.version)


def search_customers(ctx: Ctx, p: Params) -> dict[str, Any]:
    items = [c for c in ctx.account.all("customer") if not c.get("_deleted")]
    return search(ctx.world, ctx.account, p, items, fields=CUSTOMER_SEARCH_FIELDS, url="/v1/customers/search",
                  version=ctx.version)


# ---------------------------------------------------------------------------------------
# Products and prices (created inline by price_data / product_data)
# ---------------------------------------------------------------------------------------


def _product(ctx: Ctx, name: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return ctx.account.add({
        "id": new_id("prod", 14), "object": "product", "active": True, "created": ctx.now(), "description": None,
        "livemode": False, "metadata": metadata or {}, "name": name, "type": "service", "updated": ctx.now(),
    })


def _price(ctx: Ctx, product_id: str, currency: str, unit_amount_decimal: Decimal) -> dict[str, Any]:
    whole = unit_amount_decimal == unit_amount_decimal.to_integral_value()
    return ctx.account.add({
        "id": new_id("price"), "object": "price", "active": False, "billing_scheme": "per_unit",
        "created": ctx.now(), "currency": currency, "livemode": False, "lookup_key": None, "metadata": {},
        "nickname": None, "product": product_id, "recurring": None, "tax_behavior": "unspecified", "type": "one_time",
        "unit_amount": int(unit_amount_decimal) if whole else None,
        "unit_amount_decimal": _decimal_str(unit_amount_decimal),
    })


def _decimal_str(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def retrieve_product(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    found = ctx.account.get(id)
    if found is None or found["object"] != "product":
        raise no_such("product", id)
    return ctx.render(found)


def retrieve_price(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    found = ctx.account.get(id)
    if found is None or found["object"] != "price":
        raise no_such("price", id)
    return ctx.render(found)


# ---------------------------------------------------------------------------------------
# Invoice items and line items
# ---------------------------------------------------------------------------------------

ITEM_PARAMS = ("amount", "currency", "customer", "description", "discountable", "discounts", "expand", "invoice",
               "metadata",
               "period", "price_data", "pricing", "quantity", "unit_amount_decimal", "tax_rates", "tax_behavior",
               "tax_code")
# An add_lines line has no `currency` of its own (Stripe rejects it): it takes the invoice's.
LINE_PARAMS = ("amount", "description", "discountable", "discounts", "invoice_item", "metadata", "period",
               "price_data", "pricing", "quantity", "tax_amounts", "tax_rates")


def get_invoice(ctx: Ctx, invoice_id: str, *, param: str = "id") -> dict[str, Any]:
    found = ctx.account.get(invoice_id)
    if found is None or found["object"] != "invoice" or found.get("_deleted"):
        raise no_such("invoice", invoice_id, param=param)
    return found


def _price_data_pricing(ctx: Ctx, p: Params, currency: str, *,
                        allow_product_data: bool) -> tuple[str, Decimal, dict[str, Any]]:
    """``price_data``: a price made on the fly for an existing product (or, where Stripe
    allows it, one made from ``product_data``)."""
    data = p.sub("price_data")
    assert data is not None
    allowed = ["currency", "product", "unit_amount", "unit_amount_decimal", "tax_behavior"]
    if allow_product_data:
        allowed.append("product_data")
    data.only(*allowed)
    data.choice("tax_behavior", TAX_BEHAVIORS)
    cur = _currency(data, "currency", currency) if data.has("currency") else None
    if cur is None:
        raise missing(data.name("currency"))
    if data.has("unit_amount") and data.has("unit_amount_decimal"):
        raise bad_param("You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                        param=data.name("unit_amount_decimal"), code=None)
    if data.has("unit_amount"):
        unit = Decimal(data.req_int("unit_amount", minimum=0))
    elif data.has("unit_amount_decimal"):
        unit = data.decimal("unit_amount_decimal") or Decimal(0)
    else:
        raise missing(data.name("unit_amount"))
    product_data = data.sub("product_data") if allow_product_data else None
    if data.has("product"):
        product_id = data.req_str("product")
        if (found := ctx.account.get(product_id)) is None or found["object"] != "product":
            raise no_such("product", product_id, param=data.name("product"))
    elif product_data is not None:
        product_data.only("name", "description", "metadata", "tax_code", "images", "unit_label", "tax_details")
        product_id = _product(ctx, product_data.req_str("name"),
                              apply_metadata({}, product_data.raw("metadata")))["id"]
    else:
        raise missing(data.name("product_data" if allow_product_data else "product"))
    price = _price(ctx, product_id, cur, unit)
    return cur, unit, {"price_details": {"price": price["id"], "product": product_id}, "type": "price_details",
                       "unit_amount_decimal": _decimal_str(unit)}


def _pricing(ctx: Ctx, p: Params, currency: str, *, allow_product_data: bool) -> tuple[str, Decimal, dict[str, Any]]:
    """(currency, unit amount in cents as Decimal, pricing block) from one of ``amount`` …"""
    if p.has("amount") and p.has("quantity"):
        # ``amount`` is the whole item's; a quantity goes with a unit price (Stripe's answer
        # to both together, stripe/stripe-php#777).
        raise bad_param("You may only specify one of these parameters: amount, quantity.", param=p.name("quantity"),
                        code=None)
    quantity = p.int("quantity", 1, minimum=0)
    sources = [k for k in ("amount", "unit_amount_decimal", "price_data", "pricing") if p.has(k)]
    if len(sources) > 1:
        raise bad_param(f"You may only specify one of these parameters: {', '.join(sources)}.",
                        param=p.name(sources[1]), code=None)
    if not sources:
        raise missing(p.name("amount"))
    source = sources[0]
    if source == "amount":
        amount = p.req_int("amount")
        unit = Decimal(amount) / Decimal(quantity or 1)
        return _currency(p, "currency", currency), unit, {"price_details": None, "type": "price_details",
                                                          "unit_amount_decimal": _decimal_str(unit)}
    if source == "unit_amount_decimal":
        unit = p.decimal("unit_amount_decimal")
        assert unit is not None
        return _currency(p, "currency", currency), unit, {"price_details": None, "type": "price_details",
                                                          "unit_amount_decimal": _decimal_str(unit)}
    if source == "price_data":
        return _price_data_pricing(ctx, p, currency, allow_product_data=allow_product_data)
    pricing = p.sub("pricing")
    assert pricing is not None
    pricing.only("price")
    price_id = pricing.req_str("price")
    price = ctx.account.get(price_id)
    if price is None or price["object"] != "price":
        raise no_such("price", price_id, param=pricing.name("price"))
    unit = Decimal(price["unit_amount_decimal"])
    return price["currency"], unit, {"price_details": {"price": price_id, "product": price["product"]},
                                     "type": "price_details", "unit_amount_decimal": price["unit_amount_decimal"]}


def _period(ctx: Ctx, p: Params) -> dict[str, int]:
    period = p.sub("period")
    if period is None:
        return {"start": ctx.now(), "end": ctx.now()}
    period.only("start", "end")
    start, end = period.req_int("start"), period.req_int("end")
    if end < start:
        raise bad_param("The period end must be greater than or equal to the start.", param=period.name("end"),
                        code=None)
    return {"start": start, "end": end}


def _no_discounts(p: Params) -> None:
    """``discounts``: coupons, discounts or promotion codes to apply. This server has none of
    them, so any one named is Stripe's "No such …", rather than a discount silently left out
    of the totals; ``discounts=""`` (none) is fine."""
    for index, entry in enumerate(p.list("discounts") or []):
        if entry == "":
            continue
        if not isinstance(entry, dict):
            raise bad_param("Invalid hash", param=f"{p.name('discounts')}[{index}]", code=None)
        spec = Params(entry, prefix=f"{p.name('discounts')}[{index}]").only("coupon", "discount", "promotion_code")
        for key in ("coupon", "discount", "promotion_code"):
            if spec.has(key):
                raise no_such(key.replace("_", " "), spec.req_str(key), param=spec.name(key))


def new_invoice_item(ctx: Ctx, p: Params, *, customer_id: str, currency: str, invoice: dict[str, Any] | None,
                     allow_product_data: bool) -> dict[str, Any]:
    _no_discounts(p)
    cur, unit, pricing = _pricing(ctx, p, currency, allow_product_data=allow_product_data)
    quantity = p.int("quantity", 1, minimum=0)
    assert quantity is not None
    amount = p.int("amount") if p.has("amount") else line_amount(p, unit, quantity)
    assert amount is not None
    if invoice is not None and cur != invoice["currency"]:
        raise invalid(f"The currency of the invoice item ({cur}) must match the invoice's currency "
                      f"({invoice['currency']}).", param=p.name("currency"))
    item: dict[str, Any] = {
        "id": new_id("ii"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": cur,
        "customer": customer_id,
        "date": ctx.now(),
        "description": p.str("description"),
        # "Defaults to false for prorations or negative line items, and true for all other line items."
        "discountable": bool(p.bool("discountable", amount >= 0)),
        "discounts": [],
        "invoice": invoice["id"] if invoice else None,
        "livemode": False,
        "metadata": apply_metadata({}, p.raw("metadata"), param=p.name("metadata")),
        "net_amount": amount,
        "parent": None,
        "period": _period(ctx, p),
        "pricing": pricing,
        "proration": False,
        "proration_details": {"credited_items": None},
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": None,
        "_tax_rates": [],
    }
    _set_item_rates(ctx, item, p)
    if p.has("tax_amounts"):
        item["_manual_taxes"] = taxes.manual_taxes(ctx, p)
    if invoice is not None:
        _check_tax_mix(ctx.account, invoice, item, param=p.name("tax_amounts" if p.has("tax_amounts") else "tax_rates"))
        _check_fits(invoice, amount, p.prefix or "amount")
    ctx.account.add(item)
    if invoice is not None:
        attach_item(ctx.account, invoice, item)
    return item


def _check_tax_mix(account: Account, invoice: dict[str, Any], item: dict[str, Any] | None = None,
                   default_rates: list[str] | None = None, param: str = "default_tax_rates") -> None:
    """"You cannot set tax amounts if any line item has tax_rates or if the invoice has
    default_tax_rates" (add_lines, ``lines[].tax_amounts``): an invoice's tax is either
    Stripe's, from tax rates, or given, never both."""
    items = [account.objects["invoiceitem"][account.objects["line_item"][lid]["_item"]] for lid in invoice["_lines"]]
    if item is not None:
        items.append(item)
    rates = invoice.get("_default_tax_rates") if default_rates is None else default_rates
    if any(i.get("_manual_taxes") for i in items) and (rates or any(i.get("_tax_rates") for i in items)):
        raise invalid("You cannot set tax amounts if any line item has tax_rates or if the invoice has "
                      "default_tax_rates.", param=param)


def _set_item_rates(ctx: Ctx, item: dict[str, Any], p: Params) -> None:
    """``tax_rates`` of an item or line (ids in, TaxRate objects shown); none: the invoice's
    ``default_tax_rates`` apply."""
    if p.has("tax_rates"):
        item["_tax_rates"] = taxes.rate_ids(ctx, p, "tax_rates")
        item["tax_rates"] = taxes.rendered_rates(ctx.account, item["_tax_rates"])


def _check_fits(invoice: dict[str, Any], amount: int, param: str | None) -> None:
    """Amounts are Stripe's 64-bit integers: a line that would take the invoice's subtotal
    past them is ``amount_too_large``, not an invoice total no client can read."""
    if not INT64_MIN <= invoice["subtotal"] + amount <= INT64_MAX:
        raise invalid("The invoice's total would be greater than the maximum amount allowed.",
                      code="amount_too_large", param=param)


def attach_item(account: Account, invoice: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    if len(invoice["_lines"]) >= MAX_INVOICE_LINES:
        raise invalid(f"An invoice can have at most {MAX_INVOICE_LINES} line items.", param="lines")
    _check_fits(invoice, item["amount"], "lines")
    item["invoice"] = invoice["id"]
    line = account.add({"id": new_id("il"), "object": "line_item", "_item": item["id"], "invoice": invoice["id"]})
    invoice["_lines"].append(line["id"])
    refresh_totals(account, invoice)
    return line


def render_line(world: World, account: Account, line: dict[str, Any], version: str) -> dict[str, Any]:
    item = account.objects["invoiceitem"][line["_item"]]
    out = {
        "id": line["id"],
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "invoice": line["invoice"],
        "livemode": False,
        "metadata": dict(item["metadata"]),
        "parent": {
            "invoice_item_details": {"invoice_item": item["id"], "proration": False,
                                     "proration_details": {"credited_items": None}, "subscription": None},
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": dict(item["pricing"]),
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subtotal": item["amount"],
        "taxes": [dict(t) for t in item.get("_taxes", [])],
    }
    if version[:10] < taxes.TAXES_RESHAPED:
        out["tax_amounts"] = taxes.legacy(out.pop("taxes"))
        out["tax_rates"] = list(item["tax_rates"])
    return out


def create_invoice_item(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(*ITEM_PARAMS)
    p.choice("tax_behavior", TAX_BEHAVIORS)
    customer = get_customer(ctx, p.req_str("customer"), param="customer")
    invoice = None
    if p.has("invoice"):
        invoice = get_invoice(ctx, p.req_str("invoice"), param="invoice")
        if invoice["customer"] != customer["id"]:
            raise invalid("The invoice item's customer must match the invoice's customer.", param="invoice")
        if invoice["status"] != "draft":
            raise not_editable(f"You can only add invoice items to draft invoices; {invoice['id']} is "
                               f"{invoice['status']}.", param="invoice")
    currency = "usd" if invoice is None else invoice["currency"]
    item = new_invoice_item(ctx, p, customer_id=customer["id"], currency=currency, invoice=invoice,
                            allow_product_data=False)
    ctx.emit("invoiceitem.created", item)
    return ctx.render(item)


def _get_item(ctx: Ctx, item_id: str) -> dict[str, Any]:
    found = ctx.account.get(item_id)
    if found is None or found["object"] != "invoiceitem" or found.get("_deleted"):
        raise no_such("invoiceitem", item_id)
    return found


def _item_editable(ctx: Ctx, item: dict[str, Any]) -> dict[str, Any] | None:
    if item["invoice"] is None:
        return None
    invoice = ctx.account.objects["invoice"][item["invoice"]]
    if invoice["status"] != "draft":
        raise not_editable(f"The invoice item {item['id']} belongs to invoice {invoice['id']}, which is no longer a "
                           "draft and cannot be edited.")
    return invoice


def update_invoice_item(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("amount", "description", "discountable", "discounts", "expand", "metadata", "period", "price_data",
           "pricing", "quantity", "unit_amount_decimal", "tax_rates", "tax_behavior", "tax_code")
    p.choice("tax_behavior", TAX_BEHAVIORS)
    _no_discounts(p)
    item = _get_item(ctx, id)
    invoice = _item_editable(ctx, item)
    # Everything is checked before anything changes: a refused update leaves the item as it was.
    priced: tuple[int, dict[str, Any], int] | None = None
    if any(p.has(k) for k in ("amount", "unit_amount_decimal", "price_data", "pricing", "quantity")):
        # A new ``amount`` is the whole item's (quantity 1); otherwise the quantity is kept.
        merged = Params({**({} if p.has("amount") else {"quantity": str(item["quantity"])}), **p.data})
        if not any(merged.has(k) for k in ("amount", "unit_amount_decimal", "price_data", "pricing")):
            merged.data["unit_amount_decimal"] = item["pricing"]["unit_amount_decimal"]
        cur, unit, pricing = _pricing(ctx, merged, item["currency"], allow_product_data=False)
        quantity = merged.int("quantity", 1, minimum=0) or 0
        amount = merged.int("amount") if merged.has("amount") else line_amount(merged, unit, quantity)
        assert amount is not None
        priced = quantity, pricing, amount
    description = p.str("description") or None
    metadata = apply_metadata(item["metadata"], p.raw("metadata"))
    period = _period(ctx, p) if p.has("period") else item["period"]
    discountable = p.bool("discountable", item["discountable"])
    _set_item_rates(ctx, item, p)
    if priced is not None:
        quantity, pricing, amount = priced
        item["quantity"], item["quantity_decimal"], item["pricing"] = quantity, str(quantity), pricing
        item["amount"] = item["net_amount"] = amount
    if p.has("description"):
        item["description"] = description
    item["metadata"], item["period"], item["discountable"] = metadata, period, bool(discountable)
    if invoice is not None:
        refresh_totals(ctx.account, invoice)
    # No event: Stripe has no `invoiceitem.updated` event type.
    return ctx.render(item)


def delete_invoice_item(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    item = _get_item(ctx, id)
    invoice = _item_editable(ctx, item)
    item["_deleted"] = True
    if invoice is not None:
        invoice["_lines"] = [lid for lid in invoice["_lines"] if ctx.account.objects["line_item"][lid]["_item"] != id]
        refresh_totals(ctx.account, invoice)
    ctx.emit("invoiceitem.deleted", item)
    return {"id": id, "object": "invoiceitem", "deleted": True}


def retrieve_invoice_item(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    return ctx.render(_get_item(ctx, id))


def list_invoice_items(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("customer", "invoice", "pending", "created", "limit", "starting_after", "ending_before", "expand")
    customer, invoice, pending = p.str("customer"), p.str("invoice"), p.bool("pending")
    created = range_filter(p, "created")
    items = [
        i for i in ctx.account.all("invoiceitem")
        if not i.get("_deleted")
        and (customer is None or i["customer"] == customer)
        and (invoice is None or i["invoice"] == invoice)
        and (pending is None or (i["invoice"] is None) == pending)
        and (created is None or created(i))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/invoiceitems", version=ctx.version)


# ---------------------------------------------------------------------------------------
# Invoices
# ---------------------------------------------------------------------------------------

INVOICE_CREATE_PARAMS = ("auto_advance", "collection_method", "currency", "custom_fields", "customer",
                         "days_until_due", "default_payment_method", "description", "due_date", "expand", "footer",
                         "metadata", "pending_invoice_items_behavior", "statement_descriptor", "payment_settings",
                         "rendering", "number", "effective_at", "account_tax_ids", "default_tax_rates",
                         "application_fee_amount", "automatically_finalizes_at")


def _custom_fields(p: Params) -> list[dict[str, str]] | None:
    """``custom_fields``: up to 4 ``{name, value}`` hashes; ``custom_fields=""`` unsets them."""
    entries = p.list("custom_fields")
    if not entries:
        return None
    if len(entries) > MAX_CUSTOM_FIELDS:
        raise bad_param(f"You can have at most {MAX_CUSTOM_FIELDS} custom fields.", param="custom_fields", code=None)
    fields = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad_param("Invalid hash", param=f"custom_fields[{index}]", code=None)
        field = Params(entry, prefix=f"custom_fields[{index}]").only("name", "value")
        name, value = field.req_str("name"), field.req_str("value")
        for key, text, most in (("name", name, CUSTOM_FIELD_NAME_MAX), ("value", value, CUSTOM_FIELD_VALUE_MAX)):
            if len(text) > most:
                raise bad_param(f"The custom field's {key} may be up to {most} characters.",
                                param=field.name(key), code=None)
        fields.append({"name": name, "value": value})
    return fields


def refresh_totals(account: Account, invoice: dict[str, Any]) -> None:
    """Totals from the lines and their tax rates (no discounts or credit balance here):
    exclusive tax is added on top, inclusive tax is inside the subtotal."""
    if invoice["status"] != "draft":
        return  # amounts freeze at finalization
    items = [account.objects["invoiceitem"][account.objects["line_item"][lid]["_item"]] for lid in invoice["_lines"]]
    for item in items:
        item["_taxes"] = (list(item["_manual_taxes"]) if item.get("_manual_taxes") else
                          taxes.line_taxes(account, item["amount"], item.get("_tax_rates") or
                                           invoice.get("_default_tax_rates", [])))
    subtotal = sum(item["amount"] for item in items)
    total_taxes, exclusive, inclusive = taxes.invoice_taxes([item["_taxes"] for item in items])
    total = subtotal + exclusive
    due = max(total, 0)  # amount_due is never negative: a credit goes to the customer's balance
    invoice.update(subtotal=subtotal, subtotal_excluding_tax=subtotal - inclusive, total=total,
                   total_excluding_tax=subtotal - inclusive, total_taxes=total_taxes, amount_due=due,
                   amount_remaining=due - invoice["amount_paid"])


def create_invoice(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(*INVOICE_CREATE_PARAMS)
    customer = get_customer(ctx, p.req_str("customer"), param="customer")
    collection = p.choice("collection_method", COLLECTION_METHODS, "charge_automatically")
    days, due = p.int("days_until_due", minimum=0), p.int("due_date")
    if collection == "charge_automatically" and (days is not None or due is not None):
        param = "days_until_due" if days is not None else "due_date"
        raise bad_param(f"You can only set `{param}` when `collection_method` is `send_invoice`.", param=param,
                        code=None)
    if days is not None and due is not None:
        raise bad_param("You may only specify one of these parameters: days_until_due, due_date.", param="due_date",
                        code=None)
    if collection == "send_invoice" and days is None and due is None:
        days = ctx.world.settings.default_days_until_due  # the account's default payment terms
    behavior = p.choice("pending_invoice_items_behavior", ("exclude", "include"), "exclude")
    now = ctx.now()
    invoice: dict[str, Any] = {
        "id": new_id("in"),
        "object": "invoice",
        "account_country": "US",
        "account_name": ctx.world.settings.account_name,
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "application_fee_amount": application_fee_param(p),  # see appfees.py
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": bool(p.bool("auto_advance", False)),
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": collection,
        "confirmation_secret": None,
        "created": now,
        "currency": _currency(p, "currency", customer["currency"] or "usd"),
        "custom_fields": _custom_fields(p),
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer["address"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": None,
        "customer_tax_exempt": customer["tax_exempt"],
        "customer_tax_ids": [],
        "days_until_due": days,
        "default_payment_method": p.str("default_payment_method"),
        "default_source": None,
        "default_tax_rates": [],
        "description": p.str("description"),
        "discounts": [],
        "due_date": due,
        "effective_at": p.int("effective_at"),  # None: the finalization time
        "ending_balance": None,
        "footer": p.str("footer"),
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": apply_metadata({}, p.raw("metadata")),
        "next_payment_attempt": None,
        "number": p.str("number") or None,  # None: assigned from the customer's sequence at finalization
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": now,
        "period_start": now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": p.str("statement_descriptor"),
        "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "_lines": [],
        "_sent": [],
        "_payments": [],
        "_token": new_id("test", 40),
    }
    if p.has("default_tax_rates"):
        invoice["_default_tax_rates"] = taxes.rate_ids(ctx, p, "default_tax_rates")
        invoice["default_tax_rates"] = taxes.rendered_rates(ctx.account, invoice["_default_tax_rates"])
    invoice["automatically_finalizes_at"] = _finalizes_at(ctx, p, invoice["auto_advance"], None)
    ctx.account.add(invoice)
    if behavior == "include":
        # "The currency parameter dictates which invoice items get pulled into the invoice",
        # and "creating an invoice adds up to 250 pending invoice items with the remainder
        # to be added on the next invoice" (oldest first).
        pending = [i for i in ctx.account.objects["invoiceitem"].values()
                   if i["customer"] == customer["id"] and i["invoice"] is None and not i.get("_deleted")
                   and i["currency"] == invoice["currency"]]
        for item in pending[:MAX_INVOICE_LINES]:
            if INT64_MIN <= invoice["subtotal"] + item["amount"] <= INT64_MAX:  # else: left for a later invoice
                attach_item(ctx.account, invoice, item)
    refresh_totals(ctx.account, invoice)
    ctx.emit("invoice.created", invoice)
    return ctx.render(invoice)


def _finalizes_at(ctx: Ctx, p: Params, auto_advance: bool, current: int | None) -> int | None:
    """A draft's ``automatically_finalizes_at``: the time asked for ("up to 5 years in the
    future"; "you must have automatic invoice advancement enabled"), else ~1 hour from now
    when auto-advance is on (kept if set already), none when it is off."""
    if p.has("automatically_finalizes_at"):
        at = p.int("automatically_finalizes_at")
        now = ctx.now()
        if at is not None and not auto_advance:
            raise bad_param("automatically_finalizes_at can only be set when auto_advance is true.",
                            param="automatically_finalizes_at", code=None)
        if at is not None and not now < at <= now + FINALIZES_WITHIN_S:
            raise bad_param("automatically_finalizes_at must be in the future, and at most 5 years from now.",
                            param="automatically_finalizes_at", code=None)
        return at
    if not auto_advance:
        return None
    return current or ctx.now() + 3600  # Stripe finalizes drafts ~1 hour after creation


def _check_editable_after_draft(invoice: dict[str, Any], p: Params) -> None:
    """"Once an invoice is finalized, monetary values, as well as collection_method, become
    uneditable": the rest stays editable while the invoice can still be paid."""
    id, status = invoice["id"], invoice["status"]
    after_finalization = {"metadata", "expand", "description", "footer", "auto_advance", "custom_fields",
                          "default_payment_method", "statement_descriptor"}
    for key in p.data:
        if key not in after_finalization and not (key == "due_date" and status == "open"):
            raise not_editable(f"You can't update `{key}` on invoice {id}: it is {status}, and only "
                               "draft invoices are fully editable.", param=key)
    if status != "open" and "auto_advance" in p.data:
        raise invalid(f"Automatic advancement can only be changed on draft or open invoices; {id} is "
                      f"{status}.", param="auto_advance")
    if status in ("paid", "void") and any(
            k in p.data for k in ("description", "footer", "custom_fields", "default_payment_method",
                                  "statement_descriptor")):
        raise not_editable(f"Invoice {id} is {status} and can no longer be edited.")


def _payment_terms(p: Params, invoice: dict[str, Any]) -> tuple[str, int | None, int | None]:
    """(collection method, days until due, due date) asked for, checked as Stripe checks them."""
    collection = (p.choice("collection_method", COLLECTION_METHODS)
                  if p.has("collection_method") else invoice["collection_method"])
    days = p.int("days_until_due", minimum=0) if p.has("days_until_due") else None
    due = p.int("due_date") if p.has("due_date") else None
    if days is not None and due is not None:
        raise bad_param("You may only specify one of these parameters: days_until_due, due_date.", param="due_date",
                        code=None)
    if collection == "charge_automatically" and (days is not None or due is not None):
        param = "days_until_due" if days is not None else "due_date"
        raise bad_param(f"You can only set `{param}` when `collection_method` is `send_invoice`.", param=param,
                        code=None)
    return collection, days, due


def _apply_payment_terms(ctx: Ctx, invoice: dict[str, Any], previous: dict[str, Any], collection: str,
                         days: int | None, due: int | None) -> None:
    if collection != invoice["collection_method"]:
        previous["collection_method"], invoice["collection_method"] = invoice["collection_method"], collection
        if collection == "charge_automatically":
            invoice["days_until_due"] = invoice["due_date"] = None
    if days is not None:
        invoice["days_until_due"], invoice["due_date"] = days, None
    if due is not None:
        invoice["due_date"], invoice["days_until_due"] = due, None
    if collection == "send_invoice" and invoice["days_until_due"] is None and invoice["due_date"] is None:
        invoice["days_until_due"] = ctx.world.settings.default_days_until_due


def update_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("auto_advance", "collection_method", "custom_fields", "days_until_due", "default_payment_method",
           "default_tax_rates", "description", "due_date", "expand", "footer", "metadata", "statement_descriptor",
           "application_fee_amount", "number", "effective_at", "account_tax_ids", "payment_settings", "rendering",
           "automatically_finalizes_at")
    invoice = get_invoice(ctx, id)
    if invoice["status"] != "draft":
        _check_editable_after_draft(invoice, p)
    # Every value is read and checked before anything changes: a refused update leaves the
    # invoice as it was (no half-applied request, no event).
    collection, days, due = _payment_terms(p, invoice)
    metadata = apply_metadata(invoice["metadata"], p.raw("metadata"))
    texts = {key: p.str(key) or None for key in ("description", "footer", "statement_descriptor",
                                                 "default_payment_method", "number") if p.has(key)}
    effective_at = (None if p.raw("effective_at") == "" else p.int("effective_at")) if p.has("effective_at") \
        else invoice["effective_at"]
    custom_fields = _custom_fields(p) if p.has("custom_fields") else invoice["custom_fields"]
    auto_advance = p.bool("auto_advance")
    finalizes_at = (_finalizes_at(ctx, p, invoice["auto_advance"] if auto_advance is None else auto_advance,
                                  invoice["automatically_finalizes_at"])
                    if invoice["status"] == "draft" else None)
    fee = application_fee_param(p)  # a draft's only: it is monetary (see appfees.py)
    rate_ids = taxes.rate_ids(ctx, p, "default_tax_rates") if p.has("default_tax_rates") else None
    if rate_ids:
        _check_tax_mix(ctx.account, invoice, default_rates=rate_ids)
    previous: dict[str, Any] = {}
    for key, text in texts.items():
        previous[key], invoice[key] = invoice[key], text
    if p.has("custom_fields"):
        previous["custom_fields"], invoice["custom_fields"] = invoice["custom_fields"], custom_fields
    if p.has("effective_at"):  # a draft's only, as number (checked above)
        previous["effective_at"], invoice["effective_at"] = invoice["effective_at"], effective_at
    if auto_advance is not None:
        previous["auto_advance"], invoice["auto_advance"] = invoice["auto_advance"], auto_advance
    if invoice["status"] == "draft":
        previous["automatically_finalizes_at"] = invoice["automatically_finalizes_at"]
        invoice["automatically_finalizes_at"] = finalizes_at
    previous["days_until_due"], previous["due_date"] = invoice["days_until_due"], invoice["due_date"]
    _apply_payment_terms(ctx, invoice, previous, collection, days, due)
    if p.has("metadata"):
        previous["metadata"], invoice["metadata"] = dict(invoice["metadata"]), metadata
    if p.has("application_fee_amount"):
        previous["application_fee_amount"], invoice["application_fee_amount"] = invoice["application_fee_amount"], fee
    if rate_ids is not None:  # a monetary value: only on drafts (checked above)
        previous["default_tax_rates"] = invoice["default_tax_rates"]
        invoice["_default_tax_rates"] = rate_ids
        invoice["default_tax_rates"] = taxes.rendered_rates(ctx.account, rate_ids)
        refresh_totals(ctx.account, invoice)
    emit_updated(ctx, "invoice.updated", invoice, previous)
    return ctx.render(invoice)


def retrieve_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    return ctx.render(get_invoice(ctx, id))


def delete_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    invoice = get_invoice(ctx, id)
    if invoice["status"] != "draft":
        raise invalid(f"You can only delete draft invoices; {id} is {invoice['status']}. Void it instead.")
    invoice["_deleted"] = True
    for lid in invoice["_lines"]:
        item = ctx.account.objects["invoiceitem"][ctx.account.objects["line_item"][lid]["_item"]]
        item["_deleted"] = True
    ctx.emit("invoice.deleted", invoice)
    return {"id": id, "object": "invoice", "deleted": True}


def list_invoices(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("collection_method", "created", "customer", "due_date", "ending_before", "expand", "limit",
           "starting_after", "status", "subscription")
    customer, collection = p.str("customer"), p.choice("collection_method", COLLECTION_METHODS)
    status = p.choice("status", INVOICE_STATUSES)
    created, due = range_filter(p, "created"), range_filter(p, "due_date")
    items = [
        i for i in ctx.account.all("invoice")
        if not i.get("_deleted")
        and (customer is None or i["customer"] == customer)
        and (status is None or i["status"] == status)
        and (collection is None or i["collection_method"] == collection)
        and (created is None or created(i))
        and (due is None or due(i))
        and not p.has("subscription")
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/invoices", version=ctx.version)


def search_invoices(ctx: Ctx, p: Params) -> dict[str, Any]:
    items = [i for i in ctx.account.all("invoice") if not i.get("_deleted")]
    return search(ctx.world, ctx.account, p, items, fields=INVOICE_SEARCH_FIELDS, url="/v1/invoices/search",
                  version=ctx.version)


def list_lines(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("limit", "starting_after", "ending_before", "expand")
    invoice = get_invoice(ctx, id)
    lines = [ctx.account.objects["line_item"][lid] for lid in invoice["_lines"]]
    return paginate(ctx.world, ctx.account, p, lines, url=f"/v1/invoices/{id}/lines", version=ctx.version)


def add_lines(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("lines", "invoice_metadata", "expand")
    invoice = get_invoice(ctx, id)
    raw_lines = p.list("lines")
    if not raw_lines:
        raise missing("lines")
    specs: list[Params] = []
    for index, raw in enumerate(raw_lines):
        if not isinstance(raw, dict):
            raise bad_param("Invalid object", param=f"lines[{index}]", code=None)
        specs.append(Params(raw, prefix=f"lines[{index}]").only(*LINE_PARAMS))
    if invoice["status"] != "draft":
        raise not_editable(f"You can only add lines to draft invoices; {id} is {invoice['status']}.")
    if len(invoice["_lines"]) + len(specs) > MAX_INVOICE_LINES:
        raise invalid(f"An invoice can have at most {MAX_INVOICE_LINES} line items; {id} has "
                      f"{len(invoice['_lines'])} and this request adds {len(specs)}.", param="lines")
    metadata = apply_metadata(invoice["metadata"], p.raw("invoice_metadata"), param="invoice_metadata")
    # Validate every line before changing anything: the request is all-or-nothing.
    snapshot = {kind: dict(objs) for kind, objs in ctx.account.objects.items()}
    previous = {key: invoice[key] for key in ("amount_due", "amount_remaining", "subtotal", "subtotal_excluding_tax",
                                               "total", "total_excluding_tax")}
    lines_before = list(invoice["_lines"])
    adopted: list[dict[str, Any]] = []
    try:
        for spec in specs:
            if spec.has("invoice_item"):
                item = _get_item(ctx, spec.req_str("invoice_item"))
                if item["invoice"] is not None or item["customer"] != invoice["customer"]:
                    raise invalid(f"The invoice item {item['id']} is not a pending item of this invoice's customer.",
                                  param=spec.name("invoice_item"))
                adopted.append(item)
                attach_item(ctx.account, invoice, item)
            else:
                new_invoice_item(ctx, spec, customer_id=invoice["customer"], currency=invoice["currency"],
                                 invoice=invoice, allow_product_data=True)
    except ApiError:
        ctx.account.objects.update(snapshot)
        for item in adopted:
            item["invoice"] = None
        invoice["_lines"] = lines_before
        refresh_totals(ctx.account, invoice)
        raise
    if metadata != invoice["metadata"]:
        previous["metadata"] = dict(invoice["metadata"])
    invoice["metadata"] = metadata
    emit_updated(ctx, "invoice.updated", invoice, previous)
    return ctx.render(invoice)


def render_invoice(world: World, account: Account, invoice: dict[str, Any], version: str) -> dict[str, Any]:
    out = strip_private(invoice)
    if invoice["status"] == "draft":
        # "If the invoice has not been finalized yet, this will be the current customer balance."
        out["starting_balance"] = account.objects["customer"][invoice["customer"]]["balance"]
    lines = [account.objects["line_item"][lid] for lid in invoice["_lines"]]
    out["lines"] = {
        "object": "list",
        "data": [render_line(world, account, line, version) for line in lines[:10]],
        "has_more": len(lines) > 10,
        "total_count": len(lines),
        "url": f"/v1/invoices/{invoice['id']}/lines",
    }
    if version[:10] < taxes.TAXES_RESHAPED:
        legacy = taxes.legacy(out.pop("total_taxes"))
        out["total_tax_amounts"] = legacy
        out["tax"] = sum(t["amount"] for t in legacy) if legacy else None
    return out


def include_paid_off_stripe(world: World, account: Account, invoice: dict[str, Any], version: str) -> int:
    """``expand[]=amount_paid_off_stripe`` (an includable field since 2026-05-27.dahlia):
    what was paid outside Stripe, e.g. with ``pay`` and ``paid_out_of_band``."""
    if version[:10] < PAID_OFF_STRIPE_ADDED:
        raise invalid("This property cannot be expanded (amount_paid_off_stripe).", param="expand")
    return int(invoice.get("_paid_off_stripe", 0))


def include_payments(world: World, account: Account, invoice: dict[str, Any], version: str) -> dict[str, Any]:
    """``expand[]=payments`` on an invoice: its InvoicePayments (an includable field)."""
    payments = [account.objects["invoice_payment"][pid] for pid in invoice.get("_payments", [])]
    return {"object": "list", "data": [world.render(account, x, version) for x in payments], "has_more": False,
            "total_count": len(payments), "url": "/v1/invoice_payments"}


def emit_updated(ctx: Ctx, event_type: str, obj: dict[str, Any], previous: dict[str, Any]) -> None:
    """The ``*.updated`` event of a request that may have changed ``obj``: its
    ``previous_attributes`` are "the names of the updated attributes and their values prior
    to the event", so an attribute the request set to the value it had is left out, and a
    request that changed nothing sends no event ("occurs whenever any property … changes")."""
    previous = {key: old for key, old in previous.items() if old != obj.get(key)}
    if previous:
        ctx.emit(event_type, obj, previous)


def snapshot(ctx: Ctx, invoice: dict[str, Any]) -> dict[str, Any]:
    """The invoice as its events draw it, before a transition (see ``transitioned``)."""
    return ctx.world.render(ctx.account, invoice)


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's ``previous_attributes``: the earlier value of each attribute that changed;
    inside a hash only the keys that changed, an array whole."""
    previous: dict[str, Any] = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = changed(old, new)
        else:
            previous[key] = old
    return previous


def transitioned(ctx: Ctx, invoice: dict[str, Any], event_type: str, before: dict[str, Any]) -> None:
    """A status change: the ``invoice.updated`` that says what changed, then the change's
    own event (``invoice.finalized``, ``invoice.paid`` …), which carries no
    ``previous_attributes`` (only ``*.updated`` events do)."""
    previous = changed(before, snapshot(ctx, invoice))
    if previous:
        ctx.emit("invoice.updated", invoice, previous)
    ctx.emit(event_type, invoice)


def finalize(ctx: Ctx, invoice: dict[str, Any], *, email: bool = True, before: dict[str, Any] | None = None) -> None:
    """draft → open: number, due date, hosted URL; a zero total is paid at once. An
    auto-advancing ``send_invoice`` invoice is emailed unless ``email`` is False (the
    caller sends it itself). ``before``: the invoice as the request found it, if the
    caller changed it already (see ``transitioned``)."""
    before = before or snapshot(ctx, invoice)
    customer = ctx.account.objects["customer"][invoice["customer"]]
    now = ctx.now()
    refresh_totals(ctx.account, invoice)
    if invoice["number"] is None:  # a number set on the draft is kept and takes none from the sequence
        invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
        customer["next_invoice_sequence"] += 1
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = now
    invoice["effective_at"] = invoice["effective_at"] or now
    invoice["automatically_finalizes_at"] = None
    _apply_customer_balance(ctx, invoice, customer)
    if invoice["collection_method"] == "send_invoice" and invoice["due_date"] is None:
        invoice["due_date"] = now + int(invoice["days_until_due"] or 0) * DAY
    # Customer details freeze on the finalized invoice, as on Stripe.
    invoice.update(customer_email=customer["email"], customer_name=customer["name"],
                   customer_address=customer["address"], customer_phone=customer["phone"])
    base = f"{ctx.world.base_url}/i/{ctx.account.id}/{invoice['_token']}"
    invoice["hosted_invoice_url"] = base
    invoice["invoice_pdf"] = base + "/pdf"
    transitioned(ctx, invoice, "invoice.finalized", before)
    if invoice["amount_due"] == 0:
        mark_paid(ctx, invoice)
    elif email and invoice["auto_advance"] and invoice["collection_method"] == "send_invoice":
        record_send(ctx, invoice)  # auto-advancing send_invoice invoices are emailed on finalization


def _apply_customer_balance(ctx: Ctx, invoice: dict[str, Any], customer: dict[str, Any]) -> None:
    """At finalization "Stripe applies any customer credit on the account before determining
    the amount due": ``starting_balance`` is the customer's balance (negative: a credit,
    positive: owed), ``amount_due`` the total plus it, never below 0; what is left of a
    credit (a negative total, or a credit larger than the total) is ``ending_balance`` and
    the customer's new balance. An amount due below the currency's minimum charge is not
    due: it is carried to the customer's balance as a debit, and the invoice is paid."""
    starting = int(customer["balance"])
    due = invoice["total"] + starting
    # "If the amount due for the invoice is less than Stripe's minimum allowed charge per
    # currency, the invoice is automatically marked paid, and we add the amount due to the
    # customer's credit balance which is applied to the next invoice" (API reference, Invoices).
    carried = 0 < due < MINIMUM_CHARGE.get(invoice["currency"], 50)
    ending = due if carried else min(due, 0)
    invoice["starting_balance"], invoice["ending_balance"] = starting, ending
    invoice["amount_due"] = 0 if carried else max(due, 0)
    invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]
    if customer["balance"] != ending:
        customer["balance"] = ending
        emit_updated(ctx, "customer.updated", customer, {"balance": starting})


def record_send(ctx: Ctx, invoice: dict[str, Any]) -> None:
    invoice["_sent"].append({"at": ctx.now(), "to": invoice["customer_email"]})
    ctx.emit("invoice.sent", invoice)


def mark_paid(ctx: Ctx, invoice: dict[str, Any], *, out_of_band: bool = False,
              before: dict[str, Any] | None = None) -> None:
    before = before or snapshot(ctx, invoice)
    if out_of_band:
        invoice["_paid_off_stripe"] = invoice.get("_paid_off_stripe", 0) + invoice["amount_remaining"]
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["status"] = "paid"
    invoice["status_transitions"]["paid_at"] = ctx.now()
    invoice["auto_advance"] = False
    invoice["attempted"] = invoice["attempted"] or not out_of_band
    transitioned(ctx, invoice, "invoice.paid", before)


def finalize_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("auto_advance", "expand")
    invoice = get_invoice(ctx, id)
    if invoice["status"] != "draft":
        raise invalid(f"This invoice is already finalized, you can't re-finalize a non-draft invoice ({id} is "
                      f"{invoice['status']}).", code="invoice_not_editable")
    before = snapshot(ctx, invoice)
    if p.has("auto_advance"):
        invoice["auto_advance"] = bool(p.bool("auto_advance"))
    finalize(ctx, invoice, before=before)
    return ctx.render(invoice)


def send_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    """Email the invoice; a draft is finalized first ("Stripe automatically finalizes drafts
    before sending and attempting payment on invoices"). Paid invoices can be re-sent."""
    p.only("expand")
    invoice = get_invoice(ctx, id)
    if invoice["collection_method"] != "send_invoice":
        raise invalid("You can only manually send an invoice if its collection method is 'send_invoice'.")
    if invoice["status"] == "void":
        raise invalid(f"You can't send invoice {id}: it has been voided.")
    if invoice["status"] == "draft":
        finalize(ctx, invoice, email=False)
    record_send(ctx, invoice)
    return ctx.render(invoice)


def void_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    invoice = get_invoice(ctx, id)
    if invoice["status"] not in ("open", "uncollectible"):
        hint = " Delete a draft instead." if invoice["status"] == "draft" else ""
        raise invalid(f"You can only void open or uncollectible invoices; {id} is {invoice['status']}.{hint}")
    before = snapshot(ctx, invoice)
    applied = invoice["starting_balance"] - invoice["ending_balance"]
    if applied:  # the balance the invoice took at finalization goes back to the customer
        customer = ctx.account.objects["customer"][invoice["customer"]]
        balance = customer["balance"]
        customer["balance"] += applied
        emit_updated(ctx, "customer.updated", customer, {"balance": balance})
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = ctx.now()
    invoice["auto_advance"] = False
    transitioned(ctx, invoice, "invoice.voided", before)
    return ctx.render(invoice)


def mark_uncollectible(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    invoice = get_invoice(ctx, id)
    if invoice["status"] != "open":
        raise invalid(f"You can only mark open invoices as uncollectible; {id} is {invoice['status']}.")
    before = snapshot(ctx, invoice)
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = ctx.now()
    invoice["auto_advance"] = False  # never on for paid, void or uncollectible invoices
    transitioned(ctx, invoice, "invoice.marked_uncollectible", before)
    return ctx.render(invoice)


def auto_finalize_drafts(world: World) -> None:
    """Clock listener: drafts with auto_advance finalize ~1 hour after creation."""
    for account in list(world.accounts.values()):
        for invoice in list(account.objects["invoice"].values()):
            due = invoice.get("automatically_finalizes_at")
            if invoice["status"] == "draft" and not invoice.get("_deleted") and invoice["auto_advance"] and due \
                    and due <= world.now():
                finalize(Ctx(world, account, None, None, world.settings.api_version), invoice)


def install(world: World, router: Router) -> None:
    world.renderers["invoice"] = render_invoice
    world.renderers["line_item"] = render_line
    taxes.install(router)
    world.includables[("invoice", "payments")] = include_payments
    world.includables[("invoice", "amount_paid_off_stripe")] = include_paid_off_stripe
    world.tick_listeners.append(auto_finalize_drafts)
    r = router.add
    r("POST", "/v1/customers")(create_customer)
    r("GET", "/v1/customers")(list_customers)
    r("GET", "/v1/customers/search")(search_customers)
    r("GET", "/v1/customers/{id}")(retrieve_customer)
    r("POST", "/v1/customers/{id}")(update_customer)
    r("DELETE", "/v1/customers/{id}")(delete_customer)
    r("GET", "/v1/products/{id}")(retrieve_product)
    r("GET", "/v1/prices/{id}")(retrieve_price)
    r("POST", "/v1/invoiceitems")(create_invoice_item)
    r("GET", "/v1/invoiceitems")(list_invoice_items)
    r("GET", "/v1/invoiceitems/{id}")(retrieve_invoice_item)
    r("POST", "/v1/invoiceitems/{id}")(update_invoice_item)
    r("DELETE", "/v1/invoiceitems/{id}")(delete_invoice_item)
    r("POST", "/v1/invoices")(create_invoice)
    r("GET", "/v1/invoices")(list_invoices)
    r("GET", "/v1/invoices/search")(search_invoices)
    r("GET", "/v1/invoices/{id}")(retrieve_invoice)
    r("POST", "/v1/invoices/{id}")(update_invoice)
    r("DELETE", "/v1/invoices/{id}")(delete_invoice)
    r("GET", "/v1/invoices/{id}/lines")(list_lines)
    r("POST", "/v1/invoices/{id}/add_lines")(add_lines)
    r("POST", "/v1/invoices/{id}/finalize")(finalize_invoice)
    r("POST", "/v1/invoices/{id}/send")(send_invoice)
    r("POST", "/v1/invoices/{id}/void")(void_invoice)
    r("POST", "/v1/invoices/{id}/mark_uncollectible")(mark_uncollectible)
