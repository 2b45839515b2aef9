"""The services sit below the entry points: they take ports and callables, and never reach
back up into ``connector.jobs`` (the job table that imports them) or ``connector.entrypoints``
(the CLI, the daemon, the webhook receiver). An import back up is a cycle waiting to happen.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "connector" / "services"
ABOVE = ("connector.jobs", "connector.entrypoints")


def _imported(path: Path) -> set[str]:
    """Every module the file imports, at the top or inside a function, relative ones resolved."""
    package = "connector.services"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _above(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ABOVE)


def test_no_service_module_imports_jobs_or_entrypoints() -> None:
    files = sorted(SERVICES.rglob("*.py"))
    assert len(files) > 10  # the package is where this test thinks it is
    offenders = {f"{f.relative_to(REPO)}: {name}" for f in files for name in _imported(f) if _above(name)}
    assert offenders == set()


def test_importing_every_service_loads_neither_jobs_nor_entrypoints() -> None:
    modules = [f"connector.services.{f.stem}" for f in sorted(SERVICES.glob("*.py")) if f.stem != "__init__"]
    probe = ("import importlib, sys\n"
             f"for m in {modules!r}: importlib.import_module(m)\n"
             f"print(sorted(m for m in sys.modules if m.startswith({ABOVE!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
