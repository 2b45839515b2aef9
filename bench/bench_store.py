"""Store benchmark: mirror 100 pages x 2000 orders on SQLite and on PostgreSQL.

Each page is one unit of work (rows + cursor, one commit), as the mirror service does it.
Three passes per backend: first sync (all inserts), an identical re-sync (the cursor
lookback case: all unchanged, nothing written), and a re-sync where 10% of rows changed.
Prints rows/s per pass and the process's peak RSS.

    .venv/bin/python bench/bench_store.py [--pages 100] [--page-size 2000] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import getpass
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.adapters.store import SqlUnitOfWork, UpsertResult, make_engine, session_factory, upgrade  # noqa: E402

ORG = "00D000000000BENCHA"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def page_rows(page: int, size: int, changed_every: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(size):
        n = page * size + i
        changed = bool(changed_every) and n % changed_every == 0
        rows.append({
            "sf_id": f"a0B{n:015d}",
            "system_modstamp": T0 + timedelta(seconds=n),
            "name": f"O-{n:08d}",
            "order_number": f"{n:08d}",
            "status": "Expired" if changed else "Activated",
            "order_type": "Initial",
            "customer_name": f"Customer {n % 997}",
            "contract_term_months": 12,
            "service_start_date": (T0 + timedelta(days=n % 365)).date(),
            "billing_email": f"ap{n % 997}@example.com",
            "currency": "USD",
            "subtotal": Decimal(n % 100_000) + Decimal("0.25"),
            "extra": {"PartnerNote__c": "net30"},
        })  # fmt: skip
    return rows


def run_pass(uow: SqlUnitOfWork, pages: int, size: int, changed_every: int = 0) -> tuple[float, UpsertResult]:
    total = UpsertResult()
    started = time.perf_counter()
    for page in range(pages):
        rows = page_rows(page, size, changed_every)
        with uow:
            total += uow.mirror("order").upsert_many(ORG, rows)
            uow.sync_state.advance(ORG, "SfdcPartnerOrder", rows[-1]["system_modstamp"], len(rows))
            uow.commit()
    return time.perf_counter() - started, total


def pg_schema() -> Iterator[str | None]:
    import psycopg

    for user in dict.fromkeys([getpass.getuser(), "postgres"]):
        try:
            conn = psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user=user, autocommit=True,
                                   connect_timeout=3)  # fmt: skip
        except psycopg.Error as exc:
            error = str(exc).strip().splitlines()[0]
            continue
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"postgresql+psycopg://{user}@127.0.0.1:5432/test?schema={schema}"
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.close()
        return
    print(f"postgresql: skipped, not reachable on 127.0.0.1:5432: {error}")
    yield None


def bench(url: str, label: str, pages: int, size: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    uow = SqlUnitOfWork(session_factory(engine))
    n = pages * size
    try:
        passes = (("first sync (insert)", 0), ("re-sync, unchanged", 0), ("re-sync, 10% changed", 10))
        for name, changed_every in passes:
            seconds, result = run_pass(uow, pages, size, changed_every)
            print(f"{label:10s} {name:22s} {n:>8,d} rows {seconds:7.2f} s {n / seconds:>10,.0f} rows/s   "
                  f"inserted={result.inserted} updated={result.updated} unchanged={result.unchanged}")  # fmt: skip
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"store benchmark: {args.pages} pages x {args.page_size} orders, one unit of work per page")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            bench(f"sqlite:///{tmp}/bench.sqlite3", "sqlite", args.pages, args.page_size)
    if args.backend in ("postgresql", "both"):
        for url in pg_schema():
            if url:
                bench(url, "postgresql", args.pages, args.page_size)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
