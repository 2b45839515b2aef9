"""The end-to-end demo: one full cycle of the connector against the local sandboxes, for
two partner orgs that differ in who issues the invoice (``invoicing.issuer``).

No accounts, no network: two sandbox orgs (HTTPS) and the Stripe sandbox (HTTP) run
in-process on free 127.0.0.1 ports, each org seeded with the ``demo`` data set (seed 003's
order, an add-on, offers in every status, one malformed order item).

* ``demo`` (``config/demo.toml``, ``issuer = "salesforce"``, the usual GTM case): the
  sandbox org plays the GTM app's billing — linked to the Stripe sandbox, it has Stripe
  issue seed 003's invoice (NET30, sent, Salesforce's revenue share as the application fee)
  and records the billing junction. The connector creates no invoice: it adopts that one.
* ``demo-direct`` (the same file with ``issuer = "connector"`` on a Stripe connected
  account): the GTM app does not bill, the connector issues the invoice itself.

For each org, each step through ``connector.jobs.run_job`` as the daemon runs it:

    mirror -> offers push -> invoicing (adopt / create) -> the customer pays on the hosted page
    -> Stripe's signed webhooks reach the connector's receiver -> Stripe pays out
    -> reconcile -> write back

How Salesforce's revenue share shows up in the payout: it is deducted from each payment
(the GTM app's invoice carries it as an application fee; on the connector's own invoice
the demo prices the payment with the same fee), with no processing fee, so seed 003's
payout is exactly $7,260.00 and reconciles. (A real Stripe account also deducts its
processing fee; the reconciliation then says "fee differs" with both figures.)

State and the second run. Everything the connector keeps is in the data directory
(``--data-dir``, default ``.demo``): its SQLite file (or ``--database-url``). So that a
second run meets the *same* org and Stripe account, the demo also saves both sandboxes'
data there when it ends (``sandbox-org.json``, ``stripe-sandbox.json``) and loads it when
it starts. A second run therefore finds the order invoiced and every result written:
it creates no invoice and writes nothing, and says so — the sandboxes' request counters
(``POST /v1/invoices``, collections upserts) are in the summary to prove it.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from connector.config import OrgConfig, parse_config, redact_url
from connector.domain import format_money, from_cents, to_cents

if TYPE_CHECKING:
    from stripe.params import WebhookEndpointCreateParams

ORG_STATE = "sandbox-org.json"
DIRECT_ORG_STATE = "sandbox-org-direct.json"
DIRECT_ALIAS = "demo-direct"
DIRECT_ACCOUNT = "acct_demodirect000001"  # the second partner's Stripe (a connected account)
STRIPE_STATE = "stripe-sandbox.json"
WEBHOOK_PATH = "/stripe/webhook"
SEED_003_ORDER = "acme_order"  # the sandbox's name for seed 003's order
# What the connector listens to: invoice states (and payouts, for the log). Final keeps each
# name's Literal type, which Stripe's typed webhook endpoint params ask for.
WEBHOOK_EVENTS: Final = ("invoice.finalized", "invoice.sent", "invoice.updated", "invoice.paid",
                         "invoice.payment_succeeded", "invoice.payment_failed", "invoice.voided",
                         "invoice.marked_uncollectible", "payout.created", "payout.paid")
STEPS = ("mirror", "offers_push", "invoicing", "payment", "webhooks", "payout", "reconcile", "writeback")


def default_config_path() -> Path:
    """``config/demo.toml`` of the working directory, else the project's own (the checkout's,
    or the copy an installed wheel carries)."""
    from connector.resources import shipped

    here = Path("config/demo.toml")
    if here.is_file():
        return here
    return shipped("config/demo.toml")


DRAFT_KEY = "wayne-enterprises"


def write_demo_draft(drafts_dir: Path, today: date) -> Path | None:
    """The demo's locally authored draft offer (offers as code), written once: its dates
    are relative to the first run, and later runs find it unchanged (nothing to push)."""
    path = drafts_dir / f"{DRAFT_KEY}.toml"
    if path.exists():
        return None
    drafts_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# A draft offer authored by the partner (offers as code). The demo wrote it on its first run;
# `gtm-connector offers push` validates it and creates it in the org while it is Draft.
customer_name = "Wayne Enterprises"
customer_org_id = "00D5g0000012345ABC"
offer_type = "initial"
service_start_date = {(today + timedelta(days=30)).isoformat()}
valid_until = {(today + timedelta(days=14)).isoformat()}
recipient_email = "buyer@wayne.example.com"
billing_email = "ap@wayne.example.com"
partner_po_number = "PO-DEMO-0001"

[[items]]
product = "Core App"
quantity = 25
unit_price_per_month = "48.00"

[[items]]
product = "Premium Add-On"
quantity = 1
unit_price_per_month = "200.00"
""", "utf-8")
    return path


