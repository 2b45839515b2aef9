"""Issue 15, defect 2: an offer create that the org applies after the client gave up waiting
is never sent again blind; it is looked up by its content first (in the run and the next)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg
from gtm_sandbox.org import SandboxOrg
from tests.reliability.test_crash_points import drafts, offer_items, pusher, wayne_offers, write_draft  # noqa: F401

TIMEOUT_S = 1.0


@pytest.fixture
def impatient(gateway: SalesforceOrg) -> Iterator[SalesforceOrg]:
    """The adapter with a 1 s client timeout and short retry waits."""
    org = SalesforceOrg(dataclasses.replace(gateway.settings, timeout_seconds=TIMEOUT_S, retry_max_wait_s=0.2))
    yield org
    org.close()


def settle(sandbox_org: SandboxOrg, expected: int, seconds: float = 10.0) -> None:
    """Wait (bounded) until the org has finished the requests still sleeping in its threads."""
    deadline = time.monotonic() + seconds
    while len(wayne_offers(sandbox_org)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2 * TIMEOUT_S)  # a duplicate would land by now too


def test_one_slow_create_makes_one_offer(drafts: Path, sandbox_org: SandboxOrg, impatient: SalesforceOrg,  # noqa: F811
                                         uow_factory: Callable[..., Any]) -> None:
    write_draft(drafts)
    sandbox_org.before("composite", lambda: time.sleep(TIMEOUT_S + 0.8))  # this call only: applied after the timeout

    [first] = pusher(impatient, uow_factory, sandbox_org, drafts).push().results
    settle(sandbox_org, 1)
    assert first.action in ("unsure", "created")
    [second] = pusher(impatient, uow_factory, sandbox_org, drafts).push().results

    [offer] = wayne_offers(sandbox_org)
    assert (second.action, second.sf_id) == (("created" if first.action == "unsure" else "unchanged"), offer["Id"])
    assert len(offer_items(sandbox_org, offer["Id"])) == 2
    assert pusher(impatient, uow_factory, sandbox_org, drafts).push().results[0].action == "unchanged"


def test_a_composite_slower_than_the_timeout_on_every_call_makes_one_offer(
    drafts: Path, sandbox_org: SandboxOrg, impatient: SalesforceOrg, uow_factory: Callable[..., Any]  # noqa: F811
) -> None:
    write_draft(drafts)
    sandbox_org.set_latency(TIMEOUT_S + 0.5, "composite")

    [first] = pusher(impatient, uow_factory, sandbox_org, drafts).push().results
    sandbox_org.set_latency(0, "composite")
    settle(sandbox_org, 1)

    assert first.action == "unsure"
    [second] = pusher(impatient, uow_factory, sandbox_org, drafts).push().results
    [offer] = wayne_offers(sandbox_org)  # before: 5 offers, one adopted and four orphaned
    assert (second.action, second.sf_id) == ("created", offer["Id"])
