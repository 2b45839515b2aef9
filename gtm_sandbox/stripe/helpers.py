"""Test helpers: move the world as a customer and Stripe would (pay, decline, refund, sweep
the daily payout, book an adjustment, resend an event). Shared by the in-process handle and
the ``/_sandbox/…`` control API, and run under the world lock like API requests."""

from __future__ import annotations

from typing import Any

from gtm_sandbox.stripe.api import Ctx
from gtm_sandbox.stripe.billing import get_invoice, mark_paid
from gtm_sandbox.stripe.money import adjustment, collect, create_daily_payout, decline, payable, refund
from gtm_sandbox.stripe.wire import no_such
from gtm_sandbox.stripe.world import World, strip_private

PAY_METHODS = ("card", "out_of_band", "declined")


class Helpers:
    def __init__(self, world: World) -> None:
        self.world = world

    def _ctx(self, account: str | None) -> Ctx:
        return Ctx(self.world, self.world.account(account), None, None, self.world.settings.api_version)

    def pay_invoice(self, invoice_id: str, *, amount: int | None = None, method: str = "card",
                    fee: int | None = None, account: str | None = None) -> dict[str, Any]:
        """The customer pays ``amount`` cents (default: all that remains) on the hosted page.
        ``card`` creates a charge, its balance transaction (with the fee) and an
        InvoicePayment; ``out_of_band`` marks it paid outside Stripe; ``declined`` fails.
        ``fee`` prices this one card payment at exactly that many cents (default: the
        account's pricing), e.g. an application fee carrying the revenue share."""
        if method not in PAY_METHODS:
            raise ValueError(f"method must be one of {PAY_METHODS}, not {method!r}")
        if fee is not None and (int(fee) != fee or fee < 0):
            raise ValueError(f"fee must be a non-negative number of cents, not {fee!r}")
        with self.world.lock:
            ctx = self._ctx(account)
            invoice = get_invoice(ctx, invoice_id)
            payable(invoice)
            due = invoice["amount_remaining"] if amount is None else amount
            if method == "out_of_band":
                mark_paid(ctx, invoice, out_of_band=True)
            elif method == "declined":
                decline(ctx, invoice, due, "pm_card_chargeDeclined")
            else:
                collect(ctx, invoice, due, "pm_card_visa", None if fee is None else int(fee))
            return ctx.render(invoice)

    def refund(self, charge_id: str, *, amount: int | None = None, account: str | None = None) -> dict[str, Any]:
        with self.world.lock:
            ctx = self._ctx(account)
            charge = ctx.account.get(charge_id)
            if charge is None or charge["object"] != "charge":
                raise no_such("charge", charge_id)
            return ctx.render(refund(ctx, charge, amount, "requested_by_customer"))

    def create_payout(self, *, account: str | None = None) -> dict[str, Any] | None:
        with self.world.lock:
            ctx = self._ctx(account)
            payout = create_daily_payout(ctx)
            return None if payout is None else ctx.render(payout)

    def add_adjustment(self, amount: int, description: str, *, account: str | None = None) -> dict[str, Any]:
        with self.world.lock:
            ctx = self._ctx(account)
            return ctx.render(adjustment(ctx, amount, description))

    def resend_event(self, event_id: str, *, account: str | None = None) -> None:
        with self.world.lock:
            acct = self.world.account(account)
            event = acct.objects["event"].get(event_id)
            if event is None:
                raise no_such("event", event_id)
            if self.world.dispatcher is not None:
                self.world.dispatcher.publish(self.world, acct, event)

    def invoice(self, invoice_id: str, *, account: str | None = None) -> dict[str, Any]:
        with self.world.lock:
            ctx = self._ctx(account)
            return ctx.render(get_invoice(ctx, invoice_id))

    def invoice_sends(self, invoice_id: str, *, account: str | None = None) -> list[dict[str, Any]]:
        """Each time the invoice was emailed to the customer (``send`` or auto-advance)."""
        with self.world.lock:
            ctx = self._ctx(account)
            return [dict(x) for x in get_invoice(ctx, invoice_id)["_sent"]]

    def events(self, *, type: str | None = None, account: str | None = None) -> list[dict[str, Any]]:
        """Events, oldest first."""
        with self.world.lock:
            acct = self.world.account(account)
            return [strip_private(e) for e in acct.objects["event"].values() if type is None or e["type"] == type]

    def objects(self, kind: str, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every stored object of a kind (``invoice``, ``customer`` …), oldest first, rendered."""
        with self.world.lock:
            acct = self.world.account(account)
            return [self.world.render(acct, o) for o in acct.objects[kind].values() if not o.get("_deleted")]
