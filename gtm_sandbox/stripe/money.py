"""Money movements: invoice payments (PaymentIntent + Charge + InvoicePayment), balance
transactions with Stripe's fee, refunds, adjustments, the balance, and payouts that sweep
the available balance.

Links as Stripe's current API draws them: a charge's balance transaction has
``source = ch_…``; the charge names its ``payment_intent``; the InvoicePayment joins that
PaymentIntent to the invoice (``GET /v1/invoice_payments?payment[type]=payment_intent&
payment[payment_intent]=pi_…``). Clients pinned to an API version before 2025-03-31 also
see the older ``charge.invoice`` field. Listing ``balance_transactions?payout=po_…``
returns what the automatic payout swept plus the payout's own transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gtm_sandbox.stripe.api import Ctx, Router
from gtm_sandbox.stripe.appfees import application_fee_share
from gtm_sandbox.stripe.billing import finalize, get_invoice, mark_paid, snapshot
from gtm_sandbox.stripe.listing import paginate, range_filter
from gtm_sandbox.stripe.wire import ApiError, Params, apply_metadata, invalid, missing, new_id, no_such
from gtm_sandbox.stripe.world import CHARGE_INVOICE_REMOVED, DAY, Account, World, strip_private

FEE_DESCRIPTIONS = {"stripe_fee": "Stripe processing fees", "application_fee": "Application fee"}
# Vocabularies a filter or parameter must come from (enums in Stripe's API: 400 otherwise).
INVOICE_PAYMENT_STATUSES = ("canceled", "open", "paid")
PAYOUT_METHODS = ("instant", "standard")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# "The amount value supports up to eight digits (for example, a value of 99999999 for a USD
# charge of $999,999.99)" (Supported currencies: Minimum and maximum charge amounts).
MAX_CHARGE = 99_999_999
DECLINING_METHODS = frozenset({"pm_card_chargeDeclined", "pm_card_visa_chargeDeclined", "pm_card_declined"})


def fee_for(world: World, amount: int) -> int:
    """Stripe's standard card pricing (2.9% + 30¢ by default), rounded half-up to the cent."""
    percent = (Decimal(amount) * world.settings.fee_percent / Decimal(100)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(percent) + world.settings.fee_fixed_cents


def _txn(ctx: Ctx, *, type: str, amount: int, fee: int, source: str | None, description: str | None,
         available_on: int, fee_type: str = "stripe_fee") -> dict[str, Any]:
    fee_details = ([{"amount": fee, "application": None, "currency": "usd", "description": FEE_DESCRIPTIONS[fee_type],
                     "type": fee_type}] if fee else [])
    return ctx.account.add({
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": available_on,
        "balance_type": "payments",
        "created": ctx.now(),
        "currency": "usd",
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": fee_details,
        "net": amount - fee,
        "reporting_category": type,
        "source": source,
        "status": "pending",
        "type": type,
        "_payout": None,
    })


def render_txn(world: World, account: Account, txn: dict[str, Any], version: str) -> dict[str, Any]:
    out = strip_private(txn)
    out["status"] = "available" if txn["available_on"] <= world.now() else "pending"
    return out


def render_charge(world: World, account: Account, charge: dict[str, Any], version: str) -> dict[str, Any]:
    out = strip_private(charge)
    if version[:10] < CHARGE_INVOICE_REMOVED:
        out["invoice"] = charge.get("_invoice")  # removed from Charge in 2025-03-31.basil
    return out


# ---------------------------------------------------------------------------------------
# Paying invoices
# ---------------------------------------------------------------------------------------


def _payment_intent(ctx: Ctx, invoice: dict[str, Any], amount: int, method: str, status: str) -> dict[str, Any]:
    return ctx.account.add({
        "id": new_id("pi"), "object": "payment_intent", "amount": amount,
        "amount_received": amount if status == "succeeded" else 0, "capture_method": "automatic",
        "created": ctx.now(), "currency": invoice["currency"], "customer": invoice["customer"],
        "description": "Payment for Invoice", "latest_charge": None, "livemode": False, "metadata": {},
        "payment_method": method, "payment_method_types": ["card"], "status": status,
    })


def _charge(
    ctx: Ctx, invoice: dict[str, Any], pi: dict[str, Any], amount: int, method: str, *, ok: bool
) -> dict[str, Any]:
    charge = ctx.account.add({
        "id": new_id("ch"), "object": "charge", "amount": amount, "amount_captured": amount if ok else 0,
        "amount_refunded": 0, "balance_transaction": None, "billing_details": {"email": invoice["customer_email"],
                                                                             "name": invoice["customer_name"]},
        "captured": ok, "created": ctx.now(), "currency": invoice["currency"], "customer": invoice["customer"],
        "description": "Payment for Invoice", "disputed": False,
        "failure_code": None if ok else "card_declined",
        "failure_message": None if ok else "Your card was declined.", "livemode": False, "metadata": {},
        "outcome": {"network_status": "approved_by_network" if ok else "declined_by_network",
                    "reason": None if ok else "generic_decline", "risk_level": "normal",
                    "seller_message": "Payment complete." if ok else "The bank did not return any further details.",
                    "type": "authorized" if ok else "issuer_declined"},
        "paid": ok, "payment_intent": pi["id"], "payment_method": method,
        "payment_method_details": {"card": {"brand": "visa", "last4": "4242" if ok else "0002"}, "type": "card"},
        "receipt_email": invoice["customer_email"], "refunded": False, "status": "succeeded" if ok else "failed",
        "_invoice": invoice["id"],
    })
    pi["latest_charge"] = charge["id"]
    return charge


def chargeable(amount: int) -> None:
    """A charge of more than Stripe's eight digits is ``amount_too_large``: none is made."""
    if amount > MAX_CHARGE:
        raise invalid(f"Amount must be no more than {MAX_CHARGE} (in the currency's smallest unit).",
                      code="amount_too_large", param="amount")


def collect(ctx: Ctx, invoice: dict[str, Any], amount: int, method: str, fee: int | None = None) -> dict[str, Any]:
    """A successful card payment of ``amount`` cents towards an open invoice. ``fee``: the
    fee of this payment in cents; default the payment's part of the invoice's
    ``application_fee_amount`` if it has one (see appfees.py), else the account's pricing."""
    chargeable(amount)
    if amount <= 0 or amount > invoice["amount_remaining"]:
        raise invalid(f"The payment amount must be between 1 and the invoice's amount_remaining "
                      f"({invoice['amount_remaining']}).", param="amount")
    before = snapshot(ctx, invoice)
    pi = _payment_intent(ctx, invoice, amount, method, "succeeded")
    charge = _charge(ctx, invoice, pi, amount, method, ok=True)
    settings = ctx.world.settings
    fee_type = "stripe_fee"
    if fee is None and (share := application_fee_share(invoice, amount)) is not None:
        fee, fee_type = share, "application_fee"
    txn = _txn(ctx, type="charge", amount=amount, fee=fee_for(ctx.world, amount) if fee is None else fee,
               source=charge["id"], fee_type=fee_type,
               description="Payment for Invoice", available_on=ctx.now() + settings.available_after_days * DAY)
    charge["balance_transaction"] = txn["id"]
    payment = ctx.account.add({
        "id": new_id("inpay"), "object": "invoice_payment", "amount_paid": amount, "amount_requested": amount,
        "created": ctx.now(), "currency": invoice["currency"], "invoice": invoice["id"],
        "is_default": not invoice["_payments"], "livemode": False,
        "payment": {"payment_intent": pi["id"], "type": "payment_intent"}, "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": ctx.now()},
    })
    invoice["_payments"].append(payment["id"])
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    ctx.emit("payment_intent.succeeded", pi)
    ctx.emit("charge.succeeded", charge)
    ctx.emit("invoice_payment.paid", payment)
    if amount == invoice["amount_remaining"]:
        ctx.emit("invoice.payment_succeeded", _settle(invoice, amount))
        mark_paid(ctx, invoice, before=before)
    else:
        previous = {"amount_paid": invoice["amount_paid"], "amount_remaining": invoice["amount_remaining"]}
        _settle(invoice, amount)
        ctx.emit("invoice.updated", invoice, previous)
    return charge


