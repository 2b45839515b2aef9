"""Every job's dry run, against the sandbox org and the Stripe sandbox: what it would do is
counted under a ``would_…`` name, never under the name the real run uses for what it did
(issue 12.4: ``reconcile --dry-run`` reported ``orders_written=1``)."""

from __future__ import annotations

from connector.jobs import JOBS
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.payouts import PartnerBooks, billing_records, core_app

# Words of the real runs' counts that mean "done" (a write, a send). API calls a dry run makes
# to read are real, so ``sf_api_calls`` is a fact, not a claim.
DONE_WORDS = ("written", "created", "inserted", "updated", "deleted", "sent", "quarantined", "resolved", "pushed",
              "invoiced", "retried", "deferred")


def test_no_dry_run_counts_a_write_under_the_real_runs_name(org_books: PartnerBooks, sandbox_org: SandboxOrg) -> None:
    paid = org_books.an_order()
    org_books.invoice(paid)
    org_books.pay_with_share_deducted(paid)
    org_books.payout()
    org_books.an_order(core_app(quantity=-2))  # invoicing would quarantine it

    counts = {job: dict(org_books.run(job, dry_run=True).counts) for job in JOBS}

    for job, found in counts.items():
        done = [k for k in found if any(w in k for w in DONE_WORDS) and not k.startswith("would_")]
        assert done == [], f"{job} --dry-run counts {done} as done"
    assert not set(counts["mirror"]) & set(org_books.runtime.mapping.objects)  # per-object "written" counts
    assert counts["mirror"]["would_write"] > 0 and counts["mirror"]["would_quarantine"] == 1
    assert counts["reconcile"]["would_write_orders"] == 1
    assert counts["invoicing"]["would_quarantine"] == 1
    assert counts["writeback"]["would_send"] == 1
    # ... and nothing was done
    with org_books.uow() as uow:
        assert uow.reconciliation.list(org_books.org_id) == [] and uow.writeback_state.list(org_books.org_id) == []
    assert billing_records(sandbox_org) == {}
    # what the dry runs said is what the real runs do
    assert org_books.run("reconcile").counts["orders_written"] == counts["reconcile"]["would_write_orders"]
    assert org_books.run("writeback").counts["sent"] == counts["writeback"]["would_send"]
