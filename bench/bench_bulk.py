"""Bulk API 2.0 mirror against the REST mirror: the same generated records from the HTTPS
sandbox org into a new SQLite file, each side in a child process of its own.

The sandbox org runs in its own process (``gtm-connector sandbox org --json --data N``;
N = 1,000,000 by default: 250,000 orders and 750,000 items) and serves every round. Each
of ``--rounds`` rounds runs, back to back, the connector's mirror with ``bulk_threshold``
0 (REST pages of 2,000) and with the default threshold (50,000: the item and order objects
go through query jobs, the small catalog objects stay REST). The ratio is the median of
the per-round ratios, so a machine that speeds up or slows down between rounds cancels
out; the seconds reported are the medians of each side; the peak RSS is each child's.

    .venv/bin/python bench/bench_bulk.py [--size 1000000] [--rounds 3]

Writes ``bulk_mirror_<N>_seconds``, ``rest_mirror_<N>_seconds``, ``bulk_vs_rest_ratio_<N>``,
``bulk_peak_rss_mb_<N>``, ``rest_peak_rss_mb_<N>`` and ``bulk_sf_calls_<N>`` (1m spelled
``1m``) to bench/results.json. Target: ratio <= 0.7.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from _org import bench_org_config

    from connector.adapters.salesforce import build_org_gateway
    from connector.adapters.salesforce_bulk import BulkQuery
    from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory, upgrade
    from connector.logging import configure
    from connector.mappings import load_mapping
    from connector.services.bulk_mirror import BulkSource
    from connector.services.mirror import MirrorService

    configure(json=True, level="WARNING")
    info = spec["org"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        config = bench_org_config(info, url, sync={"bulk_threshold": spec["threshold"]})
        engine = make_engine(url)
        upgrade(engine)
        factory = session_factory(engine)
        org = build_org_gateway(config)
        threshold = config.sync.bulk_threshold
        bulk = BulkSource(org, BulkQuery(org), threshold) if threshold > 0 else None
        service = MirrorService(org, lambda: SqlUnitOfWork(factory), load_mapping("gtm-v2"), info["org_id"], bulk=bulk)
        started = time.perf_counter()
        report = service.run()
        seconds = time.perf_counter() - started
        engine.dispose()
        return {"seconds": round(seconds, 3), "records": sum(o.fetched for o in report.objects),
                "written": report.written, "api_calls": report.api_calls, "jobs": bulk.jobs if bulk else 0,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_side(org: dict[str, Any], threshold: int) -> dict[str, Any]:
    # The spec (the sandbox's client secret among it) goes through stdin, not the command line.
    out = subprocess.run([sys.executable, __file__, "--child"], input=json.dumps({"org": org, "threshold": threshold}),
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=50_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(sys.stdin.read()))))
        return 0
    exe = Path(sys.executable).parent / "gtm-connector"
    server = subprocess.Popen([str(exe), "sandbox", "org", "--json", "--data", str(args.size)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        org = json.loads(server.stdout.readline())
        rounds = []
        for i in range(args.rounds):
            rest = run_side(org, 0)
            bulk = run_side(org, args.threshold)
            assert bulk["records"] == rest["records"] and bulk["written"] == rest["written"], (bulk, rest)
            rounds.append((rest, bulk))
            print(f"round {i + 1}: REST {rest['seconds']:.2f} s ({rest['api_calls']} calls, {rest['peak_rss_mb']} MB)"
                  f"  Bulk {bulk['seconds']:.2f} s ({bulk['api_calls']} calls, {bulk['jobs']} jobs, "
                  f"{bulk['peak_rss_mb']} MB)  ratio {bulk['seconds'] / rest['seconds']:.3f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    ratio = statistics.median(b["seconds"] / r["seconds"] for r, b in rounds)
    tag = label(args.size)
    values: dict[str, float | int] = {
        f"bulk_mirror_{tag}_seconds": round(statistics.median(b["seconds"] for _, b in rounds), 2),
        f"rest_mirror_{tag}_seconds": round(statistics.median(r["seconds"] for r, _ in rounds), 2),
        f"bulk_vs_rest_ratio_{tag}": round(ratio, 3),
        f"bulk_peak_rss_mb_{tag}": max(b["peak_rss_mb"] for _, b in rounds),
        f"rest_peak_rss_mb_{tag}": max(r["peak_rss_mb"] for r, _ in rounds),
        f"bulk_sf_calls_{tag}": rounds[-1][1]["api_calls"],
    }
    print(f"{args.size} records: Bulk/REST time ratio {ratio:.3f} (median of {len(rounds)} rounds); "
          + ", ".join(f"{k} {v}" for k, v in values.items()))
    sys.path.insert(0, str(ROOT / "bench"))
    from _results import judge, record

    record(values)
    return 1 if judge(values) else 0  # (the target is set for 1,000,000 records: other sizes are reported)


if __name__ == "__main__":
    sys.exit(main())
