"""`gtm-connector` command line. Each command group lives in its own module here and is
registered in ``_register`` so that capabilities can be added without editing each other."""

from __future__ import annotations

import typer

from connector.entrypoints.cli._common import OperatorGroup

app = typer.Typer(
    name="gtm-connector",
    cls=OperatorGroup,  # errors -> one message and an exit code, for every command
    help="Sync a Salesforce Partner Business Org (GTM app) with a local model and Stripe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    import importlib
    import pkgutil

    # Every module in this package that defines `register(app)` contributes commands.
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register()


def main() -> None:
    app()
