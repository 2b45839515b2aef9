"""The GTM app's billing, played by the sandbox org: once linked to a Stripe account, it
issues the invoice of each Activated order whose service start is within a day, as
Salesforce does on the partner's Stripe account, and records the billing junction.

For each such order without a ``SfdcPartnerOrderBillingTrxn`` row (checked against the
org's own clock, which the control API can advance):

* the Stripe customer is found by the order's billing e-mail (the oldest one) or created;
* one invoice: ``send_invoice``, ``days_until_due=30``, USD, a line per order item named
  after its PPP (the item's ``LineItemTotal``; prorated on an add-on, as the subtotal is),
  metadata ``sfdc_org_id``, ``sfdc_order_id``, ``sfdc_order_number``, ``sfdc_invoice_seq``;
* Salesforce's revenue share (per line: total x the PPC's share %, half-up to the cent;
  summed) as the invoice's ``application_fee_amount``, so each payment carries it as fee;
* finalized and sent; then the junction row (``PartnerBillingTransactionId`` = invoice id).

It talks to Stripe like any client: over HTTP with the official SDK (a client per
instance), an Idempotency-Key on every create, and never while holding the org's data
lock. A run that fails half-way is safe to repeat: the keys and a look at the customer's
invoices (by metadata) find what the earlier run made.

Fault knobs make the connector's discrepancy paths testable: ``skip`` (never invoice),
``wrong_amount`` (first line off by an amount), ``late`` (issued N days after the due
moment), ``split`` (the lines over two invoices) and ``duplicate`` (two full invoices) —
the last two link two invoices to one order. A knob names an order or applies to the
next ``times`` orders that come due.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import stripe

from gtm_sandbox.org.data import OrgData, Row
from gtm_sandbox.org.gtm import CENT, ORDER, ORDER_ITEM, ORDER_LINK, PPP_LINK, billed_totals
from gtm_sandbox.org.ids import to_18

JUNCTION = "SfdcPartnerOrderBillingTrxn"
JUNCTION_ORDER = "SfdcPartnerOrderId"
JUNCTION_INVOICE = "PartnerBillingTransactionId"
PPP = "SfdcPartnerProvisionProduct"
PPC = "SfdcPartnerTermSetProduct"
PPC_LINK = "PartnerTermSetProductId"
SHARE_FIELD = "RevenueSharePercentage"
LEAD = timedelta(days=1)  # "the invoice is sent one day before the order start date"
DAYS_UNTIL_DUE = 30
FAULT_KINDS = ("skip", "wrong_amount", "late", "split", "duplicate")
WATCHED = frozenset({ORDER, ORDER_ITEM})


class BillingError(ValueError):
    """A billing control request that cannot be honoured (unknown knob, not linked)."""


@dataclass(frozen=True)
class StripeLink:
    api_base: str
    api_key: str
    account: str | None = None  # Stripe-Account (a connected account), None: the key's own


@dataclass(frozen=True)
class Line:
    item_id: str
    ppp_id: str
    name: str
    quantity: int
    amount: Decimal
    share: Decimal


@dataclass(frozen=True)
class InvoiceJob:
    order_id: str
    order_number: str | None
    email: str
    customer_name: str | None
    seq: int
    lines: tuple[Line, ...]

    @property
    def fee(self) -> Decimal:
        return sum((line.share for line in self.lines), Decimal("0.00"))

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))


@dataclass
class OrderFaults:
    """What is wrong with one order's billing (bound from a knob)."""

    skip: bool = False
    wrong_amount: Decimal | None = None
    late_days: int = 0
    invoices: str | None = None  # "split" or "duplicate"


ORDER_KNOBS = ("skip", "wrong_amount", "late_days", "invoices")  # OrderFaults' fields, PATCH-able


@dataclass
class PoolFault:
    """A knob for the next ``remaining`` orders that come due."""

    kind: str
    remaining: int
    amount: Decimal = Decimal("100.00")
    days: int = 1


def cents(amount: Decimal) -> int:
    """Decimal dollars to Stripe's integer cents (exact: amounts here are to the cent)."""
    value = amount * 100
    if value != value.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(value)


def revenue_share(total: Decimal, percent: Decimal) -> Decimal:
    return (total * percent / Decimal(100)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class RunResult:
    issued: list[dict[str, Any]] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"issued": self.issued, "problems": self.problems}


