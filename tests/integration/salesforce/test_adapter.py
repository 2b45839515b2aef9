"""The Salesforce adapter against the sandbox org over HTTPS: the three OAuth flows, page
streaming, re-authentication in the middle of a pagination, composite batching, the API
budget guard and REQUEST_LIMIT_EXCEEDED, collections upsert with per-record errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from connector.adapters.salesforce import SalesforceApiError, SalesforceOrg, build_org_gateway
from connector.errors import ApiLimitReached, AuthError
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import sandbox_config


@pytest.mark.parametrize("flow", ["client_credentials", "password", "jwt_bearer"])
def test_each_oauth_flow_logs_in(sandbox_org: SandboxOrg, tmp_path: Path, flow: str) -> None:
    org = build_org_gateway(sandbox_config(sandbox_org, f"sqlite:///{tmp_path}/x.db", auth=flow))
    assert org.limits()["DailyApiRequests"]["Max"] == 15000
    assert sandbox_org.calls("oauth_token") == 1


def test_wrong_secret_is_an_auth_error(sandbox_org: SandboxOrg, tmp_path: Path) -> None:
    org = build_org_gateway(sandbox_config(sandbox_org, f"sqlite:///{tmp_path}/x.db", client_secret="wrong"))
    with pytest.raises(AuthError, match="invalid_client"):
        org.limits()


def test_pages_stream_with_the_configured_page_size(sandbox_org: SandboxOrg, tmp_path: Path) -> None:
    sandbox_org.reset(4000)  # 1000 orders
    org = build_org_gateway(sandbox_config(sandbox_org, f"sqlite:///{tmp_path}/x.db", sync={"page_size": 400}))
    pages = list(org.query_pages("SELECT Id, Subtotal FROM SfdcPartnerOrder ORDER BY SystemModstamp, Id"))
    assert [len(p.records) for p in pages] == [400, 400, 200]
    assert all(isinstance(r["Subtotal"], Decimal) for p in pages for r in p.records)
    assert sandbox_org.calls("query") == 1 and sandbox_org.calls("query_more") == 2
    assert org.api_calls == 3


def test_session_expiring_mid_pagination_is_renewed_once(gateway: SalesforceOrg, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(10000)  # 2500 order items
    sandbox_org.fail("query_more", status=401)  # the session dies before page 2
    ids = [r["Id"] for p in gateway.query_pages("SELECT Id FROM SfdcPartnerOrder ORDER BY SystemModstamp, Id")
           for r in p.records]
    assert len(ids) == len(set(ids)) == 2500
    assert gateway.reauthentications == 1
    assert sandbox_org.calls("oauth_token") == 2


def test_batched_queries_cost_one_call_per_twenty_five(gateway: SalesforceOrg, sandbox_org: SandboxOrg) -> None:
    gateway.limits()  # log in first
    sandbox_org.reset_counters()
    objects = ["SfdcPartnerTermSet", "SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct",
               "SfdcPartnerProductLicense", "SfdcPartnerOffer", "SfdcPartnerOfferItem", "SfdcPartnerOrder"]
    results = gateway.composite_queries([f"SELECT Id FROM {o}" for o in objects], include_deleted=True)
    assert [r.total_size for r in results] == [1, 2, 2, 2, 8, 9, 3]
    assert sandbox_org.api_calls == 1
    sandbox_org.reset_counters()
    results = gateway.composite_queries([f"SELECT Id FROM {o}" for o in objects * 4], include_deleted=True)
    assert len(results) == 28 and sandbox_org.api_calls == 2  # 25 + 3


def test_request_limit_exceeded_stops_cleanly(gateway: SalesforceOrg, sandbox_org: SandboxOrg) -> None:
    sandbox_org.set_limits(max=50, used=50)
    with pytest.raises(ApiLimitReached):
        gateway.limits()


def test_budget_guard_stops_at_the_configured_percent(sandbox_org: SandboxOrg, tmp_path: Path) -> None:
    org = build_org_gateway(sandbox_config(sandbox_org, f"sqlite:///{tmp_path}/x.db", api_budget_percent=50))
    sandbox_org.set_limits(max=100, used=48)
    org.limits()  # usage 49/100
    org.limits()  # usage 50/100: the budget is now spent
    with pytest.raises(ApiLimitReached, match="50/100"):
        org.limits()
    assert sandbox_org.counters()["api_usage"]["used"] == 50


def test_transient_failures_are_retried(gateway: SalesforceOrg, sandbox_org: SandboxOrg) -> None:
    sandbox_org.fail("limits", status=503, times=2)
    assert gateway.limits()["DailyApiRequests"]["Max"] == 15000
    assert sandbox_org.calls("limits") == 3


def test_upsert_collection_reports_per_record_errors(gateway: SalesforceOrg, sandbox_org: SandboxOrg) -> None:
    records = [{"Order_Id__c": f"ORD-{i}", "Invoice_Amount__c": Decimal("8400.00")} for i in range(250)]
    records[7]["Invoice_Due_Date__c"] = "next week"
    results = gateway.upsert_collection("GTM_Order_Billing__c", "Order_Id__c", records)
    assert sum(r.success for r in results) == 249
    assert [(r.index, r.error_code) for r in results if not r.success] == [(7, "JSON_PARSER_ERROR")]
    assert sandbox_org.calls("collections_upsert") == 2
    again = gateway.upsert_collection("GTM_Order_Billing__c", "Order_Id__c", records[:3])
    assert [r.created for r in again] == [False, False, False]


def test_writing_a_read_only_object_is_a_permanent_error(gateway: SalesforceOrg) -> None:
    with pytest.raises(SalesforceApiError) as err:
        gateway.create("SfdcPartnerOrder", {"Name": "mine"})
    assert err.value.error_code == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
