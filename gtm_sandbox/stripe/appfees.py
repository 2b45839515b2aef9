"""Application fees on invoices: ``application_fee_amount`` (cents) is what the platform
takes from the invoice's payments — here the GTM app's revenue share, which Salesforce
deducts before the money reaches the partner's payout.

Each payment carries its part as the fee of its balance transaction (``fee_details`` type
``application_fee``): a payment of the whole invoice carries the whole fee, a partial
payment its proportional part (half-up to the cent), and the payment that settles the
invoice carries what is left, so the parts always add up to the amount. In the GTM model
Stripe's processing fee is not the partner's to carry, so such a payment has no
``stripe_fee`` part.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gtm_sandbox.stripe.wire import Params

TAKEN = "_application_fee_taken"


def application_fee_param(p: Params) -> int | None:
    """``application_fee_amount`` of an invoice create or update: non-negative cents."""
    if not p.has("application_fee_amount"):
        return None
    return p.int("application_fee_amount", minimum=0)


def application_fee_share(invoice: dict[str, Any], amount: int) -> int | None:
    """This payment's part of the invoice's application fee (None: the invoice has none).
    Records what was taken so the last payment gets the remainder."""
    fee = invoice.get("application_fee_amount")
    if fee is None:
        return None
    taken = int(invoice.get(TAKEN, 0))
    if amount >= invoice["amount_remaining"] or not invoice["amount_due"]:
        share = fee - taken
    else:
        share = int((Decimal(fee) * amount / invoice["amount_due"]).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        share = min(share, fee - taken)
    share = max(0, min(share, amount))  # never more than the payment itself
    invoice[TAKEN] = taken + share
    return share
