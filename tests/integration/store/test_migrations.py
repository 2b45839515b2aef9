"""The schema Alembic builds is the schema the code describes, on both backends."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from connector.adapters.store import (
    current_revision,
    head_revision,
    make_engine,
    metadata,
    mirror_columns,
    tables,
    upgrade,
)
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


def test_migrated_schema_matches_the_table_definitions(db_engine) -> None:
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


def test_daemons_starting_together_both_find_the_schema_ready(database_url: str) -> None:
    # Two processes (Alembic keeps per-process global state, so not two threads).
    script = "import sys; from connector.adapters.store import upgrade; print(upgrade(sys.argv[1]))"
    daemons = [
        subprocess.Popen([sys.executable, "-c", script, database_url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3])  # fmt: skip
        for _ in range(2)
    ]
    outcomes = [d.communicate(timeout=60) for d in daemons]
    assert [d.returncode for d in daemons] == [0, 0], [err[-500:] for _, err in outcomes]
    assert [out.strip().splitlines()[-1] for out, _ in outcomes] == [HEAD, HEAD]


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
    import json

    assert json.loads(out.stdout.strip().splitlines()[-1]) == [HEAD, []]
