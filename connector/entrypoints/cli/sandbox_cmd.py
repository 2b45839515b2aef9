"""`gtm-connector sandbox …`: the local sandboxes' commands, mounted from the separate
``gtm_sandbox`` package when it is installed (the ``sandbox`` extra). Without it the command
still exists and says how to get it, rather than vanishing from ``--help``."""

from __future__ import annotations

import typer

SANDBOX_MISSING = ("the sandboxes are not installed in this environment: "
                   "pip install 'gtm-connector[sandbox]' (make demo and make test install them)")


def sandbox_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("gtm_sandbox") is not None


def register(app: typer.Typer) -> None:
    if sandbox_installed():
        from gtm_sandbox.cli import sandbox_app

        app.add_typer(sandbox_app, name="sandbox")
        return

    @app.command("sandbox", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def sandbox_missing() -> None:
        """Run the local Salesforce sandbox org or the local Stripe server (needs the sandbox extra)."""
        typer.echo(f"error: {SANDBOX_MISSING}", err=True)
        raise typer.Exit(2)
