"""The sandboxes are their own package: they stand in for Salesforce and Stripe, so they
may not lean on the connector they are testing (a shared helper would make a bug on one side
invisible on the other). The connector reaches them only from the two places that run them."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the only connector modules that may import the sandboxes (lazily, when the extra is installed)
SANDBOX_USERS = {"connector/demo.py", "connector/entrypoints/cli/sandbox_cmd.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_the_sandbox_package_imports_nothing_from_the_connector() -> None:
    files = sorted((REPO / "gtm_sandbox").rglob("*.py"))
    assert len(files) > 20  # the package is where this test thinks it is
    offenders = {str(f.relative_to(REPO)) for f in files if "connector" in _top(_imports(f))}
    assert offenders == set()


def test_the_connector_reaches_the_sandboxes_only_where_it_runs_them() -> None:
    files = sorted((REPO / "connector").rglob("*.py"))
    users = {str(f.relative_to(REPO)) for f in files if "gtm_sandbox" in _top(_imports(f))}
    assert users <= SANDBOX_USERS and users  # empty would mean the demo lost its sandboxes
