"""The schema Alembic builds is the schema the code describes, on both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from connector.adapters.store import current_revision, head_revision, make_engine, metadata, mirror_columns, upgrade
from connector.mappings import check_against_tables, load_mapping

from .helpers import statements


def test_fresh_database_is_migrated_to_head(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision() == "0001_initial"
        assert current_revision(engine) == "0001_initial"
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
        assert upgrade(db_engine) == "0001_initial"
    ddl = [s for s in log.statements if s.split()[0] in ("CREATE", "ALTER", "DROP")]
    assert ddl == []
    assert log.count("UPDATE", "alembic_version") == 0


def test_gtm_v1_mapping_fits_the_mirror_tables() -> None:
    check_against_tables(load_mapping("gtm-v1"), mirror_columns)
    assert mirror_columns("order_items")["unit_price_per_month"] == "money"
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
    assert [out.strip().splitlines()[-1] for out, _ in outcomes] == ["0001_initial", "0001_initial"]
