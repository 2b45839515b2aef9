"""Offers as code: draft offers authored as TOML files, validated, pushed to the org.

One file per draft in the org's drafts directory (``offers/<alias>/<key>.toml`` unless
``[offers] drafts_dir`` says otherwise); the file name is the draft key::

    customer_name = "Wayne Enterprises"
    customer_org_id = "00D5g0000012345ABC"
    offer_type = "initial"                 # or "add_on" (tied to the customer's order)
    service_start_date = 2026-03-01
    valid_until = 2026-02-15
    recipient_email = "buyer@wayne.example.com"
    billing_email = "ap@wayne.example.com"

    [[items]]
    product = "Core App"                   # PPP name or id, from the mirrored catalog
    quantity = 10
    unit_price_per_month = "50.00"         # a string: money never goes through float

Validation uses the domain rules (12-month term, USD, positive quantities, prices, a
valid-until date in the future, known PPPs; an add-on is tied to the customer's existing
order and ends on that order's end date). A valid draft is created in the org — offer and
items in one all-or-none composite call — or updated while the org still shows it as
Draft. The ``offer_drafts`` table keeps, per draft key, the org id, a hash of what was
pushed and the org's stamps right after the push, so

* an unchanged draft is not sent again (a second run writes nothing, calls nothing);
* once the org shows any status other than Draft, local edits are refused with a clear
  message: the org wins;
* if the org changed the offer or its items since our last push, the edit is reported as
  a write conflict and not sent (``force=True`` overrides, for an operator who checked),
  unless the org already holds exactly what the draft says (our own update whose answer
  was lost to a crash): then only the bookkeeping is recorded.

Creating is the one write an idempotent retry cannot cover (the offer has no external id),
so the draft is marked ``creating``, with a fingerprint of what is sent, before the call.
A run that finds a draft still ``creating`` (the process died after the org committed the
offer but before we recorded it) first looks in the org for an unclaimed offer of that
customer with that content and adopts it, rather than create a second one. The same look
comes first when the create's answer is lost within a run (read timeout, dropped
connection): the adapter never repeats a create blind (``OutcomeUnknown``); if the org does
not show the offer yet, the draft is reported ``unsure`` and the next push looks again.

Invalid drafts, refusals and conflicts also open a dead letter (source ``offers_push``)
so ``status`` shows them; a later successful push resolves it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote_plus

import structlog

from connector.domain.proration import SERVICE_DATE_MAX, SERVICE_DATE_MIN, initial_end_date
from connector.domain.validation import (
    parse_email,
    parse_org_id,
    parse_quantity,
    parse_term,
    parse_unit_price,
    show,
)
from connector.errors import OutcomeUnknown, TransientError
from connector.mappings import MappingSet
from connector.services.orders import initial_order
from connector.services.ports import OrgContext, QueryPage, SubResult, UnitOfWorkFactory

OFFER = "SfdcPartnerOffer"
OFFER_ITEM = "SfdcPartnerOfferItem"
MAX_ITEMS = 20  # one composite call: offer + items + read-back stays under 25 subrequests
SOURCE = "offers_push"
CREATING = "creating"  # a create was sent and its answer not recorded yet
DRAFT_KEYS = frozenset({
    "name", "customer_name", "customer_org_id", "offer_type", "term_set", "contract_term_months",
    "service_start_date", "service_end_date", "valid_until", "recipient_email", "billing_email",
    "initial_order_id", "partner_po_number", "customer_po_number", "currency", "items",
})
ITEM_KEYS = frozenset({"product", "quantity", "unit_price_per_month", "name"})
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


# ------------------------------------------------------------------------------ ports


class OfferWriter(Protocol):
    """What offers push needs from the org (``SalesforceOrg``)."""

    def subrequest(
        self, method: str, path: str, reference_id: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...

    def composite(self, subrequests: Sequence[Mapping[str, Any]], *, all_or_none: bool) -> Sequence[SubResult]: ...

    def composite_queries(self, soqls: Sequence[str], include_deleted: bool = False,
                          batch_size: int | None = None) -> Sequence[QueryPage]: ...


# ------------------------------------------------------------------------------ drafts


@dataclass(frozen=True)
class DraftItem:
    ppp_id: str
    product: str
    quantity: int
    unit_price_per_month: Decimal
    name: str | None = None


@dataclass(frozen=True)
class ValidDraft:
    """A draft that passed validation: local column values and resolved items."""

    key: str
    path: Path
    fields: Mapping[str, Any]
    items: tuple[DraftItem, ...]

    def content(self) -> dict[str, Any]:
        """Canonical, JSON-friendly content: what the hash covers."""
        def plain(v: Any) -> Any:
            return v.isoformat() if isinstance(v, date) else str(v) if isinstance(v, Decimal) else v
        return {
            # customer_id is looked up from customer_org_id at push time: not content.
            "fields": {k: plain(v) for k, v in sorted(self.fields.items()) if k != "customer_id"},
            "items": [{"ppp_id": i.ppp_id, "quantity": i.quantity, "unit_price_per_month": str(i.unit_price_per_month),
                       "name": i.name} for i in self.items],
        }

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()

    def offer_values(self, mapping: MappingSet) -> dict[str, Any]:
        """SF field -> value to write. Fields the org computes (read_only in the mapping,
        e.g. the offer's BillingCustomerOrg, a formula from its customer record) are left out."""
        obj = mapping.objects["offer"]
        columns = {f.column: f for f in obj.fields.values()}
        values = {columns[column].sf_field: value for column, value in self.fields.items()
                  if column in columns and not columns[column].read_only}
        values[obj.sf_field_for("status")] = mapping.to_picklist("offer_status", "draft")
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items()}

    def item_values(self, mapping: MappingSet, item: DraftItem) -> dict[str, Any]:
        obj = mapping.objects["offer_item"]
        values: dict[str, Any] = {
            obj.sf_field_for("ppp_id"): item.ppp_id,
            obj.sf_field_for("quantity"): item.quantity,
            obj.sf_field_for("unit_price_per_month"): item.unit_price_per_month,
        }
        values[obj.sf_field_for("name")] = item.name or f"{item.product} x{item.quantity}"
        return values


