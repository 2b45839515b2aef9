"""``bench/results.json``: the benchmarks' figures, merged key by key, so each script adds
its own keys and keeps the others'. Values are numbers; ``machine``, ``date`` and
``commit`` say where and when the file was last written, and ``runs`` the same per key
(which script, date and commit produced it)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"


def machine() -> str:
    """CPU model, processors, memory and Python: enough to tell two runs' machines apart."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f", {mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = ""
    return (f"{model}, {os.cpu_count()} CPUs{memory}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def record(values: dict[str, float | int], *, path: Path = RESULTS) -> None:
    """Merge ``values`` (numbers only) into the results file."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{key}: results are numbers, got {value!r}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    stamp = {"date": datetime.now(UTC).replace(microsecond=0).isoformat(), "commit": commit(),
             "script": Path(sys.argv[0]).name}
    doc.update(machine=machine(), date=stamp["date"], commit=stamp["commit"])
    runs = doc.setdefault("runs", {})
    for key, value in values.items():
        doc[key] = value
        runs[key] = stamp
    meta = {k: doc.pop(k) for k in ("machine", "date", "commit", "runs")}
    ordered = {**{k: meta[k] for k in ("machine", "date", "commit")}, **dict(sorted(doc.items())),
               "runs": dict(sorted(meta["runs"].items()))}
    path.write_text(json.dumps(ordered, indent=2) + "\n")


# Issue 16's targets, in one table: key -> (">=" or "<=", figure). Each script judges the
# keys it measured (``judge``), so a target lives here and nowhere else.
TARGETS: dict[str, tuple[str, float]] = {
    "sf_calls_idle_cycle": ("<=", 2),
    "sf_calls_initial_mirror_100k": ("<=", 51),
    "sf_calls_writeback_10k": ("<=", 50),
    "stripe_calls_per_invoice_new_customer": ("<=", 5),
    "stripe_calls_per_invoice_known_customer": ("<=", 4),
    "mirror_vs_bare_ratio_100k": ("<=", 1.3),
    "mirror_vs_bare_ratio_10k": ("<=", 1.5),
    "cli_import_seconds": ("<=", 0.3),
    "cli_import_rss_mb": ("<=", 60),
    "rss_ratio_1m_vs_100k": ("<=", 1.1),
    "postgres_mirror_vs_sqlite_ratio": ("<=", 1.5),
    "invoices_per_second_1000": (">=", 30),
    "vs_tap_salesforce_ratio": (">=", 5.0),
    "vs_airbyte_rest_ratio": (">=", 3.0),
    "vs_airbyte_bulk_ratio": (">=", 1.5),
    "sf_calls_vs_tap_ratio": ("<=", 1.0),
    "bulk_vs_rest_ratio_1m": ("<=", 0.7),
}


def judge(values: dict[str, float | int]) -> list[str]:
    """Print the verdict of each target among ``values``' keys; return the keys that miss.
    Keys without a target (seconds, MB behind a ratio) are not judged."""
    judged = {k: t for k, t in TARGETS.items() if k in values}
    missed = [k for k, (op, target) in judged.items()
              if not (values[k] >= target if op == ">=" else values[k] <= target)]
    for k, (op, target) in judged.items():
        print(f"{k}: {values[k]} (target {op} {target}{' MISSED' if k in missed else ''})")
    return missed
