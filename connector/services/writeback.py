"""Write-back: each order's results, upserted into a partner-owned object in the org.

GTM orders are read-only for partners, so results land on the mapping's write-back target
(default ``GTM_Order_Billing__c`` keyed by external id ``Order_Id__c``; ``[writeback]``
in the org's config may name another object or external id). Per order that has any
result — a Stripe invoice, a payout reconciliation or an open error — and per order written
before (so a fixed error is cleared even when nothing else is left), the payload is the
mapping's ``writeback.toml`` fields (local result name -> Salesforce field), ``null``
clearing what no longer applies.

Only changed rows are sent: ``writeback_state`` keeps the hash (and the payload) of the
last *successful* write per order, so an idle cycle sends nothing. Rows go out with the
org gateway's collections upsert (200 per call, ``allOrNone=false``) and each batch's
outcome is committed before the next is sent:

* success: the state's hash moves; any open write-back dead letter of the order resolves;
* a transient per-record error (``UNABLE_TO_LOCK_ROW`` …) puts the record back in the
  queue for a later batch of the same run, at most ``MAX_ATTEMPTS`` times; still failing,
  it is left for the next run (the hash did not move, so the next run sends it);
* a permanent per-record error opens a dead letter (source ``writeback``, the Salesforce
  error code and message, the payload); that payload is not sent again by the regular job
  — ``replay`` re-sends it once the cause is fixed. A changed payload is sent normally.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from connector.domain import format_money, to_cents
from connector.mappings import CURRENCY_CENTS, MappingSet
from connector.services.attention import read_attention
from connector.services.mirror import incomplete_orders
from connector.services.ports import OrgContext, RecordOutcome, UnitOfWork

SOURCE = "writeback"
CHUNK = 200
MAX_ATTEMPTS = 3  # sends of one record within one run
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "QUERY_TIMEOUT"})
TEXT_LIMIT = 255  # the connector's own texts (errors, discrepancies) are cut to a text field


class OrgWriter(Protocol):
    """What write-back needs from the org (``adapters.salesforce.SalesforceOrg``)."""

    def upsert_collection(self, sobject: str, external_id_field: str,
                          records: Sequence[Mapping[str, Any]]) -> Sequence[RecordOutcome]: ...


@dataclass(frozen=True)
class Target:
    sobject: str
    external_id: str
    fields: Mapping[str, str]  # local result name -> SF field
    types: Mapping[str, str] = field(default_factory=dict)  # SF field -> mapping type (writeback.toml [types])


@dataclass(frozen=True)
class PlannedRow:
    order_id: str
    payload: Mapping[str, Any]  # SF field -> value
    previous: Mapping[str, Any] | None  # what was last written, None if never
    hash: str

    def changes(self) -> list[tuple[str, Any, Any]]:
        """(field, old, new) for every field that differs from the last write."""
        old = self.previous or {}
        return [(f, old.get(f), v) for f, v in self.payload.items() if _plain(old.get(f)) != _plain(v)]


@dataclass
class WritebackPlan:
    target: Target
    to_send: list[PlannedRow] = field(default_factory=list)
    unchanged: int = 0
    awaiting_replay: int = 0
    waiting_for_mirror: int = 0  # orders a sync has not finished writing: not written back yet


def target_of(runtime: OrgContext) -> Target:
    """The mapping's write-back target with the config's overrides (an external id the
    mapping lacks was refused with the config: ``config.check_against_mapping``)."""
    mapped = runtime.mapping.writeback
    section = runtime.config.writeback
    return Target(section.sobject or mapped.sobject, section.external_id or mapped.external_id, dict(mapped.fields),
                  dict(mapped.types))


# ------------------------------------------------------------------------------ payloads
def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def payload_hash(payload: Mapping[str, Any]) -> str:
    text = json.dumps({k: _plain(v) for k, v in payload.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= TEXT_LIMIT:
        return text
    return text[: TEXT_LIMIT - 1] + "…"


def order_of_letter(letter: Any, mapping: MappingSet) -> str | None:
    """The order a dead letter is about, if it names one: a letter on the order object, or
    one whose record holds a reference to its order (the mapping's ``order_references``)."""
    if letter.object_name in mapping.order_names:
        return str(letter.record_id)
    payload: Mapping[str, Any] = letter.payload if isinstance(letter.payload, Mapping) else {}
    nested = payload.get("record")
    record: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}  # mirror letters
    references = mapping.order_references
    for source in (payload, record):
        for key in references:
            if source.get(key):
                return str(source[key])
    return None


