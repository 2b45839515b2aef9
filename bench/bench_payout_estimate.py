"""Benchmark `gtm-connector payout-estimate` on generated orders.

Generates N orders as JSON lines (default 100,000: initial and add-on orders of 1-4 items,
a few bad ones), runs the command's core function in-process, and the installed command
as a subprocess on N/10 and on N orders (peak RSS should not grow with N: the input
is streamed). Prints orders/s, wall time and peak RSS.

    .venv/bin/python bench/bench_payout_estimate.py [--orders 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from connector.domain import initial_end_date
from connector.entrypoints.cli.payout_estimate import estimate_orders, run

SEED_003 = {
    "id": "seed-003",
    "contract_term_months": 12,
    "items": [
        {"quantity": 10, "unit_price_per_month": "50.00", "revenue_share_percent": 15},
        {"quantity": 1, "unit_price_per_month": "200.00", "revenue_share_percent": 10},
    ],
}


def generate(path: Path, count: int, rng: random.Random) -> int:
    """Write ``count`` orders to ``path``; returns how many were made bad on purpose."""
    bad = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(SEED_003) + "\n")
        for n in range(1, count):
            order: dict[str, object] = {
                "id": f"O-{n:07d}",
                "contract_term_months": 12,
                "items": [
                    {
                        "quantity": rng.randint(1, 500),
                        "unit_price_per_month": f"{rng.randint(0, 50_000) / 100:.2f}",
                        "revenue_share_percent": rng.choice([10, 12.5, 15, 20]),
                    }
                    for _ in range(rng.randint(1, 4))
                ],
            }
            if rng.random() < 0.2:  # add-on
                start = date(2024, 1, 1) + timedelta(days=rng.randint(0, 700))
                order["initial_start_date"] = start.isoformat()
                order["initial_end_date"] = initial_end_date(start).isoformat()
                order["addon_start_date"] = (start + timedelta(days=rng.randint(0, 364))).isoformat()
            if rng.random() < 0.01:
                order["items"][0]["quantity"] = -rng.randint(1, 9)  # type: ignore[index]
                bad += 1
            out.write(json.dumps(order) + "\n")
    return bad


def _rss_mib(kib: int) -> float:
    return kib / 1024  # ru_maxrss is in KiB on Linux


def bench_core(path: Path, count: int, expected_bad: int) -> None:
    with path.open(encoding="utf-8") as stream:
        first = next(estimate_orders(stream))
    assert first["expected_payout"] == "7260.00", first
    started = time.perf_counter()
    with path.open(encoding="utf-8") as stream, open(os.devnull, "w", encoding="utf-8") as sink:
        summary = run(stream, sink)
    elapsed = time.perf_counter() - started
    assert (summary.orders, summary.bad) == (count, expected_bad), summary
    print(f"core run():   {count:>7} orders in {elapsed:6.2f} s  = {count / elapsed:>8.0f} orders/s  "
          f"(bad: {summary.bad}; process peak RSS "
          f"{_rss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss):.0f} MiB)")


def bench_subprocess(path: Path, count: int) -> None:
    """Run the installed command; wait4 gives this child's own peak RSS."""
    script = Path(sys.executable).with_name("gtm-connector")
    started = time.perf_counter()
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        child = subprocess.Popen([str(script), "payout-estimate", "--input", str(path)],
                                 stdout=devnull, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    assert child.returncode in (0, 1), child.returncode
    print(f"subprocess:   {count:>7} orders in {elapsed:6.2f} s  = {count / elapsed:>8.0f} orders/s  "
          f"(exit {child.returncode}; child peak RSS {_rss_mib(usage.ru_maxrss):.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(20250101)
    with tempfile.TemporaryDirectory(prefix="bench-payout-") as tmp:
        small, large = Path(tmp) / "small.jsonl", Path(tmp) / "large.jsonl"
        small_count = max(1, args.orders // 10)
        generate(small, small_count, rng)
        bad = generate(large, args.orders, rng)
        print(f"payout-estimate benchmark: {args.orders} orders, {large.stat().st_size / 2**20:.1f} MiB of JSON lines")
        # Children first: a child's peak RSS starts from its parent's size at fork.
        bench_subprocess(small, small_count)
        bench_subprocess(large, args.orders)
        bench_core(large, args.orders, bad)


if __name__ == "__main__":
    main()
