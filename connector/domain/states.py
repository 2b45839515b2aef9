"""Status enums and transition tables (DESIGN "State machines"; tables, not if-chains).

Enum values are the connector states on the right-hand side of
``mappings/gtm-v2/vocabularies.toml``; the org's picklist spellings are mapped at the edge.

An observed transition the table does not allow is an *anomaly*: ``StateMachine.check``
says so and the caller records it (log, counter, anomalies table). Nothing here raises for
an illegal jump, because the org (or Stripe) is the source of truth for what happened.

Invoice transitions follow Stripe's documented lifecycle ("Status transitions and
finalization", docs.stripe.com/invoicing/integration/workflow-transitions): draft ->
open (finalize); open -> paid | void | uncollectible; uncollectible -> paid | void (it can
still be paid or voided); paid and void are final. A deleted draft has no status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Generic, TypeVar


class OfferStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    ERROR = "error"


class OrderStatus(StrEnum):
    NEW = "new"
    PROCESSING = "processing"
    ACTIVATED = "activated"
    EXPIRED = "expired"
    ERROR = "error"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class TransitionVerdict(StrEnum):
    SAME = "same"  # no change observed
    ALLOWED = "allowed"  # the table allows it (or it is the first sighting)
    ANOMALY = "anomaly"  # the table does not allow it: record it, do not crash


S = TypeVar("S", bound=Enum)


def _table(rows: dict[S, set[S]]) -> Mapping[S, frozenset[S]]:
    return MappingProxyType({state: frozenset(targets) for state, targets in rows.items()})

_O = OfferStatus
OFFER_TRANSITIONS: Mapping[OfferStatus, frozenset[OfferStatus]] = _table(
    {
        _O.DRAFT: {_O.SENT, _O.ERROR},
        _O.SENT: {_O.ACCEPTED, _O.REJECTED, _O.EXPIRED, _O.ERROR},
        _O.ACCEPTED: {_O.ERROR},
        _O.REJECTED: {_O.ERROR},
        _O.EXPIRED: {_O.ERROR},
        _O.ERROR: {_O.DRAFT, _O.SENT},  # fixed by the partner or Salesforce, per org
    }
)

_R = OrderStatus
ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = _table(
    {
        _R.NEW: {_R.PROCESSING, _R.ERROR},
        _R.PROCESSING: {_R.ACTIVATED, _R.ERROR},
        _R.ACTIVATED: {_R.EXPIRED, _R.ERROR},
        _R.EXPIRED: {_R.ERROR},
        _R.ERROR: set(),  # DESIGN names no way out: a recovered order is flagged for a look
    }
)

_I = InvoiceStatus
INVOICE_TRANSITIONS: Mapping[InvoiceStatus, frozenset[InvoiceStatus]] = _table(
    {
        _I.DRAFT: {_I.OPEN},
        _I.OPEN: {_I.PAID, _I.VOID, _I.UNCOLLECTIBLE},
        _I.UNCOLLECTIBLE: {_I.PAID, _I.VOID},
        _I.PAID: set(),
        _I.VOID: set(),
    }
)


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    """A named transition table with the questions callers ask of it."""

    name: str
    transitions: Mapping[S, frozenset[S]]
    _reachable: Mapping[S, frozenset[S]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        states = set(self.transitions)
        for state, targets in self.transitions.items():
            unknown = set(targets) - states
            if unknown:
                raise ValueError(f"{self.name}: {state} leads to states without a row: {sorted(map(str, unknown))}")
        object.__setattr__(self, "_reachable", MappingProxyType({s: self._closure(s) for s in states}))

    def _closure(self, start: S) -> frozenset[S]:
        seen: set[S] = set()
        todo = list(self.transitions[start])
        while todo:
            state = todo.pop()
            if state not in seen:
                seen.add(state)
                todo.extend(self.transitions[state])
        return frozenset(seen)

    @property
    def states(self) -> frozenset[S]:
        return frozenset(self.transitions)

    def _known(self, state: S | str) -> S:
        """The machine's enum member for ``state`` (the member itself or its value)."""
        enum_type = type(next(iter(self.transitions)))
        try:
            member = enum_type(state)
        except ValueError:
            raise ValueError(f"{self.name}: {state!r} is not one of its states") from None
        return member

    def allowed(self, current: S | str) -> frozenset[S]:
        return self.transitions[self._known(current)]

    def check(self, current: S | str | None, observed: S | str) -> TransitionVerdict:
        """Judge a change seen in the org or Stripe. ``current=None`` is a first sighting."""
        new = self._known(observed)
        if current is None:
            return TransitionVerdict.ALLOWED
        old = self._known(current)
        if old is new:
            return TransitionVerdict.SAME
        if new in self.transitions[old]:
            return TransitionVerdict.ALLOWED
        return TransitionVerdict.ANOMALY

    def is_forward(self, current: S | str | None, new: S | str) -> bool:
        """True when ``new`` lies ahead of ``current`` (reachable through the table).

        Lets an out-of-order event (``invoice.finalized`` arriving after ``invoice.paid``)
        be ignored instead of moving a record backwards; skipped steps still count as
        forward (draft -> paid when the ``open`` event is late).
        """
        target = self._known(new)
        if current is None:
            return True
        return target in self._reachable[self._known(current)]

    def is_final(self, state: S | str) -> bool:
        return not self.allowed(state)

    def explain(self, current: S | str | None, observed: S | str) -> str:
        """One line for an anomaly record: ``order: activated -> new is not an allowed transition``."""
        if current is None:
            return f"{self.name}: first seen as {self._known(observed)}"
        old, new = self._known(current), self._known(observed)
        expected = ", ".join(sorted(str(s) for s in self.transitions[old])) or "none, it is final"
        return f"{self.name}: {old} -> {new} is not an allowed transition (from {old}: {expected})"


OFFER_MACHINE: StateMachine[OfferStatus] = StateMachine("offer", OFFER_TRANSITIONS)
ORDER_MACHINE: StateMachine[OrderStatus] = StateMachine("order", ORDER_TRANSITIONS)
INVOICE_MACHINE: StateMachine[InvoiceStatus] = StateMachine("invoice", INVOICE_TRANSITIONS)


def is_forward(current: InvoiceStatus | str | None, new: InvoiceStatus | str) -> bool:
    """Should an invoice status from a (possibly late) webhook replace ``current``?"""
    return INVOICE_MACHINE.is_forward(current, new)


def editable(offer_status: OfferStatus | str) -> bool:
    """Only a Draft offer may be written by the connector; once it leaves Draft the org wins."""
    return OfferStatus(offer_status) is OfferStatus.DRAFT
