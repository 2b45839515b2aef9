"""Replay of dead letters, after the cause is fixed.

Each source has its own way to try a letter again; a letter is resolved only when the
retry went through, and keeps (refreshed) its reason otherwise:

* ``writeback``: the order's *current* payload (the cause may have been in the data) is
  upserted again, parked payloads included;
* ``mirror``: the record is fetched again by Id and re-validated; a valid one is stored
  and its letter resolved (a record gone from the org resolves as deleted);
* ``invoicing``: the order's refused Stripe steps are reopened and invoicing runs again
  (the order's letter resolves when it is invoiced);
* ``payouts``: the reconcile job runs again (an order it can now compute, or a charge it
  can now trace, resolves).

Running a job again is the caller's: the entry point hands in ``run_job`` (e.g.
``connector.jobs.runner("replay")``), so this module never imports ``connector.jobs``.

``dry_run`` lists what would be replayed and touches nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from connector.errors import ApiLimitReached, ConnectorError, RecordError
from connector.services import writeback
from connector.services.ports import OrgContext, UnitOfWork

# Runs one job for the org the way the CLI does and returns its outcome (``JobOutcome``).
RunJob = Callable[[OrgContext, str], Any]


@dataclass(frozen=True)
class ReplayItem:
    letter_id: int
    source: str
    object_name: str
    record_id: str
    outcome: str  # resolved | still failing | would replay | skipped | stopped early
    detail: str = ""


@dataclass
class ReplayReport:
    org: str
    items: list[ReplayItem] = field(default_factory=list)

    @property
    def resolved(self) -> int:
        return sum(1 for i in self.items if i.outcome == "resolved")

    @property
    def failing(self) -> int:
        return sum(1 for i in self.items if i.outcome == "still failing")

    @property
    def stopped_early(self) -> bool:
        """The org's API limit ended the replay: the letters left are not failures."""
        return any(i.outcome == "stopped early" for i in self.items)


def select_letters(runtime: OrgContext, ids: Iterable[int] | None) -> list[Any]:
    with runtime.uow() as uow:
        return list(uow.dead_letters.open(runtime.org_id, ids=list(ids) if ids is not None else None))


def replay(runtime: OrgContext, *, ids: Sequence[int] | None = None, dry_run: bool = False, log: Any,
           run_job: RunJob) -> ReplayReport:
    """Replay the org's open letters (``ids`` narrows to those). ``run_job`` runs a job the
    way the CLI does (invoicing and payouts letters are replayed by running their job)."""
    letters = select_letters(runtime, ids)
    report = ReplayReport(runtime.alias)
    if dry_run:
        report.items = [_item(d, "would replay") for d in letters]
        return report
    by_source: dict[str, list[Any]] = {}
    for letter in letters:
        by_source.setdefault(letter.source, []).append(letter)
    limit: str | None = None
    for source, group in by_source.items():
        handler = HANDLERS.get(source)
        if handler is None:
            report.items += [_item(d, "skipped", f"no replay for source {source!r}") for d in group]
            continue
        if limit is not None:  # no API calls left today: the rest waits, as a job's cycle does
            report.items += [_item(d, "stopped early", limit) for d in group]
            continue
        failure = None
        try:
            handler(runtime, group, log=log, run_job=run_job)
        except ApiLimitReached as exc:
            limit = f"not replayed: the org's API limit was reached ({exc}); replay again later"
            log.warning("replay.stopped", source=source, reason="api_limit", error=str(exc))
            report.items += [i if i.outcome == "resolved" else replace(i, outcome="stopped early", detail=limit)
                             for i in _after(runtime, group)]
            continue
        except ConnectorError as exc:
            failure = str(exc)
            log.warning("replay.failed", source=source, error=failure)
        items = _after(runtime, group)
        if failure:  # the letter's old reason would hide why the replay did not go through
            items = [replace(i, detail=f"replay failed: {failure}") if i.outcome == "still failing" else i
                     for i in items]
        report.items += items
    log.info("replay.done", letters=len(letters), resolved=report.resolved, failing=report.failing)
    return report


