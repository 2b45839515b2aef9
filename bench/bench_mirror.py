"""Mirror benchmark: generated records from the HTTPS sandbox org into SQLite.

For each size N (default 20,000 and 100,000) a fresh child process starts the sandbox org
in its own process (``gtm-connector sandbox org --json --data N``), mirrors every object
into a new SQLite file, then runs an idle cycle. It prints API calls, records/s and the
child's peak RSS, which must stay flat in N: pages are streamed and committed one by one.

    .venv/bin/python bench/bench_mirror.py [--sizes 20000,100000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(n: int) -> dict[str, object]:
    from _org import bench_org_config

    from connector.adapters.salesforce import build_org_gateway
    from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory, upgrade
    from connector.logging import configure
    from connector.mappings import load_mapping
    from connector.services.mirror import MirrorService

    configure(json=True, level="WARNING")
    exe = Path(sys.executable).parent / "gtm-connector"
    server = subprocess.Popen([str(exe), "sandbox", "org", "--json", "--data", str(n)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite3"
            config = bench_org_config(info, url)
            engine = make_engine(url)
            upgrade(engine)
            factory = session_factory(engine)
            org = build_org_gateway(config)
            service = MirrorService(org, lambda: SqlUnitOfWork(factory), load_mapping("gtm-v2"), info["org_id"])
            started = time.perf_counter()
            report = service.run()
            seconds = time.perf_counter() - started
            fetched = sum(o.fetched for o in report.objects)
            calls_first = report.api_calls
            allowed = sum(math.ceil(o.fetched / 2000) + 1 for o in report.objects)
            idle = service.run()
            engine.dispose()
            return {
                "n": n, "records": fetched, "seconds": round(seconds, 2), "records_per_s": round(fetched / seconds),
                "api_calls_first": calls_first, "api_calls_allowed": allowed, "api_calls_idle": idle.api_calls,
                "idle_written": idle.written,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            print(out.stdout, out.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'N':>8} {'records':>8} {'seconds':>8} {'rec/s':>8} {'API calls':>10} {'allowed':>8} {'idle calls':>10} "
          f"{'peak RSS MB':>12}")
    for r in results:
        print(f"{r['n']:>8} {r['records']:>8} {r['seconds']:>8} {r['records_per_s']:>8} {r['api_calls_first']:>10} "
              f"{r['api_calls_allowed']:>8} {r['api_calls_idle']:>10} {r['peak_rss_mb']:>12}")
    ok = all(r["api_calls_first"] <= r["api_calls_allowed"] and r["api_calls_idle"] <= 2 and r["idle_written"] == 0
             for r in results)
    if len(results) > 1:
        growth = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"peak RSS ratio {results[-1]['n']}/{results[0]['n']} records: {growth:.2f} (flat means close to 1)")
        ok = ok and growth < 1.5
    sys.path.insert(0, str(ROOT / "bench"))
    from _results import judge, record

    values: dict[str, float | int] = {}
    for r in results:
        label = f"{r['n'] // 1000}k" if r["n"] % 1000 == 0 else str(r["n"])
        values[f"sf_calls_initial_mirror_{label}"] = r["api_calls_first"]
        values["sf_calls_idle_cycle"] = max(values.get("sf_calls_idle_cycle", 0), r["api_calls_idle"])
    record(values)
    ok = not judge(values) and ok
    print("OK" if ok else "FAILED: API calls or memory out of bounds")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