def results_of(uow: UnitOfWork, org_id: str, written: Iterable[str] = (), *, mapping: MappingSet,
               today: date | None = None) -> dict[str, dict[str, Any]]:
    """Local result name -> value, per order with any result, plus the ``written`` orders
    (those with a record in the org): an order whose last result went away (its error was
    fixed, its invoice row removed) still gets a payload, all ``None``, so its fields clear.
    With ``today``, an order's attention flag (``services.attention``) leads
    its last error."""
    results: dict[str, dict[str, Any]] = {order_id: {} for order_id in written}
    for inv in uow.invoices.list(org_id):
        results.setdefault(inv.order_id, {}).update(
            stripe_invoice_id=inv.stripe_invoice_id, invoice_number=inv.number, invoice_url=inv.hosted_url,
            invoice_status=inv.status, invoice_due_date=inv.due_date, invoice_amount=inv.amount_due)
    for rec in uow.reconciliation.list(org_id):
        results.setdefault(rec.order_id, {}).update(
            expected_payout=rec.expected_payout, actual_payout=rec.actual_payout, payout_date=rec.payout_date,
            discrepancy=_cut(rec.discrepancy))
    latest: dict[str, Any] = {}
    for letter in uow.dead_letters.open(org_id):
        if letter.source == SOURCE:
            continue  # our own failures are not the order's error
        order_id = order_of_letter(letter, mapping)
        if order_id and (order_id not in latest or letter.updated_at >= latest[order_id].updated_at):
            latest[order_id] = letter
    errors = {order_id: f"{letter.error_code}: {letter.reason}" for order_id, letter in latest.items()}
    if today is not None:
        # The last-error field, not the payout discrepancy: an order that ended after its
        # invoice was issued is an operational problem someone must act on (void or credit
        # the invoice, fix the order), not a difference in money; the discrepancy field
        # stays the reconciliation's own. It leads the field and leaves it when it clears.
        for flag in read_attention(uow, org_id, mapping, today=today).orders:
            errors[flag.order_id] = f"{flag.code}: {flag.message}" + (
                f" | {errors[flag.order_id]}" if flag.order_id in errors else "")
    for order_id, error in errors.items():
        results.setdefault(order_id, {})["last_error"] = _cut(error)
    # one streamed read, not a query per order
    numbers = {row["sf_id"]: row.get("order_number")
               for row in uow.mirror("order").iter_all(org_id, include_deleted=True) if row["sf_id"] in results}
    for order_id, values in results.items():
        values["order_id"] = order_id
        values["order_number"] = numbers.get(order_id)
    return results


def build_payload(target: Target, values: Mapping[str, Any]) -> dict[str, Any]:
    """SF field -> value for every mapped result (None clears the field in the org).

    Amounts are the local model's major units; a target field typed ``currency_cents``
    (an org that keeps that amount in cents, like ``SfdcPartnerPayout.Amount``) gets them
    as whole cents, converted here, once, the way the mirror divides them on the way in."""
    payload: dict[str, Any] = {}
    for name, sf_field in target.fields.items():
        value = values.get(name)
        if isinstance(value, (date, datetime)):
            value = value.isoformat()
        elif isinstance(value, Decimal) and target.types.get(sf_field) == CURRENCY_CENTS:
            value = to_cents(value)
        payload[sf_field] = value
    return payload


def plan(runtime: OrgContext, *, orders: Iterable[str] | None = None, include_waiting: bool = False) -> WritebackPlan:
    """What a run would send. ``orders`` narrows it (replay); ``include_waiting`` also
    sends payloads parked in a write-back dead letter (replay)."""
    target = target_of(runtime)
    result = WritebackPlan(target)
    wanted = set(orders) if orders is not None else None
    with runtime.uow() as uow:
        states = {s.order_id: s for s in uow.writeback_state.list(runtime.org_id)}
        parked = {d.record_id: d for d in uow.dead_letters.open(runtime.org_id, SOURCE)}
        today = runtime.clock().astimezone(UTC).date()
        written = [order_id for order_id, s in states.items() if s.payload_hash is not None]
        unfinished = incomplete_orders(uow, runtime.org_id, runtime.mapping)
        for order_id, values in sorted(results_of(uow, runtime.org_id, written, mapping=runtime.mapping,
                                                  today=today).items()):
            if wanted is not None and order_id not in wanted:
                continue
            if order_id in unfinished:  # half a sync: its errors may be false; the next run sends it
                result.waiting_for_mirror += 1
                continue
            payload = build_payload(target, values)
            digest = payload_hash(payload)
            state = states.get(order_id)
            if state is not None and state.payload_hash == digest:
                result.unchanged += 1
                continue
            letter = parked.get(order_id)
            if not include_waiting and letter is not None and isinstance(letter.payload, Mapping) \
                    and payload_hash(letter.payload) == digest:
                result.awaiting_replay += 1
                continue
            previous = state.payload if state is not None and isinstance(state.payload, Mapping) else None
            result.to_send.append(PlannedRow(order_id, payload, previous, digest))
    return result


