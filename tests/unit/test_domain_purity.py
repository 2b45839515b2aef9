"""connector/domain/ stays pure: no I/O libraries, no adapters, no printing or file access.

The checker walks each module's AST, resolves relative imports, and allows only pure
standard-library modules, ``connector.errors`` and ``connector.domain`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "connector" / "domain"

ALLOWED_MODULES = frozenset(
    {
        "__future__",
        "abc",
        "collections",
        "collections.abc",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "re",
        "types",
        "typing",
        "connector.errors",
    }
)
ALLOWED_PACKAGES = ("connector.domain",)
# Builtins that reach the outside world or load code behind the checker's back.
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "__import__", "exec", "eval", "breakpoint"})


def _allowed(module: str) -> bool:
    return module in ALLOWED_MODULES or any(
        module == package or module.startswith(package + ".") for package in ALLOWED_PACKAGES
    )


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """Absolute module name of ``from <node> import ...`` written inside ``package``."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def impurities(source: str, package: str = "connector.domain", filename: str = "<snippet>") -> list[str]:
    """Every forbidden import or call in ``source``, as ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [_resolve(node, package)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{filename}:{node.lineno}: calls {node.func.id}()")
            continue
        else:
            continue
        found.extend(f"{filename}:{node.lineno}: imports {m}" for m in modules if not _allowed(m))
    return found


def _domain_modules() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def test_domain_package_has_the_expected_modules() -> None:
    names = {path.stem for path in _domain_modules()}
    assert {"money", "pricing", "proration", "payouts", "validation", "entitlement", "states", "invoice_plan"} <= names


@pytest.mark.parametrize("path", _domain_modules(), ids=lambda p: p.name)
def test_domain_module_imports_nothing_that_does_io(path: Path) -> None:
    relative = path.relative_to(DOMAIN.parent.parent)
    package = ".".join(relative.with_suffix("").parts[:-1])
    assert impurities(path.read_text(encoding="utf-8"), package, str(relative)) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import requests",
        "import sqlalchemy.orm",
        "from sqlalchemy import select",
        "import stripe, decimal",
        "from connector.adapters.store import SqlUnitOfWork",
        "from ..adapters import stripe_billing",
        "from .. import config",
        "import os",
        "from pathlib import Path",
        "import logging",
        "import structlog",
        "def f():\n    import socket",
        "print('hello')",
        "data = open('orders.json').read()",
        "mod = __import__('requests')",
    ],
)
def test_checker_flags_io_imports_and_calls(snippet: str) -> None:
    assert impurities(snippet), f"the purity checker let {snippet!r} through"


@pytest.mark.parametrize(
    "snippet",
    [
        "from decimal import Decimal, ROUND_HALF_UP",
        "import datetime",
        "from collections.abc import Mapping",
        "from connector.errors import RecordError",
        "from connector.domain.money import to_money",
        "from .money import to_money",
        "from . import states",
        "from ..errors import RecordError",
    ],
)
def test_checker_accepts_pure_imports(snippet: str) -> None:
    assert impurities(snippet) == []
