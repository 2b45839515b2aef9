"""Engines, sessions, the per-(org, job) advisory lock, and which database errors are
worth retrying.

One URL format for both backends:

* ``sqlite:///path/to/file.sqlite3`` (the embedded default): the parent directory is
  created, and every connection gets ``foreign_keys=ON``, ``journal_mode=WAL`` (readers
  don't block the writer) and ``busy_timeout=5000``. Transactions are real ``BEGIN`` …
  ``COMMIT`` blocks (pysqlite's implicit-transaction mode is switched off, as the
  SQLAlchemy docs recommend), so SAVEPOINTs and transactional DDL work. A connection with
  execution option ``sqlite_begin="IMMEDIATE"`` (sessions and migrations use it)
  takes the write lock at BEGIN, so concurrent writers queue for up to busy_timeout
  instead of failing when a read snapshot turns out stale at their first write.
* ``postgresql://…`` or ``postgresql+psycopg://…`` (production): psycopg 3, pre-ping.
  ``?schema=NAME`` puts every table, and Alembic's version table, in schema ``NAME``
  (through the connection's ``search_path``); the tests use it for isolation.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, Engine, Result, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

log = structlog.get_logger("connector.store")

SQLITE_BUSY_TIMEOUT_MS = 5000
# Connection execution option: "IMMEDIATE" makes a SQLite transaction BEGIN IMMEDIATE.
SQLITE_BEGIN_OPTION = "sqlite_begin"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: a JSON number would come back as a float
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: Any) -> str:
    """The JSON serializer of every engine: Decimal as a string, dates in ISO 8601."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """Rows an INSERT/UPDATE/DELETE matched. ``Session.execute`` is typed to return a plain
    ``Result``, but a DML statement's result is always a ``CursorResult`` (the one with
    ``rowcount``)."""
    return cast(CursorResult[*tuple[Any, ...]], result).rowcount


def json_roundtrip(value: Any) -> Any:
    """``value`` as it will read back from a JSON column (for change detection)."""
    return None if value is None else json.loads(json_dumps(value))


def _normalize_url(url: str | URL) -> tuple[URL, str | None]:
    """Pick the psycopg 3 driver for PostgreSQL and pull the ``schema`` query parameter out."""
    parsed = make_url(url)
    schema: str | None = None
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        given = parsed.query.get("schema")  # a tuple when the parameter is repeated
        schema = given[-1] if isinstance(given, tuple) else given
        parsed = parsed.difference_update_query(["schema"])
    return parsed, schema


def check_database_url(url: str | URL) -> tuple[URL, str | None]:
    """The URL and schema ``make_engine`` builds an engine from, checked without connecting:
    ``ValueError("database URL: …")`` for anything it could not use (a port that is no
    number or out of range, an unknown backend or driver, a bad ``?schema=``). Config
    validation calls it too, so what ``config check`` accepts is what the runtime opens.
    Messages never quote the URL (it may hold a password)."""
    from sqlalchemy.exc import NoSuchModuleError

    try:
        parsed, schema = _normalize_url(url)
    except ValueError as exc:  # make_url parses the port with int()
        reason = "the port must be a number" if "int()" in str(exc) else "not a valid URL"
        raise ValueError(f"database URL: {reason}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"database URL: unsupported backend {backend!r} (use sqlite:/// or postgresql://)")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise ValueError(f"database URL: port {parsed.port} is out of range (1-65535)")
    if schema and not schema.replace("_", "").isalnum():
        raise ValueError(f"database URL: schema {schema!r} must be letters, digits and _")
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"database URL: unknown driver {parsed.drivername!r} "
                         "(use sqlite:/// or postgresql://, optionally postgresql+psycopg://)") from None
    return parsed, schema


def make_engine(url: str | URL, *, echo: bool = False, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for a SQLite file or a PostgreSQL database (see the module docstring).
    ``sqlite_busy_timeout_ms``: how long a SQLite writer waits for the lock before the
    "database is locked" error (a ``TransientError`` out of the unit of work)."""
    parsed, schema = check_database_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, echo=echo, busy_timeout_ms=sqlite_busy_timeout_ms)
    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if schema:
            connect_args["options"] = f"-csearch_path={schema}"
        return create_engine(
            parsed,
            echo=echo,
            pool_pre_ping=True,
            connect_args=connect_args,
            json_serializer=json_dumps,
        )
    raise ValueError(f"database URL: unsupported backend {backend!r} (use sqlite:/// or postgresql://)")


def _use_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Switch the file to WAL (persistent: later connections find it set). Switching needs
    an exclusive lock, and SQLite may answer "database is locked" at once, without its busy
    handler, when two processes open a new file together: retry until busy_timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")