def _settle(invoice: dict[str, Any], amount: int) -> dict[str, Any]:
    invoice["amount_paid"] += amount
    invoice["amount_remaining"] -= amount
    return invoice


def decline(ctx: Ctx, invoice: dict[str, Any], amount: int, method: str) -> dict[str, Any]:
    """A declined card payment: a failed charge, ``invoice.payment_failed``; the invoice stays open."""
    pi = _payment_intent(ctx, invoice, amount, method, "requires_payment_method")
    charge = _charge(ctx, invoice, pi, amount, method, ok=False)
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    invoice["last_finalization_error"] = None
    ctx.emit("charge.failed", charge)
    ctx.emit("invoice.payment_failed", invoice)
    return charge


def payable(invoice: dict[str, Any]) -> None:
    status = invoice["status"]
    if status == "paid":
        raise invalid(f"Invoice {invoice['id']} is already paid.")
    if status == "void":
        raise invalid(f"Invoice {invoice['id']} has been voided and can't be paid.")
    if status == "draft":
        raise invalid(f"You can only pay finalized invoices; {invoice['id']} is a draft. Finalize it first.")


def pay_invoice(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand", "forgive", "mandate", "off_session", "paid_out_of_band", "payment_method", "source")
    invoice = get_invoice(ctx, id)
    draft = invoice["status"] == "draft"
    if not draft:
        payable(invoice)
    out_of_band = bool(p.bool("paid_out_of_band", False))
    customer = ctx.account.objects["customer"][invoice["customer"]]
    method = (p.str("payment_method") or p.str("source") or invoice["default_payment_method"]
              or customer["invoice_settings"]["default_payment_method"])
    if not out_of_band and not method and invoice["amount_due"] > 0:  # checked before a draft is finalized
        raise invalid("This customer has no attached payment source or default payment method. Please consider "
                      "adding a default payment method.")
    if draft:
        # "Stripe automatically finalizes drafts before sending and attempting payment."
        finalize(ctx, invoice)
        if invoice["status"] == "paid":  # nothing was due
            return ctx.render(invoice)
    if out_of_band:
        mark_paid(ctx, invoice, out_of_band=True)
        return ctx.render(invoice)
    assert method is not None
    chargeable(invoice["amount_remaining"])
    if method in DECLINING_METHODS:
        charge = decline(ctx, invoice, invoice["amount_remaining"], method)
        # The error object names the failed charge and shows its PaymentIntent, as documented.
        raise ApiError(402, "card_error", "Your card was declined.", code="card_declined",
                       decline_code="generic_decline",
                       extra={"charge": charge["id"], "payment_method_type": "card",
                              "payment_intent": ctx.render(_get(ctx, "payment_intent", charge["payment_intent"]))})
    collect(ctx, invoice, invoice["amount_remaining"], method)
    return ctx.render(invoice)


# ---------------------------------------------------------------------------------------
# Refunds and adjustments
# ---------------------------------------------------------------------------------------


def refund(ctx: Ctx, charge: dict[str, Any], amount: int | None, reason: str | None = None,
           metadata: dict[str, str] | None = None) -> dict[str, Any]:
    refundable = charge["amount"] - charge["amount_refunded"]
    amount = refundable if amount is None else amount
    if not charge["paid"]:
        raise invalid(f"Charge {charge['id']} has not succeeded and cannot be refunded.", param="charge")
    if amount <= 0 or amount > refundable:
        raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge ({refundable})."
                      if amount > refundable else "Refund amount must be positive.", param="amount")
    refund_obj = ctx.account.add({
        "id": new_id("re"), "object": "refund", "amount": amount, "balance_transaction": None,
        "charge": charge["id"], "created": ctx.now(), "currency": charge["currency"], "metadata": metadata or {},
        "payment_intent": charge["payment_intent"], "reason": reason, "receipt_number": None, "status": "succeeded",
    })
    txn = _txn(ctx, type="refund", amount=-amount, fee=0, source=refund_obj["id"],
               description="REFUND FOR CHARGE (Payment for Invoice)", available_on=ctx.now())
    refund_obj["balance_transaction"] = txn["id"]
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    ctx.emit("refund.created", refund_obj)
    ctx.emit("charge.refunded", charge)
    return refund_obj


