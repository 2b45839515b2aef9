"""Soak: 200 scheduled cycles against the sandboxes with random faults at ~5 %.

What runs: the sandbox org (demo data) and the Stripe sandbox on 127.0.0.1, and a child
Python process that does what the daemon does for one org — the org file is read from a
config directory by ``load_config_dir``, the runtime is made by ``bootstrap`` and each
enabled job (mirror, invoicing, writeback) is run by ``connector.jobs.run_job`` with
the stop event and ``DaemonMetrics``, as ``Daemon._tick`` does — once per cycle. No ``tick`` is
passed: the tick check only keeps several daemons from serving one tick twice, and here
one instance runs each cycle once.

Why in-process and not the daemon's own scheduler: the shortest interval a schedule may
have is 10 s, so 200 real ticks would take over half an hour. Driving the ticks from a
child process keeps the same code path per run (config, bootstrap, ``run_job``) and the
whole soak at well under a minute on 2 cores (about 35 s). The child is a separate process
so its RSS is the connector's alone: it reads its VmRSS from /proc/self/status after a
``gc.collect()`` at the end of each cycle; cycle 20 (warm: every code path loaded, the
caches filled) is compared with cycle 200.

Faults, from a seeded RNG (reproducible): about 5 % of the calls fail. Before each cycle
every endpoint the previous cycle of the same kind called n times gets k ~ Binomial(n, 5 %)
one-shot faults — Salesforce: 503, 500, 401, REQUEST_LIMIT_EXCEEDED or UNABLE_TO_LOCK_ROW on
a random one of those calls; Stripe: 429, 500, or the connection reset before or after the
call is applied — through the sandboxes' control APIs. A new Activated order (with its
items; five billing e-mails shared between them) is inserted before every fourth cycle so
there is work. After the 200 cycles the faults are cleared and one clean cycle runs; then
every live record of the mapped objects is mirrored (or quarantined once as a dead
letter), every due Activated order has exactly one Stripe invoice, sent once, there is one
Stripe customer per billing e-mail and one write-back record per order, and RSS grew by at
most 10 %. The figures are printed for the CI log.
"""

from __future__ import annotations

import gc
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.daemon import REPO, new_org_id, write_configs

pytestmark = pytest.mark.slow

CYCLES = 200
EARLY = 20
FAULT_RATE = 0.05
SEED = int(os.environ.get("GTM_SOAK_SEED", "15"))  # another seed to explore; 15 is what CI runs
JOBS = ("mirror", "invoicing", "writeback")
CYCLE_TIMEOUT_S = 60.0
MAX_GROWTH = 0.10
EMAILS = [f"soak.billing.{n}@example.com" for n in range(5)]

# What a faulted call gets: Salesforce (status, errorCode), Stripe (status or connection reset
# before / after the call is applied).
ORG_FAULTS: list[tuple[int, str | None]] = [(503, None), (500, None), (401, None),
                                             (403, "REQUEST_LIMIT_EXCEEDED"), (503, "UNABLE_TO_LOCK_ROW")]
STRIPE_FAULTS: list[str | int] = [429, 500, "reset", "reset_before"]


# ----------------------------------------------------------------------------- the child


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child_main(config_dir: str) -> None:
    """One org's runtime, a cycle of every job per "run" line on stdin; one JSON line back."""
    from connector.bootstrap import bootstrap
    from connector.config import load_config_dir
    from connector.jobs import run_job
    from connector.metrics import DaemonMetrics

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the connector prints goes to the log, not into the protocol
    configs, problems = load_config_dir(config_dir)
    assert not problems and len(configs) == 1, problems
    runtime = bootstrap(configs[0])
    metrics = DaemonMetrics()
    stop = threading.Event()
    cycle = 0
    try:
        for line in sys.stdin:
            if line.strip() != "run":
                break
            cycle += 1
            statuses = {}
            for job in JOBS:
                outcome = run_job(runtime, job, instance_id="soak", stop=stop, tick=None, metrics=metrics)
                statuses[job] = outcome.status
            gc.collect()
            proto.write(json.dumps({"cycle": cycle, "rss_kb": _rss_kb(), "statuses": statuses}) + "\n")
    finally:
        runtime.close()


class Child:
    def __init__(self, config_dir: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from tests.reliability.test_soak import child_main; "
                                       "child_main(sys.argv[1])", str(config_dir)],
                cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def cycle(self, timeout: float = CYCLE_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"run\n")
        self.proc.stdin.flush()
        if not self.sel.select(timeout):
            raise AssertionError(f"no cycle report within {timeout}s; log tail:\n{self.tail()}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child exited ({self.proc.poll()}); log tail:\n{self.tail()}")
        return dict(json.loads(line))

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.sel.close()


# ----------------------------------------------------------------------------- the parent


