"""Schema migrations, run programmatically: ``upgrade(url)`` brings a database to the
latest revision. The Alembic scripts ship inside this package, so an installed wheel or
a container image can migrate without the repository or an alembic.ini."""

from __future__ import annotations

from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from connector.adapters.store.engine import SQLITE_BEGIN_OPTION, lock_key, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = structlog.get_logger("connector.store")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default: the newest) in one transaction and
    return the revision reached. Safe to run again: an up-to-date database is left as is."""
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        before = current_revision(engine)
        config = alembic_config()
        with engine.connect() as conn, conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}).begin():
            if conn.dialect.name == "postgresql":
                # Daemons starting together: the second waits, then finds the schema current.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("*", "schema-upgrade")})
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        after = current_revision(engine)
        if after != before:
            log.info("schema.upgraded", from_revision=before, to_revision=after)
        return after
    finally:
        if engine is not url_or_engine:
            engine.dispose()
