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


def judge(values: dict[str, float | int], targets: dict[str, tuple[str, float]]) -> list[str]:
    """Print each target's key, figure and verdict; return the keys whose figure misses its
    target (``(">=", 30)`` or ``("<=", 1.3)``). A key not in ``values`` was not measured."""
    missed = [k for k, (op, target) in targets.items()
              if k in values and not (values[k] >= target if op == ">=" else values[k] <= target)]
    for k, (op, target) in targets.items():
        print(f"{k}: {values.get(k, 'not measured')} (target {op} {target}{' MISSED' if k in missed else ''})")
    return missed
