"""Sync against a bare pipe: the whole ``gtm-connector sync`` process, against a process
that fetches the same pages with plain ``requests`` and inserts them with one
``executemany`` per object (no validation, no mapping check, no state): the floor any
mirror has to pay for the HTTP and the SQLite writes.

Per size N (default 10,000 and 100,000 generated records: orders and 3 items each) the
sandbox org runs in its own process on 127.0.0.1; then ``--rounds`` rounds back to back,
each: the connector's sync into a new SQLite file, the bare pipe into another, the pages
fetched alone (what serving them costs, sandbox and client), the bare pipe again with the
connector's libraries imported first (``STACK``: the floor of the ratio on this stack), and
at the largest N the connector's sync into a new PostgreSQL schema. The figures are medians of the per-round
ratios, so a machine that speeds up or slows down between rounds cancels out.
Then one sync of ``--rss-size`` records (default 1,000,000) for the peak RSS against N.

    .venv/bin/python bench/bench_sync_vs_bare.py [--sizes 10000,100000] [--rounds 3]
        [--rss-size 1000000] [--no-postgres]

Writes ``mirror_vs_bare_ratio_<N>`` (10k and 100k spelled ``10k``/``100k``),
``stack_floor_ratio_<N>``, ``postgres_mirror_vs_sqlite_ratio``, ``rss_ratio_1m_vs_100k``
(``rss_ratio_<M>_vs_<N>`` if other sizes are given) and the seconds and MB behind them to bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV_SECRET, ENV_STRIPE = "BENCH_SF_CLIENT_SECRET", "BENCH_STRIPE_KEY"


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


# ------------------------------------------------------------------------------ bare pipe (child)


# The third-party libraries a ``gtm-connector sync`` process loads: the ones the design
# asks for (simple-salesforce, structlog, tenacity) and the ones the connector is built on
# (SQLAlchemy for the store, pydantic for the config, typer for the CLI). Importing them is
# a cost no connector on this stack avoids, so the bare pipe is also timed with them
# imported first: the floor for ``mirror_vs_bare_ratio`` at a given N.
STACK = ("sqlalchemy", "sqlalchemy.orm", "simple_salesforce", "structlog", "tenacity", "pydantic", "typer")


def bare(spec_file: str, db_file: str, fetch_only: bool, with_stack: bool = False) -> None:
    """The bare pipe: token, queryAll pages, one executemany per object, one commit.
    ``with_stack``: the connector's libraries (``STACK``) imported first, nothing else."""
    if with_stack:
        import importlib

        for name in STACK:
            importlib.import_module(name)
    import sqlite3

    import requests

    spec = json.loads(Path(spec_file).read_text())
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify; loopback needs no proxy
    http.verify = spec["ca_file"]
    token = http.post(f"{spec['login_url']}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": spec["client_id"],
        "client_secret": spec["client_secret"]}, timeout=60).json()
    http.headers["Authorization"] = f"Bearer {token['access_token']}"
    base = token["instance_url"]
    db = None if fetch_only else sqlite3.connect(db_file)
    total = 0
    for sobject, soql in spec["queries"]:
        rows: list[tuple[Any, ...]] = []
        fields: list[str] | None = None
        page = http.get(f"{base}/services/data/v{spec['api_version']}/queryAll/", params={"q": soql}, timeout=60).json()
        while True:
            for record in page["records"]:
                if fields is None:
                    fields = [f for f in record if f != "attributes"]
                rows.append(tuple(json.dumps(v) if isinstance(v, dict | list) else v for v in map(record.get, fields)))
            if page.get("done", True):
                break
            page = http.get(base + page["nextRecordsUrl"], timeout=60).json()
        total += len(rows)
        if db is not None and fields:
            db.execute(f"CREATE TABLE {sobject} ({', '.join(fields)}, PRIMARY KEY (Id))")
            db.executemany(f"INSERT INTO {sobject} VALUES ({', '.join('?' * len(fields))})", rows)
    if db is not None:
        db.commit()
        db.close()
    print(json.dumps({"records": total}))


