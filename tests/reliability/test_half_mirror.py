"""Issue 15, defect 6: a sync that fails half-way does not make invoicing or write-back act
on orders whose items are not all mirrored yet; the next good cycle handles them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connector.jobs import run_job
from connector.services import writeback
from connector.services.mirror import incomplete_orders
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.payouts import PartnerBooks


@pytest.fixture
def books(sandbox_org: SandboxOrg, books_on: Callable[..., PartnerBooks], database_url: str) -> PartnerBooks:
    sandbox_org.reset(80)  # 20 Activated orders with 3 items each
    sandbox_org.set_batch_size(20)
    return books_on(database_url, org=sandbox_org, extra={"invoicing": {"lead_days": 60}})


def test_a_sync_failing_mid_items_makes_no_false_errors(books: PartnerBooks, sandbox_org: SandboxOrg,
                                                        stripe_sandbox: StripeSandbox) -> None:
    sandbox_org.fail("query_more", status=401, times=2)  # the re-authenticated retry is refused too
    failed = run_job(books.runtime, "mirror", instance_id="test")
    assert failed.status == "failed"
    with books.uow() as uow:
        items = uow.mirror("order_item").list(books.org_id)
        orders = uow.mirror("order").list(books.org_id)
    assert 0 < len(items) < 60 and len(orders) == 20  # half a mirror: orders in, items not all

    invoicing = books.run("invoicing")
    assert invoicing.counts.get("quarantined", 0) == 0 and invoicing.counts["waiting_for_mirror"] == 20
    assert books.open_letters("invoicing") == [] and stripe_sandbox.invoices() == []
    assert books.run("writeback").counts.get("written", 0) == 0  # no false Last_Error in the org

    sandbox_org.clear_faults()
    books.run("mirror")
    after = books.run("invoicing")
    assert after.counts.get("quarantined", 0) == 0 and "waiting_for_mirror" not in after.counts
    assert books.open_letters() == []
    assert after.counts["invoices_created"] == after.counts["considered"] - after.counts["not_due"] > 0
    assert len(stripe_sandbox.invoices()) == after.counts["invoices_created"]
    last_error = writeback.target_of(books.runtime).fields["last_error"]
    assert all(row.payload.get(last_error) is None for row in writeback.plan(books.runtime).to_send)


def test_a_finished_sync_leaves_every_order_to_invoicing(books: PartnerBooks) -> None:
    books.run("mirror")
    with books.uow() as uow:
        assert incomplete_orders(uow, books.org_id, books.runtime.mapping) == set()
        states = {s.last_status for s in uow.sync_state.all(books.org_id)}
    assert states <= {"ok", "unavailable"}