@pytest.fixture
def sandboxes() -> Iterator[tuple[SandboxOrg, StripeSandbox]]:
    org = SandboxOrg.start(data="demo")
    try:
        box = StripeSandbox.start()
        try:
            yield org, box
        finally:
            box.stop()
    finally:
        org.stop()


def new_order(org: SandboxOrg, template: dict[str, Any], items: list[dict[str, Any]], n: int, email: str) -> str:
    keep = {k: v for k, v in template.items()
            if k not in ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp") and v is not None}
    keep.update(Name=f"Soak order {n}", OrderNumber=f"{900000 + n:08d}", BillingEmailAddress=email,
                ServiceStartDate=datetime.now(UTC).date().isoformat())
    [order_id] = org.insert("SfdcPartnerOrder", [keep])
    org.insert("SfdcPartnerOrderItem", [
        {**{k: v for k, v in item.items()
            if k not in ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "OrderItemNumber")
            and v is not None}, "PartnerOrderId": order_id}
        for item in items
    ])
    return order_id


class FaultPlan:
    """About FAULT_RATE of the calls fail: before each cycle, each endpoint gets k ~ Binomial(n,
    FAULT_RATE) one-shot faults, n being its calls in the last cycle of the same kind (with or
    without a new order); a Salesforce fault lands on a random one of those n calls (``skip``),
    a Stripe one on the first. Faults a cycle did not reach are cleared before the next."""

    def __init__(self, rng: random.Random, org: SandboxOrg, box: StripeSandbox) -> None:
        self.rng, self.org, self.box = rng, org, box
        self.last: dict[bool, tuple[Counter[str], Counter[str]]] = {}
        self.armed_org = self.armed_stripe = self.calls_org = self.calls_stripe = self.missed_org = 0
        self._before: tuple[Counter[str], Counter[str]] = (Counter(), Counter())

    def _counts(self) -> tuple[Counter[str], Counter[str]]:
        stripe = Counter({k: v for k, v in self.box.counters().items() if " /v1/" in k})
        return Counter(self.org.counters()["calls"]), stripe

    def _draw(self, n: int) -> int:
        return sum(self.rng.random() < FAULT_RATE for _ in range(n))

    def _clear(self) -> None:
        controls = self.org.control.api.controls  # the org's fault rules: those left were not reached
        with controls.lock:
            self.missed_org += len(controls.faults)
        self.org.clear_faults()
        self.box.clear_faults()

    def arm(self, work: bool) -> None:
        self._clear()
        org_calls, stripe_calls = self.last.get(work, (Counter(), Counter()))
        for endpoint, n in sorted(org_calls.items()):
            for _ in range(self._draw(n)):
                status, code = self.rng.choice(ORG_FAULTS)
                self.org.fail(endpoint, status=status, error_code=code, times=1, skip=self.rng.randrange(n))
                self.armed_org += 1
        for endpoint, n in sorted(stripe_calls.items()):
            for _ in range(self._draw(n)):
                self.box.fail_next(endpoint, times=1, fault=self.rng.choice(STRIPE_FAULTS))
                self.armed_stripe += 1
        self._before = self._counts()

    def after(self, work: bool) -> None:
        org_now, stripe_now = self._counts()
        org_delta, stripe_delta = org_now - self._before[0], stripe_now - self._before[1]
        self.calls_org += sum(org_delta.values())
        self.calls_stripe += sum(stripe_delta.values())
        self.last[work] = (org_delta, stripe_delta)

    def clear(self) -> None:
        self._clear()

    @property
    def hit_org(self) -> int:
        return self.armed_org - self.missed_org

    def hit_stripe(self) -> int:
        return sum(1 for r in self.box.requests() if r.get("fault") not in (None, "latency"))


