"""`gtm-connector sandbox …`: run the local stand-ins for the outside world.

Commands are attached to ``sandbox_app`` by ``sandbox_org`` (the Salesforce sandbox org)
and ``sandbox_stripe`` (the local Stripe server)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer

sandbox_app = typer.Typer(help="Run the local Salesforce sandbox org or the local Stripe server.", no_args_is_help=True)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets while the block runs (a sandbox's clean stop);
    the previous handlers come back after it (the command may run inside another program)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