class Catalog:
    """What validation looks up in the local mirror: PPPs, term sets, the customer's orders."""

    def __init__(self, uow: UnitOfWorkFactory, org_id: str, mapping: MappingSet):
        self.uow = uow
        self.org_id = org_id
        self.mapping = mapping
        with uow() as u:
            self.ppps = {r["sf_id"]: r["name"] or "" for r in u.mirror("ppp").list(org_id)}
            self.term_sets = {r["sf_id"]: r for r in u.mirror("term_set").list(org_id)}

    def ppp(self, product: str) -> str | None:
        if product in self.ppps:
            return product
        matches = [pid for pid, name in self.ppps.items() if name.strip().lower() == product.strip().lower()]
        return matches[0] if len(matches) == 1 else None

    def order(self, order_id: str) -> dict[str, Any] | None:
        with self.uow() as u:
            row = u.mirror("order").get(self.org_id, order_id)
        return row if row and not row["is_deleted"] else None

    def initial_orders_of(self, customer_org_id: str) -> list[dict[str, Any]]:
        with self.uow() as u:
            rows = u.mirror("order").list(self.org_id, customer_org_id=customer_org_id)
        return [r for r in rows if self.mapping.to_state("order_type", r["order_type"]) == "initial"
                and self.mapping.to_state("order_status", r["status"]) in ("new", "processing", "activated")]


def read_draft(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        return tomllib.loads(path.read_text("utf-8")), []
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror}"]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, [f"{path}: not valid TOML: {exc}"]


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date and time")
    parsed: date | None = None
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = date.fromisoformat(value.strip())
        except ValueError:
            pass
    if parsed is None:
        raise ValueError("must be a date (YYYY-MM-DD)")
    if not SERVICE_DATE_MIN <= parsed <= SERVICE_DATE_MAX:
        raise ValueError(f"must be between {SERVICE_DATE_MIN.isoformat()} and {SERVICE_DATE_MAX.isoformat()}, "
                         f"got {parsed.isoformat()}")
    return parsed


def _text(value: Any, what: str = "text") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be {what}")
    return value.strip()


def validate_draft(
    key: str, path: Path, raw: Mapping[str, Any], catalog: Catalog, today: date
) -> tuple[ValidDraft | None, list[str]]:
    """A validated draft, or the problems (each naming the file and the key)."""
    problems: list[str] = []

    def problem(where: str, message: str) -> None:
        problems.append(f"{path}: {where}: {message}")

    if not _KEY_RE.match(key):
        problem("(file name)", "draft key must be letters, digits, '.', '_' or '-'")
    for unknown in sorted(set(raw) - DRAFT_KEYS):
        problem(unknown, f"unknown key (known: {', '.join(sorted(DRAFT_KEYS))})")
    fields: dict[str, Any] = {"currency": "USD", "contract_term_months": 12}

    def take(name: str, parse: Callable[[Any], Any], required: bool = False) -> Any:
        if name not in raw or raw[name] in (None, ""):
            if required:
                problem(name, "is required")
            return None
        try:
            return parse(raw[name])
        except ValueError as exc:
            problem(name, f"{exc}, got {show(raw[name]) if not isinstance(raw[name], date) else raw[name]}")
            return None

    customer = take("customer_name", _text, required=True)
    fields["customer_name"] = customer
    fields["customer_org_id"] = take("customer_org_id", parse_org_id, required=True)
    kind = take("offer_type", lambda v: _offer_type(catalog.mapping, v)) or "initial"
    fields["offer_type"] = catalog.mapping.to_picklist("offer_type", kind)
    take("contract_term_months", parse_term)
    take("currency", lambda v: _usd(v))
    start = take("service_start_date", _as_date, required=True)
    valid_until = take("valid_until", _as_date, required=True)
    _check_dates(start, valid_until, today, problem)
    fields["recipient_email"] = take("recipient_email", parse_email, required=True)
    fields["billing_email"] = take("billing_email", parse_email)
    for name in ("partner_po_number", "customer_po_number"):
        fields[name] = take(name, _text)
    end_given = take("service_end_date", _as_date)
    fields["term_set_id"] = _term_set(raw.get("term_set"), catalog, problem)
    fields["initial_order_id"] = None
    end = _end_date(kind, raw, fields, start, end_given, catalog, problem)
    fields["service_start_date"] = start
    fields["service_end_date"] = end
    fields["valid_until"] = valid_until
    label = "Add-On" if kind == "add_on" else "Initial"
    fields["name"] = take("name", _text) or (f"{customer} {label} offer" if customer else None)
    items = _items(raw.get("items"), catalog, problem)
    if problems:
        return None, problems
    return ValidDraft(key, path, {k: v for k, v in fields.items() if v is not None}, tuple(items)), []


