"""The daemon's side of the dashboard: its orgs, read through ``services.dashboard``, plus
what only the running daemon knows (each job's next fire time from the scheduler)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

import structlog

from connector.entrypoints.dashboard import Dashboard, OrgUnavailable, is_loopback
from connector.services.dashboard import OrderView, OrgOverview, order_view, org_overview

if TYPE_CHECKING:
    from connector.config import DaemonSection
    from connector.entrypoints.daemon import Daemon, OrgSlot

log = structlog.get_logger("connector.daemon")


class DaemonDashboardSource:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def overviews(self) -> list[OrgOverview | OrgUnavailable]:
        return [self._overview(slot) for _, slot in sorted(self.daemon.slots.items())]

    def overview(self, alias: str) -> OrgOverview | OrgUnavailable | None:
        slot = self.daemon.slots.get(alias)
        return None if slot is None else self._overview(slot)

    def order(self, alias: str, order_id: str) -> OrderView | None:
        slot = self.daemon.slots.get(alias)
        if slot is None or slot.runtime is None:
            return None
        return order_view(slot.runtime, order_id)

    def _overview(self, slot: OrgSlot) -> OrgOverview | OrgUnavailable:
        runtime = slot.runtime
        if runtime is None:
            return OrgUnavailable(slot.alias, slot.error or "not started")
        next_runs = {job: self.daemon.scheduler.next_run_time(slot.alias, job) for job in slot.plans}
        today = runtime.clock().astimezone(UTC).date()
        return org_overview(runtime, jobs=sorted(slot.plans), next_runs=next_runs, month=today)


def build_dashboard(daemon: Daemon, settings: DaemonSection, bind: str) -> Dashboard:
    """The dashboard for this daemon: token required beyond loopback (from the env var the
    config names), times in the configured zone or the machine's."""
    token = os.environ.get(settings.dashboard_token_env) if settings.dashboard_token_env else None
    if not is_loopback(bind) and not token:
        log.warning("dashboard.locked", bind=bind, reason="listening beyond loopback without a dashboard token; "
                    "set [daemon] dashboard_token_env to an environment variable holding one")
    return Dashboard(DaemonDashboardSource(daemon), zone=_zone(settings.timezone), token=token or None,
                     require_token=not is_loopback(bind), now=lambda: datetime.now(UTC))


def _zone(name: str | None) -> tzinfo:
    if name:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC
