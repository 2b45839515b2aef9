"""Edge cases of the Salesforce adapter, pinned with `responses` (no server): token refresh
on 401 (also mid-pagination), Sforce-Limit-Info parsing and the budget guard, error
translation into the connector's tree, per-record errors as data, chunking and batching."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connector.adapters.salesforce import (
    ApiUsage,
    SalesforceApiError,
    SalesforceOrg,
    SalesforceSettings,
    jwt_audience,
    parse_limit_info,
)
from connector.config import ClientCredentials, JwtBearer
from connector.errors import ApiLimitReached, AuthError, TransientError

LOGIN = "https://login.example.test"
INSTANCE = "https://acme.example.test"
V = f"{INSTANCE}/services/data/v66.0"
TOKEN_URL = f"{LOGIN}/services/oauth2/token"


def _org(**overrides: object) -> SalesforceOrg:
    auth = ClientCredentials(kind="client_credentials", client_id="cid", client_secret=SecretStr("s3cret"))
    settings = SalesforceSettings(login_url=LOGIN, auth=auth, retry_attempts=3, retry_max_wait_s=0.01, **overrides)  # type: ignore[arg-type]
    return SalesforceOrg(settings)


def _token(rsps: responses.RequestsMock, *tokens: str) -> None:
    for token in tokens or ("tok-1",):
        rsps.add(responses.POST, TOKEN_URL, json={"access_token": token, "instance_url": INSTANCE,
                                                  "token_type": "Bearer", "id": f"{LOGIN}/id/00D/005"})


def _page(records: list[dict[str, object]], total: int, next_url: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"totalSize": total, "done": next_url is None,
                               "records": [{"attributes": {"type": "X", "url": "/x"}, **r} for r in records]}
    if next_url:
        body["nextRecordsUrl"] = next_url
    return body


LIMIT = {"Sforce-Limit-Info": "api-usage=10/1000"}


def test_limit_info_header_is_parsed() -> None:
    assert parse_limit_info("api-usage=18/5000") == ApiUsage(18, 5000)
    usage = parse_limit_info("api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)")
    assert usage is not None and (usage.used, usage.limit, usage.remaining) == (25, 5000, 4975)
    assert parse_limit_info("nothing useful") is None


@responses.activate
def test_pages_stream_and_money_arrives_as_decimal() -> None:
    _token(responses)
    responses.add(responses.GET, f"{V}/query/",
                  json=_page([{"Id": "a", "Amount": 12.5}], 2, "/services/data/v66.0/query/01g-1"), headers=LIMIT)
    responses.add(responses.GET, f"{V}/query/01g-1", json=_page([{"Id": "b", "Amount": 0.1}], 2), headers=LIMIT)
    org = _org()
    pages = org.query_pages("SELECT Id, Amount FROM X")
    first = next(pages)
    assert len(responses.calls) <= 3  # token, first page and at most the next one fetched ahead
    assert first.records == [{"Id": "a", "Amount": Decimal("12.5")}] and first.done is False
    second = next(pages)
    assert second.records[0]["Amount"] == Decimal("0.1") and second.number == 2
    assert org.api_calls == 2 and org.api_usage == ApiUsage(10, 1000)
    sent = responses.calls[1].request
    assert sent.headers["Sforce-Query-Options"] == "batchSize=2000"
    assert sent.headers["Authorization"] == "Bearer tok-1"


@responses.activate
def test_expired_session_mid_pagination_reauthenticates_once_and_resumes() -> None:
    _token(responses, "tok-1", "tok-2")
    responses.add(responses.GET, f"{V}/query/", json=_page([{"Id": "a"}], 2, "/services/data/v66.0/query/01g-1"))
    responses.add(responses.GET, f"{V}/query/01g-1", status=401,
                  json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    responses.add(responses.GET, f"{V}/query/01g-1", json=_page([{"Id": "b"}], 2))
    org = _org()
    ids = [r["Id"] for page in org.query_pages("SELECT Id FROM X") for r in page.records]
    assert ids == ["a", "b"]
    assert org.reauthentications == 1
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer tok-2"


@responses.activate
def test_second_401_after_reauthentication_is_an_auth_error() -> None:
    _token(responses, "tok-1", "tok-2")
    responses.add(responses.GET, f"{V}/limits/", status=401,
                  json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    with pytest.raises(AuthError):
        _org().limits()


@responses.activate
def test_refused_credentials_are_an_auth_error_without_the_secret() -> None:
    responses.add(responses.POST, TOKEN_URL, status=400,
                  json={"error": "invalid_client", "error_description": "invalid client credentials"})
    with pytest.raises(AuthError) as err:
        _org().limits()
    assert "invalid_client" in str(err.value) and "s3cret" not in str(err.value)
    assert parse_qs(responses.calls[0].request.body)["grant_type"] == ["client_credentials"]


@responses.activate
def test_request_limit_exceeded_raises_api_limit_reached() -> None:
    _token(responses)
    responses.add(responses.GET, f"{V}/query/", status=403,
                  json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    with pytest.raises(ApiLimitReached):
        list(_org().query_pages("SELECT Id FROM X"))
    assert len(responses.calls) == 2  # not retried


@responses.activate
def test_budget_guard_stops_before_the_call_once_usage_reaches_the_budget() -> None:
    _token(responses)
    responses.add(responses.GET, f"{V}/limits/", json={}, headers={"Sforce-Limit-Info": "api-usage=799/1000"})
    responses.add(responses.GET, f"{V}/limits/", json={}, headers={"Sforce-Limit-Info": "api-usage=800/1000"})
    org = _org(budget_percent=80)
    org.limits()
    org.limits()  # 80% reached by this answer
    with pytest.raises(ApiLimitReached) as err:
        org.limits()
    assert "800/1000" in str(err.value)
    assert org.api_calls == 2


@responses.activate
def test_server_errors_are_retried_then_succeed() -> None:
    _token(responses)
    responses.add(responses.GET, f"{V}/limits/", status=503,
                  json=[{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}])
    responses.add(responses.GET, f"{V}/limits/", status=502, body="<html>bad gateway</html>")
    responses.add(responses.GET, f"{V}/limits/", json={"DailyApiRequests": {"Max": 5, "Remaining": 4}})
    assert _org().limits()["DailyApiRequests"]["Max"] == 5


@responses.activate
def test_timeouts_become_transient_errors_when_retries_run_out() -> None:
    import requests

    _token(responses)
    for _ in range(3):
        responses.add(responses.GET, f"{V}/limits/", body=requests.ConnectTimeout("slow"))
    with pytest.raises(TransientError):
        _org().limits()


@responses.activate
def test_other_4xx_is_a_permanent_error_with_the_error_code() -> None:
    _token(responses)
    responses.add(responses.GET, f"{V}/query/", status=400,
                  json=[{"message": "No such column 'Bogus'", "errorCode": "INVALID_FIELD"}])
    with pytest.raises(SalesforceApiError) as err:
        list(_org().query_pages("SELECT Bogus FROM X"))
    assert err.value.error_code == "INVALID_FIELD" and err.value.status == 400
    assert len(responses.calls) == 2


@responses.activate
def test_collections_upsert_chunks_by_200_and_returns_record_errors_as_data() -> None:
    _token(responses)
    bodies: list[dict[str, object]] = []

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body, parse_float=Decimal)  # type: ignore[attr-defined]
        bodies.append(body)
        out = [{"id": f"a0{i}", "success": True, "errors": [], "created": True} for i, _ in enumerate(body["records"])]
        if len(bodies) == 2:
            out[0] = {"id": None, "success": False, "created": None,
                      "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "dup", "fields": ["Order_Id__c"]}]}
        return 200, {}, json.dumps(out)

    responses.add_callback(responses.PATCH, f"{V}/composite/sobjects/Billing__c/Order_Id__c", callback=answer)
    records = [{"Order_Id__c": f"o{i}", "Amount__c": Decimal("1.10")} for i in range(450)]
    results = _org().upsert_collection("Billing__c", "Order_Id__c", records)
    assert [len(b["records"]) for b in bodies] == [200, 200, 50]  # type: ignore[arg-type]
    assert all(b["allOrNone"] is False for b in bodies)
    assert bodies[0]["records"][0] == {  # type: ignore[index]
        "attributes": {"type": "Billing__c"}, "Order_Id__c": "o0", "Amount__c": Decimal("1.10")}
    failed = [r for r in results if not r.success]
    assert len(results) == 450 and [r.index for r in failed] == [200]
    assert failed[0].error_code == "DUPLICATE_VALUE"


@responses.activate
def test_queries_go_in_batches_of_twenty_five() -> None:
    _token(responses)
    seen: list[list[str]] = []

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        subs = json.loads(request.body)["batchRequests"]  # type: ignore[attr-defined]
        seen.append([s["url"] for s in subs])
        return 200, {}, json.dumps({"hasErrors": False, "results": [
            {"statusCode": 200, "result": {"totalSize": 0, "done": True, "records": []}} for _ in subs]})

    responses.add_callback(responses.POST, f"{V}/composite/batch", callback=answer)
    results = _org().composite_queries([f"SELECT Id FROM X{i}" for i in range(30)], include_deleted=True)
    assert [len(urls) for urls in seen] == [25, 5] and len(results) == 30
    assert seen[0][0] == "v66.0/queryAll?q=SELECT+Id+FROM+X0"  # relative to /services/data/, as Salesforce wants


def test_jwt_assertion_claims(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    auth = JwtBearer(kind="jwt_bearer", client_id="cid", username="int@acme.example.com", private_key_file=key_file)
    org = SalesforceOrg(SalesforceSettings(login_url="https://acme.my.salesforce.com", auth=auth))
    claims = jwt.decode(org._assertion(), key.public_key(), algorithms=["RS256"], audience="https://login.salesforce.com")
    assert claims["iss"] == "cid" and claims["sub"] == "int@acme.example.com"
    assert claims["exp"] > time.time()
    assert jwt_audience("https://acme--uat.sandbox.my.salesforce.com") == "https://test.salesforce.com"
    assert jwt_audience("https://127.0.0.1:8443") == "https://127.0.0.1:8443"


@responses.activate
def test_configured_ca_bundle_wins_over_requests_ca_bundle_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ca = tmp_path / "ca.pem"
    ca.write_text("not used by responses")
    _token(responses)
    responses.add(responses.GET, f"{V}/limits/", json={})
    _org(ca_bundle=ca).limits()
    assert all(call.request.req_kwargs["verify"] == str(ca) for call in responses.calls)  # type: ignore[attr-defined]


@responses.activate
def test_spent_budget_is_rechecked_with_one_call_after_the_interval() -> None:
    _token(responses)
    responses.add(responses.GET, f"{V}/limits/", json={}, headers={"Sforce-Limit-Info": "api-usage=900/1000"})
    responses.add(responses.GET, f"{V}/limits/", json={}, headers={"Sforce-Limit-Info": "api-usage=12/1000"})
    responses.add(responses.GET, f"{V}/limits/", json={}, headers={"Sforce-Limit-Info": "api-usage=13/1000"})
    # 1 s, not 0.2 s: the refused call must come within the interval of the first one, and a
    # loaded machine can stall a process between two lines for a good part of 0.2 s.
    org = _org(budget_percent=80, budget_recheck_seconds=1.0)
    org.limits()
    with pytest.raises(ApiLimitReached):
        org.limits()  # refused without a call
    time.sleep(1.05)
    org.limits()  # one call goes out and finds the window freed up
    org.limits()
    assert org.api_calls == 3 and org.api_usage == ApiUsage(13, 1000)
