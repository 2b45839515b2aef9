"""A local Stripe: a real HTTP server on 127.0.0.1 that the official ``stripe`` SDK talks to
unmodified (``StripeClient(key, base_addresses={"api": sandbox.api_base})``), serving the
part of Stripe's v1 API the connector uses — customers, invoice items, invoices (NET30
``send_invoice``, finalize, send, pay, void, mark uncollectible, search), payments, balance
transactions, payouts, events and signed webhooks — with Stripe's idempotency, state rules
and error bodies, plus test helpers, fault injection and call counters."""

from gtm_sandbox.stripe.handle import RemoteStripeSandbox, StripeSandbox
from gtm_sandbox.stripe.world import SandboxSettings

__all__ = ["RemoteStripeSandbox", "SandboxSettings", "StripeSandbox"]
