"""Builders and probes shared by the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, event

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ORG = "00D000000000ACMEAA"
OTHER_ORG = "00D000000000BETAAA"


def order_id(n: int) -> str:
    return f"a0B{n:015d}"


def an_order(n: int, *, status: str = "Activated", subtotal: str = "8400.00", modstamp: datetime | None = None,
             **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """A mirror row of ``orders`` as the mirror service passes it."""
    row: dict[str, Any] = {
        "sf_id": order_id(n),
        "system_modstamp": modstamp or T0 + timedelta(seconds=n),
        "name": f"O-{n:06d}",
        "order_number": f"{n:08d}",
        "status": status,
        "order_type": "Initial",
        "customer_name": "Globex Corporation",
        "contract_term_months": 12,
        "service_start_date": (T0 + timedelta(days=1)).date(),
        "billing_email": "ap@globex.example",
        "currency": "USD",
        "subtotal": Decimal(subtotal),
        "extra": {"PartnerNote__c": "net30", "Discount__c": Decimal("0.10")},
    }
    row.update(overrides)
    return row


@dataclass
class StatementLog:
    """Counts the SQL statements an engine sends, by verb and table."""

    statements: list[str] = field(default_factory=list)

    def count(self, verb: str, table: str) -> int:
        """Statements starting ``verb`` (``UPDATE``, ``INSERT INTO``, ``DELETE FROM``) on ``table``."""
        n = len(verb.split())
        hits = 0
        for statement in self.statements:
            words = statement.split()
            if words[:n] == verb.upper().split() and len(words) > n:
                if words[n].split("(")[0].strip('"') == table:
                    hits += 1
        return hits

    def selects_from(self, table: str) -> int:
        return sum(1 for s in self.statements if s.startswith("SELECT") and f"FROM {table} " in f"{s} ")

    def writes_to(self, table: str) -> int:
        return self.count("INSERT INTO", table) + self.count("UPDATE", table) + self.count("DELETE FROM", table)


@contextmanager
def statements(engine: Engine) -> Iterator[StatementLog]:
    log = StatementLog()

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        log.statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", before)
