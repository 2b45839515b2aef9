"""CLI start-up: importing ``connector.entrypoints.cli`` and ``gtm-connector --help``, each
as a whole process (wall seconds and peak RSS, median of ``--runs`` after a warm-up), next
to a bare ``python -c pass`` for scale. Targets: --help within 0.3 s and 60 MB.

    .venv/bin/python bench/bench_cli_startup.py [--runs 7]

Writes ``cli_import_seconds``, ``cli_import_rss_mb``, ``cli_help_seconds``,
``cli_help_rss_mb`` and ``python_startup_seconds`` to bench/results.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(cmd: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return wall, usage.ru_maxrss / 1024


def measure(cmd: list[str], runs: int) -> tuple[float, float]:
    run(cmd)  # warm-up: bytecode caches, page cache
    samples = [run(cmd) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from _results import judge, record

    cases = {
        "python_startup": [sys.executable, "-c", "pass"],
        "cli_import": [sys.executable, "-c", "import connector.entrypoints.cli"],
        "cli_help": [str(BIN / "gtm-connector"), "--help"],
    }
    figures = {name: measure(cmd, args.runs) for name, cmd in cases.items()}
    print(f"whole processes, median of {args.runs} runs after a warm-up")
    print(f"{'case':<16} {'wall s':>7} {'peak RSS MB':>12}")
    for name, (wall, rss) in figures.items():
        print(f"{name:<16} {wall:7.3f} {rss:12.1f}")
    values = {
        "python_startup_seconds": round(figures["python_startup"][0], 3),
        "cli_import_seconds": round(figures["cli_import"][0], 3),
        "cli_import_rss_mb": round(figures["cli_import"][1], 1),
        "cli_help_seconds": round(figures["cli_help"][0], 3),
        "cli_help_rss_mb": round(figures["cli_help"][1], 1),
    }
    record(values)
    return 1 if judge(values) else 0


if __name__ == "__main__":
    sys.exit(main())