class GtmBilling:
    """The org's billing component. ``data`` gives the org's current records (a reset
    replaces them)."""

    def __init__(self, data: Callable[[], OrgData], org_id: str) -> None:
        self._data = data
        self.org_id = org_id
        self.link: StripeLink | None = None
        self._client: stripe.StripeClient | None = None
        self.pool: list[PoolFault] = []
        self.bound: dict[str, OrderFaults] = {}
        self.seen: set[str] = set()  # orders that came due once (pool knobs bind then)
        self.issued: list[dict[str, Any]] = []
        self.problems: dict[str, str] = {}
        self._run_lock = threading.Lock()
        self._state = threading.Lock()
        self._pending = False
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    # ------------------------------------------------------------ linking

    @property
    def linked(self) -> bool:
        return self.link is not None

    def link_stripe(self, api_base: str, api_key: str, *, account: str | None = None) -> RunResult:
        """Bill on this Stripe account from now on, and issue what is due at once."""
        if not api_base.startswith(("http://127.0.0.1", "http://localhost", "https://")):
            raise BillingError(f"{api_base!r}: not a Stripe API base URL")
        with self._state:
            self.link = StripeLink(api_base.rstrip("/"), api_key, account)
            self._client = stripe.StripeClient(
                api_key, base_addresses={"api": self.link.api_base}, stripe_account=account,
                max_network_retries=2,  # the SDK resends with the same Idempotency-Key
                http_client=stripe.RequestsClient(timeout=30))
        return self.run()

    def unlink(self) -> None:
        with self._state:
            self.link = None
            self._client = None
        self.wait_idle(10)

    def reset(self) -> None:
        """Unlinked, no knobs, no memory: what a fresh org has."""
        self.unlink()
        with self._state:
            self.pool.clear()
            self.bound.clear()
            self.seen.clear()
            self.issued.clear()
            self.problems.clear()

    def status(self) -> dict[str, Any]:
        with self._state:
            return {
                "linked": self.linked,
                "api_base": self.link.api_base if self.link else None,
                "account": self.link.account if self.link else None,
                "faults": {"next": [_pool_json(f) for f in self.pool],
                           "orders": {oid: _bound_json(f) for oid, f in self.bound.items()}},
                "issued": list(self.issued),
                "problems": dict(self.problems),
            }

    # ------------------------------------------------------------ fault knobs

    def add_fault(self, kind: str, *, order_id: str | None = None, times: int = 1, amount: Decimal | str = "100.00",
                  days: int = 1) -> None:
        """``kind`` for one order (``order_id``) or the next ``times`` orders that come due.
        ``amount``: added to the first line (``wrong_amount``); ``days``: how late (``late``)."""
        if kind not in FAULT_KINDS:
            raise BillingError(f"unknown billing fault {kind!r}: use one of {', '.join(FAULT_KINDS)}")
        amount = Decimal(str(amount))
        if int(times) < 1 or int(days) < 0:
            raise BillingError("times must be at least 1 and days not negative")
        with self._state:
            if order_id is None:
                self.pool.append(PoolFault(kind, int(times), amount, int(days)))
                return
            try:
                oid = to_18(order_id)
            except ValueError:
                raise BillingError(f"{order_id!r} is not a record id") from None
            _apply(self.bound.setdefault(oid, OrderFaults()), kind, amount, int(days))

    def update_order_faults(self, order_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change one order's knobs in part — ``skip``, ``wrong_amount`` (None: right),
        ``late_days``, ``invoices`` (``split``, ``duplicate`` or None) — keeping the others;
        answers them all. E.g. ``{"skip": false}`` lets a skipped order be invoiced on the
        next run."""
        unknown = sorted(set(changes) - set(ORDER_KNOBS))
        if unknown:
            raise BillingError(f"not an order's billing knob: {', '.join(unknown)} ({', '.join(ORDER_KNOBS)})")
        try:
            oid = to_18(order_id)
        except ValueError:
            raise BillingError(f"{order_id!r} is not a record id") from None
        wrong = changes.get("wrong_amount")
        days = int(changes.get("late_days", 0))
        invoices = changes.get("invoices")
        if days < 0 or invoices not in (None, "split", "duplicate"):
            raise BillingError("late_days must not be negative and invoices is 'split', 'duplicate' or null")
        with self._state:
            faults = self.bound.setdefault(oid, OrderFaults())
            if "skip" in changes:
                faults.skip = bool(changes["skip"])
            if "wrong_amount" in changes:
                faults.wrong_amount = None if wrong is None else Decimal(str(wrong))
            if "late_days" in changes:
                faults.late_days = days
            if "invoices" in changes:
                faults.invoices = invoices
            return _bound_json(faults)

    def clear_faults(self) -> None:
        with self._state:
            self.pool.clear()
            self.bound.clear()

    # ------------------------------------------------------------ triggers

    def on_write(self, sobject: str) -> None:
        """Data hook (runs under the org's data lock: cheap, no I/O): an order or an item
        changed, so bill in the background."""
        if sobject in WATCHED and self.link is not None:
            self.kick()

    def kick(self) -> None:
        with self._state:
            if self.link is None:
                return
            self._pending = True
            if self._worker is None or not self._worker.is_alive():
                self._idle.clear()
                self._worker = threading.Thread(target=self._drain, name="sandbox-org-billing", daemon=True)
                self._worker.start()

    def _drain(self) -> None:
        while True:
            with self._state:
                if not self._pending or self.link is None:
                    self._pending = False
                    self._worker = None
                    self._idle.set()
                    return
                self._pending = False
            try:
                self.run()
            except Exception as exc:  # noqa: BLE001 - a background run reports, never dies silently
                with self._state:
                    self.problems["*"] = f"background run failed: {type(exc).__name__}: {exc}"

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True when no background run is going on (within ``timeout`` seconds)."""
        return self._idle.wait(timeout)

    # ------------------------------------------------------------ running

    def run(self) -> RunResult:
        """Issue every invoice that is due now. Returns what was issued and why orders
        that came due were not."""
        result = RunResult()
        with self._run_lock:
            client, link = self._client, self.link
            if client is None or link is None:
                return result
            jobs = self._plan(result)
            done: set[str] = set()
            for job in jobs:
                if job.order_id in result.problems:
                    continue  # an earlier invoice of this order failed: leave the rest for the next run
                try:
                    invoice = self._issue(client, job)
                except stripe.StripeError as exc:
                    result.problems[job.order_id] = f"Stripe refused the invoice: {_describe(exc)}"
                    continue
                junction = self._record(job, invoice["id"])
                done.add(job.order_id)
                result.issued.append({"order_id": job.order_id, "invoice_id": invoice["id"],
                                      "junction_id": junction, "amount": str(job.amount), "fee": str(job.fee),
                                      "customer": invoice["customer"], "seq": job.seq})
        with self._state:
            self.issued.extend(result.issued)
            for oid in done:
                self.problems.pop(oid, None)
            self.problems.update(result.problems)
        return result

    def _plan(self, result: RunResult) -> list[InvoiceJob]:
        """Under the data lock: the invoices due now (the HTTP calls come after)."""
        data = self._data()
        jobs: list[InvoiceJob] = []
        with data.lock:
            today = data.clock.today()
            linked = {r[JUNCTION_ORDER] for r in data.tables[JUNCTION].rows.values() if not r["IsDeleted"]}
            items_by_order: dict[str, list[Row]] = {}
            for item in data.tables[ORDER_ITEM].rows.values():
                if not item["IsDeleted"] and item.get(ORDER_LINK):
                    items_by_order.setdefault(item[ORDER_LINK], []).append(item)
            for order in sorted(data.tables[ORDER].rows.values(), key=lambda r: r["Id"]):
                oid = order["Id"]
                if order["IsDeleted"] or order.get("Status") != "Activated" or oid in linked:
                    continue
                try:
                    start = date.fromisoformat(str(order.get("ServiceStartDate"))[:10])
                except ValueError:
                    result.problems[oid] = "no service start date"
                    continue
                if today < start - LEAD:
                    continue
                faults = self._bind(oid)
                if faults.skip:
                    result.problems[oid] = "not invoiced: skip fault"
                    continue
                if today < start - LEAD + timedelta(days=faults.late_days):
                    result.problems[oid] = f"held back: late fault ({faults.late_days} days)"
                    continue
                try:
                    jobs.extend(self._jobs(data, order, items_by_order.get(oid, []), faults))
                except ValueError as exc:
                    result.problems[oid] = f"not invoiced: {exc}"
        return jobs

    def _bind(self, order_id: str) -> OrderFaults:
        """The order's knobs; the first time it comes due, the pool's next ones bind to it."""
        with self._state:
            faults = self.bound.setdefault(order_id, OrderFaults())
            if order_id not in self.seen:
                self.seen.add(order_id)
                for pool in list(self.pool):
                    _apply(faults, pool.kind, pool.amount, pool.days)
                    pool.remaining -= 1
                    if pool.remaining <= 0:
                        self.pool.remove(pool)
            return faults

    def _jobs(self, data: OrgData, order: Row, items: list[Row], faults: OrderFaults) -> list[InvoiceJob]:
        email = order.get("BillingEmailAddress")
        if not email:
            raise ValueError("no billing e-mail address")
        if (order.get("CurrencyIsoCode") or "USD") != "USD":
            raise ValueError(f"currency {order.get('CurrencyIsoCode')} (the GTM app bills USD)")
        if not items:
            raise ValueError("no order items")
        items = sorted(items, key=lambda r: r["Id"])
        for item in items:
            if not item.get("Quantity") or item["Quantity"] <= 0 or item.get("LineItemTotal") is None:
                raise ValueError(f"order item {item['Id']} has no positive quantity and total")
        totals = billed_totals(data, order, items)
        lines: list[Line] = []
        for item, total in zip(items, totals, strict=True):
            ppp = data.get(PPP, item[PPP_LINK]) if item.get(PPP_LINK) else None
            ppc = data.get(PPC, ppp[PPC_LINK]) if ppp and ppp.get(PPC_LINK) else None
            if ppp is None or ppc is None or ppc.get(SHARE_FIELD) is None:
                raise ValueError(f"order item {item['Id']}: no product with a revenue share")
            lines.append(Line(item["Id"], ppp["Id"], ppp["Name"], int(item["Quantity"]), total,
                              revenue_share(total, Decimal(str(ppc[SHARE_FIELD])))))
        if faults.wrong_amount is not None:
            first = lines[0]
            # The amount is wrong, not the share Salesforce takes (that follows the order).
            lines[0] = Line(first.item_id, first.ppp_id, first.name, first.quantity,
                            first.amount + faults.wrong_amount, first.share)
        groups = [lines]
        if faults.invoices == "split" and len(lines) > 1:
            groups = [lines[:1], lines[1:]]
        elif faults.invoices == "duplicate":
            groups = [lines, lines]
        return [InvoiceJob(order["Id"], order.get("OrderNumber"), email, order.get("CustomerName"), seq, tuple(group))
                for seq, group in enumerate(groups, start=1)]

    # ------------------------------------------------------------ Stripe (no data lock held)

    def _key(self, job: InvoiceJob, op: str) -> str:
        return f"sfdc-gtm-{self.org_id}-{job.order_id}-{job.seq}-{op}"

    def _issue(self, client: stripe.StripeClient, job: InvoiceJob) -> dict[str, Any]:
        customer = self._customer(client, job)
        invoice = self._existing(client, customer, job)
        if invoice is None:
            params: dict[str, Any] = {
                "customer": customer,
                "collection_method": "send_invoice",
                "days_until_due": DAYS_UNTIL_DUE,
                "currency": "usd",
                "auto_advance": False,
                "pending_invoice_items_behavior": "exclude",
                "application_fee_amount": cents(job.fee),
                "metadata": self._metadata(job),
            }
            if job.order_number:
                params["description"] = f"Order {job.order_number}"
            invoice = client.v1.invoices.create(
                params=params, options={"idempotency_key": self._key(job, "create")}).to_dict()  # type: ignore[arg-type]
        if invoice["status"] == "draft" and not (invoice.get("lines") or {}).get("total_count"):
            client.v1.invoices.add_lines(invoice["id"], params={"lines": [_line(line) for line in job.lines]},
                                         options={"idempotency_key": self._key(job, "lines")})  # type: ignore[arg-type]
        if invoice["status"] == "draft":
            invoice = client.v1.invoices.finalize_invoice(
                invoice["id"], params={"auto_advance": False},
                options={"idempotency_key": self._key(job, "finalize")}).to_dict()
        if invoice["status"] == "open":  # a rerun's send is a replay of the same key
            invoice = client.v1.invoices.send_invoice(
                invoice["id"], options={"idempotency_key": self._key(job, "send")}).to_dict()  # type: ignore[arg-type]
        return invoice

    def _customer(self, client: stripe.StripeClient, job: InvoiceJob) -> str:
        found = [c for c in client.v1.customers.list(params={"email": job.email, "limit": 100}).auto_paging_iter()]
        if found:
            return str(min(found, key=lambda c: (c.created, c.id)).id)
        params: dict[str, Any] = {"email": job.email, "metadata": {"sfdc_org_id": self.org_id}}
        if job.customer_name:
            params["name"] = job.customer_name
        created = client.v1.customers.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"sfdc-gtm-{self.org_id}-customer-{job.email.lower()}"})
        return str(created.id)

    def _existing(self, client: stripe.StripeClient, customer: str, job: InvoiceJob) -> dict[str, Any] | None:
        """This job's invoice from an earlier, interrupted run (keys expire; metadata stays)."""
        page = client.v1.invoices.list(params={"customer": customer, "limit": 100})
        for found in page.auto_paging_iter():
            invoice = found.to_dict()
            meta = invoice.get("metadata") or {}
            if (meta.get("sfdc_order_id") == job.order_id and meta.get("sfdc_org_id") == self.org_id
                    and meta.get("sfdc_invoice_seq") == str(job.seq) and invoice["status"] != "void"):
                return dict(invoice)
        return None

    def _metadata(self, job: InvoiceJob) -> dict[str, str]:
        meta = {"sfdc_org_id": self.org_id, "sfdc_order_id": job.order_id, "sfdc_invoice_seq": str(job.seq)}
        if job.order_number:
            meta["sfdc_order_number"] = job.order_number
        return meta

    def _record(self, job: InvoiceJob, invoice_id: str) -> str:
        """The junction row, once per (order, invoice)."""
        data = self._data()
        with data.lock:
            for row in data.tables[JUNCTION].rows.values():
                if not row["IsDeleted"] and row[JUNCTION_ORDER] == job.order_id and row[JUNCTION_INVOICE] == invoice_id:
                    return str(row["Id"])
            return str(data.insert(JUNCTION, {JUNCTION_ORDER: job.order_id, JUNCTION_INVOICE: invoice_id},
                                   validate=False)["Id"])

    def link_invoice(self, order_id: str, invoice_id: str) -> str:
        """A junction row for an invoice issued elsewhere (many-to-many by hand)."""
        data = self._data()
        oid = to_18(order_id)
        if data.get(ORDER, oid) is None:
            raise BillingError(f"no order {order_id}")
        return self._record(InvoiceJob(oid, None, "", None, 0, ()), invoice_id)

    # ------------------------------------------------------------ snapshot

    def state(self) -> dict[str, Any]:
        """Knobs and memory for a snapshot (the link is not saved: a restored org is
        linked again to whatever Stripe sandbox runs then)."""
        with self._state:
            return {"pool": [_pool_json(f) for f in self.pool],
                    "bound": {oid: _bound_json(f) for oid, f in self.bound.items()},
                    "seen": sorted(self.seen), "issued": list(self.issued), "problems": dict(self.problems)}

    def load_state(self, saved: dict[str, Any] | None) -> None:
        saved = saved or {}
        with self._state:
            self.pool = [PoolFault(f["kind"], int(f["remaining"]), Decimal(str(f["amount"])), int(f["days"]))
                         for f in saved.get("pool", [])]
            self.bound = {oid: OrderFaults(bool(f["skip"]),
                                           None if f["wrong_amount"] is None else Decimal(str(f["wrong_amount"])),
                                           int(f["late_days"]), f["invoices"])
                          for oid, f in saved.get("bound", {}).items()}
            self.seen = set(saved.get("seen", []))
            self.issued = list(saved.get("issued", []))
            self.problems = dict(saved.get("problems", {}))


