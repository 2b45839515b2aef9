"""``sandbox stripe --forward-to URL``: like ``stripe listen --forward-to``, the sandbox makes
a webhook endpoint for URL itself and delivers every subscribed event to it, signed
(``notify.py``: ``Stripe-Signature``, retried on failure).

The endpoint's signing secret is kept by the caller (the CLI saves it in the state
directory), so a restarted sandbox signs with the same ``whsec_…`` and a receiver
configured once keeps verifying. URLs must be loopback: the sandbox sends nothing off the
machine.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gtm_sandbox.stripe.api import Ctx
from gtm_sandbox.stripe.handle import StripeSandbox
from gtm_sandbox.stripe.notify import create_endpoint
from gtm_sandbox.stripe.wire import ApiError, Params

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

# The events the connector subscribes to (its WEBHOOK_EVENTS; this package does not import the
# connector, so the list is data here and a test holds the two equal).
CONNECTOR_EVENTS: tuple[str, ...] = (
    "invoice.finalized", "invoice.sent", "invoice.updated", "invoice.paid", "invoice.payment_succeeded",
    "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible", "payout.created", "payout.paid",
)


class ForwardError(ValueError):
    """The URL or an event name is not one the sandbox can forward to."""


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        raise ForwardError(f"{url!r}: forward to a loopback http(s) URL (127.0.0.1, localhost or [::1])")
    return url


def forward(box: StripeSandbox, url: str, events: tuple[str, ...] = CONNECTOR_EVENTS, *,
            secret: str | None = None) -> dict[str, Any]:
    """A webhook endpoint on the platform account for ``url`` and ``events`` (``*``: all),
    made through the API's own handler (same checks as ``POST /v1/webhook_endpoints``);
    with ``secret`` it signs with that one. Answers the endpoint, ``secret`` included."""
    check_url(url)
    world = box.world
    params: dict[str, Any] = {"url": url, "enabled_events": list(events),
                              "description": "sandbox stripe --forward-to", "metadata": {"forward_to": "true"}}
    with world.lock:
        ctx = Ctx(world, world.platform, None, None, world.settings.api_version)
        try:
            endpoint = create_endpoint(ctx, Params(params))
        except ApiError as exc:
            raise ForwardError(exc.message) from None
        if secret is not None:
            world.platform.objects["webhook_endpoint"][endpoint["id"]]["_secret"] = secret
            endpoint["secret"] = secret
    return endpoint
