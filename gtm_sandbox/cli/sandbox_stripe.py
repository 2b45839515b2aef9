"""`gtm-connector sandbox stripe [--port N] [--json]`: run the local Stripe server standalone.

With ``--json`` it prints one JSON line once it is ready (``api_base``, ``api_key``,
``platform_account``) so a parent process can read it, then serves until SIGTERM/SIGINT.
Any ``sk_test_…`` key is accepted; the printed one is just a convenient default.
"""

from __future__ import annotations

import json
import signal
import threading
from decimal import Decimal
from types import FrameType

import typer

from gtm_sandbox.cli.sandbox import sandbox_app
from gtm_sandbox.stripe import StripeSandbox


@sandbox_app.command("stripe")
def stripe_sandbox(
    port: int = typer.Option(0, "--port", help="TCP port on 127.0.0.1 (0 = a free port)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON line with api_base and api_key when ready"),
    fee_percent: str = typer.Option("2.9", "--fee-percent", help="card fee percentage per charge"),
    fee_fixed_cents: int = typer.Option(30, "--fee-fixed-cents", help="fixed card fee per charge, in cents"),
) -> None:
    """Serve Stripe's v1 API subset (customers, invoices, payouts, webhooks …) on 127.0.0.1."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        fee = Decimal(fee_percent)
    except ArithmeticError:
        raise typer.BadParameter(f"{fee_percent!r} is not a number, e.g. 2.9", param_hint="--fee-percent") from None
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        box = StripeSandbox.start(port, fee_percent=fee, fee_fixed_cents=fee_fixed_cents)
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", param_hint="--port") from None
    try:
        ready = {"api_base": box.api_base, "api_key": box.api_key, "platform_account": box.platform_account}
        if json_out:
            typer.echo(json.dumps(ready))
        else:
            typer.echo(f"Stripe sandbox on {box.api_base} (platform account {box.platform_account}); "
                       f"use any sk_test_ key, e.g. {box.api_key}. Control API: {box.api_base}/_sandbox/health. "
                       "Ctrl-C to stop.")
        while not stop.wait(0.5):
            pass
    finally:
        box.stop()