def _check_dates(start: date | None, valid_until: date | None, today: date,
                 problem: Callable[[str, str], None]) -> None:
    """An offer is valid until a day after today, for a service starting today or later."""
    if valid_until is not None and valid_until <= today:
        problem("valid_until", f"must be in the future (today is {today.isoformat()}), got {valid_until.isoformat()}")
    if start is not None and start < today:
        problem("service_start_date", f"must be today or later, got {start.isoformat()}")


def _end_date(kind: str, raw: Mapping[str, Any], fields: dict[str, Any], start: date | None,
              end_given: date | None, catalog: Catalog, problem: Callable[[str, str], None]) -> date | None:
    """The service end date: an add-on ends with its initial order (``_tie_add_on`` also
    fills its fields), an initial offer at the end of its 12-month term. A
    ``service_end_date`` in the draft must say the same."""
    end: date | None = None
    if kind == "add_on":
        end = _tie_add_on(raw, fields, start, catalog, problem)
    elif start is not None:
        end = initial_end_date(start)
        if raw.get("initial_order_id"):
            problem("initial_order_id", "only an add-on offer is tied to an initial order")
    if end is not None and end_given is not None and end_given != end:
        what = "the initial order's end date" if kind == "add_on" else "the end of the 12-month term"
        problem("service_end_date", f"must be {what} {end.isoformat()}, got {end_given.isoformat()}")
    return end


def _offer_type(mapping: MappingSet, value: Any) -> str:
    text = _text(value).lower().replace("-", "_")
    for label, state in mapping.vocabularies["offer_type"].items():
        if text in (state, label.lower().replace("-", "_")):
            return str(state)
    raise ValueError("must be initial or add_on")


def _usd(value: Any) -> str:
    if not isinstance(value, str) or value.strip().upper() != "USD":
        raise ValueError("must be USD (the GTM app bills in US dollars only)")
    return "USD"


def _term_set(value: Any, catalog: Catalog, problem: Callable[[str, str], None]) -> str | None:
    if value is None:
        twelve = [tid for tid, row in catalog.term_sets.items() if row.get("contract_term_months") in (None, 12)]
        return twelve[0] if len(twelve) == 1 else None
    for tid, row in catalog.term_sets.items():
        if value == tid or (isinstance(value, str) and (row.get("name") or "").lower() == value.lower()):
            return tid
    known = ", ".join(r.get("name") or t for t, r in catalog.term_sets.items())
    problem("term_set", f"unknown term set {show(value)} (known: {known})")
    return None


def _tie_add_on(raw: Mapping[str, Any], fields: dict[str, Any], start: date | None, catalog: Catalog,
                problem: Callable[[str, str], None]) -> date | None:
    """An add-on belongs to the customer's existing order and ends when that order ends."""
    order_id = raw.get("initial_order_id")
    customer_org = fields.get("customer_org_id")
    if order_id:
        order = catalog.order(str(order_id))
        if order is None:
            problem("initial_order_id", f"no mirrored order {order_id} (run sync first?)")
            return None
    else:
        candidates = catalog.initial_orders_of(customer_org) if customer_org else []
        if len(candidates) != 1:
            problem("initial_order_id", f"is required: customer org {customer_org} has {len(candidates)} open "
                                        f"initial orders in the mirror")
            return None
        order = candidates[0]
    if customer_org and order.get("customer_org_id") and order["customer_org_id"] != customer_org:
        problem("initial_order_id", f"order {order['sf_id']} belongs to customer org {order['customer_org_id']}, "
                                    f"not {customer_org}")
    state = catalog.mapping.to_state("order_status", order.get("status"))
    if state not in ("new", "processing", "activated"):
        problem("initial_order_id", f"order {order['sf_id']} is {order.get('status')}: add-ons need a running order")
    fields["initial_order_id"] = order["sf_id"]
    # The term is the initial order's: an add-on named here (the customer's latest order)
    # ends with the initial order it belongs to, which is where its own start leads.
    def is_add_on(row: Mapping[str, Any]) -> bool:
        return catalog.mapping.to_state("order_type", row.get("order_type")) == "add_on"

    order = dict(initial_order(order, is_add_on, catalog.order) or order)
    initial_start, initial_end = order.get("service_start_date"), order.get("service_end_date")
    if initial_start and not SERVICE_DATE_MIN <= initial_start <= SERVICE_DATE_MAX:
        problem("initial_order_id", f"order {order['sf_id']} has service start date {initial_start.isoformat()}, "
                                    "outside the supported range")
        return None
    if initial_start and not initial_end:
        initial_end = initial_end_date(initial_start)
    if start is not None and initial_start and initial_end and not initial_start <= start <= initial_end:
        problem("service_start_date", f"must fall within the initial order's term {initial_start.isoformat()} .. "
                                      f"{initial_end.isoformat()}, got {start.isoformat()}")
    return initial_end


def _items(raw: Any, catalog: Catalog, problem: Callable[[str, str], None]) -> list[DraftItem]:
    if not isinstance(raw, list) or not raw:
        problem("items", "an offer needs at least one [[items]] entry")
        return []
    if len(raw) > MAX_ITEMS:
        problem("items", f"at most {MAX_ITEMS} items per offer, got {len(raw)}")
    out: list[DraftItem] = []
    for i, item in enumerate(raw):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            problem(where, "must be a table with product, quantity and unit_price_per_month")
            continue
        for unknown in sorted(set(item) - ITEM_KEYS):
            problem(f"{where}.{unknown}", f"unknown key (known: {', '.join(sorted(ITEM_KEYS))})")
        product = item.get("product")
        ppp_id = catalog.ppp(product) if isinstance(product, str) else None
        if ppp_id is None:
            known = ", ".join(sorted(set(catalog.ppps.values()))) or "none mirrored yet: run sync first"
            problem(f"{where}.product", f"unknown PPP {show(product)} (known: {known})")
        quantity = price = None
        try:
            quantity = parse_quantity(item.get("quantity"))
        except ValueError as exc:
            problem(f"{where}.quantity", f"{exc}, got {show(item.get('quantity'))}")
        try:
            raw_price = item.get("unit_price_per_month")
            whole = isinstance(raw_price, int) and not isinstance(raw_price, bool)
            price = parse_unit_price(str(raw_price) if whole else raw_price)
        except ValueError as exc:
            problem(f"{where}.unit_price_per_month", f"{exc}, got {show(item.get('unit_price_per_month'))}")
        if ppp_id and quantity is not None and price is not None:
            out.append(DraftItem(ppp_id, str(product), quantity, price, item.get("name")))
    return out