# ----------------------------------------------------------------------------- summary
@dataclass
class StepResult:
    name: str
    status: str
    detail: str
    counts: Mapping[str, int] = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass
class DemoSummary:
    data_dir: str
    database: str
    resumed: bool
    steps: list[StepResult] = field(default_factory=list)
    mirrored: dict[str, int] = field(default_factory=dict)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    seed_003: dict[str, Any] = field(default_factory=dict)
    writeback: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    this_run: dict[str, int] = field(default_factory=dict)
    orgs: list[dict[str, Any]] = field(default_factory=list)  # per org: issuer, invoices created/adopted, payout
    message: str = ""
    inspect: str = ""  # the command that shows what the run left (status, from the local model)
    dashboard: str = ""  # the command that serves the dashboard over what the run left
    dashboard_url: str = ""

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps) and all(o.get("ok", True) for o in self.orgs)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "data_dir": self.data_dir, "database": self.database, "second_run": self.resumed,
            "steps": [{"step": s.name, "status": s.status, "detail": s.detail, "counts": dict(s.counts),
                       "duration_s": s.duration_s} for s in self.steps],
            "mirrored": self.mirrored, "invoices": self.invoices, "seed_003": self.seed_003,
            "writeback": self.writeback, "dead_letters": self.dead_letters, "this_run": self.this_run,
            "orgs": self.orgs, "message": self.message, "inspect": self.inspect,
            "dashboard": self.dashboard, "dashboard_url": self.dashboard_url,
        }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format_money(value)


# ------------------------------------------------------------------------------- the run
@dataclass
class OrgRun:
    """One demo org: its sandbox org, the connector's runtime for it, its Stripe account
    (None: the platform account)."""

    org: Any
    runtime: Any
    account: str | None


@dataclass
class DemoOptions:
    data_dir: Path = Path(".demo")
    database_url: str | None = None
    config_path: Path | None = None


Progress = Callable[[str, str], None]  # (step, text) -> None: shown to the user as it goes


