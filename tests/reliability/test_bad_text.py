"""Issue 15, defect 4: a text the store cannot hold (longer than its column, a NUL
character) quarantines that record, named, on SQLite and PostgreSQL; the rest is mirrored
and the next cycle does not fail on it again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg
from connector.mappings import load_mapping
from connector.services.mirror import MirrorService
from gtm_sandbox.org import SandboxOrg

MAPPING = load_mapping("gtm-v2")
ORDER = MAPPING.objects["order"]
OFFER = MAPPING.objects["offer"]


@pytest.mark.parametrize(("column", "value", "code"), [
    ("name", "x" * 100_000, "VALUE_TOO_LONG"),
    ("customer_name", "Acme\x00Corp", "INVALID_VALUE"),
    ("order_number", "0" * 256, "VALUE_TOO_LONG"),
])
def test_one_unstorable_text_quarantines_only_its_record(
    column: str, value: str, code: str, sandbox_org: SandboxOrg, gateway: SalesforceOrg,
    uow_factory: Callable[..., Any],
) -> None:
    bad = sandbox_org.demo_ids["acme_order"]
    good = sandbox_org.demo_ids["addon_order"]
    sandbox_org.update(ORDER.sobject, [{"Id": bad, ORDER.sf_field_for(column): value}])
    sandbox_org.update(OFFER.sobject, [{"Id": sandbox_org.demo_ids["acme_offer"],
                                        OFFER.sf_field_for("customer_name"): "Acme\x00"}])
    mirror = MirrorService(gateway, uow_factory, MAPPING, sandbox_org.org_id)

    report = mirror.run()

    org = sandbox_org.org_id
    with uow_factory() as uow:
        orders = {r["sf_id"] for r in uow.mirror("order").list(org)}
        letters = {(d.object_name, d.record_id): d for d in uow.dead_letters.open(org, source="mirror")}
    assert good in orders and bad not in orders
    letter = letters[(ORDER.sobject, bad)]
    assert letter.error_code == code and f"orders.{column}" in letter.reason
    assert (OFFER.sobject, sandbox_org.demo_ids["acme_offer"]) in letters
    assert "\x00" not in letter.reason and len(letter.reason) < 3000
    assert {o.status for o in report.objects} == {"ok"}
    again = mirror.run(full=True)  # the next cycle reads it again: no failure, the same letters
    assert {o.status for o in again.objects} == {"ok"}
    with uow_factory() as uow:
        assert len(uow.dead_letters.open(org, source="mirror")) == len(letters)
