"""Each adapter satisfies its port (``connector.services.ports``) structurally: every member
the Protocol names exists on the adapter class, and every method takes the Protocol's
parameters (same names, same kinds; the adapter's extra parameters have defaults). The
in-memory fakes of ``tests/fakes.py`` are held to the same ports."""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import pytest

from connector.adapters.salesforce import SalesforceOrg
from connector.adapters.store import SqlUnitOfWork
from connector.adapters.store.alerts import AlertFacts, AlertRepository
from connector.adapters.store.attention import AttentionQueries
from connector.adapters.store.repositories import (
    AnomalyRepository,
    DeadLetterRepository,
    InvoiceRepository,
    JobRunRepository,
    MappingCheckRepository,
    MirrorRepository,
    OfferDraftRepository,
    OutboxRepository,
    PayoutRepository,
    ReconciliationRepository,
    StripeEventRepository,
    SyncStateRepository,
    WritebackStateRepository,
)
from connector.adapters.stripe_billing import StripeBilling
from connector.adapters.stripe_payouts import StripePayouts
from connector.bootstrap import OrgRuntime
from connector.services import ports
from tests import fakes

PAIRS: list[tuple[type, type]] = [
    (ports.UnitOfWork, SqlUnitOfWork),
    (ports.DeadLetterStore, DeadLetterRepository),
    (ports.JobRunStore, JobRunRepository),
    (ports.InvoiceStore, InvoiceRepository),
    (ports.StripeEventStore, StripeEventRepository),
    (ports.AnomalyStore, AnomalyRepository),
    (ports.SyncStateStore, SyncStateRepository),
    (ports.OutboxStore, OutboxRepository),
    (ports.PayoutStore, PayoutRepository),
    (ports.ReconciliationStore, ReconciliationRepository),
    (ports.WritebackStateStore, WritebackStateRepository),
    (ports.OfferDraftStore, OfferDraftRepository),
    (ports.MappingCheckStore, MappingCheckRepository),
    (ports.AttentionReads, AttentionQueries),
    (ports.AlertStore, AlertRepository),
    (ports.AlertFactsReads, AlertFacts),
    (ports.MirrorStore, MirrorRepository),
    (ports.MirrorReader, SalesforceOrg),
    (ports.OrgGateway, SalesforceOrg),
    (ports.BillingGateway, StripeBilling),
    (ports.PayoutsGateway, StripePayouts),
    (ports.OrgContext, OrgRuntime),
]
FAKES: list[tuple[type, type]] = [
    (ports.UnitOfWork, fakes.FakeUnitOfWork),
    (ports.DeadLetterStore, fakes.FakeDeadLetters),
    (ports.JobRunStore, fakes.FakeJobRuns),
    (ports.InvoiceStore, fakes.FakeInvoices),
    (ports.StripeEventStore, fakes.FakeStripeEvents),
    (ports.AnomalyStore, fakes.FakeAnomalies),
    (ports.SyncStateStore, fakes.FakeSyncState),
    (ports.OutboxStore, fakes.FakeOutbox),
    (ports.PayoutStore, fakes.FakePayoutStore),
    (ports.ReconciliationStore, fakes.FakeReconciliation),
    (ports.WritebackStateStore, fakes.FakeWritebackState),
    (ports.OfferDraftStore, fakes.FakeOfferDrafts),
    (ports.MappingCheckStore, fakes.FakeMappingChecks),
    (ports.AttentionReads, fakes.FakeAttention),
    (ports.AlertStore, fakes.FakeAlerts),
    (ports.AlertFactsReads, fakes.FakeAlertFacts),
    (ports.OrgGateway, fakes.FakeOrg),
    (ports.BillingGateway, fakes.FakeBilling),
    (ports.PayoutsGateway, fakes.FakePayouts),
    (ports.OrgContext, fakes.FakeRuntime),
]


def members(proto: type) -> dict[str, Any]:
    """Name -> the Protocol's definition (a function, a property, or an annotation)."""
    out: dict[str, Any] = {}
    for klass in reversed(proto.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        out.update({name: "attribute" for name in getattr(klass, "__annotations__", {})})
        out.update({name: value for name, value in vars(klass).items()
                    if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))})
        out.update({name: value for name in ("__enter__", "__exit__") if (value := vars(klass).get(name))})
    return out


def has_attribute(adapter: type, name: str) -> bool:
    if hasattr(adapter, name):
        return True
    annotated = {n for k in adapter.__mro__ for n in getattr(k, "__annotations__", {})}
    if name in annotated:
        return True
    # Set in __init__ (self.name = ...): instance attributes of the fakes.
    source = inspect.getsource(adapter)
    return f"self.{name} =" in source or f"self.{name}, " in source


def problems(proto: type, adapter: type) -> list[str]:
    found = []
    for name, wanted in members(proto).items():
        if not has_attribute(adapter, name):
            found.append(f"{adapter.__name__} has no {name}")
            continue
        if not inspect.isfunction(wanted):
            continue
        have = getattr(adapter, name)
        if not callable(have) or isinstance(inspect.getattr_static(adapter, name), property):
            found.append(f"{adapter.__name__}.{name} is not a method")
            continue
        want_params = list(inspect.signature(wanted).parameters.values())[1:]
        have_params = {p.name: p for p in list(inspect.signature(have).parameters.values())[1:]}
        if any(p.kind is p.VAR_KEYWORD for p in have_params.values()):
            continue
        for p in want_params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            q = have_params.get(p.name)
            if q is None:
                found.append(f"{adapter.__name__}.{name} has no parameter {p.name}")
            elif (p.kind is p.KEYWORD_ONLY) != (q.kind is q.KEYWORD_ONLY):
                found.append(f"{adapter.__name__}.{name}: {p.name} keyword-only in one, not the other")
            elif p.default is not p.empty and q.default is q.empty:
                found.append(f"{adapter.__name__}.{name}: {p.name} is optional in the port, required here")
        extra = [q.name for n, q in have_params.items() if n not in {p.name for p in want_params}
                 and q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
        if extra:
            found.append(f"{adapter.__name__}.{name} requires {extra} the port does not pass")
    return found


@pytest.mark.parametrize(("proto", "adapter"), PAIRS, ids=lambda x: x.__name__)
def test_the_adapter_satisfies_its_port(proto: type, adapter: type) -> None:
    assert problems(proto, adapter) == []


@pytest.mark.parametrize(("proto", "fake"), FAKES, ids=lambda x: x.__name__)
def test_the_fake_satisfies_the_same_port(proto: type, fake: type) -> None:
    assert problems(proto, fake) == []


def test_the_runtime_checkable_ports_accept_the_adapters() -> None:
    assert issubclass(StripeBilling, ports.BillingGateway)
    assert issubclass(StripePayouts, ports.PayoutsGateway)
    assert issubclass(SalesforceOrg, ports.MirrorReader)
    assert issubclass(JobRunRepository, ports.JobRunStore)
    assert not issubclass(StripePayouts, ports.BillingGateway)  # the check has teeth


def test_a_missing_method_is_named() -> None:
    class HalfBilling:
        def retrieve_invoice(self, invoice_id: str) -> Any: ...

    found = problems(ports.BillingGateway, HalfBilling)
    assert "HalfBilling has no create_invoice" in found and len(found) == len(members(ports.BillingGateway)) - 1


def test_mypy_accepts_every_adapter_and_fake_as_its_port() -> None:
    """The strict, typed check: tests/unit/port_conformance.py assigns each to its port."""
    pytest.importorskip("mypy", reason="mypy comes with the lint extra (make lint installs it)")
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "mypy", "tests/unit/port_conformance.py"], cwd=repo,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