class Demo:
    def __init__(self, options: DemoOptions, *, progress: Progress | None = None) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.progress = progress or (lambda step, text: None)
        self.summary = DemoSummary(str(self.data_dir), "", resumed=False)

    # -------------------------------------------------------------- set-up
    def _start_sandboxes(self, stack: ExitStack) -> tuple[Any, Any, Any]:
        from gtm_sandbox.org import SandboxOrg
        from gtm_sandbox.snapshot import SnapshotError
        from gtm_sandbox.stripe import StripeSandbox

        states = (self.data_dir / ORG_STATE, self.data_dir / DIRECT_ORG_STATE, self.data_dir / STRIPE_STATE)
        saved = all(path.is_file() for path in states)
        org = stack.enter_context(SandboxOrg.start(data=None if saved else "demo"))
        direct = stack.enter_context(SandboxOrg.start(data=None if saved else "demo", org_number=2))
        box = stack.enter_context(StripeSandbox.start(webhook_retry_delays=(0.2, 0.5, 1.0)))
        if saved:
            try:
                org.restore(states[0])
                direct.restore(states[1])
                box.restore(states[2])
                restored = True
            except (SnapshotError, KeyError, TypeError):
                restored = False
            if not restored:  # an older or damaged save: start from the demo data again
                org.reset("demo")
                direct.reset("demo")
            self.summary.resumed = restored
        return org, direct, box

    def _config(self, org: Any, box: Any, webhook_secret: str, *, alias: str | None = None,
                issuer: str | None = None, account: str | None = None) -> OrgConfig:
        path = self.options.config_path or default_config_path()
        raw = tomllib.loads(path.read_text("utf-8"))
        raw["data_dir"] = str(self.data_dir)
        raw["database_url"] = self.options.database_url or f"sqlite:///{self.data_dir / 'demo.sqlite3'}"
        raw.pop("database_url_env", None)
        raw.setdefault("org", {})["org_id"] = org.org_id
        if alias:
            raw["org"]["alias"] = alias
        if issuer:
            raw.setdefault("invoicing", {})["issuer"] = issuer
        sf = raw.setdefault("salesforce", {})
        sf.update(login_url=org.login_url, ca_bundle=str(org.ca_file), api_version=org.api_version)
        sf.setdefault("auth", {})["client_id"] = org.client_id
        raw.setdefault("stripe", {})["api_base"] = box.api_base
        if account:
            raw["stripe"]["account"] = account
        drafts = self.data_dir / "offers" if not alias else self.data_dir / "offers" / alias
        raw.setdefault("offers", {}).setdefault("drafts_dir", str(drafts.resolve()))
        environ = {"GTM_DEMO_SF_CLIENT_SECRET": org.client_secret, "GTM_DEMO_STRIPE_KEY": box.api_key,
                   "GTM_DEMO_STRIPE_WEBHOOK_SECRET": webhook_secret}
        config = parse_config(raw, source=str(path), base_dir=path.parent, environ=environ)
        if alias is None:  # the primary org's file: what `status` reads after the demo
            self.summary.inspect = self._write_inspect_config(config)
        return config

    def _write_inspect_config(self, config: OrgConfig) -> str:
        """Write ``<data-dir>/demo.toml``: the demo org as this run sees it (its org id and
        database), for the commands that read only the local model; the command to use it.
        Secrets stay references to variables the demo alone sets (not needed to read)."""
        path = self.data_dir / "demo.toml"
        path.write_text(_local_config_text(config, note=(
            "# Written by `gtm-connector demo`: its org as the last run left it, for the commands that read",
            "# only the local model (status, dead-letters, report). Its sandboxes stop with the demo, so",
            "# commands that call Salesforce or Stripe cannot use this file; run the demo again instead.",
        )), encoding="utf-8")
        prefix = "GTM_DEMO_DATABASE_URL=… " if _has_password(config) else ""
        return f"{prefix}gtm-connector status --config {path}"

    def _write_dashboard_configs(self, configs: list[OrgConfig]) -> str:
        """Write ``<data-dir>/dashboard/<alias>.toml`` for every demo org, schedules off (the
        sandboxes stopped with the demo), so a daemon started on that folder serves the
        dashboard over what the run left; the command to start it."""
        folder = self.data_dir / "dashboard"
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.toml"):
            stale.unlink()
        secrets = folder / "secrets"  # the stopped sandboxes' credentials, owner-only, never in the files
        secrets.mkdir(mode=0o700, exist_ok=True)
        for config in configs:
            refs = {}
            for name, secret in (("sf_client_secret", getattr(config.salesforce.auth, "client_secret", None)),
                                 ("stripe_api_key", config.stripe.api_key)):
                target = secrets / f"{config.alias}.{name}"
                target.touch(mode=0o600)
                target.write_text(secret.get_secret_value() if secret is not None else "", encoding="utf-8")
                refs[name] = f"{{ file = {json.dumps(str(target.resolve()))} }}"
            schedules = [f"[schedules.{job}]\nenabled = false\n" for job in type(config.schedules).model_fields]
            text = _local_config_text(config, secrets=refs, note=(
                "# Written by `gtm-connector demo`: the daemon's dashboard over what the demo left. Its",
                "# sandboxes stopped with the demo, so every schedule is off: the daemon only serves pages.",
            )) + "\n[daemon]\nport = " + str(DASHBOARD_PORT) + "\n\n" + "\n".join(schedules)
            (folder / f"{config.alias}.toml").write_text(text, encoding="utf-8")
        prefix = "GTM_DEMO_DATABASE_URL=… " if any(_has_password(c) for c in configs) else ""
        return f"{prefix}gtm-connector daemon --config-dir {folder}"

    def _webhook_endpoints(self, box: Any, url: str) -> tuple[str, str]:
        """Register the connector's receiver in the Stripe sandbox, as a partner does in
        the dashboard: for the platform account, and for connected accounts (``connect``);
        their signing secrets."""
        import stripe

        client = stripe.StripeClient(box.api_key, base_addresses={"api": box.api_base}, max_network_retries=0)
        for endpoint in client.v1.webhook_endpoints.list(params={"limit": 100}).data:
            client.v1.webhook_endpoints.delete(endpoint.id)  # a previous run's receiver is gone
        secrets = []
        for connect in (False, True):
            params: WebhookEndpointCreateParams = {
                "url": url, "enabled_events": list(WEBHOOK_EVENTS), "description": "GTM connector demo"}
            if connect:
                params["connect"] = True
            endpoint = client.v1.webhook_endpoints.create(params=params)
            secrets.append(str(endpoint.secret))
        return secrets[0], secrets[1]

    # -------------------------------------------------------------- the cycle
    def run(self) -> DemoSummary:
        from connector.bootstrap import bootstrap
        from connector.entrypoints.webhook import make_webhook_app, receivers_for, serve

        self.data_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            self.progress("setup", "starting two sandbox orgs (HTTPS) and the Stripe sandbox on 127.0.0.1")
            org, direct, box = self._start_sandboxes(stack)
            app_holder: dict[str, Any] = {}
            server, _ = serve(lambda environ, start: app_holder["app"](environ, start))
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            url = f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}"
            platform_secret, connect_secret = self._webhook_endpoints(box, url)
            runs = [
                OrgRun(org, bootstrap(self._config(org, box, platform_secret)), None),
                OrgRun(direct, bootstrap(self._config(direct, box, connect_secret, alias=DIRECT_ALIAS,
                                                      issuer="connector", account=DIRECT_ACCOUNT)), DIRECT_ACCOUNT),
            ]
            for run in runs:
                stack.callback(run.runtime.close)
            app_holder["app"] = make_webhook_app(receivers_for([r.runtime for r in runs]))
            primary = runs[0].runtime
            self.summary.database = redact_url(str(primary.config.database_url))
            for run in runs:
                write_demo_draft(Path(str(run.runtime.config.offers.drafts_dir)), datetime.now(UTC).date())
            org.reset_counters()
            direct.reset_counters()
            box.reset_counters()
            if primary.config.invoicing.issuer == "salesforce":
                # The GTM app bills this org: due orders are invoiced on the partner's Stripe.
                org.link_stripe(box.api_base, box.api_key)
            self.progress("setup", f"orgs {org.login_url} ({primary.alias}), {direct.login_url} ({DIRECT_ALIAS}), "
                                   f"Stripe {box.api_base}, webhooks {url}"
                          + (" (saved sandbox state loaded)" if self.summary.resumed else ""))
            for run in runs:
                steps = self._cycle(run, box, prefix="" if run is runs[0] else f"{run.runtime.alias}: ")
                self.summary.orgs.append(self._org_figures(run, steps))
            self._collect(primary, org, box)
            self.summary.dashboard = self._write_dashboard_configs([r.runtime.config for r in runs])
            self.summary.dashboard_url = f"http://127.0.0.1:{DASHBOARD_PORT}/"
            org.save(self.data_dir / ORG_STATE)
            direct.save(self.data_dir / DIRECT_ORG_STATE)
            box.save(self.data_dir / STRIPE_STATE)
        return self.summary

    def _job(self, runtime: Any, job: str, describe: Callable[[Mapping[str, int]], str], steps: list[StepResult],
             prefix: str = "") -> StepResult:
        from connector.jobs import run_job

        self.progress(prefix + job, "running")
        outcome = run_job(runtime, job, instance_id="demo")
        detail = describe(outcome.counts) if outcome.status == "ok" else (outcome.error or outcome.status)
        step = StepResult(job, outcome.status, detail or "", dict(outcome.counts), outcome.duration_s)
        steps.append(step)
        self.progress(prefix + job, f"{outcome.status}: {step.detail}")
        return step

    def _step(self, name: str, fn: Callable[[], tuple[str, dict[str, int]]], steps: list[StepResult],
              prefix: str = "") -> StepResult:
        self.progress(prefix + name, "running")
        started = time.monotonic()
        try:
            detail, counts = fn()
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - the demo reports a failed step and goes on
            from connector.jobs import describe_failure

            detail, counts, status = describe_failure(exc), {}, "failed"
        step = StepResult(name, status, detail, counts, round(time.monotonic() - started, 3))
        steps.append(step)
        self.progress(prefix + name, f"{status}: {detail}")
        return step

    def _cycle(self, run: OrgRun, box: Any, *, prefix: str = "") -> list[StepResult]:
        """One full cycle for one org; its steps (the first org's are the summary's)."""
        runtime = run.runtime
        steps = self.summary.steps if not prefix else []
        self._job(runtime, "mirror", lambda c: f"{c.get('written', 0)} records written of {c.get('fetched', 0)} "
                                               f"fetched, {c.get('quarantined', 0)} quarantined, "
                                               f"{c.get('idle_objects', 0)} objects unchanged", steps, prefix)
        self._job(runtime, "offers_push", lambda c: ", ".join(f"{v} draft(s) {k}" for k, v in c.items() if v)
                  or "no drafts", steps, prefix)
        invoicing = self._job(runtime, "invoicing",
                              lambda c: f"{c.get('invoices_created', 0)} invoice(s) created, "
                                        f"{c.get('invoices_adopted', 0)} adopted from Salesforce, "
                                        f"{c.get('not_due', 0)} not due yet, {c.get('quarantined', 0)} quarantined",
                              steps, prefix)
        if not prefix:
            self.summary.this_run["invoices_created"] = int(invoicing.counts.get("invoices_created", 0))
        paid = self._step("payment", lambda: self._customer_pays(run, box), steps, prefix)
        self._step("webhooks", lambda: self._webhooks(runtime, box, expected=bool(paid.counts.get("paid"))),
                   steps, prefix)
        self._step("payout", lambda: self._stripe_pays_out(box, bool(paid.counts.get("paid")), run.account),
                   steps, prefix)
        self._job(runtime, "reconcile", lambda c: f"{c.get('payouts', 0)} new payout(s), {c.get('matched', 0)} "
                                                  f"matched, {c.get('discrepancies', 0)} discrepancies", steps, prefix)
        wb = self._job(runtime, "writeback", lambda c: f"{c.get('written', 0)} written, {c.get('failed', 0)} "
                                                       f"rejected, {c.get('unchanged', 0)} unchanged", steps, prefix)
        if not prefix:
            self.summary.this_run["writeback_records_written"] = int(wb.counts.get("written", 0))
        return steps

    def _customer_pays(self, run: OrgRun, box: Any) -> tuple[str, dict[str, int]]:
        """Every open invoice of the org is paid in full on Stripe's hosted page. The GTM
        app's invoices carry Salesforce's share as their application fee; on the connector's
        own the demo prices the payment with the same fee (see the module docstring)."""
        from connector.services.payouts import OrderBook

        runtime = run.runtime
        with runtime.uow() as uow:
            rows = [i for i in uow.invoices.list(runtime.org_id, status="open") if i.stripe_invoice_id]
        paid = []
        for row in rows:
            invoice = box.helpers.objects("invoice", account=run.account)
            invoice = next((i for i in invoice if i["id"] == row.stripe_invoice_id), None)
            if invoice is None or invoice["status"] != "open":
                continue
            fee = None
            if row.issued_by != "salesforce":
                with runtime.uow() as uow:
                    book = OrderBook(uow, runtime.org_id, runtime.config.invoicing.proration, runtime.mapping)
                    fee = to_cents(book.expected(row.order_id).revenue_share)
            box.pay_invoice(invoice["id"], fee=fee, account=run.account)
            amount_due = format_money(from_cents(int(invoice["amount_due"])))
            paid.append(f"{invoice.get('number') or invoice['id']} ({amount_due})")
        if not paid:
            return "no open invoice to pay", {"paid": 0}
        return f"customer paid {', '.join(paid)}", {"paid": len(paid)}

    def _webhooks(self, runtime: Any, box: Any, *, expected: bool) -> tuple[str, dict[str, int]]:
        """Wait until Stripe has delivered its signed events to the connector's receiver."""
        box.wait_for_webhooks(timeout=15)
        deliveries = box.webhook_deliveries()
        accepted = sum(1 for d in deliveries if isinstance(d.get("status"), int) and 200 <= d["status"] < 300)
        events = len({d["event_id"] for d in deliveries})
        with runtime.uow() as uow:
            paid = len(uow.invoices.list(runtime.org_id, status="paid"))
        if not deliveries:
            return ("no webhook arrived" if expected else "no events this run"), {"delivered": 0, "accepted": 0}
        return (f"{events} signed event(s) delivered, {accepted} accepted; {paid} invoice(s) paid in the local model",
                {"delivered": events, "accepted": accepted})

    def _stripe_pays_out(self, box: Any, paid: bool, account: str | None = None) -> tuple[str, dict[str, int]]:
        if not paid:
            return "nothing new to pay out", {"payouts": 0}
        box.advance_clock(days=box.world.settings.available_after_days)  # the funds settle
        payout = box.create_payout(account=account)
        if payout is None:
            return "nothing available to pay out", {"payouts": 0}
        box.wait_for_webhooks(timeout=15)
        arrival = datetime.fromtimestamp(payout["arrival_date"], UTC).date().isoformat()
        return (f"payout {payout['id']} of {format_money(from_cents(int(payout['amount'])))} arriving {arrival}",
                {"payouts": 1})

    # -------------------------------------------------------------- what to show
    def _org_figures(self, run: OrgRun, steps: list[StepResult]) -> dict[str, Any]:
        """One org's line: who issues, what the connector created or adopted, seed 003's payout."""
        runtime = run.runtime
        counts = next((s.counts for s in steps if s.name == "invoicing"), {})
        seed_id = run.org.demo_ids.get(SEED_003_ORDER)
        with runtime.uow() as uow:
            rec = uow.reconciliation.get(runtime.org_id, seed_id) if seed_id else None
            issued = {i.issued_by for i in uow.invoices.list(runtime.org_id) if i.stripe_invoice_id}
        return {
            "alias": runtime.alias, "issuer": runtime.config.invoicing.issuer, "org_id": runtime.org_id,
            "stripe_account": run.account or "platform",
            "invoices_created_by_connector": int(counts.get("invoices_created", 0)),
            "invoices_adopted": int(counts.get("invoices_adopted", 0)),
            "invoices_issued_by": sorted(i for i in issued if i),
            "seed_003_expected_payout": _money(rec.expected_payout) if rec else None,
            "seed_003_actual_payout": _money(rec.actual_payout) if rec else None,
            "seed_003_discrepancy": rec.discrepancy if rec else None,
            "ok": all(s.status in ("ok", "skipped") for s in steps),
        }

    def _collect(self, runtime: Any, org: Any, box: Any) -> None:
        from connector.services.payouts import OrderBook
        from connector.services.writeback import target_of

        s = self.summary
        target = target_of(runtime)
        with runtime.uow() as uow:
            for obj in runtime.mapping.in_sync_order():
                s.mirrored[obj.sobject] = uow.mirror(obj.name).count(runtime.org_id)
            orders = uow.mirror("order")
            for inv in uow.invoices.list(runtime.org_id):
                order = orders.get(runtime.org_id, inv.order_id) or {}
                s.invoices.append({
                    "order_id": inv.order_id, "order_number": order.get("order_number"),
                    "customer": order.get("customer_name"), "invoice_id": inv.stripe_invoice_id,
                    "number": inv.number, "status": inv.status,
                    "due_date": inv.due_date.isoformat() if inv.due_date else None, "amount": _money(inv.amount_due),
                    "amount_paid": _money(inv.amount_paid)})
            seed_id = org.demo_ids.get(SEED_003_ORDER)
            if seed_id:
                rec = uow.reconciliation.get(runtime.org_id, seed_id)
                order = orders.get(runtime.org_id, seed_id) or {}
                if rec is None:
                    book = OrderBook(uow, runtime.org_id, runtime.config.invoicing.proration, runtime.mapping)
                    expected = book.expected(seed_id)
                    subtotal, share, exp = expected.subtotal, expected.revenue_share, expected.expected_payout
                    actual = difference = payout_date = discrepancy = None
                else:
                    subtotal, share, exp = rec.subtotal, rec.revenue_share, rec.expected_payout
                    actual, difference, payout_date, discrepancy = (rec.actual_payout, rec.difference,
                                                                    rec.payout_date, rec.discrepancy)
                s.seed_003 = {
                    "order_id": seed_id, "order_number": order.get("order_number"),
                    "customer": order.get("customer_name"),
                    "subtotal": _money(subtotal), "revenue_share": _money(share), "expected_payout": _money(exp),
                    "actual_payout": _money(actual), "difference": _money(difference),
                    "payout_date": payout_date.isoformat() if payout_date else None, "discrepancy": discrepancy}
            for d in uow.dead_letters.open(runtime.org_id):
                s.dead_letters.append({"id": d.id, "source": d.source, "object": d.object_name,
                                       "record_id": d.record_id, "code": d.error_code, "reason": d.reason})
            states = {w.order_id: w for w in uow.writeback_state.list(runtime.org_id)}
        records = org.records(target.sobject)
        wb_step = next((st for st in s.steps if st.name == "writeback"), None)
        counts = dict(wb_step.counts) if wb_step else {}
        s.writeback = {
            "target": target.sobject, "external_id": target.external_id,
            "this_run": {k: counts.get(k, 0) for k in ("sent", "written", "failed", "unchanged", "awaiting_replay")},
            "records": [{"order_id": r.get(target.external_id), "order_number": r.get("Order_Number__c"),
                         "invoice_status": r.get("Invoice_Status__c"),
                         "expected_payout": _money(_dec(r.get("Expected_Payout__c"))),
                         "actual_payout": _money(_dec(r.get("Actual_Payout__c"))),
                         "last_error": r.get("Last_Error__c"),
                         "last_written_at": states[r[target.external_id]].last_written_at.isoformat()
                         if r.get(target.external_id) in states and states[r[target.external_id]].last_written_at
                         else None}
                        for r in sorted(records, key=lambda r: str(r.get("Order_Number__c") or ""))],
        }
        stripe_calls = box.counters()
        org_calls = org.counters()["calls"]
        s.this_run.update({
            "stripe_invoice_creates": int(stripe_calls.get("POST /v1/invoices", 0)),
            "org_collection_upserts": int(org_calls.get("collections_upsert", 0)),
            "org_api_calls": int(org.counters()["api_calls"]),
            "stripe_api_calls": int(sum(stripe_calls.values())),
        })
        idle = s.this_run["invoices_created"] == 0 and s.this_run["writeback_records_written"] == 0 \
            and s.this_run["stripe_invoice_creates"] == 0 and s.this_run["org_collection_upserts"] == 0
        if not s.ok:
            s.message = "Some steps failed: see the steps table."
        elif s.resumed and idle:
            s.message = (f"Second run on {self.data_dir}: no invoice created and nothing written back — "
                         f"everything was already done (0 invoice creations in Stripe, 0 upserts to the org).")
        elif s.resumed:
            s.message = f"Run on {self.data_dir} resumed from its saved state and finished what was left."
        else:
            s.message = (f"First run on {self.data_dir}. Run it again: the second run creates no invoice and "
                         f"writes nothing.")


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def run_demo(options: DemoOptions, *, progress: Progress | None = None) -> DemoSummary:
    """Run the demo once (see the module docstring); the summary to show."""
    return Demo(options, progress=progress).run()


