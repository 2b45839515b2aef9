"""`gtm-connector` command line. Each command group lives in its own module here and is
registered in ``_register`` so that capabilities can be added without editing each other.

Options of the root command, before the command name, apply to every command:
``--version``, ``--log-level`` (``GTM_LOG_LEVEL``), ``--log-format`` (``GTM_LOG_FORMAT``),
and typer's ``--install-completion`` / ``--show-completion``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import OperatorGroup

app = typer.Typer(
    name="gtm-connector",
    cls=OperatorGroup,  # errors -> one message and an exit code, for every command
    help="Sync a Salesforce Partner Business Org (GTM app) with a local model and Stripe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from connector import __version__

    try:
        return f"gtm-connector {version('gtm-connector')}"
    except PackageNotFoundError:
        return f"gtm-connector {__version__}"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="print the version and exit")] = False,
    log_level: Annotated[LogLevel | None, typer.Option(
        "--log-level", envvar="GTM_LOG_LEVEL", case_sensitive=False,
        help="log lines at this level and above, on stderr "
             "(default: warning for commands, info for the daemon)")] = None,
    log_format: Annotated[LogFormat | None, typer.Option(
        "--log-format", envvar="GTM_LOG_FORMAT", case_sensitive=False,
        help="json lines or console text (default: console in a terminal, json otherwise)")] = None,
) -> None:
    """Sync a Salesforce Partner Business Org (GTM app) with a local model and Stripe."""
    from connector.logging import choose, configure

    choose(level=log_level.value if log_level else None, fmt=log_format.value if log_format else None)
    configure(level="WARNING")  # every command logs alike unless it configures otherwise


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


def command_tree() -> Any:
    """The root click command with every command finished, deferred ones included (see
    ``_common.defer``): what a person can type, for tools that walk it."""
    from typer.main import get_command

    root = get_command(app)
    root.complete_deferred()  # type: ignore[attr-defined]
    return root


def main() -> None:
    app()
