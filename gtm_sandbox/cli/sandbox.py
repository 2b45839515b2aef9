"""`gtm-connector sandbox …`: run the local stand-ins for the outside world.

Commands are attached to ``sandbox_app`` by ``sandbox_org`` (the Salesforce sandbox org)
and ``sandbox_stripe`` (the local Stripe server)."""

from __future__ import annotations

import typer

sandbox_app = typer.Typer(help="Run the local Salesforce sandbox org or the local Stripe server.", no_args_is_help=True)
