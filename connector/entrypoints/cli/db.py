"""`gtm-connector db …`: migrate the local model and show its schema revision.

    gtm-connector db upgrade --database-url sqlite:///data/acme.sqlite3
    gtm-connector db upgrade --config config/acme.toml      # the org's database_url
    gtm-connector db upgrade                                 # every org in --config-dir
    gtm-connector db current --org acme

Secrets are not needed (config files are read with ``skip_secrets``), only the database
URL; URLs are printed with the password replaced. Several orgs sharing one database are
migrated once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from sqlalchemy.exc import DBAPIError

from connector.config import redact_url
from connector.entrypoints.cli._common import ConfigDirOpt, ConfigOpt, OrgOpt

db_app = typer.Typer(help="Migrate the local model (SQLite or PostgreSQL) and show its revision.", no_args_is_help=True)

UrlOpt = Annotated[
    Optional[str],
    typer.Option("--database-url", envvar="GTM_DATABASE_URL", help="sqlite:///FILE or postgresql://…"),
]


def _url_of(config: object) -> str:
    # skip_secrets leaves database_url_env unresolved: read that variable here.
    env_name = getattr(config, "database_url_env", None)
    if env_name:
        url = os.environ.get(env_name)
        if not url:
            source = getattr(config, "source_file", None) or "config"
            typer.echo(f"{source}: database_url_env: environment variable {env_name} is not set", err=True)
            raise typer.Exit(2)
        return url
    return str(getattr(config, "database_url"))


def _targets(database_url: str | None, config: list[Path] | None, org: str | None, config_dir: Path) -> dict[str, str]:
    """Database URL -> label (org aliases) of every database the options name."""
    if database_url:
        return {database_url: "database"}
    from connector.config import load_config, load_config_dir  # lazily: `db` works without org files
    from connector.errors import ConfigError

    try:
        if config:
            configs = [load_config(p, skip_secrets=True) for p in config]
        elif org:
            configs = [c for c in load_config_dir(config_dir, skip_secrets=True)[0] if c.alias == org]
            if not configs:
                raise ConfigError(f"no config for org {org!r}", [(str(config_dir), "org.alias", f"no config file for org {org!r}")])
        else:
            configs, errors = load_config_dir(config_dir, skip_secrets=True)
            for error in errors:
                for file, key, msg in error.problems:
                    typer.echo(f"{file}: {key}: {msg} (org skipped)", err=True)
    except ConfigError as exc:
        for file, key, msg in exc.problems or [("?", "?", str(exc))]:
            typer.echo(f"{file}: {key}: {msg}", err=True)
        raise typer.Exit(2) from None
    if not configs:
        typer.echo(f"{config_dir}: no org config files (use --database-url URL or --config FILE)", err=True)
        raise typer.Exit(2)
    targets: dict[str, list[str]] = {}
    for cfg in configs:
        targets.setdefault(_url_of(cfg), []).append(cfg.alias)
    return {url: ", ".join(aliases) for url, aliases in targets.items()}


@db_app.command("upgrade")
def upgrade_cmd(
    database_url: UrlOpt = None,
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    revision: Annotated[str, typer.Option("--revision", help="target revision")] = "head",
) -> None:
    """Bring the database(s) to the newest schema revision (safe to repeat)."""
    from connector.adapters.store import current_revision, make_engine, upgrade
    from connector.adapters.store.engine import describe_db_error

    failed = False
    for url, label in _targets(database_url, config, org, config_dir).items():
        engine = make_engine(url)
        try:
            before = current_revision(engine)
            after = upgrade(engine, revision)
        except DBAPIError as exc:
            typer.echo(f"{label}: {redact_url(url)}: cannot migrate: {describe_db_error(exc)}", err=True)
            failed = True
            continue
        finally:
            engine.dispose()
        change = f"upgraded {before or 'empty'} -> {after}" if before != after else f"already at {after}"
        typer.echo(f"{label}: {redact_url(url)}: {change}")
    raise typer.Exit(1 if failed else 0)


@db_app.command("current")
def current_cmd(
    database_url: UrlOpt = None,
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
) -> None:
    """Show the schema revision of the database(s) and whether it is the newest."""
    from connector.adapters.store import current_revision, head_revision, make_engine
    from connector.adapters.store.engine import describe_db_error

    head = head_revision()
    failed = False
    for url, label in _targets(database_url, config, org, config_dir).items():
        engine = make_engine(url)
        try:
            revision = current_revision(engine)
        except DBAPIError as exc:
            typer.echo(f"{label}: {redact_url(url)}: cannot read: {describe_db_error(exc)}", err=True)
            failed = True
            continue
        finally:
            engine.dispose()
        state = "up to date" if revision == head else f"behind {head}: run `gtm-connector db upgrade`"
        typer.echo(f"{label}: {redact_url(url)}: {revision or 'not migrated'} ({state})")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
