"""The mirror: GTM records from the org into the local model, incrementally.

Per mapped object, in mapping order (parents before children):

* **Cursor** = ``SystemModstamp`` of the last record committed. A run reads
  ``queryAll: SELECT ... WHERE SystemModstamp >= cursor - lookback ORDER BY SystemModstamp, Id``
  page by page. Each page is one unit of work: its rows, deletions, quarantined records,
  anomalies and the cursor (the page's last, i.e. highest, stamp) commit together, so a run
  stopped anywhere resumes from the last committed page. ``>=`` plus the lookback means
  many records sharing the boundary stamp, or committed late with an earlier stamp, are
  read again rather than missed; upserts are idempotent so re-reading costs no writes.
  The query locator is a snapshot, so records changed during pagination come back with
  their new stamp (above the cursor) on the next run.
* **Deletes**: ``queryAll`` returns recycle-bin rows with ``IsDeleted = true`` and their
  deletion stamp; they become local tombstones (soft delete). ``full=True`` re-reads every
  live record and soft-deletes local rows the org no longer has at all (purged from the
  recycle bin, or deleted beyond its retention).
* **Idle cycle**: for objects that already have a cursor, one ``queryAll`` per object asks
  how many records carry a stamp in the lookback window and what the newest stamp is; all
  of them go in ``/composite/batch`` calls (25 per call: the 11 gtm-v2 objects cost one API call). An
  object is synced only if its newest stamp is past the cursor or the window count differs
  from what is stored locally (tombstones and quarantined records included), which is how
  a record committed late inside the window, or a deletion, shows up.
* **First mirror**: the first pages of every object never synced yet come in the same
  ``/composite/batch`` calls (25 queries a call; most GTM objects are small or empty),
  then each object reads on page by page from its own first page.
* **Validation**: each record is converted and checked on the way in (``records.py``); a
  bad one goes to ``dead_letter`` (source ``mirror``) with its reason and the rest of the
  page proceeds. When the record is later fixed in the org, its letter is resolved.
* **Mapping check**: the job runs behind ``connector.services.mapping_guard``, which checks
  the mapping against the org's describe before the first sync of a run (one call, 304
  when nothing changed) and again when due or when a query fails on a name.
* **State machines**: offer and order status changes are checked against
  ``connector.domain.states``; an illegal jump is applied anyway (the org is the source
  of truth) and recorded as an anomaly.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connector.domain.states import OFFER_MACHINE, ORDER_MACHINE, StateMachine, TransitionVerdict
from connector.errors import ApiLimitReached, ConfigError, ConnectorError, PermanentError, RecordError
from connector.mappings import MappingSet, ObjectMapping
from connector.services.bulk_mirror import BulkSource, build_bulk_source
from connector.services.dry_run import dry_run_counts
from connector.services.ports import MirrorReader, OrgContext, QueryPage, UnitOfWork, UnitOfWorkFactory
from connector.services.records import EPOCH, RecordConverter, json_safe, parse_sf_datetime, soql_datetime

IDLE_BATCH = 200  # smallest page Salesforce allows: the idle check needs counts, not rows
MACHINES: dict[str, StateMachine[Any]] = {"offer": OFFER_MACHINE, "order": ORDER_MACHINE}


# ------------------------------------------------------------------------------ ports


# One place: connector.services.ports. The names stay importable from here.
OrgReader = MirrorReader  # what the mirror needs from the org (``SalesforceOrg``)


# ------------------------------------------------------------------------------ results


@dataclass
class ObjectReport:
    key: str
    sobject: str
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    anomalies: int = 0
    pages: int = 0
    idle: bool = False
    status: str = "ok"
    cursor: datetime | None = None
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted

    @property
    def rate(self) -> float:
        return self.fetched / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MirrorReport:
    objects: list[ObjectReport] = field(default_factory=list)
    full: bool = False
    dry_run: bool = False
    api_calls: int | None = None
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(o.written for o in self.objects)

    def counts(self) -> dict[str, int]:
        """Per mapping object key: records written; plus run totals (job_runs.counts)."""
        out = {o.key: o.written for o in self.objects}
        out.update(
            fetched=sum(o.fetched for o in self.objects),
            written=self.written,
            quarantined=sum(o.quarantined for o in self.objects),
            anomalies=sum(o.anomalies for o in self.objects),
            idle_objects=sum(1 for o in self.objects if o.idle),
        )
        if self.api_calls is not None:
            out["sf_api_calls"] = self.api_calls
        if self.dry_run:  # nothing was written: no per-object "written" counts, the totals say "would"
            out = dry_run_counts({k: v for k, v in out.items() if k not in {o.key for o in self.objects}},
                                 {"written": "would_write", "quarantined": "would_quarantine"})
        return out


@dataclass(frozen=True)
class PageProgress:
    key: str
    sobject: str
    page: int
    fetched: int  # records of this object so far in this run
    total: int  # the query's totalSize
    seconds: float


@dataclass
class _Letter:
    reason: str
    stamp: str | None


GC_YOUNG_THRESHOLD = 50_000
_gc_lock = threading.Lock()
_gc_readers = 0
_gc_threshold = gc.get_threshold()


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """While an object's pages are read, the collector's youngest generation is collected after
    ``GC_YOUNG_THRESHOLD`` new objects rather than 700. Every page is thousands of new
    dicts that all die with it (freed as they go, not by the collector); at the default the
    collector ran ~700 times per 100k records and promoted pages into the older
    generations, whose collections walk the whole heap: ~0.4 s per 100k records, a tenth of
    a first mirror. The default comes back when the last reader in the process is done."""
    global _gc_readers, _gc_threshold
    with _gc_lock:
        if _gc_readers == 0:
            _gc_threshold = gc.get_threshold()
            gc.set_threshold(max(GC_YOUNG_THRESHOLD, _gc_threshold[0]), *_gc_threshold[1:])
        _gc_readers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_readers -= 1
            if _gc_readers == 0:
                gc.set_threshold(*_gc_threshold)


# ------------------------------------------------------------------------------ service


class MirrorService:
    def __init__(
        self,
        org: OrgReader,
        uow: UnitOfWorkFactory,
        mapping: MappingSet,
        org_id: str,
        *,
        lookback_seconds: int = 300,
        log: Any = None,
        progress: Callable[[PageProgress], None] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        bulk: BulkSource | None = None,
    ) -> None:
        self.org = org
        self.bulk = bulk  # big reads through Bulk API 2.0 query jobs (bulk_mirror.py)
        self.uow = uow
        self.mapping = mapping
        self.org_id = org_id
        self.lookback = timedelta(seconds=lookback_seconds)
        self.log = log or structlog.get_logger("connector.mirror").bind(org_id=org_id, job="mirror")
        self.progress = progress
        self.stop = stop
        self.clock = clock
        self._known: dict[str, set[str]] = {}
        self._letters: dict[str, dict[str, _Letter]] = {}
        self._unavailable: set[str] = set()

    # -------------------------------------------------------------- entry point

    def select(self, objects: Sequence[str] | None) -> list[ObjectMapping]:
        """Mapped objects by key or sObject name, in sync order; ConfigError for unknown names."""
        ordered = self.mapping.in_sync_order()
        if not objects:
            return ordered
        wanted = {o.lower() for o in objects}
        known = {o.name.lower() for o in ordered} | {o.sobject.lower() for o in ordered}
        unknown = sorted(wanted - known)
        if unknown:
            names = ", ".join(o.name for o in ordered)
            raise ConfigError(f"unknown object(s) {', '.join(unknown)}: the mapping {self.mapping.name} has {names}")
        return [o for o in ordered if o.name.lower() in wanted or o.sobject.lower() in wanted]

    def run(self, objects: Sequence[str] | None = None, *, full: bool = False, dry_run: bool = False) -> MirrorReport:
        started = time.monotonic()
        calls_before = _api_calls(self.org)
        selected = self.select(objects)
        report = MirrorReport(full=full, dry_run=dry_run)
        self.log.info("mirror.started", objects=[o.name for o in selected], full=full, dry_run=dry_run)
        cursors = self._cursors()
        self._load_letters()
        self._unavailable = set()
        to_sync = selected if full else self._changed(selected, cursors)
        if not dry_run:
            self._begin(selected, to_sync)
        try:
            # A stop that arrives while the first pages are in flight (one batch for every
            # object) still lets the first object take its page, as a stop during any other
            # query finishes its page; a stop from before the run takes nothing.
            owe_a_page = not self._stop_requested()
            self._prime_first_pages(to_sync, cursors, full=full)
            for obj in selected:
                if obj not in to_sync:
                    status = "unavailable" if obj.name in self._unavailable else "ok"
                    report.objects.append(ObjectReport(obj.name, obj.sobject, idle=True, status=status,
                                                       cursor=cursors.get(obj.sobject)))
                    continue
                if self._stop_requested() and not owe_a_page:
                    self._set_status(obj, "stopped", dry_run=dry_run)
                    continue
                owe_a_page = False
                try:
                    report.objects.append(self._sync_object(obj, cursors.get(obj.sobject), full=full,
                                                            dry_run=dry_run))
                except ApiLimitReached:
                    raise  # recorded 'stopped' already
                except Exception:
                    # (A Ctrl-C or SIGKILL leaves 'running': just as unfinished, and quitting
                    # must not wait for one more write.)
                    self._set_status(obj, "failed", dry_run=dry_run)
                    raise
        finally:
            self.org.forget_primed()
            report.seconds = round(time.monotonic() - started, 3)
            calls_after = _api_calls(self.org)
            if calls_before is not None and calls_after is not None:
                report.api_calls = calls_after - calls_before
            self.log.info("mirror.finished", written=report.written, api_calls=report.api_calls,
                          idle=[o.key for o in report.objects if o.idle], seconds=report.seconds)
        return report

    # -------------------------------------------------------------- idle check

    def _cursors(self) -> dict[str, datetime]:
        with self.uow() as uow:
            return {s.object_name: s.cursor for s in uow.sync_state.all(self.org_id) if s.cursor is not None}

    def _window_start(self, cursor: datetime) -> datetime:
        return (cursor - self.lookback).replace(microsecond=0)

    def _changed(self, selected: list[ObjectMapping], cursors: dict[str, datetime]) -> list[ObjectMapping]:
        """Objects that need a sync: those never synced, plus those whose window in the org
        differs from the local one (newest stamp past the cursor, or another count)."""
        checked = [o for o in selected if o.sobject in cursors]
        if not checked:
            return selected
        soqls = [
            f"SELECT Id, SystemModstamp FROM {o.sobject} WHERE SystemModstamp >= "
            f"{soql_datetime(self._window_start(cursors[o.sobject]))} ORDER BY SystemModstamp DESC, Id DESC"
            for o in checked
        ]
        answers = self.org.composite_queries(soqls, include_deleted=True, batch_size=IDLE_BATCH, raise_errors=False)
        changed: set[str] = set()
        with self.uow() as uow:
            for obj, answer in zip(checked, answers, strict=True):
                if answer.error_code in ("INVALID_TYPE", "NOT_FOUND"):
                    self._unavailable.add(obj.name)  # the org has no such object (still): nothing to do
                    continue
                if answer.error_code is not None:  # let the object's own sync report it
                    changed.add(obj.name)
                    continue
                cursor = cursors[obj.sobject]
                since = self._window_start(cursor)
                local = (uow.mirror(obj.name).count(self.org_id, include_deleted=True, since=since)
                         + self._letters_since(obj.sobject, since))
                newest = parse_sf_datetime(answer.records[0]["SystemModstamp"]) if answer.records else None
                if answer.total_size != local or (newest is not None and newest > cursor):
                    changed.add(obj.name)
                    self.log.info("object.changed", object=obj.sobject, org_window=answer.total_size,
                                  local_window=local, newest=newest.isoformat() if newest else None)
        return [o for o in selected if o.sobject not in cursors or o.name in changed]

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _prime_first_pages(self, to_sync: list[ObjectMapping], cursors: dict[str, datetime], *, full: bool) -> None:
        """Objects never synced yet (a first mirror: most of them small or empty) have their
        first pages fetched together, 25 queries per ``/composite/batch`` call, rather than one
        call each; each object's sync then starts from its page and reads on as usual. Best
        effort: if the batch fails, every object sends its own query and meets the error there."""
        if full or (self.stop is not None and self.stop.is_set()):
            return
        fresh = [o for o in to_sync if o.sobject not in cursors]
        if len(fresh) < 2:
            return
        soqls = [RecordConverter(self.mapping, o, self._known_ids).soql() for o in fresh]
        try:
            kept = self.org.prime_queries(soqls, include_deleted=True)
        except ConnectorError as exc:
            self.log.info("mirror.prime_skipped", error=type(exc).__name__)
            return
        self.log.debug("mirror.primed", objects=len(fresh), kept=kept)

    # -------------------------------------------------------------- one object

    @_fewer_collections()
    def _sync_object(self, obj: ObjectMapping, cursor: datetime | None, *, full: bool, dry_run: bool) -> ObjectReport:
        with self.uow() as uow:
            repo = uow.mirror(obj.name)
            # Rows come out of the converter in the form the table stores them.
            converter = RecordConverter(self.mapping, obj, self._known_ids, store=repo.forms)
            # A first mirror: nothing stored yet, so no page needs to read what is (see _apply_page).
            new = not repo.has_rows(self.org_id)
        report = ObjectReport(obj.name, obj.sobject, cursor=cursor)
        if full:
            soql, include_deleted = converter.soql(), False
        elif cursor is None:
            soql, include_deleted = converter.soql(), True
        else:
            soql = converter.soql(f"SystemModstamp >= {soql_datetime(self._window_start(cursor))}")
            include_deleted = True
        seen: set[str] | None = set() if full else None
        started = time.monotonic()
        log = self.log.bind(object=obj.sobject)
        pages = (self.bulk.pages(obj, soql, include_deleted) if self.bulk is not None
                 else self.org.query_pages(soql, include_deleted=include_deleted))
        completed = False
        try:
            for page in _unless_unavailable(pages, report, log):
                new = self._apply_page(obj, converter, page, report, seen, new=new, dry_run=dry_run)
                report.seconds = round(time.monotonic() - started, 3)
                log.info("page.committed" if not dry_run else "page.checked", page=report.pages,
                         records=len(page.records), fetched=report.fetched, total=page.total_size,
                         inserted=report.inserted, updated=report.updated, deleted=report.deleted,
                         quarantined=report.quarantined,
                         cursor=report.cursor.isoformat() if report.cursor else None)
                if self.progress is not None:
                    self.progress(PageProgress(obj.name, obj.sobject, report.pages, report.fetched,
                                               page.total_size, report.seconds))
                if self.stop is not None and self.stop.is_set() and not page.done:
                    report.status = "stopped"
                    break
            else:
                completed = True
        except ApiLimitReached:
            report.status = "stopped"
            self._mark_run(obj, "stopped", full=False, dry_run=dry_run)
            log.warning("object.stopped", reason="api_limit", fetched=report.fetched)
            raise
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        if report.status == "unavailable":
            if not dry_run:  # a cursor puts it in the idle check, which notices if it appears
                with self.uow() as uow:
                    uow.sync_state.advance(self.org_id, obj.sobject, EPOCH, 0)
                    uow.sync_state.mark_run(self.org_id, obj.sobject, "unavailable")
                    uow.commit()
            return report
        if completed and full and seen is not None:
            report.deleted += self._sweep(obj, seen, dry_run=dry_run)
        if completed and cursor is None and report.fetched == 0 and not dry_run:
            with self.uow() as uow:  # nothing yet: remember that, so idle checks cover it
                uow.sync_state.advance(self.org_id, obj.sobject, EPOCH, 0)
                uow.commit()
            report.cursor = EPOCH
        report.seconds = round(time.monotonic() - started, 3)
        self._mark_run(obj, report.status, full=full and completed, dry_run=dry_run)
        log.info("object.synced", status=report.status, fetched=report.fetched, written=report.written,
                 quarantined=report.quarantined, anomalies=report.anomalies, seconds=report.seconds,
                 records_per_s=round(report.rate, 1))
        return report

    def _begin(self, selected: list[ObjectMapping], to_sync: list[ObjectMapping]) -> None:
        """Mark the objects this run syncs ``running`` (consumers of the mirror wait for
        what they write until the run finishes: ``incomplete_orders``); an idle object
        left unfinished by an earlier run is now known complete."""
        with self.uow() as uow:
            states = {s.object_name: s for s in uow.sync_state.all(self.org_id)}
            for obj in selected:
                state = states.get(obj.sobject)
                if obj in to_sync:
                    uow.sync_state.begin(self.org_id, obj.sobject)
                elif state is not None and state.last_status in uow.sync_state.UNFINISHED \
                        and obj.name not in self._unavailable:
                    uow.sync_state.mark_run(self.org_id, obj.sobject, "ok")
            uow.commit()

    def _set_status(self, obj: ObjectMapping, status: str, *, dry_run: bool) -> None:
        if dry_run:
            return
        try:
            with self.uow() as uow:
                uow.sync_state.set_status(self.org_id, obj.sobject, status)
                uow.commit()
        except Exception as exc:  # the store may be what failed: the status stays 'running', as unsafe
            self.log.warning("sync_state.unrecorded", object=obj.sobject, status=status, error=type(exc).__name__)

    def _mark_run(self, obj: ObjectMapping, status: str, *, full: bool, dry_run: bool) -> None:
        if dry_run:
            return
        if status not in ("ok", "unavailable"):  # unfinished: keep the run's start
            self._set_status(obj, status, dry_run=dry_run)
            return
        with self.uow() as uow:
            uow.sync_state.mark_run(self.org_id, obj.sobject, status, full=full)
            uow.commit()

    # -------------------------------------------------------------- one page, one unit of work

    def _apply_page(self, obj: ObjectMapping, converter: RecordConverter, page: QueryPage, report: ObjectReport,
                    seen: set[str] | None, *, new: bool, dry_run: bool) -> bool:
        """One page, one unit of work. ``new``: none of the page's ids is expected to be
        stored (a first mirror), so the rows are inserted without reading what is stored
        first; the store checks that as it inserts (``upsert_many(new=True)``). Returns
        whether the next page may still be taken as new: not once an id was found stored."""
        live: list[dict[str, Any]] = []
        tombstones: list[tuple[str, datetime]] = []
        bad: list[tuple[dict[str, Any], RecordError]] = []
        for record in page.records:
            if record.get("IsDeleted"):
                tombstones.append((record["Id"], converter.stamp(record)))
                continue
            try:
                live.append(converter.to_row(record))  # in stored form: upsert_many(checked=True)
            except RecordError as exc:
                bad.append((record, exc))
        if seen is not None:
            seen.update(r["Id"] for r in page.records)
        last_stamp = converter.stamp(page.records[-1]) if page.records else None
        letters = self._letters.setdefault(obj.sobject, {})
        with self.uow() as uow:
            repo = uow.mirror(obj.name)
            result = repo.upsert_many(self.org_id, live, checked=True, new=new) if live else None
            anomalies = self._check_states(uow, obj, converter, live, result.stored if result else {})
            deleted = self._tombstone(uow, obj, tombstones)
            quarantined = self._quarantine(uow, obj, bad, letters)
            fixed = [i for i in [r["sf_id"] for r in live] + [t[0] for t in tombstones] if i in letters]
            for rid in fixed:
                uow.dead_letters.resolve_for(self.org_id, "mirror", obj.sobject, rid)
            uow.sync_state.advance(self.org_id, obj.sobject, last_stamp, result.inserted if result else 0)
            if dry_run:
                uow.rollback()
            else:
                uow.commit()
        self._follow(obj, letters, fixed, bad, live, tombstones, dry_run=dry_run)
        report.pages += 1
        report.fetched += len(page.records)
        if result is not None:
            report.inserted += result.inserted
            report.updated += result.updated
            report.unchanged += result.unchanged
        report.deleted += deleted
        report.quarantined += quarantined
        report.anomalies += anomalies
        if last_stamp is not None and (report.cursor is None or last_stamp > report.cursor):
            report.cursor = last_stamp
        return new and not (result is not None and result.stored)

    def _follow(self, obj: ObjectMapping, letters: dict[str, _Letter], fixed: list[str],
                bad: list[tuple[dict[str, Any], RecordError]], live: list[dict[str, Any]],
                tombstones: list[tuple[str, datetime]], *, dry_run: bool) -> None:
        """Only now that the page is durable do the in-memory views follow it."""
        if not dry_run:
            for rid in fixed:
                letters.pop(rid, None)
            for record, exc in bad:
                letters[record["Id"]] = _Letter(exc.reason, record.get("SystemModstamp"))
        # A dry run rolls its pages back, so the store never holds what it read: its
        # reference checks must see this page's ids anyway (as the real run would).
        if obj.name in self._known or dry_run:
            known = self._known_ids(obj.name)
            known.update(r["sf_id"] for r in live)
            known.difference_update(t[0] for t in tombstones)

    def _check_states(self, uow: UnitOfWork, obj: ObjectMapping, converter: RecordConverter,
                      rows: list[dict[str, Any]], before: Mapping[str, Mapping[str, Any]]) -> int:
        """Status changes against the state machine; ``before``: what was stored for the
        rows' ids before this page (``UpsertResult.stored``)."""
        machine = MACHINES.get(obj.name)
        vocab = converter.vocabulary("status")
        if machine is None or vocab is None or not rows:
            return 0
        count = 0
        for row in rows:
            old = before.get(row["sf_id"])
            # Stored and observed values are the org's labels; the machines speak states.
            previous = None if old is None or old["is_deleted"] else self.mapping.to_state(vocab, old["status"])
            new = self.mapping.to_state(vocab, row.get("status"))
            if new is None:
                continue
            if machine.check(previous, new) is TransitionVerdict.ANOMALY:
                detail = machine.explain(previous, new)
                uow.anomalies.add(self.org_id, obj.sobject, row["sf_id"], machine.name, previous, new, detail,
                                  observed_at=row["system_modstamp"])
                self.log.warning("state.anomaly", object=obj.sobject, record_id=row["sf_id"], machine=machine.name,
                                 from_state=previous, to_state=new, detail=detail)
                count += 1
        return count

    def _tombstone(self, uow: UnitOfWork, obj: ObjectMapping, tombstones: list[tuple[str, datetime]]) -> int:
        """Deleted in the org: keep a soft-deleted row carrying the deletion stamp (the idle
        check counts it), unless it is already there."""
        if not tombstones:
            return 0
        repo = uow.mirror(obj.name)
        stored = _stored(uow, obj, self.org_id, [rid for rid, _ in tombstones], ())
        todo = [(rid, stamp) for rid, stamp in tombstones
                if not (rid in stored and stored[rid]["is_deleted"] and stored[rid]["system_modstamp"] == stamp)]
        if not todo:
            return 0
        repo.upsert_many(self.org_id, [{"sf_id": rid, "system_modstamp": stamp} for rid, stamp in todo])
        by_stamp: dict[datetime, list[str]] = {}
        for rid, stamp in todo:
            by_stamp.setdefault(stamp, []).append(rid)
        for stamp, ids in by_stamp.items():
            repo.soft_delete(self.org_id, ids, stamp)
        for rid, _ in todo:
            self.log.info("record.deleted", object=obj.sobject, record_id=rid)
        return len(todo)

    def _quarantine(self, uow: UnitOfWork, obj: ObjectMapping, bad: list[tuple[dict[str, Any], RecordError]],
                    letters: dict[str, _Letter]) -> int:
        count = 0
        for record, exc in bad:
            rid = str(record.get("Id"))
            stamp = record.get("SystemModstamp")
            known = letters.get(rid)
            if known is not None and known.reason == exc.reason and known.stamp == stamp:
                continue  # the same version, already quarantined: nothing to write
            uow.dead_letters.add(self.org_id, "mirror", obj.sobject, rid, exc.code, exc.reason,
                                 payload={"record": json_safe(record), "system_modstamp": stamp})
            self.log.warning("record.quarantined", object=obj.sobject, record_id=rid, code=exc.code, reason=exc.reason)
            count += 1
        return count

    def _sweep(self, obj: ObjectMapping, seen: set[str], *, dry_run: bool) -> int:
        """After a full read: soft-delete local live rows the org no longer has."""
        with self.uow() as uow:
            repo = uow.mirror(obj.name)
            gone = repo.ids(self.org_id) - seen
            if not gone:
                return 0
            count = repo.soft_delete(self.org_id, gone, self.clock())
            self.log.info("records.swept", object=obj.sobject, count=count, sample=sorted(gone)[:5])
            if dry_run:
                uow.rollback()
            else:
                uow.commit()
        if obj.name in self._known:
            self._known[obj.name].difference_update(gone)
        return count

    # -------------------------------------------------------------- local knowledge

    def _known_ids(self, key: str) -> set[str]:
        """Live local ids of an object (PPPs, PPCs) for reference checks, loaded once a run."""
        if key not in self._known:
            with self.uow() as uow:
                self._known[key] = uow.mirror(key).ids(self.org_id)
        return self._known[key]

    def _load_letters(self) -> None:
        self._letters = {}
        with self.uow() as uow:
            for letter in uow.dead_letters.open(self.org_id, source="mirror"):
                payload = letter.payload if isinstance(letter.payload, dict) else {}
                self._letters.setdefault(letter.object_name, {})[letter.record_id] = _Letter(
                    letter.reason, payload.get("system_modstamp"))

    def _letters_since(self, sobject: str, since: datetime) -> int:
        return sum(1 for letter in self._letters.get(sobject, {}).values()
                   if letter.stamp is not None and parse_sf_datetime(letter.stamp) >= since)


