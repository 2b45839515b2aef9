"""Schema migrations, run programmatically: ``upgrade(url)`` brings a database to the
latest revision. The Alembic scripts ship inside this package, so an installed wheel or
a container image can migrate without the repository or an alembic.ini.

Alembic is imported only when there is something to migrate: a database already at the
newest revision (every run after the first) is recognised with one small query against
the revision read from the scripts' headers (``known_head``), without loading Alembic.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from connector.adapters.store.engine import SQLITE_BEGIN_OPTION, lock_key, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_REVISION = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*"([^"]+)"', re.MULTILINE)
_DOWN = re.compile(r'^down_revision\s*(?::[^=]+)?=\s*(None|"([^"]+)")', re.MULTILINE)

log = structlog.get_logger("connector.store")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migration scripts."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default: the newest) in one transaction and
    return the revision reached. Safe to run again: an up-to-date database is left as is."""
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        if revision == "head" and (head := known_head()) is not None and _stamped(engine) == head:
            return head  # nothing to do, and Alembic never loaded
        from alembic import command

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


@cache
def known_head() -> str | None:
    """The newest revision, read from the migration scripts' ``revision``/``down_revision``
    lines (no Alembic import); None when that is not one plain chain with one head
    (merges, branches, a header it cannot read): then only Alembic decides."""
    revisions: dict[str, str | None] = {}
    for script in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        source = script.read_text(encoding="utf-8")
        rev, down = _REVISION.search(source), _DOWN.search(source)
        if rev is None:
            continue
        if down is None:
            return None
        revisions[rev.group(1)] = down.group(2)
    heads = set(revisions) - {d for d in revisions.values() if d is not None}
    return heads.pop() if len(heads) == 1 and list(revisions.values()).count(None) == 1 else None


def _stamped(engine: Engine) -> str | None:
    """The one revision in ``alembic_version``, or None (no table yet, several rows)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    except DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None
