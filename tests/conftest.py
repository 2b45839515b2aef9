"""Root conftest: loads every fixture module in tests/fixtures/ as a pytest plugin, so each
area (db, org sandbox, Stripe sandbox, ...) keeps its fixtures in its own file."""

from __future__ import annotations

import pkgutil
from pathlib import Path

_FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = [
    f"tests.fixtures.{m.name}" for m in pkgutil.iter_modules([str(_FIXTURES)]) if not m.name.startswith("_")
]
