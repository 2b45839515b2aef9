"""The one place that wires configuration to adapters and services.

``bootstrap(config)`` returns an ``OrgRuntime``: the org's config and mapping, its database
(migrated), a unit-of-work factory, and lazily built gateways to Salesforce and Stripe.
Entry points (CLI, daemon, demo) call it; services receive ports from it and never build
their own clients. Nothing here is global: two orgs in one process get two runtimes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from connector.config import OrgConfig, check_against_mapping
from connector.errors import ConfigError
from connector.mappings import MappingSet, check_against_tables, load_mapping
from connector.services.ports import BillingGateway, OrgGateway, PayoutsGateway, UnitOfWorkFactory


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class OrgRuntime:
    config: OrgConfig
    mapping: MappingSet = field(repr=False)
    engine: Any  # sqlalchemy Engine
    uow: UnitOfWorkFactory  # () -> SqlUnitOfWork
    clock: Callable[[], datetime] = utcnow
    _salesforce: OrgGateway | None = field(default=None, repr=False)
    _billing: BillingGateway | None = field(default=None, repr=False)
    _payouts: PayoutsGateway | None = field(default=None, repr=False)
    _mapping_guard: Any = field(default=None, repr=False)
    _alert_sender: Any = field(default=None, repr=False)

    @property
    def alias(self) -> str:
        return self.config.alias

    @property
    def org_id(self) -> str:
        return self.config.org_id

    def logger(self, job: str, run_id: str | None = None) -> structlog.typing.FilteringBoundLogger:
        from connector.logging import job_logger

        return job_logger(self.alias, job, run_id)

    def salesforce(self) -> OrgGateway:
        """The org gateway (authenticates on first use)."""
        if self._salesforce is None:
            from connector.adapters.salesforce import build_org_gateway

            self._salesforce = build_org_gateway(self.config)
        return self._salesforce

    def bulk_query(self) -> Any:
        """Bulk API 2.0 query jobs on the org gateway's session (``adapters.salesforce_bulk``),
        or None when the gateway is not the Salesforce adapter (a fake has no Bulk API)."""
        from connector.adapters.salesforce import SalesforceOrg
        from connector.adapters.salesforce_bulk import BulkQuery

        org = self.salesforce()
        return BulkQuery(org) if isinstance(org, SalesforceOrg) else None

    def billing(self) -> BillingGateway:
        """The Stripe billing gateway."""
        if self._billing is None:
            from connector.adapters.stripe_billing import build_billing_gateway

            self._billing = build_billing_gateway(self.config)
        return self._billing

    def payouts(self) -> PayoutsGateway:
        """The Stripe payouts gateway (payouts and their balance transactions)."""
        if self._payouts is None:
            from connector.adapters.stripe_payouts import build_payouts_gateway

            self._payouts = build_payouts_gateway(self.config)
        return self._payouts

    def built_salesforce(self) -> OrgGateway | None:
        """The org gateway if this runtime already built it, else None: for reading its API
        figures (calls made, limit usage) without logging in."""
        return self._salesforce

    @contextmanager
    def job_lock(self, job: str) -> Iterator[bool]:
        """The (org, job) lock across processes: yields False when another holder has it
        (a PostgreSQL advisory lock, a lock file on SQLite)."""
        from connector.adapters.store import advisory_lock

        with advisory_lock(self.engine, self.org_id, job) as acquired:
            yield acquired

    def mapping_guard(self) -> Any:
        """The mapping's check against the org's describe; one per runtime, so a daemon's
        later cycles remember the last pass (``connector.services.mapping_guard``)."""
        if self._mapping_guard is None:
            from connector.services.mapping_guard import build_guard

            self._mapping_guard = build_guard(self)
        return self._mapping_guard

    @contextmanager
    def uow_waiting_at_most(self, wait_s: float) -> Iterator[UnitOfWorkFactory]:
        """Units of work whose transactions wait at most ``wait_s`` for SQLite's write lock,
        not the busy timeout: a one-off engine on the same file, disposed of after the block.
        PostgreSQL and an in-memory database: the runtime's own units of work."""
        from connector.adapters.store import SqlUnitOfWork, session_factory
        from connector.adapters.store.engine import with_busy_timeout

        engine = with_busy_timeout(self.engine, max(1, round(wait_s * 1000)))
        if engine is None:
            yield self.uow
            return
        factory = session_factory(engine)
        try:
            yield lambda: SqlUnitOfWork(factory)
        finally:
            engine.dispose()

    def alert_sender(self) -> Any:
        """The org's alert webhook (``[alerts]``; ``connector.adapters.webhook``)."""
        if self._alert_sender is None:
            from connector.adapters.webhook import build_webhook_sender

            self._alert_sender = build_webhook_sender(self.config.alerts)
        return self._alert_sender

    def close(self) -> None:
        for gateway in (self._salesforce, self._billing, self._payouts, self._alert_sender):
            close = getattr(gateway, "close", None)
            if close:
                close()
        self.engine.dispose()


def bootstrap(
    config: OrgConfig,
    *,
    migrate: bool = True,
    clock: Callable[[], datetime] = utcnow,
    salesforce: OrgGateway | None = None,
    billing: BillingGateway | None = None,
    payouts: PayoutsGateway | None = None,
) -> OrgRuntime:
    """Wire one org. ``salesforce``/``billing``/``payouts`` let tests and the demo pass ready gateways
    (real adapters pointed at the sandboxes, or in-memory fakes of the ports)."""
    from connector.adapters.store import SqlUnitOfWork, make_engine, mirror_columns, session_factory, upgrade

    mapping = load_mapping(config.mapping)
    check_against_tables(mapping, mirror_columns)
    check_against_mapping(config, mapping)
    if config.database_url is None:  # only when the config was read without its secrets
        raise ConfigError(f"{config.alias}: no database URL to open (database_url or database_url_env)",
                          [(str(config.source_file or "<config>"), "database_url", "not set")])
    engine = make_engine(config.database_url)
    if migrate:
        upgrade(engine)
    factory = session_factory(engine)
    return OrgRuntime(
        config=config,
        mapping=mapping,
        engine=engine,
        uow=lambda: SqlUnitOfWork(factory),
        clock=clock,
        _salesforce=salesforce,
        _billing=billing,
        _payouts=payouts,
    )
