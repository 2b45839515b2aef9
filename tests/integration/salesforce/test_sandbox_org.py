"""The sandbox org speaks Salesforce's REST API well enough for unmodified simple-salesforce:
OAuth grants, SOQL with pagination, queryAll, sObject CRUD and upsert, collections,
composite, describe, limits, error bodies, fault injection and counters."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import tls_session

ORDER_FIELDS = "Id, Name, Status, Subtotal, SystemModstamp"


def _token(org: SandboxOrg, **form: str) -> requests.Response:
    return tls_session(org).post(org.login_url + "/services/oauth2/token", data=form)


# ------------------------------------------------------------------ OAuth


def test_client_credentials_grant_returns_a_token_and_instance_url(sandbox_org: SandboxOrg) -> None:
    resp = _token(sandbox_org, grant_type="client_credentials", client_id=sandbox_org.client_id,
                  client_secret=sandbox_org.client_secret)
    body = resp.json()
    assert resp.status_code == 200
    assert body["instance_url"] == sandbox_org.instance_url
    assert body["token_type"] == "Bearer"
    assert body["id"].endswith(f"/id/{sandbox_org.org_id}/{sandbox_org.user_id}")
    assert body["access_token"].startswith(sandbox_org.org_id[:15] + "!")


def test_wrong_client_secret_is_refused_like_salesforce(sandbox_org: SandboxOrg) -> None:
    resp = _token(sandbox_org, grant_type="client_credentials", client_id=sandbox_org.client_id, client_secret="nope")
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}


def test_password_grant(sandbox_org: SandboxOrg) -> None:
    ok = _token(sandbox_org, grant_type="password", client_id=sandbox_org.client_id,
                client_secret=sandbox_org.client_secret, username=sandbox_org.username, password=sandbox_org.password)
    bad = _token(sandbox_org, grant_type="password", client_id=sandbox_org.client_id,
                 username=sandbox_org.username, password="wrong")
    assert ok.status_code == 200
    assert bad.json() == {"error": "invalid_grant", "error_description": "authentication failure"}


def _assertion(org: SandboxOrg, **overrides: object) -> str:
    claims = {"iss": org.client_id, "sub": org.username, "aud": org.login_url,
              "exp": int(time.time()) + 180, **overrides}
    return jwt.encode(claims, org.private_key_file.read_bytes(), algorithm="RS256")


def test_jwt_bearer_grant_verifies_signature_and_claims(sandbox_org: SandboxOrg) -> None:
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ok = _token(sandbox_org, grant_type=grant, assertion=_assertion(sandbox_org))
    expired = _token(sandbox_org, grant_type=grant, assertion=_assertion(sandbox_org, exp=int(time.time()) - 5))
    wrong_aud = _token(sandbox_org, grant_type=grant, assertion=_assertion(sandbox_org, aud="https://login.salesforce.com"))
    wrong_user = _token(sandbox_org, grant_type=grant, assertion=_assertion(sandbox_org, sub="someone@example.com"))
    assert ok.status_code == 200 and ok.json()["access_token"]
    assert expired.json()["error"] == "invalid_grant"
    assert wrong_aud.json() == {"error": "invalid_grant", "error_description": "audience is invalid"}
    assert wrong_user.json()["error"] == "invalid_grant"


def test_jwt_signed_with_another_key_is_refused(sandbox_org: SandboxOrg) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": sandbox_org.client_id, "sub": sandbox_org.username, "aud": sandbox_org.login_url,
              "exp": int(time.time()) + 60}
    resp = _token(sandbox_org, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                  assertion=jwt.encode(claims, other, algorithm="RS256"))
    assert resp.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


# ------------------------------------------------------------------ queries


def test_query_returns_salesforce_shape_with_decimal_money(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    order_id = sandbox_org.demo_ids["acme_order"]
    result = simple_sf.query(f"SELECT {ORDER_FIELDS} FROM SfdcPartnerOrder WHERE Id = '{order_id}'")
    assert result["totalSize"] == 1 and result["done"] is True
    record = result["records"][0]
    assert record["attributes"] == {
        "type": "SfdcPartnerOrder",
        "url": f"/services/data/v66.0/sobjects/SfdcPartnerOrder/{sandbox_org.demo_ids['acme_order']}",
    }
    assert record["Subtotal"] == Decimal("8400.00")
    assert record["Status"] == "Activated"
    assert len(record["Id"]) == 18


def test_pagination_follows_next_records_url(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(5000)  # ~1250 orders and 3750 items
    sandbox_org.set_batch_size(1000)
    first = simple_sf.query("SELECT Id, SystemModstamp FROM SfdcPartnerOrderItem ORDER BY SystemModstamp, Id")
    assert first["done"] is False and len(first["records"]) == 1000
    assert first["nextRecordsUrl"].startswith("/services/data/v66.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-1000")
    records = list(simple_sf.query_all_iter(
        "SELECT Id, SystemModstamp FROM SfdcPartnerOrderItem ORDER BY SystemModstamp, Id"))
    assert len(records) == first["totalSize"] == 3750
    keys = [(r["SystemModstamp"], r["Id"]) for r in records]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_query_locator_is_a_snapshot(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(5000)
    sandbox_org.set_batch_size(1000)
    first = simple_sf.query("SELECT Id, Quantity FROM SfdcPartnerOrderItem ORDER BY SystemModstamp, Id")
    last_id = simple_sf.query(
        "SELECT Id FROM SfdcPartnerOrderItem ORDER BY SystemModstamp DESC, Id DESC LIMIT 1")["records"][0]["Id"]
    sandbox_org.update("SfdcPartnerOrderItem", [{"Id": last_id, "Quantity": 999}])
    rest = simple_sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    while not rest["done"]:
        rest = simple_sf.query_more(rest["nextRecordsUrl"], identifier_is_url=True)
    assert rest["records"][-1]["Id"] == last_id
    assert rest["records"][-1]["Quantity"] != 999  # served as it was when the query ran


def test_soql_where_order_limit_offset(simple_sf: Salesforce) -> None:
    q = simple_sf.query(
        "SELECT Name, Status FROM SfdcPartnerOffer WHERE (Status IN ('Draft','Sent') OR Name LIKE 'hooli%') "
        "AND NOT Status = 'Error' ORDER BY Name DESC NULLS LAST LIMIT 2 OFFSET 1"
    )
    names = [r["Name"] for r in q["records"]]
    assert names == ["Initech Initial offer", "Hooli Initial offer"]
    count = simple_sf.query("SELECT COUNT() FROM SfdcPartnerOffer WHERE ServiceStartDate > TODAY")
    assert count["records"] == [] and count["totalSize"] == 7


def test_mixing_and_or_without_parentheses_is_malformed(simple_sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        simple_sf.query("SELECT Id FROM SfdcPartnerOffer WHERE Status = 'Draft' OR Status = 'Sent' AND Name = 'x'")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_unknown_field_and_object_errors(simple_sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as field_err:
        simple_sf.query("SELECT Bogus FROM SfdcPartnerOrder")
    with pytest.raises(SalesforceMalformedRequest) as type_err:
        simple_sf.query("SELECT Id FROM NoSuchThing")
    assert field_err.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Bogus' on entity 'SfdcPartnerOrder'" in field_err.value.content[0]["message"]
    assert type_err.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_date_field_needs_a_date_literal(simple_sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        simple_sf.query("SELECT Id FROM SfdcPartnerOrder WHERE ServiceStartDate = '2025-01-01'")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_query_all_returns_deleted_rows_with_bumped_stamp(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    draft = sandbox_org.demo_ids["offer_draft"]
    before = sandbox_org.get("SfdcPartnerOffer", draft)["SystemModstamp"]  # type: ignore[index]
    simple_sf.SfdcPartnerOffer.delete(draft)
    live = simple_sf.query(f"SELECT Id FROM SfdcPartnerOffer WHERE Id = '{draft}'")
    gone = simple_sf.query_all("SELECT Id, IsDeleted, SystemModstamp FROM SfdcPartnerOffer WHERE IsDeleted = true",
                               include_deleted=True)
    assert live["totalSize"] == 0
    assert [r["Id"] for r in gone["records"]] == [draft]
    assert gone["records"][0]["SystemModstamp"] >= before


# ------------------------------------------------------------------ sObject REST


def test_offer_crud_and_draft_only_edits(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    created = simple_sf.SfdcPartnerOffer.create({"Name": "Wayne offer", "Status": "Draft", "OfferType": "Initial",
                                                 "ContractTerm": 12, "CurrencyIsoCode": "USD"})
    assert created["success"] is True
    item = simple_sf.SfdcPartnerOfferItem.create({"PartnerOfferId": created["id"], "Quantity": 4,
                                                  "PartnerProvisionProductId": sandbox_org.demo_ids["ppp_core"],
                                                  "CustomerUnitPricePerMonth": 50})
    assert simple_sf.SfdcPartnerOfferItem.get(item["id"])["LineItemTotal"] == Decimal("2400.00")
    assert simple_sf.SfdcPartnerOffer.get(created["id"])["Subtotal"] == Decimal("2400.00")
    assert simple_sf.SfdcPartnerOffer.update(created["id"], {"Name": "Wayne offer v2"}) == 204
    with pytest.raises(SalesforceMalformedRequest) as sent:
        simple_sf.SfdcPartnerOffer.update(sandbox_org.demo_ids["offer_sent"], {"Name": "changed"})
    assert sent.value.content[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert simple_sf.SfdcPartnerOffer.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        simple_sf.SfdcPartnerOffer.get(created["id"])


def test_field_validation_errors(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    cases = {
        "REQUIRED_FIELD_MISSING": {"Name": "x", "OfferType": "Initial"},
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": {"Status": "Draft", "OfferType": "Renewal"},
        "INVALID_EMAIL_ADDRESS": {"Status": "Draft", "OfferType": "Initial", "BillingEmailAddress": "not-an-email"},
        "JSON_PARSER_ERROR": {"Status": "Draft", "OfferType": "Initial", "ServiceStartDate": "soon"},
        "INVALID_FIELD_FOR_INSERT_UPDATE": {"Status": "Draft", "OfferType": "Initial", "Subtotal": 5},
        "INVALID_FIELD": {"Status": "Draft", "OfferType": "Initial", "Colour__c": "red"},
        "MALFORMED_ID": {"Status": "Draft", "OfferType": "Initial", "InitialOrderId": "xyz"},
    }
    for code, body in cases.items():
        with pytest.raises(SalesforceMalformedRequest) as err:
            simple_sf.SfdcPartnerOffer.create(body)
        assert err.value.content[0]["errorCode"] == code, body


def test_read_only_gtm_objects_refuse_writes(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    order = sandbox_org.demo_ids["acme_order"]
    with pytest.raises(SalesforceMalformedRequest) as create:
        simple_sf.SfdcPartnerOrder.create({"Name": "mine"})
    with pytest.raises(SalesforceMalformedRequest) as update:
        simple_sf.SfdcPartnerOrder.update(order, {"Name": "mine"})
    with pytest.raises(SalesforceMalformedRequest) as delete:
        simple_sf.SfdcPartnerOrder.delete(order)
    assert create.value.content == [{"message": "entity type cannot be inserted: Partner Order",
                                     "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"}]
    assert update.value.content[0]["errorCode"] == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
    assert delete.value.content[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
    assert simple_sf.SfdcPartnerOrder.describe()["createable"] is False


def test_upsert_by_external_id_creates_then_updates(simple_sf: Salesforce) -> None:
    first = simple_sf.GTM_Order_Billing__c.upsert("Order_Id__c/ORD-1", {"Invoice_Status__c": "open"}, raw_response=True)
    second = simple_sf.GTM_Order_Billing__c.upsert("Order_Id__c/ORD-1", {"Invoice_Status__c": "paid"},
                                                   raw_response=True)
    assert first.status_code == 201 and first.json()["created"] is True
    assert second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "success": True, "errors": [], "created": False}
    assert simple_sf.GTM_Order_Billing__c.get_by_custom_id("Order_Id__c", "ORD-1")["Invoice_Status__c"] == "paid"


def test_describe_uses_mapping_types(simple_sf: Salesforce) -> None:
    fields = {f["name"]: f for f in simple_sf.SfdcPartnerTermSetProduct.describe()["fields"]}
    billing = {f["name"]: f for f in simple_sf.GTM_Order_Billing__c.describe()["fields"]}
    assert fields["RevenueSharePercentage"]["type"] == "percent"
    assert fields["SystemModstamp"]["type"] == "datetime"
    assert billing["Order_Id__c"]["externalId"] is True
    assert billing["Invoice_Amount__c"]["type"] == "currency"
    names = {o["name"] for o in simple_sf.describe()["sobjects"]}
    assert {"SfdcPartnerOrder", "GTM_Order_Billing__c"} <= names


# ------------------------------------------------------------------ collections and composite


def _billing(order_id: str, **values: object) -> dict[str, object]:
    return {"attributes": {"type": "GTM_Order_Billing__c"}, "Order_Id__c": order_id, **values}


def test_collections_upsert_partial_success(simple_sf: Salesforce) -> None:
    result = simple_sf.restful("composite/sobjects/GTM_Order_Billing__c/Order_Id__c", method="PATCH", json={
        "allOrNone": False,
        "records": [_billing("A", Invoice_Amount__c=10.5), _billing("B", Invoice_Due_Date__c="later"), _billing("C")],
    })
    assert [r["success"] for r in result] == [True, False, True]
    assert all(r["created"] is True for r in (result[0], result[2]))
    assert result[1]["errors"][0]["statusCode"] == "JSON_PARSER_ERROR"


def test_collections_all_or_none_rolls_back(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    result = simple_sf.restful("composite/sobjects", method="POST", json={
        "allOrNone": True,
        "records": [_billing("X1"), _billing("X2", Invoice_Due_Date__c="never")],
    })
    assert result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert result[1]["errors"][0]["statusCode"] == "JSON_PARSER_ERROR"
    assert sandbox_org.records("GTM_Order_Billing__c") == []


def test_collections_limit_of_200(simple_sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest):
        simple_sf.restful("composite/sobjects", method="POST",
                          json={"records": [_billing(f"O{i}") for i in range(201)]})


def test_composite_with_references_creates_offer_and_items(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    v = "/services/data/v66.0"
    result = simple_sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"{v}/sobjects/SfdcPartnerOffer", "referenceId": "offer",
         "body": {"Name": "Stark", "Status": "Draft", "OfferType": "Initial"}},
        {"method": "POST", "url": f"{v}/sobjects/SfdcPartnerOfferItem", "referenceId": "item1",
         "body": {"PartnerOfferId": "@{offer.id}", "PartnerProvisionProductId": sandbox_org.demo_ids["ppp_core"],
                  "Quantity": 10, "CustomerUnitPricePerMonth": 50}},
        {"method": "GET", "url": f"{v}/sobjects/SfdcPartnerOffer/@{{offer.id}}?fields=Subtotal",
         "referenceId": "check"},
    ]})["compositeResponse"]
    assert [r["httpStatusCode"] for r in result] == [201, 201, 200]
    assert result[2]["body"]["Subtotal"] == Decimal("6000.00")
    assert set(result[0]) == {"body", "httpHeaders", "httpStatusCode", "referenceId"}


def test_composite_all_or_none_failure_halts_the_rest(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    v = "/services/data/v66.0"
    before = len(sandbox_org.records("SfdcPartnerOffer"))
    result = simple_sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"{v}/sobjects/SfdcPartnerOffer", "referenceId": "offer",
         "body": {"Name": "Stark", "Status": "Draft", "OfferType": "Initial"}},
        {"method": "POST", "url": f"{v}/sobjects/SfdcPartnerOfferItem", "referenceId": "item",
         "body": {"Quantity": 1}},  # no PartnerOfferId: a master-detail link is required
    ]})["compositeResponse"]
    assert result[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert result[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert len(sandbox_org.records("SfdcPartnerOffer")) == before


def test_composite_allows_five_queries_in_one_api_call(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    v = "/services/data/v66.0"
    objects = ["SfdcPartnerTermSet", "SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct",
               "SfdcPartnerOffer", "SfdcPartnerOrder", "SfdcPartnerOrderItem"]
    subs = [{"method": "GET", "url": f"{v}/query?q=SELECT+COUNT()+FROM+{o}", "referenceId": o} for o in objects]
    sandbox_org.reset_counters()
    ok = simple_sf.restful("composite", method="POST", json={"compositeRequest": subs[:5]})["compositeResponse"]
    assert [r["body"]["totalSize"] for r in ok] == [1, 2, 2, 8, 3]
    assert sandbox_org.api_calls == 1
    with pytest.raises(SalesforceMalformedRequest):
        simple_sf.restful("composite", method="POST", json={"compositeRequest": subs})


# ------------------------------------------------------------------ limits, faults, counters


def test_every_response_carries_api_usage(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.set_limits(max=1000, used=10)
    simple_sf.query("SELECT Id FROM SfdcPartnerTermSet")
    assert simple_sf.api_usage["api-usage"] == (11, 1000)
    assert simple_sf.limits()["DailyApiRequests"] == {"Max": 1000, "Remaining": 988}


def test_daily_limit_exhausted_gives_request_limit_exceeded(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.set_limits(max=100, used=100)
    with pytest.raises(SalesforceRefusedRequest) as err:
        simple_sf.query("SELECT Id FROM SfdcPartnerTermSet")
    assert err.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def test_expired_sessions_answer_invalid_session_id(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as err:
        simple_sf.query("SELECT Id FROM SfdcPartnerTermSet")
    assert err.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_fault_injection_and_counters(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.fail("query", status=503, times=1, skip=1)
    simple_sf.query("SELECT Id FROM SfdcPartnerTermSet")
    with pytest.raises(SalesforceGeneralError) as err:
        simple_sf.query("SELECT Id FROM SfdcPartnerTermSet")
    simple_sf.query("SELECT Id FROM SfdcPartnerTermSet")
    assert err.value.status == 503
    counters = sandbox_org.counters()
    assert counters["calls"]["query"] == 3
    assert counters["api_usage"]["used"] == 2  # the injected failure didn't count


def test_latency_is_added(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.set_latency(0.2, "limits")
    started = time.perf_counter()
    simple_sf.limits()
    assert time.perf_counter() - started >= 0.2


def test_control_api_over_https(sandbox_org: SandboxOrg) -> None:
    session = tls_session(sandbox_org)
    base = sandbox_org.instance_url + "/_sandbox"
    stamp = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ids = session.post(f"{base}/records/SfdcPartnerTermSet", json={"records": [{"Name": "A"}, {"Name": "B"}],
                                                                  "stamp": stamp}).json()["ids"]
    assert {sandbox_org.get("SfdcPartnerTermSet", i)["SystemModstamp"] for i in ids} == {stamp.replace("Z", "+0000")}  # type: ignore[index]
    assert session.post(f"{base}/faults", json={"endpoint": "limits", "status": 500}).status_code == 204
    counters = session.get(f"{base}/counters").json()
    assert counters["api_calls"] == 0  # control calls are not API usage


def test_two_thousand_record_page_is_served_fast(sandbox_org: SandboxOrg) -> None:
    sandbox_org.reset(20000)
    session = tls_session(sandbox_org)
    from tests.fixtures.org import client_credentials_token

    headers = {"Authorization": "Bearer " + client_credentials_token(sandbox_org, session)}
    q = ("SELECT Id, SystemModstamp, IsDeleted, Name, PartnerOrderId, PartnerProvisionProductId, Quantity, "
         "CustomerUnitPricePerMonth, LineItemTotal FROM SfdcPartnerOrderItem ORDER BY SystemModstamp, Id")
    first = session.get(sandbox_org.instance_url + "/services/data/v66.0/query", params={"q": q},
                        headers=headers).json()
    # CPU time of this process (the org serves from a thread in it), not wall-clock time: on a
    # loaded machine a page waits for a core, and a 0.1 s wall-clock bound failed (0.13 s at
    # best of three with three busy processes on two cores) while the work itself stayed cheap.
    timings = []
    for _ in range(3):
        started = time.process_time()
        resp = session.get(sandbox_org.instance_url + first["nextRecordsUrl"], headers=headers)
        timings.append(time.process_time() - started)
        assert resp.status_code == 200 and len(resp.json()["records"]) == 2000
    assert min(timings) < 0.1


def test_per_record_lock_failure_in_a_collection(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    sandbox_org.fail_records("GTM_Order_Billing__c", times=1)
    result = simple_sf.restful("composite/sobjects/GTM_Order_Billing__c/Order_Id__c", method="PATCH", json={
        "allOrNone": False, "records": [_billing("L1"), _billing("L2")]})
    assert result[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert result[1]["success"] is True


def test_get_deleted_lists_recycle_bin_rows(simple_sf: Salesforce, sandbox_org: SandboxOrg) -> None:
    draft = sandbox_org.demo_ids["offer_draft"]
    simple_sf.SfdcPartnerOffer.delete(draft)
    now = datetime.now(UTC)
    result = simple_sf.SfdcPartnerOffer.deleted(now - timedelta(minutes=5), now + timedelta(minutes=1))
    assert [r["id"] for r in result["deletedRecords"]] == [draft]


def test_jwt_bearer_with_the_partners_own_certificate(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme-integration")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_file = tmp_path / "server.crt"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with SandboxOrg.start(data=None, jwt_public_key_file=cert_file) as org:
        claims = {"iss": org.client_id, "sub": org.username, "aud": org.login_url, "exp": int(time.time()) + 60}
        resp = _token(org, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                      assertion=jwt.encode(claims, key, algorithm="RS256"))
        assert resp.status_code == 200


def test_a_saved_org_is_restored_record_for_record(sandbox_org: SandboxOrg, tmp_path: Path) -> None:
    from gtm_sandbox.snapshot import SnapshotError

    [gone] = sandbox_org.insert("SfdcPartnerTermSet", [{"Name": "to be deleted"}])
    sandbox_org.delete("SfdcPartnerTermSet", [gone])
    snapshot = tmp_path / "org.json"
    sandbox_org.save(snapshot)

    with SandboxOrg.start(data=None) as later:
        assert later.records("SfdcPartnerOrder") == []
        later.restore(snapshot)
        for sobject in ("SfdcPartnerOrder", "SfdcPartnerOrderItem", "SfdcPartnerTermSet"):
            assert later.records(sobject, include_deleted=True) == sandbox_org.records(sobject, include_deleted=True)
        assert later.get("SfdcPartnerTermSet", gone)["IsDeleted"] is True  # type: ignore[index]
        # New records continue the saved id sequence instead of reusing an id.
        [fresh] = later.insert("SfdcPartnerTermSet", [{"Name": "after restore"}])
        assert fresh not in {r["Id"] for r in sandbox_org.records("SfdcPartnerTermSet", include_deleted=True)}

    (tmp_path / "other.json").write_text('{"version": 1, "kind": "stripe-sandbox"}')
    with pytest.raises(SnapshotError, match="other.json: not a version 1 sandbox-org snapshot"):
        sandbox_org.restore(tmp_path / "other.json")