DASHBOARD_PORT = 8765  # the daemon's default port: the URL the demo prints


def _has_password(config: OrgConfig) -> bool:
    from sqlalchemy.engine import make_url

    return make_url(str(config.database_url)).password is not None


def _local_config_text(config: OrgConfig, *, note: tuple[str, ...], secrets: Mapping[str, str] | None = None) -> str:
    """An org file for the commands that read only the local model: the org's id, database
    and mapping; secrets as references (by default to variables only the demo sets)."""
    refs = {"sf_client_secret": '{ env = "GTM_DEMO_SF_CLIENT_SECRET" }',
            "stripe_api_key": '{ env = "GTM_DEMO_STRIPE_KEY" }', **(secrets or {})}
    url = str(config.database_url)
    if _has_password(config):
        database = 'database_url_env = "GTM_DEMO_DATABASE_URL"   # your --database-url (it has a password)'
    elif url.startswith("sqlite:///"):  # absolute, so that the file works from any directory
        database = f"database_url = {json.dumps('sqlite:///' + str(Path(url.removeprefix('sqlite:///')).resolve()))}"
    else:
        database = f"database_url = {json.dumps(url)}"
    return "\n".join([
        *note,
        database,
        f"mapping = {json.dumps(str(config.mapping))}",
        "",
        "[org]",
        f"alias = {json.dumps(config.alias)}",
        f"org_id = {json.dumps(config.org_id)}",
        "",
        "[salesforce]",
        f"login_url = {json.dumps(config.salesforce.login_url)}",
        "",
        "[salesforce.auth]",
        'kind = "client_credentials"',
        f"client_id = {json.dumps(getattr(config.salesforce.auth, 'client_id', 'demo'))}",
        f"client_secret = {refs['sf_client_secret']}",
        "",
        "[stripe]",
        f"api_key = {refs['stripe_api_key']}",
        "",
        "[invoicing]",
        f"issuer = {json.dumps(config.invoicing.issuer)}",
        "",
    ])
