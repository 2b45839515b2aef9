"""Issue 15, "also": a ``query_more`` that times out is reported as the timeout, not as the
INVALID_QUERY_LOCATOR its retry runs into; the next run completes the object."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg
from connector.errors import TransientError
from connector.mappings import load_mapping
from connector.services.mirror import MirrorService
from gtm_sandbox.org import SandboxOrg

MAPPING = load_mapping("gtm-v2")


def test_a_query_more_timeout_is_reported_as_the_timeout(sandbox_org: SandboxOrg, gateway: SalesforceOrg,
                                                         uow_factory: Callable[..., Any]) -> None:
    sandbox_org.reset(80)
    sandbox_org.set_batch_size(20)
    impatient = SalesforceOrg(dataclasses.replace(gateway.settings, timeout_seconds=1.0, retry_max_wait_s=0.2))
    # The last page answers after the client gave up, and serving it closes the query's
    # cursor; the retry arrives (and is held a little) until that has happened.
    sandbox_org.before("query_more", lambda: time.sleep(1.3), skip=1)
    sandbox_org.before("query_more", lambda: time.sleep(0.6), skip=2)
    try:
        with pytest.raises(TransientError) as caught:
            MirrorService(impatient, uow_factory, MAPPING, sandbox_org.org_id).run()
        message = str(caught.value)
        assert message.startswith("query_more: ReadTimeout")  # the cause, whatever the retry then met

        report = MirrorService(impatient, uow_factory, MAPPING, sandbox_org.org_id).run()
    finally:
        impatient.close()
    assert {o.status for o in report.objects} == {"ok"}
    with uow_factory() as uow:
        assert len(uow.mirror("order_item").list(sandbox_org.org_id)) == 60