# ------------------------------------------------------------------------------ parent


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` as a whole process: (wall seconds, peak RSS MB, stdout). Raises on failure."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited {proc.returncode}:\n{stdout[-2000:]}\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stdout


class Org:
    """The sandbox org in its own process, with ``n`` generated records."""

    def __init__(self, n: int) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN / "gtm-connector"), "sandbox", "org", "--json", "--data", str(n)],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sandbox org did not start with {n} records")
        self.info = json.loads(line)
        self.start_seconds = time.perf_counter() - started

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def config_file(tmp: Path, info: dict[str, str], database_url: str, name: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f"""database_url = {json.dumps(database_url)}

[org]
alias = "bench"
org_id = {json.dumps(info["org_id"])}

[invoicing]
issuer = "connector"

[salesforce]
login_url = {json.dumps(info["login_url"])}
api_version = {json.dumps(info["api_version"])}
ca_bundle = {json.dumps(info["ca_file"])}

[salesforce.auth]
kind = "client_credentials"
client_id = {json.dumps(info["client_id"])}
client_secret = {{ env = "{ENV_SECRET}" }}

[stripe]
api_key = {{ env = "{ENV_STRIPE}" }}
""")
    return path


def bare_spec(tmp: Path, info: dict[str, str]) -> Path:
    """The queries the connector's first sync sends, for the bare pipe to send too."""
    sys.path.insert(0, str(ROOT))
    from connector.mappings import load_mapping
    from connector.services.records import RecordConverter

    mapping = load_mapping("gtm-v2")
    queries = [(o.sobject, RecordConverter(mapping, o, lambda key: set()).soql()) for o in mapping.in_sync_order()]
    path = tmp / "bare.json"
    path.write_text(json.dumps({**info, "queries": queries}))
    return path


def sync(cfg: Path, info: dict[str, str]) -> tuple[float, float, dict[str, Any]]:
    wall, rss, out = timed([str(BIN / "gtm-connector"), "sync", "--config", str(cfg), "--json"],
                           {ENV_SECRET: info["client_secret"], ENV_STRIPE: "sk_test_bench"})
    return wall, rss, json.loads(out)


def fetched(doc: dict[str, Any]) -> int:
    """Records fetched, from ``sync --json`` of one org."""
    (org,) = doc["orgs"]
    if org["status"] != "ok":
        raise RuntimeError(f"sync: {org['status']}: {org['error']}")
    return sum(o["fetched"] for o in org["objects"])


class Postgres:
    """A fresh schema per sync in the local test database, dropped afterwards; None if unreachable."""

    def __init__(self) -> None:
        import getpass

        import psycopg

        self.conn = None
        self.reason = ""
        for user in dict.fromkeys([getpass.getuser(), "postgres"]):
            try:
                self.conn = psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user=user, autocommit=True,
                                            connect_timeout=3)
                self.user = user
                break
            except psycopg.Error as exc:
                self.reason = str(exc).strip().splitlines()[0]
        self.schemas: list[str] = []

    def url(self) -> str | None:
        if self.conn is None:
            return None
        schema = f"bench_{os.getpid()}_{len(self.schemas)}"
        self.conn.execute(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        return f"postgresql+psycopg://{self.user}@127.0.0.1:5432/test?schema={schema}"

    def close(self) -> None:
        if self.conn is not None:
            for schema in self.schemas:
                self.conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            self.conn.close()


def measure(n: int, rounds: int, pg: Postgres | None, tmp: Path) -> dict[str, Any]:
    org = Org(n)
    try:
        info = org.info
        spec = bare_spec(tmp, info)
        rows: list[dict[str, float]] = []
        records = 0
        for r in range(rounds):
            cfg = config_file(tmp, info, f"sqlite:///{tmp}/sync_{n}_{r}.sqlite3", f"sqlite_{n}_{r}")
            sync_s, sync_rss, doc = sync(cfg, info)
            records = fetched(doc)
            bare_s, bare_rss, out = timed([sys.executable, __file__, "--bare", str(spec),
                                           f"{tmp}/bare_{n}_{r}.sqlite3"])
            if json.loads(out)["records"] != records:
                raise RuntimeError(f"the bare pipe read {out.strip()}, the sync {records} records")
            fetch_s, _, _ = timed([sys.executable, __file__, "--bare", str(spec), "-", "--fetch-only"])
            stack_s, _, _ = timed([sys.executable, __file__, "--bare", str(spec), f"{tmp}/stack_{n}_{r}.sqlite3",
                                   "--with-stack"])
            row = {"sync_s": sync_s, "sync_rss": sync_rss, "bare_s": bare_s, "bare_rss": bare_rss, "fetch_s": fetch_s,
                   "stack_s": stack_s}
            url = pg.url() if pg is not None else None
            if url is not None:
                row["pg_s"] = sync(config_file(tmp, info, url, f"pg_{n}_{r}"), info)[0]
            rows.append(row)
            for f in tmp.glob(f"*_{n}_{r}.sqlite3*"):
                f.unlink()
        med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        result: dict[str, Any] = {"n": n, "records": records, "sandbox_start_s": org.start_seconds, **med,
                                  "ratio": statistics.median(row["sync_s"] / row["bare_s"] for row in rows),
                                  "ratios": [row["sync_s"] / row["bare_s"] for row in rows],
                                  "floor": statistics.median(row["stack_s"] / row["bare_s"] for row in rows)}
        if "pg_s" in rows[0]:
            result["pg_ratio"] = statistics.median(row["pg_s"] / row["sync_s"] for row in rows)
        return result
    finally:
        org.close()


def rss_only(n: int, tmp: Path) -> dict[str, Any]:
    org = Org(n)
    try:
        cfg = config_file(tmp, org.info, f"sqlite:///{tmp}/rss_{n}.sqlite3", f"rss_{n}")
        wall, rss, doc = sync(cfg, org.info)
        return {"n": n, "records": fetched(doc), "sandbox_start_s": org.start_seconds, "sync_s": wall, "sync_rss": rss}
    finally:
        org.close()
        for f in tmp.glob(f"rss_{n}.sqlite3*"):
            f.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-size", type=int, default=1_000_000, help="0: skip the peak-RSS run")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--results", type=Path, help="results file (default bench/results.json; '-': none)")
    parser.add_argument("--bare", nargs=2, metavar=("SPEC", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--fetch-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-stack", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare(args.bare[0], args.bare[1], args.fetch_only, args.with_stack)
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from _results import judge, record

    sizes = [int(s) for s in args.sizes.split(",")]
    pg = None if args.no_postgres else Postgres()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        try:
            for n in sizes:
                results.append(measure(n, args.rounds, pg if n == max(sizes) else None, Path(tmp)))
            big = rss_only(args.rss_size, Path(tmp)) if args.rss_size else None
        finally:
            if pg is not None:
                pg.close()
    print(f"whole processes, {args.rounds} rounds back to back, medians; ratio = median of per-round sync/bare")
    print(f"{'N':>8} {'records':>8} {'sync s':>7} {'bare s':>7} {'fetch s':>8} {'sync/bare':>10} {'rounds':>18} "
          f"{'pg s':>6} {'pg/sqlite':>9} {'sync RSS MB':>11} {'bare RSS MB':>11} {'floor':>6}")
    values: dict[str, float | int] = {}
    for r in results:
        pg_s = f"{r['pg_s']:6.2f}" if "pg_s" in r else f"{'-':>6}"
        pg_ratio = f"{r['pg_ratio']:9.2f}" if "pg_ratio" in r else f"{'-':>9}"
        print(f"{r['n']:>8} {r['records']:>8} {r['sync_s']:7.2f} {r['bare_s']:7.2f} {r['fetch_s']:8.2f} "
              f"{r['ratio']:10.2f} {' '.join(f'{x:.2f}' for x in r['ratios']):>18} {pg_s} {pg_ratio} "
              f"{r['sync_rss']:11.1f} {r['bare_rss']:11.1f} {r['floor']:6.2f}")
        n = label(r["n"])
        values.update({f"mirror_vs_bare_ratio_{n}": round(r["ratio"], 3), f"sync_seconds_{n}": round(r["sync_s"], 3),
                       f"bare_pipe_seconds_{n}": round(r["bare_s"], 3),
                       f"sandbox_serve_seconds_{n}": round(r["fetch_s"], 3),
                       f"bare_pipe_with_stack_seconds_{n}": round(r["stack_s"], 3),
                       f"stack_floor_ratio_{n}": round(r["floor"], 3),
                       f"sync_peak_rss_mb_{n}": round(r["sync_rss"], 1)})
        if "pg_ratio" in r:
            values["postgres_mirror_vs_sqlite_ratio"] = round(r["pg_ratio"], 3)
            values[f"postgres_sync_seconds_{n}"] = round(r["pg_s"], 3)
    if pg is not None and pg.conn is None:
        print(f"postgresql: skipped, not reachable on 127.0.0.1:5432: {pg.reason}")
    if big is not None:
        base = results[-1]
        ratio = big["sync_rss"] / base["sync_rss"]
        print(f"peak RSS of the sync process: {big['records']} records {big['sync_rss']:.1f} MB "
              f"({big['sync_s']:.1f} s; the sandbox generated them in {big['sandbox_start_s']:.1f} s) vs "
              f"{base['records']} records {base['sync_rss']:.1f} MB: ratio {ratio:.2f}")
        values[f"rss_ratio_{label(big['n'])}_vs_{label(base['n'])}"] = round(ratio, 3)
        values[f"sync_peak_rss_mb_{label(big['n'])}"] = round(big["sync_rss"], 1)
        values[f"sync_seconds_{label(big['n'])}"] = round(big["sync_s"], 3)
    missed = judge(values)
    if str(args.results) != "-":
        record(values, **({"path": args.results} if args.results else {}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