def _apply(faults: OrderFaults, kind: str, amount: Decimal, days: int) -> None:
    if kind == "skip":
        faults.skip = True
    elif kind == "wrong_amount":
        faults.wrong_amount = amount
    elif kind == "late":
        faults.late_days = days
    else:
        faults.invoices = kind


def _pool_json(f: PoolFault) -> dict[str, Any]:
    return {"kind": f.kind, "remaining": f.remaining, "amount": str(f.amount), "days": f.days}


def _bound_json(f: OrderFaults) -> dict[str, Any]:
    out = asdict(f)
    out["wrong_amount"] = None if f.wrong_amount is None else str(f.wrong_amount)
    return out


def _line(line: Line) -> dict[str, Any]:
    """Quantity x an inline price named after the PPP; the unit price is the line total
    over the quantity (12 decimals, Stripe's limit), so the line's amount is the total."""
    unit = (Decimal(cents(line.amount)) / line.quantity).quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP)
    return {
        "description": line.name,
        "quantity": line.quantity,
        "price_data": {"currency": "usd", "product_data": {"name": line.name},
                       "unit_amount_decimal": format(unit.normalize(), "f")},
        "metadata": {"sfdc_order_item_id": line.item_id, "sfdc_ppp_id": line.ppp_id},
    }


def _describe(exc: stripe.StripeError) -> str:
    error = getattr(exc, "error", None)
    return f"{exc.http_status or 'no status'} {getattr(error, 'message', None) or type(exc).__name__}"