def with_busy_timeout(engine: Engine, busy_timeout_ms: int) -> Engine | None:
    """A second engine on ``engine``'s SQLite file whose writers wait ``busy_timeout_ms`` for
    the write lock instead of the first one's busy timeout (the caller disposes of it); None
    when there is no file to share: PostgreSQL, an in-memory database."""
    if engine.dialect.name != "sqlite" or _in_memory(engine.url):
        return None
    return _sqlite_engine(engine.url, echo=bool(engine.echo), busy_timeout_ms=busy_timeout_ms)


def _sqlite_engine(url: URL, *, echo: bool, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    in_memory = _in_memory(url)
    kwargs: dict[str, Any] = {}
    if in_memory:
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, json_serializer=json_dumps, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (BEGIN below) instead of pysqlite's
        # implicit, DML-only transactions; then set the pragmas outside any transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            _use_wal(cursor, busy_timeout_ms)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # execution option sqlite_begin="IMMEDIATE": take the write lock up front (waiting
        # up to busy_timeout) instead of failing later when a read snapshot must become a write.
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit.

    On SQLite their transactions are ``BEGIN IMMEDIATE``: a session is a unit of work,
    which writes, and writers that queue for the lock beat writers that fail when their
    read snapshot turns out stale at the first write (WAL readers are not blocked)."""
    bind = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) if engine.dialect.name == "sqlite" else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


def lock_key(org_id: str, job: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from ``(org_id, job)``."""
    digest = hashlib.blake2b(f"{org_id}\x1f{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(engine: Engine, org_id: str, job: str) -> Iterator[bool]:
    """Try to take the ``(org_id, job)`` lock for the duration of the block.

    Yields True when this process holds the lock, False when another session does (the
    caller skips its run). On PostgreSQL it is a session-level ``pg_try_advisory_lock`` on
    a connection dedicated to the block: it never waits, and if the holder crashes the lock
    goes with its connection. On SQLite it is an exclusive ``flock`` on a lock file beside
    the database (``.<file>.<key>.lock``), taken without waiting: two processes (a daemon
    and a CLI run, two CLI runs) never run the same (org, job) at once, and a killed
    holder's lock goes with its process. An in-memory database has nothing to share: True.
    """
    if engine.dialect.name != "postgresql":
        with _file_lock(engine, org_id, job) as acquired:
            yield acquired
        return
    key = lock_key(org_id, job)
    with engine.connect() as conn:
        acquired = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()  # the lock is session-level: don't sit idle in a transaction while holding it
        log.debug("lock.tried", org_id=org_id, job=job, acquired=acquired)
        try:
            yield acquired
        finally:
            if acquired:
                _unlock(conn, key, org_id, job)


@contextmanager
def _file_lock(engine: Engine, org_id: str, job: str) -> Iterator[bool]:
    import fcntl
    import os

    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield True
        return
    db = Path(database)
    path = db.with_name(f".{db.name}.{lock_key(org_id, job) & 0xFFFFFFFFFFFFFFFF:016x}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # a read-only directory: no lock to share, run as before
        log.warning("lock.file_unavailable", org_id=org_id, job=job, path=str(path), error=exc.strerror)
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            acquired = True
        except BlockingIOError:
            acquired = False
        log.debug("lock.tried", org_id=org_id, job=job, acquired=acquired)
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _unlock(conn: Any, key: int, org_id: str, job: str) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
    except DBAPIError:
        # The connection is gone, and the lock with it; never return it to the pool.
        log.warning("lock.release_failed", org_id=org_id, job=job)
        conn.invalidate()


# PostgreSQL SQLSTATEs worth a retry: connection exceptions (08), serialization failure
# and deadlock (40), out of resources (53), lock_not_available, admin/crash shutdown (57P).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "55P03", "57P")


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` is a database error a retry can cure: lock contention, a lost or
    refused connection, a serialization failure or deadlock. False for everything else
    (schema errors, constraint violations, bad SQL: retrying would fail the same way)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    message = str(exc.orig).lower()
    if "locked" in message or "busy" in message:  # SQLite: database is locked / busy
        return True
    # psycopg raises OperationalError without a SQLSTATE when the server went away.
    return exc.orig.__class__.__module__.startswith("psycopg")


def describe_db_error(exc: DBAPIError) -> str:
    """A short description for logs and TransientError: driver error class, SQLSTATE and
    first line of the driver message (never the statement parameters or the URL)."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    code = f" [{sqlstate}]" if sqlstate else ""
    return f"{type(orig).__name__}{code}: {first_line}"
