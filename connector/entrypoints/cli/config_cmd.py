"""`gtm-connector config check FILE…`: validate org config files and say exactly what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connector.errors import ConfigError, MappingError

config_app = typer.Typer(help="Validate per-org configuration files.", no_args_is_help=True)


@config_app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="org config files (TOML)")],
    skip_secrets: Annotated[bool, typer.Option("--skip-secrets",
                                               help="don't require env vars / secret files to exist")] = False,
) -> None:
    """Validate each file; print every problem as `file: dotted.key: message`. Exit 2 on any problem."""
    from connector.config import check_against_mapping, load_config, redact_url
    from connector.mappings import load_mapping

    failed = False
    for path in files:
        try:
            config = load_config(path, skip_secrets=skip_secrets)
            check_against_mapping(config, load_mapping(config.mapping))
        except ConfigError as exc:
            failed = True
            for file, key, msg in exc.problems:
                typer.echo(f"{file}: {key}: {msg}", err=True)
            continue
        except MappingError as exc:
            failed = True
            typer.echo(f"{path}: mapping: {exc}", err=True)
            continue
        # Unresolved under --skip-secrets: name the variable, not the SQLite fallback.
        database = (f"from ${config.database_url_env}" if skip_secrets and config.database_url_env
                    else redact_url(config.database_url or ""))
        typer.echo(
            f"{path}: ok (org {config.alias} {config.org_id}, auth {config.salesforce.auth.kind}, "
            f"database {database}, mapping {config.mapping})"
        )
    raise typer.Exit(2 if failed else 0)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
