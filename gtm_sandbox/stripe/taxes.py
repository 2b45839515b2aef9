"""Tax rates, as Stripe documents them (``/v1/tax_rates``), and the tax they put on invoices.

A tax rate has a ``percentage``, a ``display_name``, ``inclusive`` (the price already holds
the tax) and optional ``jurisdiction``/``country``/``state``/``tax_type``. An invoice's
``default_tax_rates`` apply to every line that has no ``tax_rates`` of its own.

Per line, each rate's tax is computed on the line amount and rounded half-up to the cent:
exclusive tax is added on top (``amount`` x percentage), inclusive tax is the part of the
amount that is tax (``amount - amount / (1 + Σ inclusive percentages)``). The invoice then
has ``total_taxes`` (one entry per rate), ``subtotal_excluding_tax`` and
``total_excluding_tax`` = subtotal − inclusive tax, ``total`` = subtotal + exclusive tax.

Shapes follow the API version: from 2025-03-31 (basil) lines carry ``taxes`` and invoices
``total_taxes``; older versions see ``tax_amounts``, ``total_tax_amounts`` and ``tax``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gtm_sandbox.stripe.api import Ctx, Router
from gtm_sandbox.stripe.listing import paginate
from gtm_sandbox.stripe.wire import Params, apply_metadata, bad_param, invalid, missing, new_id, no_such
from gtm_sandbox.stripe.world import Account

# Before this version invoices had `tax` / `total_tax_amounts` and lines `tax_amounts`.
TAXES_RESHAPED = "2025-03-31"
TAX_TYPES = ("amusement_tax", "communications_tax", "gst", "hst", "igst", "jct", "lease_tax", "pst", "qst",
             "retail_delivery_fee", "rst", "sales_tax", "service_tax", "vat")
MAX_RATES_PER_LINE = 10  # "You can add up to ten tax rates to each line item" (Tax rates and IDs)
MAX_TAX_AMOUNTS = 10  # lines[].tax_amounts: "A list of up to 10 tax amounts for this line item"
TAXABILITY_REASONS = ("customer_exempt", "not_collecting", "not_subject_to_tax", "not_supported",
                      "portion_product_exempt", "portion_reduced_rated", "portion_standard_rated", "product_exempt",
                      "product_exempt_holiday", "proportionally_rated", "reduced_rated", "reverse_charge",
                      "standard_rated", "taxable_basis_reduced", "zero_rated")
RATE_DATA_KEYS = ("country", "description", "display_name", "inclusive", "jurisdiction", "jurisdiction_level",
                  "percentage", "state", "tax_type")


def _cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _percent_str(value: Decimal) -> str:
    return format(value.normalize(), "f")


# ---------------------------------------------------------------------------------------
# The endpoints
# ---------------------------------------------------------------------------------------


def create_tax_rate(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("display_name", "inclusive", "percentage", "active", "country", "description", "jurisdiction", "metadata",
           "state", "tax_type", "expand")
    display_name = p.req_str("display_name")
    inclusive = p.bool("inclusive")
    if inclusive is None:
        raise missing("inclusive")
    percentage = p.decimal("percentage")
    if percentage is None:
        raise missing("percentage")
    if percentage < 0 or percentage > 100:
        raise bad_param("The percentage must be between 0 and 100.", param="percentage", code=None)
    tax_type = p.choice("tax_type", TAX_TYPES) if p.has("tax_type") else None
    rate = {
        "id": new_id("txr"),
        "object": "tax_rate",
        "active": bool(p.bool("active", True)),
        "country": p.str("country"),
        "created": ctx.now(),
        "description": p.str("description"),
        "display_name": display_name,
        "effective_percentage": float(percentage),
        "flat_amount": None,
        "inclusive": inclusive,
        "jurisdiction": p.str("jurisdiction"),
        "jurisdiction_level": None,
        "livemode": False,
        "metadata": apply_metadata({}, p.raw("metadata")),
        "percentage": float(percentage),
        "rate_type": "percentage",
        "state": p.str("state"),
        "tax_type": tax_type,
        "_percentage": _percent_str(percentage),  # exact: the float above is only for display
    }
    ctx.account.add(rate)
    ctx.emit("tax_rate.created", rate)
    return ctx.render(rate)


def update_tax_rate(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    # "percentage" and "inclusive" cannot change once a rate exists (Stripe: create a new one).
    p.only("active", "country", "description", "display_name", "jurisdiction", "metadata", "state", "tax_type",
           "expand")
    rate = get_tax_rate(ctx.account, id)
    previous: dict[str, Any] = {}
    for key in ("country", "description", "display_name", "jurisdiction", "state"):
        if p.has(key):
            previous[key], rate[key] = rate[key], p.str(key) or None
    if p.has("tax_type"):
        previous["tax_type"], rate["tax_type"] = rate["tax_type"], p.choice("tax_type", TAX_TYPES)
    if p.has("active"):
        previous["active"], rate["active"] = rate["active"], bool(p.bool("active"))
    if p.has("metadata"):
        before = dict(rate["metadata"])
        previous["metadata"], rate["metadata"] = before, apply_metadata(rate["metadata"], p.raw("metadata"))
    ctx.emit("tax_rate.updated", rate, previous)
    return ctx.render(rate)


def retrieve_tax_rate(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    return ctx.render(get_tax_rate(ctx.account, id))


def list_tax_rates(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("active", "created", "inclusive", "limit", "starting_after", "ending_before", "expand")
    active, inclusive = p.bool("active"), p.bool("inclusive")
    items = [r for r in ctx.account.all("tax_rate")
             if (active is None or r["active"] == active) and (inclusive is None or r["inclusive"] == inclusive)]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/tax_rates", version=ctx.version)


def get_tax_rate(account: Account, rate_id: str, *, param: str = "id") -> dict[str, Any]:
    found = account.get(rate_id)
    if found is None or found["object"] != "tax_rate":
        raise no_such("tax_rate", rate_id, param=param)
    return found


def rate_ids(ctx: Ctx, p: Params, key: str) -> list[str]:
    """The ids of ``p[key]`` (a list of tax rate ids; ``""`` clears), each an active rate."""
    ids = [str(x) for x in (p.list(key) or []) if x != ""]
    if len(ids) > MAX_RATES_PER_LINE:
        raise invalid(f"You may apply at most {MAX_RATES_PER_LINE} tax rates.", param=p.name(key))
    for n, rate_id in enumerate(ids):
        rate = get_tax_rate(ctx.account, rate_id, param=f"{p.name(key)}[{n}]")
        if not rate["active"]:
            raise invalid(f"Tax rate {rate_id} is inactive and cannot be applied.", param=f"{p.name(key)}[{n}]")
    return ids


def manual_taxes(ctx: Ctx, p: Params, key: str = "tax_amounts") -> list[dict[str, Any]]:
    """A line's ``tax_amounts`` (tax calculated outside Stripe) as its ``taxes`` entries:
    "Stripe automatically creates or reuses an existing tax rate based on tax_rate_data",
    and "calculates tax amounts on the invoice based only on the amount parameter"
    (Manual tax amounts). ``tax_amounts=""`` removes them."""
    entries = [x for x in (p.list(key) or []) if x != ""]
    if len(entries) > MAX_TAX_AMOUNTS:
        raise invalid(f"You may set at most {MAX_TAX_AMOUNTS} tax amounts on a line item.", param=p.name(key))
    taxes: list[dict[str, Any]] = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad_param("Invalid hash", param=f"{p.name(key)}[{n}]", code=None)
        e = Params(entry, prefix=f"{p.name(key)}[{n}]").only("amount", "tax_rate_data", "taxability_reason",
                                                              "taxable_amount")
        amount, taxable = e.req_int("amount"), e.req_int("taxable_amount")
        reason = e.choice("taxability_reason", TAXABILITY_REASONS)
        data = e.sub("tax_rate_data")
        if data is None:
            raise missing(e.name("tax_rate_data"))
        rate = _rate_for(ctx, data)
        taxes.append({"amount": amount, "tax_behavior": "inclusive" if rate["inclusive"] else "exclusive",
                      "tax_rate_details": {"tax_rate": rate["id"]}, "taxability_reason": reason,
                      "taxable_amount": taxable, "type": "tax_rate_details"})
    return taxes


def _rate_for(ctx: Ctx, data: Params) -> dict[str, Any]:
    """The TaxRate ``tax_rate_data`` describes: an existing one with the same fields, else a new one."""
    data.only(*RATE_DATA_KEYS)
    display_name = data.req_str("display_name")
    inclusive, percentage = data.bool("inclusive"), data.decimal("percentage")
    if inclusive is None:
        raise missing(data.name("inclusive"))
    if percentage is None:
        raise missing(data.name("percentage"))
    if percentage < 0 or percentage > 100:
        raise bad_param("The percentage must be between 0 and 100.", param=data.name("percentage"), code=None)
    tax_type = data.choice("tax_type", TAX_TYPES)
    wanted = {"display_name": display_name, "inclusive": inclusive, "_percentage": _percent_str(percentage),
              "country": data.str("country"), "state": data.str("state"), "jurisdiction": data.str("jurisdiction"),
              "description": data.str("description"), "tax_type": tax_type}
    for rate in ctx.account.all("tax_rate"):
        if rate["active"] and all(rate.get(k) == v for k, v in wanted.items()):
            return rate
    fields = {k: v for k, v in data.data.items() if k != "jurisdiction_level"}
    made = create_tax_rate(ctx, Params(fields, prefix=data.prefix))
    rate = get_tax_rate(ctx.account, made["id"])
    rate["jurisdiction_level"] = data.str("jurisdiction_level")
    return rate


def rendered_rates(account: Account, ids: Sequence[str]) -> list[dict[str, Any]]:
    """TaxRate objects as a field of an invoice or item shows them."""
    return [{k: v for k, v in get_tax_rate(account, i).items() if not k.startswith("_")} for i in ids]


# ---------------------------------------------------------------------------------------
# The arithmetic (integer cents in, integer cents out)
# ---------------------------------------------------------------------------------------


def line_taxes(account: Account, amount: int, ids: Sequence[str]) -> list[dict[str, Any]]:
    """One ``taxes`` entry per rate of a line of ``amount`` cents (basil shape)."""
    rates = [get_tax_rate(account, i) for i in ids]
    inclusive = [r for r in rates if r["inclusive"]]
    inclusive_pct = sum((Decimal(r["_percentage"]) for r in inclusive), Decimal(0))
    base = Decimal(amount) / (1 + inclusive_pct / 100)  # the amount without its inclusive taxes
    amounts = {r["id"]: _cents(base * Decimal(r["_percentage"]) / 100) for r in inclusive}
    taxable = amount - sum(amounts.values())
    for r in rates:
        if not r["inclusive"]:
            amounts[r["id"]] = _cents(Decimal(taxable) * Decimal(r["_percentage"]) / 100)
    return [{"amount": amounts[r["id"]], "tax_behavior": "inclusive" if r["inclusive"] else "exclusive",
             "tax_rate_details": {"tax_rate": r["id"]}, "taxability_reason": "standard_rated",
             "taxable_amount": taxable, "type": "tax_rate_details"} for r in rates]


def invoice_taxes(lines: Sequence[Sequence[dict[str, Any]]]) -> tuple[list[dict[str, Any]], int, int]:
    """(``total_taxes`` summed per rate, exclusive tax, inclusive tax) over the lines' taxes."""
    by_rate: dict[str, dict[str, Any]] = {}
    exclusive = inclusive = 0
    for taxes in lines:
        for t in taxes:
            rate = t["tax_rate_details"]["tax_rate"]
            entry = by_rate.setdefault(rate, {**t, "amount": 0, "taxable_amount": 0})
            entry["amount"] += t["amount"]
            entry["taxable_amount"] += t["taxable_amount"]
            if t["tax_behavior"] == "inclusive":
                inclusive += t["amount"]
            else:
                exclusive += t["amount"]
    return list(by_rate.values()), exclusive, inclusive


def legacy(taxes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pre-basil ``tax_amounts`` / ``total_tax_amounts`` from basil ``taxes``."""
    return [{"amount": t["amount"], "inclusive": t["tax_behavior"] == "inclusive",
             "tax_rate": t["tax_rate_details"]["tax_rate"], "taxability_reason": t["taxability_reason"],
             "taxable_amount": t["taxable_amount"]} for t in taxes]


def install(router: Router) -> None:
    r = router.add
    r("POST", "/v1/tax_rates")(create_tax_rate)
    r("GET", "/v1/tax_rates")(list_tax_rates)
    r("GET", "/v1/tax_rates/{id}")(retrieve_tax_rate)
    r("POST", "/v1/tax_rates/{id}")(update_tax_rate)
