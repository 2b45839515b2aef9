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
from typing import TYPE_CHECKING, Annotated, Any

import typer

from connector.entrypoints.cli._common import ConfigDirOpt, ConfigOpt, OrgOpt, database_problem, resolve_orgs

if TYPE_CHECKING:
    from sqlalchemy.exc import DBAPIError

    from connector.config import OrgConfig


def redact_url(url: str) -> str:
    """``connector.config.redact_url``, imported when a command runs (not for ``--help``)."""
    from connector.config import redact_url as redact

    return redact(url)

db_app = typer.Typer(help="Migrate the local model (SQLite or PostgreSQL) and show its revision.", no_args_is_help=True)

UrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", envvar="GTM_DATABASE_URL", help="sqlite:///FILE or postgresql://…"),
]


def _url_of(config: OrgConfig) -> str:
    # skip_secrets leaves database_url_env unresolved: read that variable here.
    env_name = config.database_url_env
    if env_name:
        url = os.environ.get(env_name)
        if not url:
            source = config.source_file or "config"
            typer.echo(f"{source}: database_url_env: environment variable {env_name} is not set", err=True)
            raise typer.Exit(2)
        return url
    return str(config.database_url)


def _targets(database_url: str | None, config: list[Path] | None, org: str | None,
             config_dir: Path) -> tuple[dict[str, str], int]:
    """Database URL -> label (org aliases) of every database the options name, and the exit
    code so far (2 if an org file in the directory was skipped as invalid)."""
    if database_url:
        return {database_url: "database"}, 0
    configs, skipped = resolve_orgs(config, org, config_dir, skip_secrets=True)
    targets: dict[str, list[str]] = {}
    for cfg in configs:
        targets.setdefault(_url_of(cfg), []).append(cfg.alias)
    return {url: ", ".join(aliases) for url, aliases in targets.items()}, 2 if skipped else 0


def _engine(url: str, label: str) -> Any:
    """An engine for ``url``, or None after saying why the URL can't be used."""
    from connector.adapters.store import make_engine

    try:
        return make_engine(url)
    except Exception as exc:
        found = database_problem(exc)
        if found is None:
            raise
        typer.echo(f"{label}: {redact_url(url)}: {found[0]}", err=True)
        return None


def _code_of(exc: DBAPIError) -> int:
    """2 when the URL names a database that can't be right (no such database or role, not
    a SQLite file), 1 when the server may just be unavailable."""
    found = database_problem(exc)
    return 2 if found and found[1] else 1


@db_app.command("upgrade")
def upgrade_cmd(
    database_url: UrlOpt = None,
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    revision: Annotated[str, typer.Option("--revision", help="target revision")] = "head",
) -> None:
    """Bring the database(s) to the newest schema revision (safe to repeat)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import DBAPIError

    from connector.adapters.store import current_revision, upgrade
    from connector.adapters.store.engine import describe_db_error

    targets, code = _targets(database_url, config, org, config_dir)
    for url, label in targets.items():
        engine = _engine(url, label)
        if engine is None:
            code = max(code, 2)
            continue
        try:
            before = current_revision(engine)
            after = upgrade(engine, revision)
        except DBAPIError as exc:
            typer.echo(f"{label}: {redact_url(url)}: cannot migrate: {describe_db_error(exc)}", err=True)
            code = max(code, _code_of(exc))
            continue
        except CommandError as exc:  # --revision unknown, or a database ahead of this version
            typer.echo(f"{label}: {redact_url(url)}: cannot migrate: {exc}", err=True)
            code = max(code, 2)
            continue
        finally:
            engine.dispose()
        change = f"upgraded {before or 'empty'} -> {after}" if before != after else f"already at {after}"
        typer.echo(f"{label}: {redact_url(url)}: {change}")
    raise typer.Exit(code)


@db_app.command("current")
def current_cmd(
    database_url: UrlOpt = None,
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
) -> None:
    """Show the schema revision of the database(s) and whether it is the newest."""
    from sqlalchemy.exc import DBAPIError

    from connector.adapters.store import current_revision, head_revision
    from connector.adapters.store.engine import describe_db_error

    head = head_revision()
    targets, code = _targets(database_url, config, org, config_dir)
    for url, label in targets.items():
        engine = _engine(url, label)
        if engine is None:
            code = max(code, 2)
            continue
        try:
            revision = current_revision(engine)
        except DBAPIError as exc:
            typer.echo(f"{label}: {redact_url(url)}: cannot read: {describe_db_error(exc)}", err=True)
            code = max(code, _code_of(exc))
            continue
        finally:
            engine.dispose()
        state = "up to date" if revision == head else f"behind {head}: run `gtm-connector db upgrade`"
        typer.echo(f"{label}: {redact_url(url)}: {revision or 'not migrated'} ({state})")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