def _item(letter: Any, outcome: str, detail: str | None = None) -> ReplayItem:
    return ReplayItem(letter.id, letter.source, letter.object_name, letter.record_id, outcome,
                      detail if detail is not None else f"{letter.error_code}: {letter.reason}")


def _after(runtime: OrgContext, letters: list[Any]) -> list[ReplayItem]:
    """Each letter's outcome, read back from the store."""
    with runtime.uow() as uow:
        now = {d.id: uow.dead_letters.get(d.id) for d in letters}
    out = []
    for letter in letters:
        current = now[letter.id]
        if current is None or not current.is_open:
            out.append(_item(letter, "resolved", "went through"))
        else:
            out.append(_item(current, "still failing"))
    return out


# ------------------------------------------------------------------------------ handlers
def _replay_writeback(runtime: OrgContext, letters: list[Any], *, log: Any, run_job: RunJob) -> None:
    orders = {d.record_id for d in letters}
    planned = writeback.plan(runtime, orders=orders, include_waiting=True)
    to_send = {row.order_id for row in planned.to_send}
    with runtime.uow() as uow:
        for letter in letters:  # already written as it is now: nothing left to replay
            if letter.record_id not in to_send:
                uow.dead_letters.resolve(letter.id)
        uow.commit()
    counts = writeback.Counts()
    writeback.send(runtime, planned.to_send, planned.target, counts=counts, log=log)
    log.info("replay.writeback", sent=counts.sent, written=counts.written, failed=counts.failed)


def _replay_mirror(runtime: OrgContext, letters: list[Any], *, log: Any, run_job: RunJob) -> None:
    from connector.services.records import RecordConverter

    org = runtime.salesforce()
    for letter in letters:
        try:
            obj = runtime.mapping.by_sobject(letter.object_name)
        except KeyError:
            log.warning("replay.unknown_object", object=letter.object_name, letter=letter.id)
            continue
        with runtime.uow() as uow:
            repo = uow.mirror(obj.name)
            converter = RecordConverter(runtime.mapping, obj, partial(_known_ids, uow, runtime.org_id),
                                        store=repo.forms)
            record = org.get(obj.sobject, letter.record_id, converter.select_fields)
            if record is None:  # deleted in the org since: nothing left to mirror
                uow.dead_letters.resolve(letter.id)
                uow.commit()
                continue
            try:
                row = converter.to_row(record)
            except RecordError as exc:
                uow.dead_letters.add(runtime.org_id, "mirror", obj.sobject, letter.record_id, exc.code, exc.reason,
                                     payload=letter.payload)
                uow.commit()
                continue
            repo.upsert_many(runtime.org_id, [row], checked=True)
            uow.dead_letters.resolve(letter.id)
            uow.commit()
        log.info("replay.mirrored", object=obj.sobject, record_id=letter.record_id)


def _replay_invoicing(runtime: OrgContext, letters: list[Any], *, log: Any, run_job: RunJob) -> None:
    from connector.services.invoicing import build_invoicing

    service = build_invoicing(runtime, log=log, with_billing=False)
    for letter in letters:
        service.retry(letter.record_id)
    outcome = run_job(runtime, "invoicing")
    log.info("replay.invoicing", status=getattr(outcome, "status", None), error=getattr(outcome, "error", None))


def _replay_payouts(runtime: OrgContext, letters: list[Any], *, log: Any, run_job: RunJob) -> None:
    from connector.services.payouts import retrace_letters

    traced = retrace_letters(runtime, [d for d in letters if d.object_name == "balance_transaction"], log=log)
    log.info("replay.retraced", resolved=traced)
    outcome = run_job(runtime, "reconcile")
    log.info("replay.reconcile", status=getattr(outcome, "status", None), error=getattr(outcome, "error", None))


HANDLERS: dict[str, Callable[..., None]] = {
    "writeback": _replay_writeback,
    "mirror": _replay_mirror,
    "invoicing": _replay_invoicing,
    "payouts": _replay_payouts,
}


def _known_ids(uow: UnitOfWork, org_id: str, key: str) -> set[str]:
    """The ids the mirror holds for object ``key`` (references resolve against them)."""
    return set(uow.mirror(key).ids(org_id))