def create_refund(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("amount", "charge", "payment_intent", "reason", "metadata", "expand")
    charge_id = p.str("charge")
    if charge_id is None and p.has("payment_intent"):
        pi = ctx.account.get(p.req_str("payment_intent"))
        if pi is None or pi["object"] != "payment_intent":
            raise no_such("payment_intent", str(p.str("payment_intent")), param="payment_intent")
        charge_id = pi["latest_charge"]
    if charge_id is None:
        raise missing("charge")
    charge = ctx.account.get(charge_id)
    if charge is None or charge["object"] != "charge":
        raise no_such("charge", charge_id, param="charge")
    return ctx.render(refund(ctx, charge, p.int("amount", minimum=1), p.choice("reason", REFUND_REASONS),
                             apply_metadata({}, p.raw("metadata"))))


def adjustment(ctx: Ctx, amount: int, description: str) -> dict[str, Any]:
    """A balance adjustment (e.g. a dispute fee or a correction Stripe books)."""
    return _txn(ctx, type="adjustment", amount=amount, fee=0, source=None, description=description,
                available_on=ctx.now())


# ---------------------------------------------------------------------------------------
# Balance and payouts
# ---------------------------------------------------------------------------------------


def _destination(account: Account) -> str:
    return "ba_" + account.id.removeprefix("acct_")[:24]


def _arrival(now: int, days: int) -> int:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((day + timedelta(days=days)).timestamp())


def _payout(
    ctx: Ctx, amount: int, *, automatic: bool, description: str | None, metadata: dict[str, str]
) -> dict[str, Any]:
    payout = ctx.account.add({
        "id": new_id("po"), "object": "payout", "amount": amount, "application_fee": None,
        "application_fee_amount": None, "arrival_date": _arrival(ctx.now(), ctx.world.settings.payout_arrival_days),
        "automatic": automatic, "balance_transaction": None, "created": ctx.now(), "currency": "usd",
        "description": description, "destination": _destination(ctx.account), "failure_balance_transaction": None,
        "failure_code": None, "failure_message": None, "livemode": False, "metadata": metadata, "method": "standard",
        "original_payout": None, "payout_method": None,
        "reconciliation_status": ("not_applicable" if not automatic
                                  else "in_progress" if ctx.world.settings.payout_reconciliation_delay_s > 0
                                  else "completed"), "reversed_by": None,
        "source_type": "card", "statement_descriptor": None, "status": "pending", "trace_id": None,
        "type": "bank_account",
    })
    # When Stripe will have reconciled it: the delay in force when the payout was made.
    payout["_reconciled_at"] = ctx.now() + ctx.world.settings.payout_reconciliation_delay_s
    txn = _txn(ctx, type="payout", amount=-amount, fee=0, source=payout["id"], description="STRIPE PAYOUT",
               available_on=ctx.now())
    txn["_payout"] = payout["id"]
    payout["balance_transaction"] = txn["id"]
    return payout


def create_daily_payout(ctx: Ctx) -> dict[str, Any] | None:
    """The automatic daily payout: sweeps every available, not yet paid-out transaction."""
    now = ctx.now()
    swept = [t for t in ctx.account.objects["balance_transaction"].values()
             if t["_payout"] is None and t["type"] != "payout" and t["available_on"] <= now and t["currency"] == "usd"]
    amount = sum(t["net"] for t in swept)
    if amount <= 0:
        return None
    payout = _payout(ctx, amount, automatic=True, description="STRIPE PAYOUT", metadata={})
    for txn in swept:
        txn["_payout"] = payout["id"]
    ctx.emit("payout.created", payout)
    return payout


def balance(world: World, account: Account) -> dict[str, int]:
    now = world.now()
    available = sum(t["net"] for t in account.objects["balance_transaction"].values() if t["available_on"] <= now)
    pending = sum(t["net"] for t in account.objects["balance_transaction"].values() if t["available_on"] > now)
    return {"available": available, "pending": pending}


def get_balance(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("expand")
    amounts = balance(ctx.world, ctx.account)
    return {
        "object": "balance",
        "available": [{"amount": amounts["available"], "currency": "usd",
                       "source_types": {"card": amounts["available"]}}],
        "livemode": False,
        "pending": [{"amount": amounts["pending"], "currency": "usd", "source_types": {"card": amounts["pending"]}}],
    }


def create_payout(ctx: Ctx, p: Params) -> dict[str, Any]:
    """A manual payout (``POST /v1/payouts``) from the available balance."""
    p.only("amount", "currency", "description", "destination", "metadata", "method", "statement_descriptor", "expand")
    amount = p.req_int("amount", minimum=1)
    p.choice("method", PAYOUT_METHODS)
    if p.req_str("currency").lower() != "usd":
        raise invalid("Payouts are only supported in usd for this account.", param="currency")
    if amount > balance(ctx.world, ctx.account)["available"]:
        raise invalid("You have insufficient funds in your Stripe account for this transfer. Your card balance is too "
                      "low.", code="balance_insufficient", param="amount")
    payout = _payout(ctx, amount, automatic=False, description=p.str("description"),
                     metadata=apply_metadata({}, p.raw("metadata")))
    ctx.emit("payout.created", payout)
    return ctx.render(payout)


def reconcile_payouts(world: World) -> None:
    """Automatic payouts whose reconciliation delay has passed are ``completed``, with
    ``payout.reconciliation_completed`` (Stripe's signal that ``balance_transactions?payout=``
    now lists all of it). Run on every clock move and before payouts or their transactions
    are read, since the clock also moves with real time."""
    now = world.now()
    for account in list(world.accounts.values()):
        for payout in list(account.objects["payout"].values()):
            if payout["reconciliation_status"] == "in_progress" and payout.get("_reconciled_at", 0) <= now:
                payout["reconciliation_status"] = "completed"
                world.emit(account, "payout.reconciliation_completed", payout)


def arrive_payouts(world: World) -> None:
    """Clock listener: payouts whose arrival date has come are paid."""
    for account in list(world.accounts.values()):
        for payout in list(account.objects["payout"].values()):
            if payout["status"] in ("pending", "in_transit") and payout["arrival_date"] <= world.now():
                payout["status"] = "paid"
                world.emit(account, "payout.paid", payout)  # not an `*.updated` event: no previous_attributes


# ---------------------------------------------------------------------------------------
# Read endpoints
# ---------------------------------------------------------------------------------------


def _get(ctx: Ctx, kind: str, object_id: str, *, param: str = "id") -> dict[str, Any]:
    found = ctx.account.get(object_id)
    if found is None or found["object"] != kind:
        raise no_such(kind, object_id, param=param)
    return found


def retrieve(kind: str):  # type: ignore[no-untyped-def]
    def handler(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
        p.only("expand")
        return ctx.render(_get(ctx, kind, id))

    return handler


def list_balance_transactions(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("created", "currency", "ending_before", "expand", "limit", "payout", "source", "starting_after", "type")
    payout_id, source, kind, currency = p.str("payout"), p.str("source"), p.str("type"), p.str("currency")
    reconciled = True
    if payout_id is not None:
        reconcile_payouts(ctx.world)
        payout = _get(ctx, "payout", payout_id, param="payout")
        if not payout["automatic"]:
            # "For automatic Stripe payouts only": Stripe can't tell which transactions a
            # manual payout carried, so it refuses the filter rather than list none.
            raise invalid("Balance transaction history can only be filtered on automatic transfers, not manual.",
                          param="payout")
        # While its reconciliation is in progress the payout's transactions are not listed yet.
        reconciled = payout["reconciliation_status"] == "completed"
    created = range_filter(p, "created")
    items = [
        t for t in ctx.account.all("balance_transaction")
        if (payout_id is None or t["_payout"] == payout_id and (reconciled or t["type"] == "payout"))
        and (source is None or t["source"] == source)
        and (kind is None or t["type"] == kind)
        and (currency is None or t["currency"] == currency)
        and (created is None or created(t))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/balance_transactions", version=ctx.version)


def list_payouts(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("arrival_date", "created", "destination", "ending_before", "expand", "limit", "starting_after", "status")
    reconcile_payouts(ctx.world)
    status, destination = p.str("status"), p.str("destination")
    created, arrival = range_filter(p, "created"), range_filter(p, "arrival_date")
    items = [
        x for x in ctx.account.all("payout")
        if (status is None or x["status"] == status) and (destination is None or x["destination"] == destination)
        and (created is None or created(x)) and (arrival is None or arrival(x))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/payouts", version=ctx.version)


def retrieve_payout(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:  # noqa: A002 - the route's name
    reconcile_payouts(ctx.world)
    return retrieve("payout")(ctx, p, id)  # type: ignore[no-any-return]


def list_charges(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("created", "customer", "ending_before", "expand", "limit", "payment_intent", "starting_after")
    customer, pi = p.str("customer"), p.str("payment_intent")
    created = range_filter(p, "created")
    items = [
        c for c in ctx.account.all("charge")
        if (customer is None or c["customer"] == customer) and (pi is None or c["payment_intent"] == pi)
        and (created is None or created(c))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/charges", version=ctx.version)


def list_refunds(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("charge", "created", "ending_before", "expand", "limit", "payment_intent", "starting_after")
    charge = p.str("charge")
    created = range_filter(p, "created")
    items = [r for r in ctx.account.all("refund")
             if (charge is None or r["charge"] == charge) and (created is None or created(r))]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/refunds", version=ctx.version)


def list_invoice_payments(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("created", "ending_before", "expand", "invoice", "limit", "payment", "starting_after", "status")
    invoice, status = p.str("invoice"), p.choice("status", INVOICE_PAYMENT_STATUSES)
    payment = p.sub("payment")
    pay_type = pay_pi = None
    if payment is not None:
        payment.only("type", "payment_intent", "payment_record")
        pay_type = payment.req_str("type")
        pay_pi = payment.str("payment_intent")
    if invoice is not None:
        get_invoice(ctx, invoice, param="invoice")
    created = range_filter(p, "created")
    items = [
        x for x in ctx.account.all("invoice_payment")
        if (invoice is None or x["invoice"] == invoice) and (status is None or x["status"] == status)
        and (pay_type is None or x["payment"]["type"] == pay_type)
        and (pay_pi is None or x["payment"].get("payment_intent") == pay_pi)
        and (created is None or created(x))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/invoice_payments", version=ctx.version)


def install(world: World, router: Router) -> None:
    world.renderers["balance_transaction"] = render_txn
    world.renderers["charge"] = render_charge
    world.tick_listeners.append(arrive_payouts)
    world.tick_listeners.append(reconcile_payouts)
    r = router.add
    r("POST", "/v1/invoices/{id}/pay")(pay_invoice)
    r("GET", "/v1/charges")(list_charges)
    r("GET", "/v1/charges/{id}")(retrieve("charge"))
    r("GET", "/v1/payment_intents/{id}")(retrieve("payment_intent"))
    r("GET", "/v1/invoice_payments")(list_invoice_payments)
    r("GET", "/v1/invoice_payments/{id}")(retrieve("invoice_payment"))
    r("POST", "/v1/refunds")(create_refund)
    r("GET", "/v1/refunds")(list_refunds)
    r("GET", "/v1/refunds/{id}")(retrieve("refund"))
    r("GET", "/v1/balance")(get_balance)
    r("GET", "/v1/balance_transactions")(list_balance_transactions)
    r("GET", "/v1/balance_transactions/{id}")(retrieve("balance_transaction"))
    r("POST", "/v1/payouts")(create_payout)
    r("GET", "/v1/payouts")(list_payouts)
    r("GET", "/v1/payouts/{id}")(retrieve_payout)