# ------------------------------------------------------------------------------ writing drafts


def draft_toml(content: Mapping[str, Any]) -> str:
    """A draft file's text (``offer create``): scalars first, then ``[[items]]``."""
    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (date, int)):
            return value.isoformat() if isinstance(value, date) else str(value)
        return json.dumps(str(value))  # a TOML basic string: JSON escapes are valid TOML

    lines = [f"{k} = {scalar(v)}" for k, v in content.items() if k != "items" and v is not None]
    for item in content.get("items", []):
        lines += ["", "[[items]]"] + [f"{k} = {scalar(v)}" for k, v in item.items() if v is not None]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ pushing


@dataclass(frozen=True)
class DraftResult:
    key: str
    action: str  # created updated unchanged invalid refused conflict rejected gone unsure would_create would_update
    sf_id: str | None = None
    message: str = ""


@dataclass
class PushReport:
    results: list[DraftResult] = field(default_factory=list)
    dry_run: bool = False

    def count(self, action: str) -> int:
        return sum(1 for r in self.results if r.action == action)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.action] = out.get(r.action, 0) + 1
        return out


class OffersPushService:
    def __init__(self, org: OfferWriter, uow: UnitOfWorkFactory, mapping: MappingSet, org_id: str, drafts_dir: Path,
                 *, log: Any = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.org = org
        self.uow = uow
        self.mapping = mapping
        self.org_id = org_id
        self.drafts_dir = Path(drafts_dir)
        self.log = log or structlog.get_logger("connector.offers").bind(org_id=org_id, job="offers_push")
        self.clock = clock
        self.link = mapping.objects["offer_item"].sf_field_for("offer_id")  # item -> offer

    def load(self, only: Sequence[str] | None = None) -> tuple[list[ValidDraft], dict[str, list[str]]]:
        """Every draft file, validated: (valid drafts, {key: problems})."""
        catalog = Catalog(self.uow, self.org_id, self.mapping)
        today = self.clock().astimezone(UTC).date()
        valid: list[ValidDraft] = []
        invalid: dict[str, list[str]] = {}
        paths = sorted(self.drafts_dir.glob("*.toml")) if self.drafts_dir.is_dir() else []
        for path in paths:
            key = path.stem
            if only and key not in only:
                continue
            raw, problems = read_draft(path)
            draft = None
            if raw is not None:
                draft, problems = validate_draft(key, path, raw, catalog, today)
            if draft is not None:
                valid.append(draft)
            else:
                invalid[key] = problems
        return valid, invalid

    def push(self, *, dry_run: bool = False, only: Sequence[str] | None = None, force: bool = False) -> PushReport:
        report = PushReport(dry_run=dry_run)
        valid, invalid = self.load(only)
        with self.uow() as uow:
            states = {d.draft_key: d for d in uow.offer_drafts.list(self.org_id)}
            letters = {letter.record_id: letter for letter in uow.dead_letters.open(self.org_id, source=SOURCE)}
        recovered = set() if dry_run else self._recover_creates(valid, states, letters)
        for key, problems in invalid.items():
            message = "; ".join(problems)
            report.results.append(DraftResult(key, "invalid", states[key].sf_id if key in states else None, message))
            self.log.warning("draft.invalid", draft=key, problems=problems)
            if not dry_run:
                self._remember_error(key, "INVALID_DRAFT", message, states.get(key), letters.get(key))
        if not dry_run:
            valid = self._with_customers(valid, report, states, letters)
        changed: list[ValidDraft] = []
        for draft in valid:
            state = states.get(draft.key)
            if state is not None and state.sf_id and state.payload_hash == draft.hash:
                report.results.append(DraftResult(draft.key, "created", state.sf_id, "found in the org: an earlier "
                                                  "push's answer was lost") if draft.key in recovered else
                                      DraftResult(draft.key, "unchanged", state.sf_id))
            elif state is not None and state.sf_id:
                changed.append(draft)
            elif dry_run:
                report.results.append(DraftResult(draft.key, "would_create", None, f"{len(draft.items)} item(s)"))
            else:
                report.results.append(self._create(draft, letters.get(draft.key)))
        fields = {f for d in changed for f in self._fingerprint(d)["offer"]}
        org_view = self._org_view([states[d.key].sf_id for d in changed], fields) if changed else {}
        for draft in changed:
            state = states[draft.key]
            report.results.append(self._update(draft, state, org_view.get(state.sf_id), letters.get(draft.key),
                                               dry_run=dry_run, force=force))
        self.log.info("offers.pushed", dry_run=dry_run, **report.counts())
        return report

    # -------------------------------------------------------------- the customer record

    def _with_customers(self, drafts: list[ValidDraft], report: PushReport, states: dict[str, Any],
                        letters: dict[str, Any]) -> list[ValidDraft]:
        """Each draft that is to be sent, with its customer record's id (``customer_id``):
        an offer names its customer through ``SfdcCustomerForPartner`` (its
        BillingCustomerOrg is a formula from there). Found in the mirror, else in the org,
        else created; always looked up first, so a create whose answer was lost is never
        made twice. Drafts already in the org unchanged cost no call."""
        offer = self.mapping.objects["offer"]
        if "customer" not in self.mapping.objects or "customer_id" not in {f.column for f in offer.fields.values()}:
            return drafts  # a mapping that writes the customer org id on the offer itself
        customer = self.mapping.objects["customer"]
        org_field = customer.sf_field_for("customer_org_id")
        customer_columns = {f.column for f in customer.fields.values()}

        def unchanged(d: ValidDraft) -> bool:
            state = states.get(d.key)
            return state is not None and bool(state.sf_id) and state.payload_hash == d.hash

        to_send = [d for d in drafts if not unchanged(d) and d.fields.get("customer_org_id")]
        with self.uow() as uow:
            known = {str(r["customer_org_id"]): r["sf_id"] for r in uow.mirror("customer").list(self.org_id)
                     if r["customer_org_id"] and not r["is_deleted"]}
        wanted = sorted({str(d.fields["customer_org_id"]) for d in to_send} - set(known))
        self._look_up_customers(known, wanted, customer.sobject, org_field)
        out: list[ValidDraft] = []
        for draft in drafts:
            org_id = str(draft.fields.get("customer_org_id") or "")
            if draft not in to_send:
                out.append(draft)
                continue
            if org_id not in known:
                values = {org_field: org_id}
                for column, source in (("billing_email", "billing_email"), ("name", "customer_name")):
                    if column in customer_columns and draft.fields.get(source):
                        values[customer.sf_field_for(column)] = draft.fields[source]
                try:
                    [result] = self.org.composite([self.org.subrequest("POST", f"sobjects/{customer.sobject}",
                                                                       "customer", values)], all_or_none=True)
                except OutcomeUnknown as exc:
                    # The create may have been applied: look it up by its key, never create blind.
                    found_id = self._find_customer(customer.sobject, org_field, org_id)
                    if found_id is None:
                        self.log.warning("customer.create_unsure", customer_org_id=org_id, reason=str(exc))
                        report.results.append(DraftResult(
                            draft.key, "unsure", None, "the org did not answer the customer create in time; the "
                            "next push looks for it before creating anything"))
                        continue
                    known[org_id] = found_id
                    out.append(replace(draft, fields={**draft.fields, "customer_id": found_id}))
                    continue
                if not result.ok:
                    failed = self._rejected(draft, states[draft.key].sf_id if draft.key in states else None, result,
                                            letters.get(draft.key))
                    report.results.append(failed)
                    continue
                known[org_id] = str(result.body["id"])
                self.log.info("customer.created", customer_org_id=org_id, customer_id=known[org_id])
            out.append(replace(draft, fields={**draft.fields, "customer_id": known.get(org_id)}))
        return out

    def _look_up_customers(self, known: dict[str, Any], wanted: list[str], sobject: str, org_field: str) -> None:
        """Add to ``known`` the oldest customer record in the org of each of the ``wanted``
        customer org ids that has one (100 per query)."""
        for start in range(0, len(wanted), 100):
            chunk = ",".join(f"'{_soql_text(o)}'" for o in wanted[start : start + 100])
            [found] = self.org.composite_queries([
                f"SELECT Id, {org_field} FROM {sobject} WHERE {org_field} IN ({chunk}) "
                f"ORDER BY CreatedDate, Id"])
            for r in found.records:
                known.setdefault(str(r[org_field]), r["Id"])

    def _find_customer(self, sobject: str, org_field: str, org_id: str) -> str | None:
        try:
            [found] = self.org.composite_queries([
                f"SELECT Id FROM {sobject} WHERE {org_field} = '{_soql_text(org_id)}' ORDER BY CreatedDate, Id"])
        except (TransientError, OutcomeUnknown):
            return None
        return str(found.records[0]["Id"]) if found.records else None

    # -------------------------------------------------------------- the org's current view

    def _org_view(self, offer_ids: list[str], fields: set[str]) -> dict[str, dict[str, Any]]:
        """Status, stamps and the draft ``fields`` of these offers and their items, in one
        composite call per 100."""
        view: dict[str, dict[str, Any]] = {}
        extra = "".join(f", {f}" for f in sorted(set(fields) - {"Id", "Status", "SystemModstamp", "Subtotal"}))
        item_fields = ", ".join(self._item_fields())
        for start in range(0, len(offer_ids), 100):
            ids = ",".join(f"'{i}'" for i in offer_ids[start : start + 100])
            offers, items = self.org.composite_queries([
                f"SELECT Id, Status, SystemModstamp, Subtotal{extra} FROM {OFFER} WHERE Id IN ({ids})",
                f"SELECT Id, {self.link}, SystemModstamp, {item_fields} FROM {OFFER_ITEM} "
                f"WHERE {self.link} IN ({ids}) ORDER BY CreatedDate, Id",
            ])
            for r in offers.records:
                view[r["Id"]] = {"status": r["Status"], "stamp": r["SystemModstamp"], "items": {}, "record": r,
                                 "rows": []}
            for r in items.records:
                if r[self.link] in view:
                    view[r[self.link]]["items"][r["Id"]] = r["SystemModstamp"]
                    view[r[self.link]]["rows"].append(r)
        return view

    # -------------------------------------------------------------- what the org holds

    def _item_fields(self) -> list[str]:
        obj = self.mapping.objects["offer_item"]
        return [obj.sf_field_for(c) for c in ("ppp_id", "quantity", "unit_price_per_month", "name")]

    def _fingerprint(self, draft: ValidDraft) -> dict[str, Any]:
        """What a push of ``draft`` leaves in the org, comparable with what the org reads
        back (JSON-safe: it is stored with a ``creating`` draft). Status is left out: the
        GTM app may have moved the offer on since."""
        status = self.mapping.objects["offer"].sf_field_for("status")
        offer = {f: _norm(v) for f, v in draft.offer_values(self.mapping).items() if f != status}
        fields = self._item_fields()
        values = [draft.item_values(self.mapping, item) for item in draft.items]
        items = sorted([_norm(v.get(f)) for f in fields] for v in values)
        return {"offer": offer, "items": items, "customer_org_id": draft.fields.get("customer_org_id")}

    def _holds(self, fingerprint: Mapping[str, Any], offer: Mapping[str, Any],
               items: Sequence[Mapping[str, Any]]) -> bool:
        """The org's offer and items are exactly what the fingerprinted push sends."""
        fields = self._item_fields()
        return (all(_norm(offer.get(f)) == v for f, v in fingerprint["offer"].items())
                and sorted([_norm(r.get(f)) for f in fields] for r in items) == fingerprint["items"])

    def _recover_creates(self, drafts: list[ValidDraft], states: dict[str, Any], letters: dict[str, Any]) -> set[str]:
        """Drafts left ``creating`` by a run that died after sending the create: adopt the
        offer that create made, if the org has it, so this run does not make a second.
        Updates ``states`` and ``letters`` in place; returns the keys adopted."""
        pending = [d for d in drafts if (s := states.get(d.key)) is not None and s.sf_id is None
                   and s.status == CREATING and isinstance(s.payload, Mapping) and "creating" in s.payload]
        claimed = {s.sf_id for s in states.values() if s.sf_id}
        recovered: set[str] = set()
        for draft in pending:
            intent = states[draft.key].payload["creating"]
            found = self._find_created(intent["fingerprint"], claimed)
            if found is None:
                continue  # the create never reached the org: it is sent again as usual
            offer, items = found
            claimed.add(offer["Id"])
            # What the lost create sent is what the org holds; a later edit of the file
            # then goes out as an update in this same run.
            self._remember_push(draft.key, offer["Id"], intent["content"], intent["hash"], offer, items,
                                letters.pop(draft.key, None))
            self.log.info("offer.recovered", draft=draft.key, offer_id=offer["Id"], items=len(items))
            with self.uow() as uow:
                states[draft.key] = uow.offer_drafts.get(self.org_id, draft.key)
            recovered.add(draft.key)
        return recovered

    def _find_created(self, fingerprint: Mapping[str, Any],
                      claimed: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The oldest offer of the customer that no draft claims and that holds exactly the
        fingerprinted content, with its items (two queries)."""
        customer = self.mapping.objects["offer"].sf_field_for("customer_org_id")
        customer_org = fingerprint.get("customer_org_id") or fingerprint["offer"].get(customer, "")
        fields = "".join(f", {f}" for f in sorted(set(fingerprint["offer"]) - {"Id", "SystemModstamp", "Subtotal"}))
        [offers] = self.org.composite_queries([
            f"SELECT Id, SystemModstamp, Subtotal{fields} FROM {OFFER} "
            f"WHERE {customer} = '{_soql_text(customer_org)}' ORDER BY CreatedDate, Id"])
        wanted = [r for r in offers.records if r["Id"] not in claimed and all(
            _norm(r.get(f)) == v for f, v in fingerprint["offer"].items())]
        if not wanted:
            return None
        ids = ",".join(f"'{r['Id']}'" for r in wanted[:100])
        [items] = self.org.composite_queries([
            f"SELECT Id, {self.link}, SystemModstamp, {', '.join(self._item_fields())} FROM {OFFER_ITEM} "
            f"WHERE {self.link} IN ({ids}) ORDER BY CreatedDate, Id"])
        for offer in wanted[:100]:
            mine = [r for r in items.records if r[self.link] == offer["Id"]]
            if self._holds(fingerprint, offer, mine):
                return offer, mine
        return None

    def _read_back(self, offer_ref: str) -> list[dict[str, Any]]:
        soql = (f"SELECT Id, SystemModstamp FROM {OFFER_ITEM} WHERE {self.link} = '{offer_ref}' "
                f"ORDER BY CreatedDate, Id")
        return [
            self.org.subrequest(
                "GET", f"sobjects/{OFFER}/{offer_ref}?fields=Id,Status,SystemModstamp,Subtotal", "offer_now"),
            self.org.subrequest("GET", f"query?q={quote_plus(soql, safe='@{}')}", "items_now"),
        ]

    # -------------------------------------------------------------- create and update

    def _create(self, draft: ValidDraft, letter: Any) -> DraftResult:
        self._mark_creating(draft)
        subs = [self.org.subrequest("POST", f"sobjects/{OFFER}", "offer", draft.offer_values(self.mapping))]
        link = self.mapping.objects["offer_item"].sf_field_for("offer_id")
        for i, item in enumerate(draft.items):
            subs.append(self.org.subrequest("POST", f"sobjects/{OFFER_ITEM}", f"item{i}",
                                            {**draft.item_values(self.mapping, item), link: "@{offer.id}"}))
        try:
            results = self.org.composite(subs + self._read_back("@{offer.id}"), all_or_none=True)
        except OutcomeUnknown as exc:
            return self._create_unsure(draft, letter, exc)
        failure = _first_failure(results)
        if failure is not None:
            return self._rejected(draft, None, failure, letter)
        by_ref = {r.reference_id: r for r in results}
        offer_id = str(by_ref["offer"].body["id"])
        self._remember_push(draft.key, offer_id, draft.content(), draft.hash, by_ref["offer_now"].body,
                            by_ref["items_now"].body.get("records", []), letter)
        self.log.info("offer.created", draft=draft.key, offer_id=offer_id, items=len(draft.items))
        return DraftResult(draft.key, "created", offer_id, f"{len(draft.items)} item(s)")

    def _create_unsure(self, draft: ValidDraft, letter: Any, exc: Exception) -> DraftResult:
        """The create went out and no answer came back: it may have made the offer. Never
        sent again blind: look for it by its content (the draft stays ``creating``, so the
        next run looks again if the org has not finished it yet)."""
        self.log.warning("offer.create_unsure", draft=draft.key, reason=str(exc))
        with self.uow() as uow:
            claimed = {s.sf_id for s in uow.offer_drafts.list(self.org_id) if s.sf_id}
        try:
            found = self._find_created(self._fingerprint(draft), claimed)
        except (TransientError, OutcomeUnknown) as again:
            self.log.warning("offer.lookup_failed", draft=draft.key, reason=str(again))
            found = None
        if found is None:
            message = ("the org did not answer the create in time and the offer is not (yet) there; the next push "
                       "looks for it again before creating anything")
            return DraftResult(draft.key, "unsure", None, message)
        offer, items = found
        self._remember_push(draft.key, offer["Id"], draft.content(), draft.hash, offer, items, letter)
        self.log.info("offer.recovered", draft=draft.key, offer_id=offer["Id"], items=len(items))
        return DraftResult(draft.key, "created", offer["Id"], "found in the org after an unanswered create")

    def _update(self, draft: ValidDraft, state: Any, org_now: dict[str, Any] | None, letter: Any, *,
                dry_run: bool, force: bool) -> DraftResult:
        offer_id = state.sf_id
        pushed = (state.payload or {}).get("org", {})
        if org_now is None:
            message = (f"offer {offer_id} no longer exists in the org; the draft is not re-created "
                       f"(rename the file to push it as a new offer)")
            return self._refuse(draft, state, "gone", "OFFER_DELETED", message, letter, dry_run)
        if org_now["status"] != self.mapping.to_picklist("offer_status", "draft"):
            message = (f"offer {offer_id} is {org_now['status']} in the org: only Draft offers can be edited, so "
                       f"this local edit is refused and the org's version stands")
            return self._refuse(draft, state, "refused", "OFFER_NOT_DRAFT", message, letter, dry_run,
                                status=str(org_now["status"]).lower())
        changed_in_org = org_now["stamp"] != pushed.get("offer_stamp") or org_now["items"] != pushed.get("items", {})
        if changed_in_org and self._holds(self._fingerprint(draft), org_now["record"], org_now["rows"]):
            # The org already shows this draft: our update went through but the process
            # died before recording it (or the same edit was made there). Nothing to send.
            if dry_run:
                return DraftResult(draft.key, "would_update", offer_id, "already in the org: nothing to send")
            self._remember_push(draft.key, offer_id, draft.content(), draft.hash, org_now["record"], org_now["rows"],
                                letter)
            self.log.info("offer.recovered", draft=draft.key, offer_id=offer_id, items=len(org_now["rows"]))
            return DraftResult(draft.key, "updated", offer_id, "already in the org: nothing sent")
        if changed_in_org and not force:
            message = (f"offer {offer_id} was changed in the org since our last push "
                       f"({pushed.get('offer_stamp')} -> {org_now['stamp']}); not overwritten: bring the draft file "
                       f"in line with the org, then push with --force")
            return self._refuse(draft, state, "conflict", "WRITE_CONFLICT", message, letter, dry_run)
        if dry_run:
            return DraftResult(draft.key, "would_update", offer_id, f"{len(draft.items)} item(s)")
        old_items = list(pushed.get("item_order") or org_now["items"])
        link = self.mapping.objects["offer_item"].sf_field_for("offer_id")
        subs = [self.org.subrequest("PATCH", f"sobjects/{OFFER}/{offer_id}", "offer", draft.offer_values(self.mapping))]
        for i, item in enumerate(draft.items):
            values = draft.item_values(self.mapping, item)
            if i < len(old_items):
                subs.append(self.org.subrequest("PATCH", f"sobjects/{OFFER_ITEM}/{old_items[i]}", f"item{i}", values))
            else:
                subs.append(
                    self.org.subrequest("POST", f"sobjects/{OFFER_ITEM}", f"item{i}", {**values, link: offer_id}))
        for j, surplus in enumerate(old_items[len(draft.items):]):
            subs.append(self.org.subrequest("DELETE", f"sobjects/{OFFER_ITEM}/{surplus}", f"drop{j}"))
        try:
            results = self.org.composite(subs + self._read_back(offer_id), all_or_none=True)
        except OutcomeUnknown as exc:
            # New items may have been created: the next run compares the org with the
            # draft (``changed_in_org`` and ``_holds`` above) before sending anything.
            self.log.warning("offer.update_unsure", draft=draft.key, offer_id=offer_id, reason=str(exc))
            return DraftResult(draft.key, "unsure", offer_id, "the org did not answer the update in time; the next "
                               "push compares the org with the draft before sending again")
        failure = _first_failure(results)
        if failure is not None:
            return self._rejected(draft, offer_id, failure, letter)
        by_ref = {r.reference_id: r for r in results}
        self._remember_push(draft.key, offer_id, draft.content(), draft.hash, by_ref["offer_now"].body,
                            by_ref["items_now"].body.get("records", []), letter)
        self.log.info("offer.updated", draft=draft.key, offer_id=offer_id, items=len(draft.items),
                      forced=changed_in_org)
        return DraftResult(draft.key, "updated", offer_id, f"{len(draft.items)} item(s)")

    # -------------------------------------------------------------- bookkeeping

    def _mark_creating(self, draft: ValidDraft) -> None:
        """Committed before the create is sent: a run that finds it still there looks for
        the offer in the org first (``_recover_creates``)."""
        intent = {"hash": draft.hash, "content": draft.content(), "fingerprint": self._fingerprint(draft)}
        with self.uow() as uow:
            uow.offer_drafts.upsert(self.org_id, draft.key, status=CREATING, payload={"creating": intent})
            uow.commit()

    def _remember_push(self, key: str, offer_id: str, content: Mapping[str, Any], content_hash: str,
                       offer_now: Mapping[str, Any], items_now: Sequence[Mapping[str, Any]], letter: Any) -> None:
        payload = {
            "content": content,
            "org": {"offer_stamp": offer_now["SystemModstamp"],
                    "items": {r["Id"]: r["SystemModstamp"] for r in items_now},
                    "item_order": [r["Id"] for r in items_now],
                    "subtotal": str(offer_now.get("Subtotal")) if offer_now.get("Subtotal") is not None else None},
        }
        with self.uow() as uow:
            uow.offer_drafts.upsert(self.org_id, key, sf_id=offer_id, payload=payload, payload_hash=content_hash,
                                    status="draft", pushed_at=self.clock(), last_error=None)
            if letter is not None:
                uow.dead_letters.resolve(letter.id)
            uow.commit()

    def _rejected(self, draft: ValidDraft, offer_id: str | None, failure: Any, letter: Any) -> DraftResult:
        message = (f"the org refused the offer: {failure.error_code}: {failure.message} "
                   f"(subrequest {failure.reference_id})")
        self.log.warning("offer.rejected", draft=draft.key, offer_id=offer_id, code=failure.error_code,
                         reason=failure.message)
        with self.uow() as uow:
            current = uow.offer_drafts.get(self.org_id, draft.key)
        # A refused create made nothing (all or none): the draft is no longer ``creating``.
        self._remember_error(draft.key, f"ORG_{failure.error_code}", message, current, letter,
                             status="rejected" if offer_id is None else None)
        return DraftResult(draft.key, "rejected", offer_id, message)

    def _refuse(self, draft: ValidDraft, state: Any, action: str, code: str, message: str, letter: Any,
                dry_run: bool, status: str | None = None) -> DraftResult:
        self.log.warning(f"offer.{action}", draft=draft.key, offer_id=state.sf_id, reason=message)
        if not dry_run:
            self._remember_error(draft.key, code, message, state, letter, status=status)
        return DraftResult(draft.key, action, state.sf_id, message)

    def _remember_error(self, key: str, code: str, message: str, state: Any, letter: Any,
                        status: str | None = None) -> None:
        """Record why a draft did not go through; nothing is written when it is already known."""
        same_state = state is not None and state.last_error == message and (status is None or state.status == status)
        same_letter = letter is not None and letter.error_code == code and letter.reason == message
        if same_state and same_letter:
            return
        with self.uow() as uow:
            fields: dict[str, Any] = {"last_error": message}
            if status is not None:
                fields["status"] = status
            elif state is None:
                fields["status"] = "invalid" if code == "INVALID_DRAFT" else "rejected"
            uow.offer_drafts.upsert(self.org_id, key, **fields)
            if not same_letter:
                uow.dead_letters.add(self.org_id, SOURCE, OFFER, key, code, message)
            uow.commit()


def _norm(value: Any) -> str:
    """A field value as text that compares equal however it travelled (50 == 50.00 == "50")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return format(Decimal(str(value)).normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _soql_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _first_failure(results: Sequence[Any]) -> Any:
    """The subrequest that made an all-or-none composite fail (not the PROCESSING_HALTED ones)."""
    failed = [r for r in results if not r.ok]
    real = [r for r in failed if r.error_code != "PROCESSING_HALTED"]
    return (real or failed or [None])[0]


# ------------------------------------------------------------------------------ job entry


def _drafts_dir(runtime: OrgContext) -> Path:
    drafts_dir = runtime.config.offers.drafts_dir
    assert drafts_dir is not None, "loading the config sets [offers] drafts_dir (default: <data_dir>/offers/<alias>)"
    return Path(drafts_dir)


def build_offers_push(runtime: OrgContext, *, log: Any = None) -> OffersPushService:
    return OffersPushService(runtime.salesforce(), runtime.uow, runtime.mapping, runtime.org_id,
                             _drafts_dir(runtime), log=log, clock=runtime.clock)


def run_offers_push_job(runtime: OrgContext, *, log: Any, dry_run: bool = False) -> dict[str, int]:
    """The scheduled/one-off offers push for one org (see ``connector.jobs``)."""
    drafts_dir = _drafts_dir(runtime)
    if not drafts_dir.is_dir() or not any(drafts_dir.glob("*.toml")):
        log.info("offers.none", drafts_dir=str(drafts_dir))
        return {}
    return build_offers_push(runtime, log=log).push(dry_run=dry_run).counts()
