"""Checked by mypy (``tests/unit/test_ports.py`` runs it on this file): each adapter, and
each fake of ``tests/fakes.py``, assigned to its port. Never imported at run time."""

from __future__ import annotations

from connector.adapters.salesforce import Page, QueryResult, RecordResult, SalesforceOrg
from connector.adapters.salesforce import SubResult as SfSubResult
from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling
from connector.adapters.stripe_payouts import StripePayouts
from connector.bootstrap import OrgRuntime
from connector.services import ports
from tests import fakes


def adapters(org: SalesforceOrg, uow: SqlUnitOfWork, billing: StripeBilling, payouts: StripePayouts,
             runtime: OrgRuntime, page: Page, answer: QueryResult, sub: SfSubResult, outcome: RecordResult) -> None:
    _org: ports.OrgGateway = org
    _reader: ports.MirrorReader = org
    _uow: ports.UnitOfWork = uow
    _billing: ports.BillingGateway = billing
    _payouts: ports.PayoutsGateway = payouts
    _runtime: ports.OrgContext = runtime
    _page: ports.QueryPage = page
    _answer: ports.QueryAnswer = answer
    _sub: ports.SubResult = sub
    _outcome: ports.RecordOutcome = outcome


def the_fakes(org: fakes.FakeOrg, uow: fakes.FakeUnitOfWork, billing: fakes.FakeBilling,
              payouts: fakes.FakePayouts, runtime: fakes.FakeRuntime) -> None:
    _org: ports.OrgGateway = org
    _uow: ports.UnitOfWork = uow
    _billing: ports.BillingGateway = billing
    _payouts: ports.PayoutsGateway = payouts
    _runtime: ports.OrgContext = runtime