# -------------------------------------------------------------------------------- the job
@dataclass
class Counts:
    candidates: int = 0
    sent: int = 0
    written: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    unchanged: int = 0
    awaiting_replay: int = 0
    calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def run_writeback_job(runtime: OrgContext, *, log: Any, dry_run: bool = False,
                      stop: threading.Event | None = None) -> Mapping[str, int]:
    """The ``writeback`` job (see the module docstring)."""
    if not runtime.config.writeback.enabled:
        log.info("writeback.disabled")
        return {"disabled": 1}
    planned = plan(runtime)
    counts = Counts(candidates=len(planned.to_send) + planned.unchanged + planned.awaiting_replay,
                    unchanged=planned.unchanged, awaiting_replay=planned.awaiting_replay)
    if dry_run:
        for row in planned.to_send:
            log.info("writeback.would_write", order=row.order_id, fields=[f for f, _, _ in row.changes()])
        # Only what a plan knows: nothing was sent, written, retried or failed.
        return {"candidates": counts.candidates, "would_send": len(planned.to_send), "unchanged": counts.unchanged,
                "awaiting_replay": counts.awaiting_replay}
    send(runtime, planned.to_send, planned.target, counts=counts, log=log, stop=stop)
    log.info("writeback.done", **counts.as_dict())
    return counts.as_dict()


def send(runtime: OrgContext, rows: Sequence[PlannedRow], target: Target, *, counts: Counts, log: Any,
         stop: threading.Event | None = None, writer: OrgWriter | None = None, retry_pause_s: float = 0.2) -> Counts:
    """Upsert ``rows`` 200 at a time, committing each batch's outcome before the next."""
    if not rows:
        return counts
    writer = writer or runtime.salesforce()
    queue: deque[tuple[PlannedRow, int]] = deque((row, 1) for row in rows)
    while queue:
        if stop is not None and stop.is_set():
            log.info("writeback.interrupted", left=len(queue))
            break
        batch = [queue.popleft() for _ in range(min(CHUNK, len(queue)))]
        if all(attempt > 1 for _, attempt in batch):
            time.sleep(retry_pause_s)  # only retries left: give the lock holder a moment
        outcomes = writer.upsert_collection(target.sobject, target.external_id, [row.payload for row, _ in batch])
        counts.calls += 1
        counts.sent += len(batch)
        by_index = {o.index: o for o in outcomes}
        with runtime.uow() as uow:
            for i, (row, attempt) in enumerate(batch):
                outcome = by_index.get(i)
                if outcome is not None and outcome.success:
                    _written(uow, runtime, row, target)
                    counts.written += 1
                    continue
                code = (outcome.error_code if outcome is not None else None) or "NO_RESULT"
                message = outcome.message if outcome is not None else "Salesforce returned no result for the record"
                if code in TRANSIENT_CODES:
                    if attempt < MAX_ATTEMPTS:
                        queue.append((row, attempt + 1))
                        counts.retried += 1
                    else:
                        uow.writeback_state.upsert(runtime.org_id, row.order_id, last_result=f"retry next run: {code}")
                        counts.deferred += 1
                        log.warning("writeback.deferred", order=row.order_id, code=code, attempts=attempt)
                    continue
                uow.dead_letters.add(runtime.org_id, SOURCE, target.sobject, row.order_id, code, message,
                                     dict(row.payload))
                uow.writeback_state.upsert(runtime.org_id, row.order_id, last_result=f"failed: {code}")
                counts.failed += 1
                log.warning("writeback.rejected", order=row.order_id, code=code, message=message)
            uow.commit()
        log.info("writeback.batch", records=len(batch), written=counts.written, failed=counts.failed,
                 queued=len(queue))
    return counts


def _written(uow: UnitOfWork, runtime: OrgContext, row: PlannedRow, target: Target) -> None:
    uow.writeback_state.upsert(runtime.org_id, row.order_id, payload={k: _plain(v) for k, v in row.payload.items()},
                               payload_hash=row.hash, last_written_at=runtime.clock(), last_result="ok")
    uow.dead_letters.resolve_for(runtime.org_id, SOURCE, target.sobject, row.order_id)
