"""`gtm-connector sandbox …`: the local sandboxes' commands, mounted from the separate
``gtm_sandbox`` package when it is installed (the ``sandbox`` extra). Without it the command
still exists and says how to get it, rather than vanishing from ``--help``.

The sandboxes' app is imported only when ``sandbox`` runs (``defer``): importing it loads
both servers, which ``gtm-connector --help`` and every other command can do without. Until
then the root's help shows ``SANDBOX_HELP``, which a test holds equal to the app's own."""

from __future__ import annotations

from typing import Any

import typer

from connector.entrypoints.cli._common import defer

SANDBOX_MISSING = ("the sandboxes are not installed in this environment: "
                   "pip install 'gtm-connector[sandbox]' (make demo and make test install them)")
SANDBOX_HELP = "Run the local Salesforce sandbox org or the local Stripe server."


def sandbox_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("gtm_sandbox") is not None


def _mount(placeholder: Any) -> Any:
    """The sandboxes' own command group, in place of the placeholder."""
    from gtm_sandbox.cli import sandbox_app

    group = typer.main.get_group(sandbox_app)
    group.name = placeholder.name
    return group


def register(app: typer.Typer) -> None:
    if sandbox_installed():
        # An empty group standing in for the sandboxes' own, which replaces it before it runs.
        app.add_typer(typer.Typer(help=SANDBOX_HELP), name="sandbox")
        defer("sandbox", _mount)
        return

    @app.command("sandbox", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def sandbox_missing() -> None:
        """Run the local Salesforce sandbox org or the local Stripe server (needs the sandbox extra)."""
        typer.echo(f"error: {SANDBOX_MISSING}", err=True)
        raise typer.Exit(2)
