"""The schema Alembic builds is the schema the code describes, on both backends; a new
database, created from the table definitions without Alembic, is that same schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from connector.adapters.store import (
    current_revision,
    head_revision,
    make_engine,
    metadata,
    mirror_columns,
    tables,
    upgrade,
)
from connector.adapters.store.engine import SQLITE_BEGIN_OPTION, lock_key
from connector.mappings import check_against_tables, load_mapping

from .helpers import statements

# The newest revision file (they are numbered): what a fresh database must end at.
HEAD = sorted(p.stem for p in (Path(tables.__file__).parent / "migrations" / "versions").glob("0*.py"))[-1]


def test_fresh_database_is_migrated_to_head(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision() == HEAD
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def schema_of(engine: Engine) -> dict[str, Any]:
    """Everything the database says about its schema, from its own catalog, and every row
    (a migration that writes rows would show). Names of the PostgreSQL schema are blanked:
    the two databases compared live in two schemas."""
    with engine.connect() as conn:
        tables = sorted(inspect(conn).get_table_names())
        rows = {t: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{t}"')).all())) for t in tables}
        if conn.dialect.name == "sqlite":
            # SQLite keeps the schema as the DDL text it was given (a table Alembic's batch
            # mode rebuilt and renamed is quoted): that text is the whole truth.
            catalog: Any = sorted(
                (kind, name, table, re.sub(r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", " ".join((sql or "").split())))
                for kind, name, table, sql in conn.execute(text("SELECT type, name, tbl_name, sql FROM sqlite_master")))
        else:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            queries = {
                "relations": "SELECT relname, relkind, relpersistence, reloptions FROM pg_class "
                             "WHERE relnamespace = current_schema()::regnamespace",
                # The order of the columns (not attnum: a dropped column leaves a gap).
                "columns": "SELECT table_name, rank() OVER (PARTITION BY table_name ORDER BY ordinal_position), "
                           "column_name, data_type, udt_name, character_maximum_length, numeric_precision, "
                           "numeric_scale, datetime_precision, is_nullable, column_default, is_identity, "
                           "identity_generation, is_generated, collation_name FROM information_schema.columns "
                           "WHERE table_schema = current_schema()",
                "constraints": "SELECT conrelid::regclass::text, conname, contype, condeferrable, condeferred, "
                               "convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
                               "WHERE connamespace = current_schema()::regnamespace",
                "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()",
                "sequences": "SELECT sequencename, data_type, start_value, min_value, max_value, increment_by, cycle, "
                             "cache_size FROM pg_sequences WHERE schemaname = current_schema()",
                "owned_sequences": "SELECT s.relname, t.relname, a.attname, d.deptype FROM pg_depend d "
                                   "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
                                   "JOIN pg_class t ON t.oid = d.refobjid "
                                   "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
                                   "WHERE s.relnamespace = current_schema()::regnamespace",
                "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger t JOIN pg_class c "
                            "ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace "
                            "AND NOT tgisinternal",
                "types": "SELECT typname, typtype FROM pg_type WHERE typnamespace = current_schema()::regnamespace "
                         "AND typtype <> 'c' AND typname NOT LIKE '\\_%'",
            }
            catalog = {key: sorted(repr(tuple(row)).replace(f'"{schema}".', "").replace(f"{schema}.", "")
                                   for row in conn.execute(text(sql)))
                       for key, sql in queries.items()}
    return {"tables": tables, "catalog": catalog, "rows": rows}


def test_a_new_database_is_created_as_the_migrations_build_it(database_url: str, other_database_url: str) -> None:
    """The new-database path (tables from ``metadata`` and the head stamped, no Alembic)
    gives the very schema that running every migration gives: same catalog, same rows."""
    created, migrated = make_engine(database_url), make_engine(other_database_url)
    try:
        with statements(created) as log:
            assert upgrade(created) == HEAD
        assert log.count("CREATE TABLE", "sync_state") == 1  # it did create the tables itself
        assert upgrade(migrated, HEAD) == HEAD  # a named revision: Alembic, migration by migration
        new, old = schema_of(created), schema_of(migrated)
        assert "alembic_version" in new["tables"] and new["rows"]["alembic_version"] == [repr((HEAD,))]
        assert json.dumps(new, indent=1, sort_keys=True) == json.dumps(old, indent=1, sort_keys=True)
    finally:
        created.dispose()
        migrated.dispose()


def test_a_database_with_tables_of_its_own_is_migrated_not_created(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE notes (body TEXT)"))
            conn.execute(text("INSERT INTO notes VALUES ('kept')"))
        with statements(engine) as log:
            assert upgrade(engine) == HEAD
        assert log.count("CREATE TABLE", "notes") == 0
        with engine.connect() as conn:
            assert conn.execute(text("SELECT body FROM notes")).scalar_one() == "kept"
        assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version", "notes"}
    finally:
        engine.dispose()


def test_a_new_database_is_created_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.sqlite3"
    probe = ("import json, sys\nfrom connector.adapters.store import upgrade\n"
             f"reached = upgrade({url!r})\n"
             "print(json.dumps([reached, sorted(m for m in sys.modules if m.split('.')[0] == 'alembic')]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [HEAD, []]
    engine = make_engine(url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    db_engine = make_engine(database_url)
    upgrade(db_engine, HEAD)  # migration by migration (a new database at "head" is created from metadata)
    inspector = inspect(db_engine)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    assert tables == set(metadata.tables)
    for name, table in metadata.tables.items():
        migrated = {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
        declared = {c.name: c.nullable for c in table.columns}
        assert migrated == declared, name
    # Alembic's own comparison also covers types, server defaults, indexes and constraints.
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    db_engine.dispose()
    assert diff == []


def test_second_upgrade_changes_nothing(db_engine) -> None:
    with statements(db_engine) as log:
        assert upgrade(db_engine) == HEAD
    ddl = [s for s in log.statements if s.split()[0] in ("CREATE", "ALTER", "DROP")]
    assert ddl == []
    assert log.count("UPDATE", "alembic_version") == 0


def test_gtm_v2_mapping_fits_the_mirror_tables() -> None:
    check_against_tables(load_mapping("gtm-v2"), mirror_columns)
    assert mirror_columns("order_items")["unit_price_per_month"] == "price"
    assert mirror_columns("org_payouts")["amount"] == "money"
    assert mirror_columns("ppcs")["revenue_share_percent"] == "percent"
    assert "org_id" not in mirror_columns("orders") and "extra" not in mirror_columns("orders")


def test_daemons_starting_together_both_find_the_schema_ready(database_url: str, other_database_url: str) -> None:
    """Three processes (Alembic keeps per-process global state, so not threads) wait on the
    schema lock, held here, of one new database; released, one creates the schema, the
    others find it: all reach the head and the schema is the migrated one."""
    script = ("import sys; from connector.adapters.store import upgrade; print('ready', flush=True); "
              "print(upgrade(sys.argv[1]))")
    with _schema_lock_held(database_url):
        daemons = [
            subprocess.Popen([sys.executable, "-c", script, database_url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3])  # fmt: skip
            for _ in range(3)
        ]
        for daemon in daemons:
            assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # each is now at the lock
    outcomes = [d.communicate(timeout=60) for d in daemons]
    assert [d.returncode for d in daemons] == [0, 0, 0], [err[-500:] for _, err in outcomes]
    assert [out.strip().splitlines()[-1] for out, _ in outcomes] == [HEAD, HEAD, HEAD]
    created, migrated = make_engine(database_url), make_engine(other_database_url)
    try:
        upgrade(migrated, HEAD)
        assert schema_of(created) == schema_of(migrated)
    finally:
        created.dispose()
        migrated.dispose()


@contextmanager
def _schema_lock_held(url: str) -> Iterator[None]:
    """Hold what a schema change waits for: PostgreSQL's schema advisory lock, SQLite's
    write lock (on a new, empty database file in WAL mode, as the engine leaves it)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn, conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}).begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("*", "schema-upgrade")})
            yield
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_prices_and_resets_cursors(database_url: str) -> None:
    """A database made by 0001 (prices to the cent) upgrades in place: prices keep their
    value in the wider column, and every cursor is reset so the next sync re-reads the org
    under the new mapping (filling new columns, replacing prices rounded to the cent)."""
    engine = make_engine(database_url)
    try:
        assert upgrade(engine, "0001_initial") == "0001_initial"
        now = "2026-12-01 00:00:00"
        with engine.begin() as conn:
            stored = 5000 if conn.dialect.name == "sqlite" else "50.00"  # 0001 kept cents on SQLite
            conn.execute(text("INSERT INTO order_items (org_id, sf_id, system_modstamp, is_deleted, first_seen_at, "
                              "updated_at, unit_price_per_month) VALUES ('00D000000000001AAA', 'a', :now, false, "
                              ":now, :now, :price)"), {"now": now, "price": stored})
            conn.execute(text("INSERT INTO sync_state (org_id, object_name, cursor, records_total, updated_at) "
                              "VALUES ('00D000000000001AAA', 'order_item', :now, 1, :now)"), {"now": now})
        assert upgrade(engine) == HEAD
        with engine.connect() as conn:
            price = conn.execute(select(tables.order_items.c.unit_price_per_month)).scalar_one()
            cursors = conn.execute(text("SELECT count(*) FROM sync_state")).scalar_one()
        assert price == Decimal("50.000000") and cursors == 0
    finally:
        engine.dispose()


