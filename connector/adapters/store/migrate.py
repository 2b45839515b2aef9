"""Schema migrations, run programmatically: ``upgrade(url)`` brings a database to the
latest revision. The Alembic scripts ship inside this package, so an installed wheel or
a container image can migrate without the repository or an alembic.ini.

Alembic is imported only when there is something to migrate: a database already at the
newest revision (every run after the first) is recognised with one small query against
the revision read from the scripts' headers (``known_head``), without loading Alembic.
A new, empty database is not migrated step by step either: it gets the tables as
``tables.metadata`` declares them and the newest revision in ``alembic_version``, in one
transaction (``_create_new``). tests/integration/store/test_migrations.py proves that
schema identical to the migrated one on both backends (tables, columns and their order,
types, nullability, defaults, indexes, constraints, sequences).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from connector.adapters.store.engine import SQLITE_BEGIN_OPTION, lock_key, make_engine
from connector.adapters.store.tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_REVISION = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*"([^"]+)"', re.MULTILINE)
_DOWN = re.compile(r'^down_revision\s*(?::[^=]+)?=\s*(None|"([^"]+)")', re.MULTILINE)

log = structlog.get_logger("connector.store")

# Alembic's version table as Alembic creates it (``DefaultImpl.version_table_impl``).
VERSION_TABLE = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                      PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


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
    return the revision reached. Safe to run again: an up-to-date database is left as is.
    An empty database brought to the newest revision is created from the table definitions
    (``_create_new``); a named revision, even the newest, always runs the migrations."""
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        if revision == "head" and (head := known_head()) is not None:
            stamped = _stamped(engine)
            if stamped == head:
                return head  # nothing to do, and Alembic never loaded
            if stamped is None and _create_new(engine, head):
                log.info("schema.upgraded", from_revision=None, to_revision=head)
                return head
        from alembic import command

        before = current_revision(engine)
        config = alembic_config()
        with engine.connect() as conn, conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}).begin():
            _begin_schema_change(conn)
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        after = current_revision(engine)
        if after != before:
            log.info("schema.upgraded", from_revision=before, to_revision=after)
        return after
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def _begin_schema_change(conn: Connection) -> None:
    """Inside the caller's transaction: wait for any other process changing the schema.
    On SQLite ``BEGIN IMMEDIATE`` already holds the database's write lock."""
    if conn.dialect.name == "postgresql":
        # Daemons starting together: the second waits, then finds the schema current.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("*", "schema-upgrade")})


# Whether the database (on PostgreSQL: the schema new tables go to) holds any table,
# index, sequence or view at all.
_ANY_OBJECT = {
    "sqlite": "SELECT EXISTS (SELECT 1 FROM sqlite_master)",
    "postgresql": "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = current_schema()::regnamespace)",
}


def _create_new(engine: Engine, head: str) -> bool:
    """Create the newest schema in an empty database (its schema on PostgreSQL) and stamp
    it ``head``, in one transaction under the same lock as a migration; False, touching
    nothing, if the database has any table (Alembic then decides what to do)."""
    with engine.connect() as conn, conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}).begin():
        _begin_schema_change(conn)
        if conn.execute(text(_ANY_OBJECT[conn.dialect.name])).scalar():
            return False  # not new, or created by another process while we waited
        VERSION_TABLE.create(conn)
        metadata.create_all(conn, checkfirst=False)
        conn.execute(VERSION_TABLE.insert().values(version_num=head))
    return True


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
