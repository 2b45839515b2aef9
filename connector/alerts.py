"""Alerts: events of an org sent to its webhook (``[alerts]``), each recorded once.

The events are found in what the store already holds, after a job run, never inside it:

==================  =====================================================  ==========================
event               stored fact                                            dedup key
==================  =====================================================  ==========================
job_failed          ``failures_in_a_row`` failed runs of a task since its  task + id of the N-th run
                    last ok run (``job_runs``; skipped/stopped ignored)
api_budget_stop     a run stopped by the Salesforce API limit or the       UTC day
                    ``api_budget_percent`` guard (``job_runs``)
discrepancy         a reconciled order whose payout differs                order + reason
                    (``payout_reconciliation.discrepancy``)
invoice_missing     an open ``INVOICE_MISSING`` dead letter (Salesforce    order + letter id
                    issuer: no invoice within the grace)
dead_letters        more than ``dead_letters_above`` open dead letters     UTC day
daemon_started/     the daemon started / stopped (``counts.jobs_abandoned``: instance + time
daemon_stopped      runs still going when its shutdown grace ran out)
==================  =====================================================  ==========================

``evaluate_alerts(uow, org, now)`` turns those facts into ``AlertEvent``s (pure over the
unit of work: it reads, never writes); ``process_alerts`` records the new ones in the
``alerts`` table (unique on the key: found again, by this cycle or another instance, it is
not recorded twice) in one transaction, then delivers every pending alert with a short
timeout under the one retry policy (``connector.retry``). A delivery that still fails is
recorded on its row and retried at the next cycle; it is never raised into the job.
Payloads carry the org alias and id, the task, ids, counts and a message: never the URL,
a secret or a whole record. Recording is once; delivery is at least once (an answer lost
on the way back, or a ``mark_sent`` that fails, sends it again next cycle): every try of an
alert carries the same ``Idempotency-Key`` (``adapters.webhook``) for a receiver to drop
repeats by.

A daemon event is a fact only that daemon knows: when another session holds the org's
alerts lock it is still recorded (the insert dedups on its key), for the holder's next
cycle to deliver. A stopping daemon delivers its ``daemon_stopped`` only, so its exit waits
for one bounded delivery per org (``timeout_seconds``, ``DELIVERY_ATTEMPTS`` tries, at most
``DELIVERY_MAX_WAIT_S`` between), not for a backlog; what else is pending stays for the next
cycle of any instance. Neither a start nor a stop waits on SQLite's write lock past
``DAEMON_STORE_WAIT_S`` (a job the grace abandoned may hold it until the exit; a catch-up
job may hold it as the daemon starts, on the main thread, where a wait also holds off
SIGTERM): an event that can't be recorded in that time is sent without a row and logged
``alert.not_recorded``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import structlog

from connector.errors import ConnectorError, TransientError
from connector.logging import redact_value
from connector.retry import retrying

if TYPE_CHECKING:
    from connector.bootstrap import OrgRuntime
    from connector.config import OrgConfig
    from connector.services.ports import OrgContext, UnitOfWork

log = structlog.get_logger("connector.alerts")

# Inside a cycle a delivery gets this many tries (the one policy, short waits); what still
# fails waits for the next cycle.
DELIVERY_ATTEMPTS = 2
DELIVERY_MAX_WAIT_S = 1.0
# A starting or stopping daemon's store transactions wait this long for SQLite's write
# lock, not the busy timeout (5 s): when the grace ran out, a job still running may hold the
# lock until the process exits, and the exit must not wait on it; at the start a catch-up
# job may hold it, and the main thread (where signals are handled) must not wait either.
DAEMON_STORE_WAIT_S = 0.5
BUDGET_LOOKBACK = timedelta(hours=24)
MAX_MESSAGE = 500


@dataclass(frozen=True)
class AlertEvent:
    event: str
    key: str
    message: str
    task: str | None = None
    ids: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)

    def payload(self, org: OrgConfig, now: datetime) -> dict[str, Any]:
        """What is stored and sent: no URL, no secret, no record."""
        message = str(redact_value(self.message))
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        return {"event": self.event, "key": self.key, "org": org.alias, "org_id": org.org_id, "task": self.task,
                "message": message, "ids": list(self.ids), "counts": dict(self.counts),
                "at": now.astimezone(UTC).isoformat(timespec="seconds")}


def evaluate_alerts(uow: UnitOfWork, org: OrgConfig, now: datetime) -> list[AlertEvent]:
    """The alert events the stored facts of ``org`` call for now (new or already recorded:
    the caller's insert dedups by key). Empty without ``[alerts]``."""
    settings = org.alerts
    if settings is None:
        return []
    org_id = org.org_id
    found: list[AlertEvent] = []
    if settings.sends("job_failed"):
        found += _failure_streaks(uow, org_id, settings.failures_in_a_row)
    if settings.sends("api_budget_stop"):
        found += _budget_stops(uow, org_id, now)
    if settings.sends("discrepancy"):
        found += _discrepancies(uow, org_id)
    if settings.sends("invoice_missing"):
        found += _missing_invoices(uow, org_id)
    if settings.sends("dead_letters"):
        found += _dead_letter_pile(uow, org_id, settings.dead_letters_above, now)
    return found


def _failure_streaks(uow: UnitOfWork, org_id: str, n: int) -> list[AlertEvent]:
    """``job_failed``: each job whose last ``n`` runs failed."""
    found = []
    for job in uow.alert_facts.jobs(org_id):
        streak = uow.alert_facts.failed_streak(org_id, job, n)
        if len(streak) == n:
            nth = streak[-1]
            found.append(AlertEvent("job_failed", f"job_failed:{job}:{nth.id}",
                                    f"{job} failed {n} time(s) in a row; error: {nth.error or 'unknown'}",
                                    task=job, ids=tuple(r.run_id for r in streak), counts={"failures": n}))
    return found


def _budget_stops(uow: UnitOfWork, org_id: str, now: datetime) -> list[AlertEvent]:
    """``api_budget_stop``: one event per day with runs the API limit stopped."""
    by_day: dict[str, list[Any]] = {}
    for run in uow.alert_facts.budget_stops_since(org_id, now - BUDGET_LOOKBACK):
        by_day.setdefault(run.finished_at.astimezone(UTC).date().isoformat(), []).append(run)
    found = []
    for day, runs in sorted(by_day.items()):
        tasks = sorted({r.job for r in runs})
        found.append(AlertEvent("api_budget_stop", f"api_budget_stop:{day}",
                                f"runs stopped by the Salesforce API limit ({', '.join(tasks)}); they resume "
                                f"when usage drops. {runs[0].error}", task=runs[0].job,
                                ids=tuple(r.run_id for r in runs), counts={"runs_stopped": len(runs)}))
    return found


def _discrepancies(uow: UnitOfWork, org_id: str) -> list[AlertEvent]:
    """``discrepancy``: each order whose payout does not match, per reason."""
    found = []
    for rec in uow.reconciliation.list(org_id, discrepancies_only=True):
        reason = rec.discrepancy.split(":", 1)[0]
        found.append(AlertEvent("discrepancy", f"discrepancy:{rec.order_id}:{reason}",
                                f"order {rec.order_id}: {rec.discrepancy}", task="reconcile", ids=(rec.order_id,)))
    return found


def _missing_invoices(uow: UnitOfWork, org_id: str) -> list[AlertEvent]:
    """``invoice_missing``: each open INVOICE_MISSING dead letter of invoicing."""
    return [AlertEvent("invoice_missing", f"invoice_missing:{letter.record_id}:{letter.id}",
                       f"order {letter.record_id}: {letter.reason}", task="invoicing", ids=(letter.record_id,))
            for letter in uow.dead_letters.open(org_id, "invoicing") if letter.error_code == "INVOICE_MISSING"]


def _dead_letter_pile(uow: UnitOfWork, org_id: str, threshold: int, now: datetime) -> list[AlertEvent]:
    """``dead_letters``: once a day while more than ``threshold`` letters are open."""
    open_letters = uow.dead_letters.count_open(org_id)
    if open_letters <= threshold:
        return []
    day = now.astimezone(UTC).date().isoformat()
    return [AlertEvent("dead_letters", f"dead_letters:{day}",
                       f"{open_letters} open dead letters (more than {threshold}); "
                       "see `gtm-connector dead-letters`",
                       counts={"open": open_letters, "threshold": threshold})]


def daemon_event(event: str, instance: str, now: datetime, *, abandoned: Sequence[str] = (),
                 grace_s: float | None = None) -> AlertEvent:
    """``daemon_started`` / ``daemon_stopped`` of one daemon instance; a stop says how many
    of the org's runs (``abandoned``: their job names) were still going when the shutdown
    grace (``grace_s``) ran out."""
    word = event.removeprefix("daemon_")
    key = f"{event}:{instance}:{now.astimezone(UTC).isoformat(timespec='microseconds')}"
    if event != "daemon_stopped":
        return AlertEvent(event, key, f"daemon {instance} {word}")
    message = f"daemon {instance} {word}"
    if abandoned:
        grace = f" after its {grace_s:g} s grace" if grace_s is not None else ""
        message += (f"{grace} with {len(abandoned)} run(s) still going ({', '.join(abandoned)}), abandoned; "
                    "the next start resumes from what they committed")
    return AlertEvent(event, key, message, counts={"jobs_abandoned": len(abandoned)})


@dataclass
class AlertCycle:
    recorded: int = 0
    sent: int = 0
    failed: int = 0


Sender = Any  # connector.adapters.webhook.WebhookSender: send(payload) raising TransientError/PermanentError


def process_alerts(runtime: OrgRuntime, *, now: datetime | None = None,
                   extra: Iterable[AlertEvent] = (), sender: Sender | None = None,
                   deliver_only_extra: bool = False, store_wait_s: float | None = None) -> AlertCycle | None:
    """Record the org's new alerts (``evaluate_alerts`` plus ``extra``) and deliver the
    pending ones (``deliver_only_extra``: only those of ``extra``). Never raises: a problem
    is logged and left to the next cycle. None when the org has no ``[alerts]`` or another
    session is doing this org's alerts right now (``extra`` is then recorded, not sent).

    ``store_wait_s``: each store transaction waits at most this long for SQLite's write
    lock (not the busy timeout); when ``extra`` can't be recorded in that time it is sent
    without a row (``alert.not_recorded``)."""
    config = runtime.config
    settings = getattr(config, "alerts", None)
    if settings is None:
        return None
    try:
        from connector.adapters.store import advisory_lock

        extra = [e for e in extra if settings.sends(e.event)]
        with (advisory_lock(runtime.engine, runtime.org_id, "alerts") as acquired,
              _units_of_work(runtime, store_wait_s) as uow_factory):
            if not acquired and not extra:
                return None
            now = now or runtime.clock()
            cycle = AlertCycle()
            try:
                _record(uow_factory, runtime, cycle, now, extra, evaluate=acquired)
            except TransientError as exc:
                if store_wait_s is None or not extra:
                    raise
                _send_unrecorded(sender or runtime.alert_sender(), extra, cycle, config, now, reason=str(exc))
                return cycle
            if not acquired:
                return None  # recorded: the holder's next cycle delivers it
            # Recorded: from here the row keeps it once. A transaction below that can't have
            # the lock within store_wait_s leaves the row pending, for the next cycle.
            deliver_pending(uow_factory, runtime.org_id, sender or runtime.alert_sender(), cycle, alias=config.alias,
                            clock=runtime.clock, keys={e.key[:255] for e in extra} if deliver_only_extra else None)
            return cycle
    except Exception as exc:  # alerts never fail a job nor the daemon
        log.warning("alerts.failed", org=config.alias, error=f"{type(exc).__name__}: {redact_value(str(exc))}")
        return None


@contextmanager
def _units_of_work(runtime: OrgRuntime, store_wait_s: float | None) -> Iterator[Callable[[], Any]]:
    if store_wait_s is None:
        yield runtime.uow
        return
    with runtime.uow_waiting_at_most(store_wait_s) as uow_factory:
        yield uow_factory


def _record(uow_factory: Callable[[], Any], runtime: OrgRuntime, cycle: AlertCycle, now: datetime,
            extra: Iterable[AlertEvent], *, evaluate: bool) -> None:
    """Record ``extra`` and (``evaluate``) what the stored facts call for, in one transaction;
    an event recorded before is not recorded again."""
    config = runtime.config
    with uow_factory() as uow:
        for event in [*(evaluate_alerts(uow, config, now) if evaluate else []), *extra]:
            if uow.alerts.record(runtime.org_id, event.key, event.event, event.payload(config, now), now=now):
                cycle.recorded += 1
                log.info("alert.recorded", org=config.alias, alert=event.event, key=event.key)
        uow.commit()


def _send_unrecorded(sender: Sender, events: Iterable[AlertEvent], cycle: AlertCycle, config: OrgConfig,
                     now: datetime, *, reason: str) -> None:
    """Deliver events the store could not take in time, without a row. Still once: such an
    event is one daemon's own (its key names the instance and the microsecond), so with no
    row no other cycle or instance can ever send it, and the daemon alerts its stop once.
    A delivery that fails is lost (nothing to retry it from), and logged as such."""
    for event in events:
        log.warning("alert.not_recorded", org=config.alias, alert=event.event, key=event.key,
                    reason=redact_value(reason), action="sent without a row")
        failure = _deliver(sender, event.payload(config, now))
        if failure is not None:
            cycle.failed += 1
            log.warning("alert.delivery_failed", org=config.alias, alert=event.event, key=event.key, error=failure,
                        action="lost: not recorded, so not retried")
            continue
        cycle.sent += 1
        log.info("alert.sent", org=config.alias, alert=event.event, key=event.key, recorded=False)


def _deliver(sender: Sender, payload: Mapping[str, Any]) -> str | None:
    """One delivery under the one retry policy (``DELIVERY_ATTEMPTS`` tries, at most
    ``DELIVERY_MAX_WAIT_S`` between); the error's text if it still failed, else None."""
    try:
        retrying("alert.deliver", attempts=DELIVERY_ATTEMPTS, max_wait_s=DELIVERY_MAX_WAIT_S)(sender.send, payload)
    except ConnectorError as exc:
        return str(exc)
    return None


def deliver_pending(uow_factory: Callable[[], Any], org_id: str, sender: Sender, cycle: AlertCycle, *, alias: str,
                    clock: Callable[[], datetime], keys: Collection[str] | None = None) -> None:
    """Send every pending alert of the org (or only those under ``keys``), oldest first;
    record each outcome."""
    with uow_factory() as uow:
        pending = [a for a in uow.alerts.pending(org_id) if keys is None or a.key in keys]
    for alert in pending:
        with uow_factory() as uow:
            claimed = uow.alerts.claim(alert.id, now=clock())
            uow.commit()
        if not claimed:
            continue
        failure = _deliver(sender, alert.payload)
        if failure is not None:
            cycle.failed += 1
            with uow_factory() as uow:
                uow.alerts.mark_failed(alert.id, failure)
                uow.commit()
            log.warning("alert.delivery_failed", org=alias, alert=alert.event, key=alert.key, error=failure,
                        attempts=alert.attempts + 1, action="retried at the next cycle")
            continue
        cycle.sent += 1
        with uow_factory() as uow:
            uow.alerts.mark_sent(alert.id, now=clock())
            uow.commit()
        log.info("alert.sent", org=alias, alert=alert.event, key=alert.key)


def alert_after_run(runtime: OrgContext, *, dry_run: bool, status: str) -> None:
    """``run_job``'s hook: after a run's transactions, evaluate and send (not for dry runs,
    nor for runs that did not happen, nor for orgs without ``[alerts]``)."""
    if dry_run or status == "skipped" or runtime.config.alerts is None:
        return
    # Sending needs the real runtime's engine (the per-org lock) and sender, not only the
    # job's port: an org with [alerts] always runs on a bootstrapped OrgRuntime.
    process_alerts(cast("OrgRuntime", runtime))


def alert_daemon(runtimes: Iterable[OrgRuntime | None], event: str, instance: str, *,
                 abandoned: Mapping[str, Sequence[str]] | None = None, grace_s: float | None = None) -> None:
    """The daemon's hook: ``daemon_started`` / ``daemon_stopped`` to every org that sends it;
    ``abandoned``: org alias -> its jobs still running when the stop's grace ran out. A stop
    delivers only itself (see the module docstring: the exit waits for no backlog)."""
    for runtime in runtimes:
        if runtime is None or getattr(runtime.config, "alerts", None) is None:
            continue
        found = daemon_event(event, instance, runtime.clock(), abandoned=(abandoned or {}).get(runtime.alias, ()),
                             grace_s=grace_s)
        process_alerts(runtime, extra=[found], deliver_only_extra=event == "daemon_stopped",
                       store_wait_s=DAEMON_STORE_WAIT_S)