def test_upgrade_from_0002_adds_tax_columns_and_keeps_invoices(database_url: str) -> None:
    """0003 adds ``invoices.tax`` and ``payout_reconciliation.tax`` (NULL on old rows: the
    next status refresh fills them) and the product licenses' PPP index."""
    engine = make_engine(database_url)
    try:
        assert upgrade(engine, "0002_documented_names") == "0002_documented_names"
        now = "2026-12-01 00:00:00"
        with engine.begin() as conn:
            due = 840000 if conn.dialect.name == "sqlite" else "8400.00"  # SQLite keeps minor units
            conn.execute(text("INSERT INTO invoices (org_id, order_id, stripe_invoice_id, amount_due, created_at, "
                              "updated_at) VALUES ('00D000000000001AAA', '801000000000001AAA', 'in_1', :due, :now, "
                              ":now)"), {"now": now, "due": due})
        assert upgrade(engine) == HEAD
        with engine.connect() as conn:
            row = conn.execute(select(tables.invoices.c.amount_due, tables.invoices.c.tax)).one()
        assert row == (Decimal("8400.00"), None)
        indexes = {i["name"] for i in inspect(engine).get_indexes("product_licenses")}
        assert "ix_product_licenses_org_id_ppp_id" in indexes
    finally:
        engine.dispose()


def test_the_head_read_from_the_scripts_is_alembics_head() -> None:
    from connector.adapters.store.migrate import known_head

    assert known_head() == head_revision() == HEAD


def test_a_database_at_head_is_upgraded_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/current.sqlite3"
    upgrade(url)  # a fresh database: Alembic builds it
    probe = ("import json, sys\nfrom connector.adapters.store import upgrade\n"
             f"reached = upgrade({url!r})\n"
             "print(json.dumps([reached, sorted(m for m in sys.modules if m.split('.')[0] == 'alembic')]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [HEAD, []]