# ------------------------------------------------------------------------------ store queries


def _stored(uow: UnitOfWork, obj: ObjectMapping, org_id: str, ids: list[str],
            columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """is_deleted, system_modstamp and ``columns`` of the stored rows with these ids."""
    return uow.mirror(obj.name).get_many(org_id, ids, ["system_modstamp", *columns])


def _unless_unavailable(pages: Iterator[QueryPage], report: ObjectReport, log: Any) -> Iterator[QueryPage]:
    """The pages, unless the org doesn't have the object (or hides it from this user): then
    none, the object reported ``unavailable`` and the other objects mirrored as usual."""
    try:
        first = next(pages)
    except StopIteration:
        return
    except PermanentError as exc:
        if getattr(exc, "error_code", None) not in ("INVALID_TYPE", "NOT_FOUND"):
            raise
        report.status = "unavailable"
        log.warning("object.unavailable", reason=str(exc))
        return
    yield first
    yield from pages


def _api_calls(org: Any) -> int | None:
    value = getattr(org, "api_calls", None)
    return value if isinstance(value, int) else None


# ------------------------------------------------------------------------------ job entry


def incomplete_orders(uow: UnitOfWork, org_id: str, mapping: MappingSet) -> set[str]:
    """Orders whose local copy may be half a sync: the order or one of its items was
    written by a mirror run of orders or order items that has not finished (failed,
    stopped, killed or still running). Invoicing and write-back leave them alone until a
    run finishes; empty when the last runs finished (the usual case, one small query)."""
    objects = [mapping.objects[key].sobject for key in ("order", "order_item") if key in mapping.objects]
    since = uow.sync_state.unfinished_since(org_id, objects)
    if since is None:
        return set()
    return uow.mirror("order").written_since(org_id, since) | uow.mirror("order_item").written_since(
        org_id, since, "order_id")


def run_mirror_job(runtime: OrgContext, *, log: Any, dry_run: bool = False, stop: threading.Event | None = None,
                   objects: Sequence[str] | None = None, full: bool = False,
                   progress: Callable[[PageProgress], None] | None = None) -> dict[str, int]:
    """The scheduled/one-off mirror run for one org (see ``connector.jobs``)."""
    service = MirrorService(
        runtime.salesforce(),
        runtime.uow,
        runtime.mapping,
        runtime.org_id,
        lookback_seconds=runtime.config.sync.lookback_seconds,
        log=log,
        progress=progress,
        stop=stop,
        clock=runtime.clock,
        bulk=build_bulk_source(runtime, log),
    )
    # The mapping is checked against the org's describe first (cheap when nothing changed).
    guard = runtime.mapping_guard()
    report = guard.run(lambda: service.run(objects or runtime.config.sync.objects, full=full, dry_run=dry_run))
    return report.counts()
