"""The connector's pure domain: orders, money, pricing, proration, payouts, states, invoice plans.

Nothing here does I/O or imports a framework (``tests/unit/test_domain_purity.py``
enforces it); every function is plain data in, plain data out.
"""

from connector.domain.entitlement import ENTITLING_ORDER_STATES, EntitlementItem, EntitlementOrder, entitlements
from connector.domain.invoice_plan import (
    InvoiceLine,
    InvoicePlan,
    OrderLimits,
    plan_invoice,
)
from connector.domain.money import (
    CENT,
    Money,
    format_money,
    from_cents,
    round_half_up_cents,
    to_cents,
    to_money,
)
from connector.domain.orders import (
    INITIAL_ORDER_MISSING,
    RETIRED_CODES,
    Order,
    OrderItem,
    add_on_proration,
    current_code,
)
from connector.domain.payouts import LineEstimate, PayoutEstimate, expected_payout, order_payout, revenue_share
from connector.domain.pricing import CONTRACT_TERM_MONTHS, line_total
from connector.domain.proration import (
    Proration,
    ProrationPolicy,
    initial_end_date,
    prorate,
    remaining_days,
    remaining_months,
    term_days,
)
from connector.domain.states import (
    INVOICE_MACHINE,
    INVOICE_TRANSITIONS,
    OFFER_MACHINE,
    OFFER_TRANSITIONS,
    ORDER_MACHINE,
    ORDER_TRANSITIONS,
    InvoiceStatus,
    OfferStatus,
    OrderStatus,
    StateMachine,
    TransitionVerdict,
    editable,
    is_forward,
)
from connector.domain.validation import validate_line, validate_order_terms

__all__ = [
    "CENT",
    "CONTRACT_TERM_MONTHS",
    "ENTITLING_ORDER_STATES",
    "INITIAL_ORDER_MISSING",
    "INVOICE_MACHINE",
    "INVOICE_TRANSITIONS",
    "OFFER_MACHINE",
    "OFFER_TRANSITIONS",
    "ORDER_MACHINE",
    "ORDER_TRANSITIONS",
    "EntitlementItem",
    "EntitlementOrder",
    "InvoiceLine",
    "InvoicePlan",
    "OrderLimits",
    "InvoiceStatus",
    "LineEstimate",
    "Money",
    "OfferStatus",
    "Order",
    "OrderItem",
    "OrderStatus",
    "PayoutEstimate",
    "Proration",
    "ProrationPolicy",
    "RETIRED_CODES",
    "StateMachine",
    "TransitionVerdict",
    "add_on_proration",
    "current_code",
    "editable",
    "entitlements",
    "expected_payout",
    "format_money",
    "from_cents",
    "initial_end_date",
    "is_forward",
    "line_total",
    "order_payout",
    "plan_invoice",
    "prorate",
    "remaining_days",
    "remaining_months",
    "revenue_share",
    "round_half_up_cents",
    "term_days",
    "to_cents",
    "to_money",
    "validate_line",
    "validate_order_terms",
]
