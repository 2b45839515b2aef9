"""Status tables: allowed moves, anomalies to record, and no invoice ever moving backwards."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from connector.domain import (
    INVOICE_MACHINE,
    OFFER_MACHINE,
    ORDER_MACHINE,
    InvoiceStatus,
    OfferStatus,
    OrderStatus,
    StateMachine,
    TransitionVerdict,
    editable,
    is_forward,
)

VOCABULARIES = Path(__file__).resolve().parents[3] / "mappings" / "gtm-v2" / "vocabularies.toml"
ALLOWED, ANOMALY, SAME = TransitionVerdict.ALLOWED, TransitionVerdict.ANOMALY, TransitionVerdict.SAME
Off, Ord, Inv = OfferStatus, OrderStatus, InvoiceStatus


@pytest.mark.parametrize(
    ("section", "enum"),
    [("offer_status", OfferStatus), ("order_status", OrderStatus), ("invoice_status", InvoiceStatus)],
)
def test_status_values_match_the_mapping_vocabularies(section: str, enum: type) -> None:
    vocabulary = tomllib.loads(VOCABULARIES.read_text(encoding="utf-8"))[section]
    assert set(vocabulary.values()) == {member.value for member in enum}


@pytest.mark.parametrize(
    ("machine", "current", "observed", "verdict"),
    [
        # Offer: Draft -> Sent -> Accepted | Rejected | Expired; any -> Error; Error -> Draft/Sent
        (OFFER_MACHINE, Off.DRAFT, Off.SENT, ALLOWED),
        (OFFER_MACHINE, Off.SENT, Off.ACCEPTED, ALLOWED),
        (OFFER_MACHINE, Off.SENT, Off.REJECTED, ALLOWED),
        (OFFER_MACHINE, Off.SENT, Off.EXPIRED, ALLOWED),
        (OFFER_MACHINE, Off.ERROR, Off.DRAFT, ALLOWED),
        (OFFER_MACHINE, Off.ERROR, Off.SENT, ALLOWED),
        (OFFER_MACHINE, Off.SENT, Off.SENT, SAME),
        (OFFER_MACHINE, Off.DRAFT, Off.ACCEPTED, ANOMALY),
        (OFFER_MACHINE, Off.ACCEPTED, Off.DRAFT, ANOMALY),
        (OFFER_MACHINE, Off.REJECTED, Off.ACCEPTED, ANOMALY),
        (OFFER_MACHINE, Off.ERROR, Off.ACCEPTED, ANOMALY),
        # Order: New -> Processing -> Activated -> Expired; any -> Error
        (ORDER_MACHINE, Ord.NEW, Ord.PROCESSING, ALLOWED),
        (ORDER_MACHINE, Ord.PROCESSING, Ord.ACTIVATED, ALLOWED),
        (ORDER_MACHINE, Ord.ACTIVATED, Ord.EXPIRED, ALLOWED),
        (ORDER_MACHINE, Ord.ACTIVATED, Ord.ACTIVATED, SAME),
        (ORDER_MACHINE, Ord.NEW, Ord.ACTIVATED, ANOMALY),
        (ORDER_MACHINE, Ord.ACTIVATED, Ord.NEW, ANOMALY),
        (ORDER_MACHINE, Ord.EXPIRED, Ord.ACTIVATED, ANOMALY),
        (ORDER_MACHINE, Ord.ERROR, Ord.ACTIVATED, ANOMALY),  # DESIGN gives orders no way out of Error
        # Invoice (Stripe): draft -> open -> paid | void | uncollectible; uncollectible -> paid | void
        (INVOICE_MACHINE, Inv.DRAFT, Inv.OPEN, ALLOWED),
        (INVOICE_MACHINE, Inv.OPEN, Inv.PAID, ALLOWED),
        (INVOICE_MACHINE, Inv.OPEN, Inv.VOID, ALLOWED),
        (INVOICE_MACHINE, Inv.OPEN, Inv.UNCOLLECTIBLE, ALLOWED),
        (INVOICE_MACHINE, Inv.UNCOLLECTIBLE, Inv.PAID, ALLOWED),
        (INVOICE_MACHINE, Inv.UNCOLLECTIBLE, Inv.VOID, ALLOWED),
        (INVOICE_MACHINE, Inv.PAID, Inv.PAID, SAME),
        (INVOICE_MACHINE, Inv.DRAFT, Inv.PAID, ANOMALY),
        (INVOICE_MACHINE, Inv.PAID, Inv.OPEN, ANOMALY),
        (INVOICE_MACHINE, Inv.VOID, Inv.PAID, ANOMALY),
        (INVOICE_MACHINE, Inv.PAID, Inv.VOID, ANOMALY),
    ],
)
def test_observed_transition_verdicts(
    machine: StateMachine, current: object, observed: object, verdict: TransitionVerdict
) -> None:
    assert machine.check(current, observed) is verdict


@pytest.mark.parametrize("machine", [OFFER_MACHINE, ORDER_MACHINE], ids=lambda m: m.name)
def test_any_offer_or_order_may_fall_into_error(machine: StateMachine) -> None:
    error = next(s for s in machine.states if s.value == "error")
    for state in machine.states - {error}:
        assert machine.check(state, error) is ALLOWED, state


def test_first_sighting_is_never_an_anomaly() -> None:
    assert ORDER_MACHINE.check(None, Ord.ACTIVATED) is ALLOWED
    assert INVOICE_MACHINE.check(None, Inv.PAID) is ALLOWED


def test_illegal_jump_is_reported_not_raised() -> None:
    assert ORDER_MACHINE.check(Ord.ACTIVATED, Ord.NEW) is ANOMALY
    assert ORDER_MACHINE.explain(Ord.ACTIVATED, Ord.NEW) == (
        "order: activated -> new is not an allowed transition (from activated: error, expired)"
    )
    assert INVOICE_MACHINE.explain(Inv.PAID, Inv.OPEN).endswith("(from paid: none, it is final)")


def test_statuses_can_be_given_as_their_values() -> None:
    assert OFFER_MACHINE.check("sent", "accepted") is ALLOWED
    with pytest.raises(ValueError, match="offer: 'withdrawn' is not one of its states"):
        OFFER_MACHINE.check("sent", "withdrawn")


def test_late_finalized_event_never_moves_a_paid_invoice_back_to_open() -> None:
    assert not is_forward(Inv.PAID, Inv.OPEN)
    assert not is_forward(Inv.VOID, Inv.PAID)
    assert not is_forward(Inv.PAID, Inv.PAID)


def test_paid_event_overtaking_finalized_still_moves_the_invoice_forward() -> None:
    assert is_forward(Inv.DRAFT, Inv.PAID)
    assert is_forward(Inv.OPEN, Inv.UNCOLLECTIBLE)
    assert is_forward(Inv.UNCOLLECTIBLE, Inv.PAID)
    assert is_forward(None, Inv.OPEN)
    assert not is_forward(Inv.UNCOLLECTIBLE, Inv.OPEN)


def test_paid_and_void_invoices_are_final() -> None:
    assert {s for s in INVOICE_MACHINE.states if INVOICE_MACHINE.is_final(s)} == {Inv.PAID, Inv.VOID}


def test_only_a_draft_offer_is_editable() -> None:
    assert editable(Off.DRAFT)
    assert editable("draft")
    for status in set(OfferStatus) - {Off.DRAFT}:
        assert not editable(status), status


def test_a_table_pointing_at_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="without a row"):
        StateMachine("broken", {Off.DRAFT: frozenset({Off.SENT})})


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        OFFER_MACHINE.transitions[Off.DRAFT] = frozenset()  # type: ignore[index]
