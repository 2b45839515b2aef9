"""Billing and write-back benchmark: Stripe calls per invoiced order, org upserts per result.

Invoicing (default N = 200 and 1,000 activated orders, a quarter of them a customer's first):
the ``invoicing`` job against the in-process Stripe sandbox, on SQLite in a temp dir. The
sandbox's request log is split per order (each order starts with its search for an invoice
Salesforce issued) to count calls for a known and for a new customer (targets 4 and 5:
search, [create customer,] create invoice, add lines, send, which finalizes). A second run
must create nothing and POST nothing. The 1,000-order case runs three times; its median
orders per second is ``invoices_per_second_1000`` (target >= 30).

Calls per invoice (``stripe_calls_per_invoice_new_customer`` / ``_known_customer``): two
orders of 50 lines each for one billing e-mail, the first a new customer, the second known.

Write-back (default N = 1,000 and 10,000 invoiced orders): the ``writeback`` job into the
in-process HTTPS sandbox org. Targets: ceil(N/200) collections upserts, then an idle cycle
with none, then one changed order sent with one upsert.

Each case runs in a fresh child process, so its peak RSS (which includes the in-process
sandbox holding the N objects) is its own.

    .venv/bin/python bench/bench_billing_writeback.py [--invoice-sizes 200,1000] [--writeback-sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _results import TARGETS, judge, record  # noqa: E402 - the bench directory is not a package

BENCH_ORG = "00D000000000BENCHA"
NOW = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)  # the connector's clock: every order below is due
START = date(2026, 1, 1)
PPC_CORE, PPC_PREMIUM = "0PC000000000BENC01", "0PC000000000BENC02"
PPP_CORE, PPP_PREMIUM = "0PP000000000BENC01", "0PP000000000BENC02"
KNOWN_CUSTOMER_CALLS = int(TARGETS["stripe_calls_per_invoice_known_customer"][1])  # per order, + 1 per new customer
ROUNDS = 3
CHUNK = 200  # records per collections upsert


def order_id(n: int) -> str:
    return f"a0O{n:015d}"


def runtime_for(tmp: str, *, stripe_box: Any = None, org: Any = None) -> Any:
    """An org runtime on a new SQLite file; Salesforce and Stripe point at the given
    sandboxes (an unused address when not given: that side is never called)."""
    from connector.bootstrap import bootstrap
    from connector.config import parse_config

    salesforce: dict[str, Any] = {"login_url": "https://127.0.0.1:9",
                                  "auth": {"kind": "client_credentials", "client_id": "unused",
                                           "client_secret": {"env": "S"}}}
    environ = {"S": "unused", "K": stripe_box.api_key if stripe_box else "sk_test_unused"}
    if org is not None:
        salesforce = {"login_url": org.login_url, "ca_bundle": str(org.ca_file), "api_version": org.api_version,
                      "auth": {"kind": "client_credentials", "client_id": org.client_id,
                               "client_secret": {"env": "S"}}}
        environ["S"] = org.client_secret
    config = parse_config({
        "org": {"alias": "bench", "org_id": org.org_id if org is not None else BENCH_ORG},
        "invoicing": {"issuer": "connector"},
        "salesforce": salesforce,
        "stripe": {"api_key": {"env": "K"}, **({"api_base": stripe_box.api_base} if stripe_box else {})},
        "database_url": f"sqlite:///{tmp}/bench.sqlite3",
        "data_dir": tmp,
    }, environ=environ)
    return bootstrap(config, clock=lambda: NOW)


def mirror_orders(runtime: Any, n: int, customers: int, *, lines_per_order: int = 2) -> list[dict[str, Any]]:
    """``n`` activated initial orders (Core App q x $50 + Premium Add-On 1 x $200 a month,
    or ``lines_per_order`` Core App lines) and their items written to the local model as
    the mirror leaves them, in one unit of work. Order k bills ``ap<k % customers>@``, so
    the first ``customers`` are new ones."""
    stamp = NOW - timedelta(days=1)
    orders, items = [], []
    for k in range(n):
        lines = [(PPP_CORE, 1 + k % 40, Decimal("50.00")), (PPP_PREMIUM, 1, Decimal("200.00"))]
        if lines_per_order != 2:
            lines = [(PPP_CORE, 1 + i, Decimal("50.00")) for i in range(lines_per_order)]
        totals = [q * price * 12 for _, q, price in lines]
        orders.append({
            "sf_id": order_id(k), "system_modstamp": stamp, "name": f"O-{k:06d}", "order_number": f"{k:08d}",
            "status": "Activated", "order_type": "Initial", "customer_name": f"Customer {k % customers}",
            "customer_org_id": f"00D{k % customers:012d}CUS", "contract_term_months": 12,
            "service_start_date": START, "billing_email": f"ap{k % customers}@customer.example",
            "currency": "USD", "subtotal": sum(totals, Decimal("0.00")),
        })
        items += [{"sf_id": f"a0I{k:012d}{i:03d}", "system_modstamp": stamp, "name": f"OI-{k}-{i}",
                   "order_id": order_id(k), "ppp_id": ppp, "quantity": q, "unit_price_per_month": price,
                   "line_item_total": total}
                  for i, ((ppp, q, price), total) in enumerate(zip(lines, totals, strict=True))]
    with runtime.uow() as uow:
        uow.mirror("ppc").upsert_many(runtime.org_id, [
            {"sf_id": PPC_CORE, "system_modstamp": stamp, "name": "Core App catalog",
             "revenue_share_percent": Decimal("15")},
            {"sf_id": PPC_PREMIUM, "system_modstamp": stamp, "name": "Premium Add-On catalog",
             "revenue_share_percent": Decimal("10")},
        ])
        uow.mirror("ppp").upsert_many(runtime.org_id, [
            {"sf_id": PPP_CORE, "system_modstamp": stamp, "name": "Core App", "ppc_id": PPC_CORE},
            {"sf_id": PPP_PREMIUM, "system_modstamp": stamp, "name": "Premium Add-On", "ppc_id": PPC_PREMIUM},
        ])
        uow.mirror("order").upsert_many(runtime.org_id, orders)
        uow.mirror("order_item").upsert_many(runtime.org_id, items)
        uow.commit()
    return orders


def run(runtime: Any, job: str) -> tuple[float, dict[str, int]]:
    from connector.jobs import run_job

    started = time.perf_counter()
    outcome = run_job(runtime, job, instance_id="bench")
    seconds = time.perf_counter() - started
    if outcome.status != "ok":
        raise RuntimeError(f"{job}: {outcome.status}: {outcome.error}")
    return seconds, dict(outcome.counts)


def per_order_calls(requests: list[dict[str, Any]]) -> list[list[str]]:
    """The request log cut into one group per order: the service invoices one order at a
    time and each order's first call is its search for an invoice Salesforce issued
    (``GET /v1/invoices/search``)."""
    groups: list[list[str]] = []
    for request in requests:
        endpoint = request["endpoint"]
        if endpoint == "GET /v1/invoices/search" or not groups:
            groups.append([])
        groups[-1].append(endpoint)
    return groups


def bench_invoicing(n: int) -> dict[str, Any]:
    from gtm_sandbox.stripe import StripeSandbox

    customers = max(1, n // 4)
    with StripeSandbox.start() as box, tempfile.TemporaryDirectory(prefix="bench-billing-") as tmp:
        runtime = runtime_for(tmp, stripe_box=box)
        try:
            mirror_orders(runtime, n, customers)
            box.reset_counters()
            cpu = time.process_time()
            seconds, counts = run(runtime, "invoicing")
            cpu = time.process_time() - cpu  # every thread: the connector and the in-process sandbox
            # Orders run side by side in batches, so calls are counted per endpoint: every order
            # costs one search, create, add_lines and send; each new e-mail one customer create.
            counters = box.counters()
            first_calls = sum(counters.values())
            searches = counters.get("GET /v1/invoices/search", 0)
            new_customers = counters.get("POST /v1/customers", 0)
            invoices = box.invoices()
            box.reset_counters()
            idle_seconds, idle = run(runtime, "invoicing")
            idle_counters = box.counters()
            with runtime.uow() as uow:
                sent = sum(1 for row in uow.invoices.list(runtime.org_id) if row.sent_at is not None)
            return {
                "n": n, "created": counts.get("invoices_created", 0), "quarantined": counts.get("quarantined", 0),
                "sent_locally": sent, "stripe_invoices": len(invoices),
                "stripe_open": sum(1 for i in invoices if i["status"] == "open"),
                "orders_seen": searches, "new_customers": new_customers, "expected_new": customers,
                "customers_in_stripe": len(box.objects("customer")),
                "calls": first_calls, "calls_per_order": round(first_calls / n, 2),
                "calls_allowed": n * KNOWN_CUSTOMER_CALLS + customers,
                "seconds": round(seconds, 2), "orders_per_s": round(n / seconds, 1),
                "cpu_seconds": round(cpu, 2), "orders_per_cpu_s": round(n / cpu, 1),
                "idle_created": idle.get("invoices_created", 0), "idle_considered": idle.get("considered", 0),
                "idle_calls": sum(idle_counters.values()),
                "idle_posts": sum(v for k, v in idle_counters.items() if k.startswith("POST ")),
                "idle_stripe_invoices": len(box.invoices()), "idle_seconds": round(idle_seconds, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        finally:
            runtime.close()


def bench_calls_per_invoice(lines: int) -> dict[str, Any]:
    """Two orders of ``lines`` lines for one e-mail: every Stripe call of each, counted."""
    from gtm_sandbox.stripe import StripeSandbox

    with StripeSandbox.start() as box, tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        runtime = runtime_for(tmp, stripe_box=box)
        try:
            mirror_orders(runtime, 2, 1, lines_per_order=lines)
            box.reset_counters()
            _, counts = run(runtime, "invoicing")
            new, known = per_order_calls(box.requests())
            invoices = box.invoices()
            return {"lines": lines, "created": counts.get("invoices_created", 0), "new": len(new),
                    "known": len(known), "new_calls": new, "known_calls": known,
                    "sent": sum(len(box.invoice_sends(i["id"])) for i in invoices),
                    "line_counts": sorted(i["lines"]["total_count"] for i in invoices)}
        finally:
            runtime.close()


def record_results(runtime: Any, n: int) -> None:
    """``n`` orders with a sent invoice in the local model (the invoicing job's rows), in
    one unit of work: write-back reads only the local model."""
    stamp = NOW - timedelta(days=1)
    with runtime.uow() as uow:
        uow.mirror("order").upsert_many(runtime.org_id, [
            {"sf_id": order_id(k), "system_modstamp": stamp, "name": f"O-{k:06d}", "order_number": f"{k:08d}",
             "status": "Activated", "order_type": "Initial", "contract_term_months": 12,
             "service_start_date": START, "currency": "USD", "subtotal": Decimal("8400.00")} for k in range(n)])
        for k in range(n):
            uow.invoices.upsert(runtime.org_id, order_id(k), stripe_invoice_id=f"in_bench{k:010d}",
                                stripe_customer_id=f"cus_bench{k % 997:06d}", number=f"BENCH-{k:06d}",
                                hosted_url=f"https://invoice.stripe.test/i/in_bench{k:010d}", status="open",
                                currency="usd", amount_due=Decimal("8400.00"), amount_paid=Decimal("0.00"),
                                amount_remaining=Decimal("8400.00"), due_date=START + timedelta(days=30),
                                sent_at=NOW - timedelta(days=1), status_source="create")
        uow.commit()


def bench_writeback(n: int) -> dict[str, Any]:
    from gtm_sandbox.org import SandboxOrg

    with SandboxOrg.start(data=None) as org, tempfile.TemporaryDirectory(prefix="bench-writeback-") as tmp:
        runtime = runtime_for(tmp, org=org)
        try:
            record_results(runtime, n)
            org.reset_counters()
            seconds, first = run(runtime, "writeback")
            upserts = org.calls("collections_upsert")
            api_calls = org.api_calls  # every API call the org counted (as its limits do)
            records = org.records("GTM_Order_Billing__c")
            idle_seconds, idle = run(runtime, "writeback")
            idle_upserts = org.calls("collections_upsert") - upserts
            changed = order_id(n // 2)
            with runtime.uow() as uow:
                uow.invoices.upsert(runtime.org_id, changed, status="paid", amount_paid=Decimal("8400.00"),
                                    amount_remaining=Decimal("0.00"), status_source="webhook")
                uow.commit()
            before = org.calls("collections_upsert")
            _, one = run(runtime, "writeback")
            one_upserts = org.calls("collections_upsert") - before
            status = next((r.get("Invoice_Status__c") for r in org.records("GTM_Order_Billing__c")
                           if r.get("Order_Id__c") == changed), None)
            return {
                "n": n, "written": first.get("written", 0), "failed": first.get("failed", 0),
                "org_records": len(records), "upserts": upserts, "upserts_allowed": math.ceil(n / CHUNK),
                "api_calls": api_calls,
                "seconds": round(seconds, 2), "records_per_s": round(n / seconds),
                "idle_upserts": idle_upserts, "idle_sent": idle.get("sent", 0),
                "idle_unchanged": idle.get("unchanged", 0), "idle_seconds": round(idle_seconds, 2),
                "one_upserts": one_upserts, "one_sent": one.get("sent", 0), "one_status": status,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        finally:
            runtime.close()


def child(case: str) -> dict[str, Any]:
    from connector.logging import configure

    configure(json=True, level="WARNING")
    kind, _, size = case.partition(":")
    if kind == "calls":
        return bench_calls_per_invoice(int(size))
    return bench_invoicing(int(size)) if kind == "invoicing" else bench_writeback(int(size))


def in_child(case: str) -> dict[str, Any] | None:
    out = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        print(f"{case}: child failed (exit {out.returncode})", file=sys.stderr)
        print(out.stdout, out.stderr, file=sys.stderr)
        return None
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def invoicing_ok(r: dict[str, Any]) -> bool:
    return (r["created"] == r["n"] == r["stripe_invoices"] == r["stripe_open"] == r["sent_locally"] == r["orders_seen"]
            and r["quarantined"] == 0 and r["new_customers"] == r["expected_new"] == r["customers_in_stripe"]
            and r["calls"] <= r["calls_allowed"]
            and r["idle_created"] == 0 and r["idle_posts"] == 0 and r["idle_stripe_invoices"] == r["n"])


def writeback_ok(r: dict[str, Any]) -> bool:
    return (r["written"] == r["n"] == r["org_records"] and r["failed"] == 0 and r["upserts"] <= r["upserts_allowed"]
            and r["idle_upserts"] == 0 and r["idle_sent"] == 0 and r["idle_unchanged"] == r["n"]
            and r["one_upserts"] == 1 and r["one_sent"] == 1 and r["one_status"] == "paid")


def report_calls() -> bool:
    """The 50-line invoice case: every call of a new and of a known customer's invoice."""
    calls = in_child("calls:50")
    print("one 50-line invoice -> Stripe sandbox: every call, new customer <= 5, known customer <= 4")
    if calls is None:
        return False
    invoiced = calls["created"] == 2 and calls["sent"] == 2 and calls["line_counts"] == [50, 50]
    print(f"  new customer:   {calls['new']} calls: {', '.join(calls['new_calls'])}")
    print(f"  known customer: {calls['known']} calls: {', '.join(calls['known_calls'])}"
          f"{'' if invoiced else '  WRONG: not two 50-line invoices created and sent'}")
    values = {"stripe_calls_per_invoice_new_customer": calls["new"],
              "stripe_calls_per_invoice_known_customer": calls["known"]}
    record(values)
    return bool(invoiced) and not judge(values)


def report_invoicing(sizes: list[int]) -> bool:
    """The N-order cases (1,000 runs ``ROUNDS`` times; its median orders/s is recorded)."""
    ok = True
    invoicing: list[dict[str, Any] | None] = []
    throughput: list[float] = []
    per_cpu: list[float] = []
    for size in sizes:
        for _ in range(ROUNDS if size == 1000 else 1):
            result = in_child(f"invoicing:{size}")
            invoicing.append(result)
            if size == 1000 and result is not None:
                throughput.append(result["orders_per_s"])
                per_cpu.append(result["orders_per_cpu_s"])
    print("invoicing -> Stripe sandbox (SQLite); calls <= 4 per order + 1 per new customer; rerun: 0 created")
    print(f"{'N':>6} {'created':>7} {'new cust':>8} {'calls':>6} {'per order':>9} {'allowed':>7} "
          f"{'seconds':>7} {'orders/s':>8} {'CPU s':>6} {'orders/CPU s':>12} {'rerun calls':>11} {'rerun created':>13} "
          f"{'peak RSS MB':>11}")
    for r in invoicing:
        if r is None:
            ok = False
            continue
        passed = invoicing_ok(r)
        ok = ok and passed
        print(f"{r['n']:>6} {r['created']:>7} {r['new_customers']:>8} {r['calls']:>6} {r['calls_per_order']:>9} "
              f"{r['calls_allowed']:>7} {r['seconds']:>7} {r['orders_per_s']:>8} {r['cpu_seconds']:>6} "
              f"{r['orders_per_cpu_s']:>12} {r['idle_calls']:>11} "
              f"{r['idle_created']:>13} {r['peak_rss_mb']:>11}{'' if passed else '  MISSED'}")
    if throughput:
        median = statistics.median(throughput)
        print(f"invoices per second, 1,000 orders, median of {len(throughput)} (rounds {throughput}); "
              f"per CPU second of the whole process (connector and sandbox): {statistics.median(per_cpu)}")
        values = {"invoices_per_second_1000": median}
        ok = not judge(values) and ok
        record(values)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoice-sizes", default="200,1000")
    parser.add_argument("--writeback-sizes", default="1000,10000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    ok = report_calls()
    ok = report_invoicing([int(s) for s in args.invoice_sizes.split(",") if s]) and ok

    writeback = [in_child(f"writeback:{s}") for s in args.writeback_sizes.split(",") if s]
    print("write-back -> sandbox org (SQLite); upserts <= ceil(N/200); idle cycle 0; one changed order 1")
    print(f"{'N':>6} {'written':>7} {'upserts':>7} {'allowed':>7} {'seconds':>7} {'records/s':>9} "
          f"{'idle upserts':>12} {'idle s':>6} {'1 changed':>9} {'peak RSS MB':>11}")
    for r in writeback:
        if r is None:
            ok = False
            continue
        passed = writeback_ok(r)
        ok = ok and passed
        print(f"{r['n']:>6} {r['written']:>7} {r['upserts']:>7} {r['upserts_allowed']:>7} {r['seconds']:>7} "
              f"{r['records_per_s']:>9} {r['idle_upserts']:>12} {r['idle_seconds']:>6} {r['one_upserts']:>9} "
              f"{r['peak_rss_mb']:>11}{'' if passed else '  MISSED'}")

    for r in writeback:
        if r is not None:
            label = f"{r['n'] // 1000}k" if r["n"] % 1000 == 0 else str(r["n"])
            print(f"write-back of {r['n']} orders: {r['api_calls']} Salesforce API calls in all")
            values = {f"sf_calls_writeback_{label}": r["api_calls"], f"writeback_seconds_{label}": r["seconds"]}
            ok = not judge(values) and ok
            record(values)
    print("OK" if ok else "FAILED: a target was missed (rows marked MISSED)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