def test_soak_200_cycles_with_faults(sandboxes: tuple[SandboxOrg, StripeSandbox], tmp_path: Path) -> None:
    org, box = sandboxes
    org_id = new_org_id()
    db_url = f"sqlite:///{tmp_path / 'soak.sqlite3'}"
    config_dir = write_configs(
        tmp_path / "config", {"soak": org_id}, database_url_env="GTM_SOAK_DB", interval=10, jobs=JOBS,
        salesforce={"soak": {"salesforce": {"login_url": org.login_url, "ca_bundle": str(org.ca_file)},
                             "salesforce.auth": {"kind": "client_credentials", "client_id": org.client_id,
                                                 "client_secret": {"env": "SOAK_SF_SECRET"}}}},
        stripe={"soak": {"stripe": {"api_key": {"env": "SOAK_STRIPE_KEY"}, "api_base": box.api_base}}},
    )
    env = {"GTM_SOAK_DB": db_url, "SOAK_SF_SECRET": org.client_secret, "SOAK_STRIPE_KEY": box.api_key}

    template = next(r for r in org.records("SfdcPartnerOrder") if r["Status"] == "Activated"
                    and r["OrderType"] == "Initial")
    items = [i for i in org.records("SfdcPartnerOrderItem") if i["PartnerOrderId"] == template["Id"]]
    rng = random.Random(SEED)
    inserted: list[str] = []
    plan = FaultPlan(rng, org, box)
    statuses: Counter[tuple[str, str]] = Counter()
    rss: dict[int, int] = {}
    started = time.monotonic()
    child = Child(config_dir, env, tmp_path / "child.log")
    try:
        for cycle in range(1, CYCLES + 1):
            work = cycle % 4 == 0
            if work:
                inserted.append(new_order(org, template, items, cycle, rng.choice(EMAILS)))
            plan.arm(work)
            report = child.cycle()
            plan.after(work)
            statuses.update(report["statuses"].items())
            rss[report["cycle"]] = report["rss_kb"]
        plan.clear()
        stripe_hit = plan.hit_stripe()
        final = child.cycle()
        assert set(final["statuses"].values()) == {"ok"}, (final, child.tail())
    finally:
        child.close()
    elapsed = time.monotonic() - started

    early, late = rss[EARLY], rss[CYCLES]
    growth = (late - early) / early
    print(f"\nsoak: {CYCLES} cycles (+1 clean) of {', '.join(JOBS)} in {elapsed:.0f}s; "
          f"faults injected (seed {SEED}, {FAULT_RATE:.0%} of calls): "
          f"Salesforce {plan.armed_org} armed, {plan.hit_org} hit, over {plan.calls_org} calls, "
          f"Stripe {plan.armed_stripe} armed, {stripe_hit} hit, over {plan.calls_stripe} calls; "
          f"{len(inserted)} orders added; runs by status {dict(sorted(statuses.items()))}; "
          f"RSS cycle {EARLY} {early} kB, cycle {CYCLES} {late} kB, growth {growth:+.1%}")

    assert plan.hit_org > 0 and stripe_hit > 0, "the soak injected no fault on one side"
    _assert_converged(org, box, org_id, db_url, inserted)
    assert growth <= MAX_GROWTH, f"RSS grew {growth:.1%} from cycle {EARLY} to {CYCLES}: {early} -> {late} kB"


def _assert_converged(org: SandboxOrg, box: StripeSandbox, org_id: str, db_url: str, inserted: list[str]) -> None:
    from connector.adapters.store import SqlUnitOfWork, make_engine, session_factory
    from connector.mappings import load_mapping

    mapping = load_mapping("gtm-v2")
    engine = make_engine(db_url)
    try:
        with SqlUnitOfWork(session_factory(engine)) as uow:
            letters = [(d.object_name, d.record_id) for d in uow.dead_letters.open(org_id, source="mirror")]
            assert len(letters) == len(set(letters))
            for key, obj in mapping.objects.items():
                stored = set(uow.mirror(key).ids(org_id))
                quarantined = {rid for name, rid in letters if name == obj.sobject}
                in_org = {r["Id"] for r in org.records(obj.sobject)}
                assert not stored & quarantined, key
                assert stored | quarantined == in_org, (key, len(stored), len(quarantined), len(in_org))
            local_invoices = {i.order_id: i.stripe_invoice_id for i in uow.invoices.list(org_id)}
    finally:
        engine.dispose()

    today = datetime.now(UTC).date().isoformat()
    due = {r["Id"] for r in org.records("SfdcPartnerOrder")
           if r["Status"] == "Activated" and r.get("ServiceStartDate") and r["ServiceStartDate"] <= today}
    assert set(inserted) <= due
    invoices = box.invoices()
    per_order = Counter(i["metadata"].get("gtm_order_id") for i in invoices)
    missing = due - set(per_order)
    assert not missing, f"due orders without a Stripe invoice: {sorted(missing)}"
    assert max(per_order.values()) == 1, {k: v for k, v in per_order.items() if v > 1}
    for invoice in invoices:
        sends = box.invoice_sends(invoice["id"])
        assert len(sends) == 1, (invoice["id"], len(sends))
        assert local_invoices.get(invoice["metadata"]["gtm_order_id"]) == invoice["id"]

    customers = Counter(c.get("email") for c in box.objects("customer"))
    assert max(customers.values()) == 1, {e: n for e, n in customers.items() if n > 1}
    billed = {r["BillingEmailAddress"] for r in org.records("SfdcPartnerOrder") if r["Id"] in per_order}
    assert set(customers) == billed, (sorted(customers), sorted(billed))

    written = Counter(r["Order_Id__c"] for r in org.records("GTM_Order_Billing__c"))
    assert max(written.values()) == 1, {k: v for k, v in written.items() if v > 1}
    assert set(per_order) <= set(written), "every invoiced order written back"
